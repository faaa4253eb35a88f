//! Hardware verification as the broker reports it: what a device's sandbox
//! was claimed to offer, what the broker measured inside it, and the verdict.

use serde::{Deserialize, Serialize};

/// What a renter of the sandbox gets, in the units the broker compares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// CPU time, in thousandths of a core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
}

impl Figures {
    /// Cores with two decimals, e.g. `1.50`; `?` when unknown.
    pub fn cores_text(&self) -> String {
        self.cpu_millicores
            .map_or("?".into(), |m| format!("{}.{:02}", m / 1000, m % 1000 / 10))
    }

    /// Memory in whole MiB; `?` when unknown.
    pub fn memory_mib_text(&self) -> String {
        self.memory_bytes
            .map_or("?".into(), |b| (b >> 20).to_string())
    }

    /// Disk in whole GiB; `?` when unknown.
    pub fn disk_gib_text(&self) -> String {
        self.disk_bytes
            .map_or("?".into(), |b| (b >> 30).to_string())
    }

    /// `2.00 cores, 512 MiB memory, 30 GiB disk`, with `?` for what is unknown.
    pub fn summary(&self) -> String {
        format!(
            "{} cores, {} MiB memory, {} GiB disk",
            self.cores_text(),
            self.memory_mib_text(),
            self.disk_gib_text()
        )
    }
}

/// What the broker measured inside the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    #[serde(flatten)]
    pub figures: Figures,
    /// SHA-256 throughput of one core, KiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_sha256_kib_s: Option<u64>,
    /// Memory copy throughput, KiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_copy_kib_s: Option<u64>,
    /// Synced disk write throughput, KiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_write_kib_s: Option<u64>,
}

/// A verification's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The measurements match the claims.
    Verified,
    /// The sandbox has less than the device claims; the device may not be listed.
    Flagged,
    /// The broker could not measure (login or command failed).
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Verified => "verified",
            Verdict::Flagged => "flagged",
            Verdict::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "verified" => Verdict::Verified,
            "flagged" => Verdict::Flagged,
            _ => Verdict::Failed,
        }
    }
}

/// One verification. Times are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub at: i64,
    pub verdict: Verdict,
    /// Why the device was flagged or the verification failed; empty when verified.
    pub reasons: String,
    pub claimed: Figures,
    pub measured: Option<Measured>,
}

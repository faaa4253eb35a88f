//! The hardware report an agent sends with its handshake. These are the
//! device's own claims; the broker stores them as claimed, not as verified.

use serde::{Deserialize, Serialize};

use crate::control::SandboxLimits;

/// Longest text field the broker accepts in a report (CPU model, OS, board).
pub const MAX_TEXT_LEN: usize = 200;

/// What the agent read about the machine it runs on. Every field is optional
/// because an agent may not be able to read it (a container without
/// `/proc/device-tree`, say); the broker stores what it got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareReport {
    /// CPU architecture as Rust names it (`x86_64`, `aarch64`, `arm`).
    pub arch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Size of the file system the agent's data lives on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// `PRETTY_NAME` from `/etc/os-release`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Board model, e.g. "Raspberry Pi 4 Model B Rev 1.4", from the device tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    /// The Docker Engine's version, when the agent runs a sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<String>,
    /// The limits the owner set on the sandbox: what a renter gets is the
    /// machine's figures above, capped by these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxLimits>,
}

impl HardwareReport {
    /// Whether every text field is within [`MAX_TEXT_LEN`] and printable, so
    /// the report can be stored and shown as it is.
    pub fn is_well_formed(&self) -> bool {
        let texts = [
            Some(&self.arch),
            self.cpu_model.as_ref(),
            self.os.as_ref(),
            self.board.as_ref(),
            self.docker.as_ref(),
        ];
        texts
            .into_iter()
            .flatten()
            .all(|t| t.chars().count() <= MAX_TEXT_LEN && !t.chars().any(|c| c.is_control()))
    }
}

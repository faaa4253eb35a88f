//! The sandbox limits an owner sets from the broker (the control command
//! `configure`): CPU, memory and, optionally, disk. Both ends check them:
//! the type holds only values within [`MIN_MEMORY_MB`] and the other fixed
//! bounds, and [`LimitSettings::fits`] checks them against the machine the
//! sandbox runs on.

use serde::{Deserialize, Serialize};

use crate::Cpus;

/// Least memory a sandbox may be given: its SSH server and a shell fit.
pub const MIN_MEMORY_MB: u64 = 64;
/// Most memory accepted at all (16 TiB), whatever the machine.
pub const MAX_MEMORY_MB: u64 = 16 * 1024 * 1024;
/// Most disk accepted at all (1 PiB), whatever the machine.
pub const MAX_DISK_GB: u64 = 1024 * 1024;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// CPU, memory and disk limits for the sandbox, each within fixed bounds.
/// A missing disk limit lets the sandbox use the disk Docker keeps it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawLimits", into = "RawLimits")]
pub struct LimitSettings {
    cpus: Cpus,
    memory_mb: u64,
    disk_gb: Option<u64>,
}

/// The shape on the wire, before the bounds are checked.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    cpus: Cpus,
    memory_mb: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disk_gb: Option<u64>,
}

impl TryFrom<RawLimits> for LimitSettings {
    type Error = String;
    fn try_from(raw: RawLimits) -> Result<Self, String> {
        Self::new(raw.cpus, raw.memory_mb, raw.disk_gb)
    }
}

impl From<LimitSettings> for RawLimits {
    fn from(l: LimitSettings) -> Self {
        Self {
            cpus: l.cpus,
            memory_mb: l.memory_mb,
            disk_gb: l.disk_gb,
        }
    }
}

impl LimitSettings {
    /// Checks the fixed bounds: memory from [`MIN_MEMORY_MB`] to
    /// [`MAX_MEMORY_MB`], disk from 1 to [`MAX_DISK_GB`] GiB when given (CPU
    /// bounds are [`Cpus`]'s own).
    pub fn new(cpus: Cpus, memory_mb: u64, disk_gb: Option<u64>) -> Result<Self, String> {
        if memory_mb < MIN_MEMORY_MB {
            return Err(format!(
                "memory must be at least {MIN_MEMORY_MB} MiB (asked for {memory_mb} MiB)"
            ));
        }
        if memory_mb > MAX_MEMORY_MB {
            return Err(format!(
                "memory must be at most {MAX_MEMORY_MB} MiB (asked for {memory_mb} MiB)"
            ));
        }
        if let Some(gb) = disk_gb
            && !(1..=MAX_DISK_GB).contains(&gb)
        {
            return Err(format!(
                "disk must be from 1 to {MAX_DISK_GB} GiB, or left unset (asked for {gb} GiB)"
            ));
        }
        Ok(Self {
            cpus,
            memory_mb,
            disk_gb,
        })
    }

    /// Parses what a person typed: cores like `1.5` (at most three decimals),
    /// whole MiB of memory, and whole GiB of disk or nothing.
    pub fn parse(cpus: &str, memory_mb: &str, disk_gb: &str) -> Result<Self, String> {
        let cpus = parse_cpus(cpus)?;
        let memory_mb = parse_whole(memory_mb, "memory (MiB)")?
            .ok_or_else(|| "give the memory in MiB, like 512".to_string())?;
        let disk_gb = parse_whole(disk_gb, "disk (GiB)")?;
        Self::new(cpus, memory_mb, disk_gb)
    }

    pub fn cpus(&self) -> Cpus {
        self.cpus
    }

    pub fn memory_mb(&self) -> u64 {
        self.memory_mb
    }

    pub fn disk_gb(&self) -> Option<u64> {
        self.disk_gb
    }

    /// Checks the limits against the machine: at most its cores, its memory
    /// and its disk, where those are known.
    pub fn fits(
        &self,
        cpu_cores: Option<u32>,
        memory_bytes: Option<u64>,
        disk_bytes: Option<u64>,
    ) -> Result<(), String> {
        if let Some(cores) = cpu_cores
            && self.cpus.millicores() > u64::from(cores) * 1000
        {
            return Err(format!(
                "{} CPU cores is more than the machine's {cores}",
                show_cpus(self.cpus)
            ));
        }
        if let Some(bytes) = memory_bytes
            && self.memory_mb > bytes / MIB
        {
            return Err(format!(
                "{} MiB of memory is more than the machine's {} MiB",
                self.memory_mb,
                bytes / MIB
            ));
        }
        if let (Some(gb), Some(bytes)) = (self.disk_gb, disk_bytes)
            && gb > bytes / GIB
        {
            return Err(format!(
                "{gb} GiB of disk is more than the machine's {} GiB",
                bytes / GIB
            ));
        }
        Ok(())
    }
}

/// Cores as people write them: `1.5`, `0.25`, `2`.
pub fn show_cpus(cpus: Cpus) -> String {
    let m = cpus.millicores();
    let text = format!("{}.{:03}", m / 1000, m % 1000);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Parses cores exactly (no floating point): digits, optionally a point and
/// one to three more digits.
fn parse_cpus(text: &str) -> Result<Cpus, String> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let shape = !whole.is_empty()
        && whole.len() <= 4
        && digits(whole)
        && digits(frac)
        && frac.len() <= 3
        && !(text.contains('.') && frac.is_empty());
    if !shape {
        return Err(format!(
            "{:?} is not a number of CPU cores like 1.5 (at most three decimals)",
            text.chars().take(20).collect::<String>()
        ));
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| "too many CPU cores".to_string())?;
    let frac: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
    let millicores = whole * 1000 + frac;
    if millicores == 0 {
        return Err("CPU cores must be more than 0".into());
    }
    Cpus::try_from(millicores as f64 / 1000.0)
}

/// Parses a whole number; an empty field is `None`.
fn parse_whole(text: &str, what: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{what} must be a whole number, not {:?}",
            text.chars().take(20).collect::<String>()
        ));
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{what} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(cpus: &str, memory: &str, disk: &str) -> Result<LimitSettings, String> {
        LimitSettings::parse(cpus, memory, disk)
    }

    #[test]
    fn typed_values_parse_exactly() {
        let l = limits("1.5", "512", "").unwrap();
        assert_eq!(l.cpus().millicores(), 1500);
        assert_eq!(l.memory_mb(), 512);
        assert_eq!(l.disk_gb(), None);
        assert_eq!(limits(" 0.25 ", "64", "4").unwrap().disk_gb(), Some(4));
        assert_eq!(limits("2", "64", "").unwrap().cpus().millicores(), 2000);
        assert_eq!(
            show_cpus(limits("0.125", "64", "").unwrap().cpus()),
            "0.125"
        );
        assert_eq!(show_cpus(limits("2.50", "64", "").unwrap().cpus()), "2.5");
        assert_eq!(show_cpus(limits("3", "64", "").unwrap().cpus()), "3");
    }

    #[test]
    fn out_of_range_and_malformed_values_are_refused() {
        for (cpus, memory, disk) in [
            ("0", "512", ""),
            ("0.000", "512", ""),
            ("-1", "512", ""),
            ("1.2345", "512", ""),
            ("1e3", "512", ""),
            (".5", "512", ""),
            ("1.", "512", ""),
            ("", "512", ""),
            ("NaN", "512", ""),
            ("5000", "512", ""),
            ("1", "63", ""),
            ("1", "", ""),
            ("1", "512.5", ""),
            ("1", "99999999999999999", ""),
            ("1", "512", "0"),
            ("1", "512", "-4"),
            ("1", "512", "2000000"),
        ] {
            assert!(
                limits(cpus, memory, disk).is_err(),
                "{cpus:?} {memory:?} {disk:?}"
            );
        }
        let e = limits("1", "32", "").unwrap_err();
        assert!(e.contains("at least 64 MiB"), "{e}");
        let e = limits("1", &(MAX_MEMORY_MB + 1).to_string(), "").unwrap_err();
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn limits_must_fit_the_machine() {
        let gib = 1024 * 1024 * 1024;
        let l = limits("2", "1024", "8").unwrap();
        assert!(l.fits(Some(2), Some(2 * gib), Some(16 * gib)).is_ok());
        assert!(l.fits(None, None, None).is_ok(), "unknown figures: no cap");
        let e = l.fits(Some(1), Some(2 * gib), None).unwrap_err();
        assert_eq!(e, "2 CPU cores is more than the machine's 1");
        let e = l.fits(Some(4), Some(gib / 2), None).unwrap_err();
        assert_eq!(e, "1024 MiB of memory is more than the machine's 512 MiB");
        let e = l.fits(Some(4), None, Some(4 * gib)).unwrap_err();
        assert_eq!(e, "8 GiB of disk is more than the machine's 4 GiB");
    }

    #[test]
    fn the_wire_form_is_checked_when_read() {
        let l: LimitSettings =
            serde_json::from_str(r#"{"cpus":1.5,"memory_mb":512,"disk_gb":4}"#).unwrap();
        assert_eq!(l, limits("1.5", "512", "4").unwrap());
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"cpus":1.5,"memory_mb":512,"disk_gb":4}"#
        );
        for bad in [
            r#"{"cpus":0,"memory_mb":512}"#,
            r#"{"cpus":1,"memory_mb":8}"#,
            r#"{"cpus":1,"memory_mb":512,"disk_gb":0}"#,
            r#"{"cpus":1,"memory_mb":512,"pids":1}"#,
            r#"{"cpus":-1,"memory_mb":512}"#,
        ] {
            assert!(serde_json::from_str::<LimitSettings>(bad).is_err(), "{bad}");
        }
    }
}

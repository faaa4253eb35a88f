//! The agent's config file (seed step 2): a JSON file the owner copies onto the
//! device. `rpibroker device add` prints a ready one.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DeviceName;

/// The device token. Its `Debug` output is masked so it never reaches a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(MASKED)")
    }
}

/// Local addresses the agent forwards each service to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default = "Targets::default_ssh")]
    pub ssh: String,
    #[serde(default = "Targets::default_http")]
    pub http: String,
    #[serde(default = "Targets::default_https")]
    pub https: String,
}

impl Targets {
    fn default_ssh() -> String {
        "127.0.0.1:22".into()
    }
    fn default_http() -> String {
        "127.0.0.1:80".into()
    }
    fn default_https() -> String {
        "127.0.0.1:443".into()
    }
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            ssh: Self::default_ssh(),
            http: Self::default_http(),
            https: Self::default_https(),
        }
    }
}

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Base URL of the broker's API, e.g. `https://broker.example.org`.
    pub broker_url: String,
    pub device: DeviceName,
    pub token: Token,
    /// The broker's SSH host key fingerprint (`SHA256:…`). When set, the agent
    /// refuses a broker that presents another key, even on the first connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    #[serde(default)]
    pub targets: Targets,
    /// Where the agent keeps its SSH key; relative paths are relative to the
    /// config file. Default: `<config file name>.key` beside the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// When present, the agent runs the renter's sandbox in Docker and
    /// forwards the services to it instead of to `targets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxConfig>,
}

/// The image renters get when the config names none.
pub const DEFAULT_SANDBOX_IMAGE: &str = "rpibroker-sandbox:latest";

/// The owner's settings for the sandbox: which image, and the share of the
/// machine a renter gets. Unset limits mean the whole machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    #[serde(default = "SandboxConfig::default_image")]
    pub image: String,
    /// CPU cores, fractions allowed (`1.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Most processes (and threads) at once.
    #[serde(default = "SandboxConfig::default_pids")]
    pub pids: u64,
    /// Size of the sandbox's file system, where Docker's storage driver can
    /// enforce it (overlay2 on xfs with project quotas, btrfs, zfs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gb: Option<u64>,
    /// Lets the sandbox reach private address ranges (the owner's LAN).
    /// Off by default: renters reach the internet only.
    #[serde(default)]
    pub lan_access: bool,
    /// The Docker Engine to use: a `unix://` socket or `tcp://` address.
    /// Default: `DOCKER_HOST`, else `/var/run/docker.sock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<String>,
}

impl SandboxConfig {
    fn default_image() -> String {
        DEFAULT_SANDBOX_IMAGE.into()
    }
    fn default_pids() -> u64 {
        512
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            image: Self::default_image(),
            cpus: None,
            memory_mb: None,
            pids: Self::default_pids(),
            disk_gb: None,
            lan_access: false,
            docker: None,
        }
    }
}

/// A number of CPU cores, kept as thousandths of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Cpus {
    millicores: u64,
}

impl Cpus {
    pub fn from_millicores(millicores: u64) -> Self {
        Self { millicores }
    }
    pub fn millicores(self) -> u64 {
        self.millicores
    }
}

impl TryFrom<f64> for Cpus {
    type Error = String;
    fn try_from(cores: f64) -> Result<Self, String> {
        if !(0.01..=1024.0).contains(&cores) {
            return Err(format!("cpus {cores} is not between 0.01 and 1024"));
        }
        Ok(Self {
            millicores: (cores * 1000.0).round() as u64,
        })
    }
}

impl From<Cpus> for f64 {
    fn from(c: Cpus) -> f64 {
        c.millicores as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_masked_in_debug() {
        let t = Token("rpb_secret".into());
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn minimal_config_gets_default_targets() {
        let c: AgentConfig = serde_json::from_str(
            r#"{"broker_url":"http://127.0.0.1:8000","device":"pi","token":"t"}"#,
        )
        .unwrap();
        assert_eq!(c.targets, Targets::default());
    }

    #[test]
    fn sandbox_settings_parse_with_defaults() {
        let c: AgentConfig = serde_json::from_str(
            r#"{"broker_url":"x","device":"pi","token":"t","sandbox":{"cpus":1.5,"memory_mb":512}}"#,
        )
        .unwrap();
        let s = c.sandbox.unwrap();
        assert_eq!(s.image, DEFAULT_SANDBOX_IMAGE);
        assert_eq!(s.cpus.unwrap().millicores(), 1500);
        assert_eq!(s.pids, 512);
        assert!(!s.lan_access);
        let err = serde_json::from_str::<SandboxConfig>(r#"{"cpus":0}"#).unwrap_err();
        assert!(err.to_string().contains("between"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<AgentConfig>(
            r#"{"broker_url":"x","device":"pi","token":"t","tokn":"y"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}

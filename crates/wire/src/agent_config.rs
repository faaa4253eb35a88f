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
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<AgentConfig>(
            r#"{"broker_url":"x","device":"pi","token":"t","tokn":"y"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}

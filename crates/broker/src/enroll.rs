//! What a newly registered device needs, shown to its owner once: the agent
//! config (with the token and the broker's pinned host key) and the command
//! lines that start it. Shared by `rpibroker device add` and the web pages.

use rpibroker_wire::DeviceName;
use rpibroker_wire::agent_config::{AgentConfig, SandboxConfig, Targets, Token};

use crate::settings::Settings;

/// The agent config for device `name` with `token`; with `sandbox`, the
/// device rents out a Docker sandbox with the default settings.
pub fn agent_config(
    settings: &Settings,
    host_key_fingerprint: &str,
    name: &DeviceName,
    token: &str,
    sandbox: bool,
) -> AgentConfig {
    AgentConfig {
        broker_url: settings.public_url.clone(),
        device: name.clone(),
        token: Token(token.to_string()),
        host_key_fingerprint: Some(host_key_fingerprint.to_string()),
        targets: Targets::default(),
        key_file: None,
        sandbox: sandbox.then(SandboxConfig::default),
    }
}

/// The stock OpenSSH command that makes a device of `name` (the token is
/// its password).
pub fn openssh_command(settings: &Settings, name: &DeviceName) -> String {
    format!(
        "ssh -N -p {} -R 22:localhost:22 -R 80:localhost:80 -R 443:localhost:443 {name}@{}",
        settings.ssh_listen.port(),
        settings.tunnel_host
    )
}

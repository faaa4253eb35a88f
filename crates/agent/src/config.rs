//! Loading the agent's config file and resolving what it leaves implicit.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rpibroker_wire::{AgentConfig, Service};

/// The config, checked and with paths and targets resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: AgentConfig,
    /// Where the agent's SSH key lives.
    pub key_path: PathBuf,
    /// Where the agent keeps its sandbox's state (`<config>.sandbox.json`).
    pub sandbox_state_path: PathBuf,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading agent config {}", path.display()))?;
        let file: AgentConfig = serde_json::from_str(&text)
            .with_context(|| format!("agent config {} is not valid", path.display()))?;
        if !(file.broker_url.starts_with("http://") || file.broker_url.starts_with("https://")) {
            bail!(
                "broker_url {:?} in {} must start with http:// or https://",
                file.broker_url,
                path.display()
            );
        }
        for service in Service::ALL {
            let target = target_text(&file, service);
            let port = target
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok());
            if port.is_none() {
                bail!(
                    "targets.{service} {target:?} in {} is not host:port",
                    path.display()
                );
            }
        }
        if let Some(sandbox) = &file.sandbox
            && sandbox.image.trim().is_empty()
        {
            bail!("sandbox.image in {} is empty", path.display());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "device".into());
        let key_path = match &file.key_file {
            Some(k) => dir.join(k),
            None => dir.join(format!("{name}.key")),
        };
        Ok(Self {
            file,
            key_path,
            sandbox_state_path: dir.join(format!("{name}.sandbox.json")),
        })
    }

    /// Overrides the local target of `service`: `host:port`, or a bare port
    /// on 127.0.0.1.
    pub fn set_target(&mut self, service: Service, value: &str) -> anyhow::Result<()> {
        if self.file.sandbox.is_some() {
            bail!(
                "--{service} cannot be used with a sandbox: the agent forwards the services to the sandbox (remove the config's \"sandbox\" section to forward your own services)"
            );
        }
        let target = if value.parse::<u16>().is_ok() {
            format!("127.0.0.1:{value}")
        } else if is_host_port(value) {
            value.to_string()
        } else {
            bail!("--{service} {value:?} is neither host:port nor a port number");
        };
        let t = &mut self.file.targets;
        *match service {
            Service::Ssh => &mut t.ssh,
            Service::Http => &mut t.http,
            Service::Https => &mut t.https,
        } = target;
        Ok(())
    }

    /// The local address visitors of `service` are sent to.
    pub fn target(&self, service: Service) -> &str {
        target_text(&self.file, service)
    }
}

fn target_text(file: &AgentConfig, service: Service) -> &str {
    match service {
        Service::Ssh => &file.targets.ssh,
        Service::Http => &file.targets.http,
        Service::Https => &file.targets.https,
    }
}

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

//! What the sandbox container looks like: its name and labels, its limits,
//! and the hardening every sandbox gets. Pure: builds Docker API bodies from
//! the owner's settings, talks to nothing.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use rpibroker_wire::control::SandboxLimits;
use rpibroker_wire::limits::LimitSettings;
use rpibroker_wire::{DeviceName, SandboxConfig, Service};
use sha2::{Digest, Sha256};

/// Label on everything the agent creates in Docker; its value says which
/// agent instance owns the object.
pub const INSTANCE_LABEL: &str = "org.rpibroker.instance";
/// Label saying what an object is for (`sandbox` or `firewall`).
pub const ROLE_LABEL: &str = "org.rpibroker.role";
/// Label with the device name, for people reading `docker ps`.
pub const DEVICE_LABEL: &str = "org.rpibroker.device";
/// The network every sandbox on this machine joins: IPv4 only, and
/// containers on it cannot talk to each other.
pub const NETWORK: &str = "rpibroker-sandboxes";
/// The capabilities the sandbox keeps (all others are dropped): what sshd
/// needs to log a renter in and drop to their account, and no more.
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "KILL",
    "SETGID",
    "SETUID",
    "SYS_CHROOT",
];
/// The command in the image that keeps the sandbox off private addresses.
pub const FIREWALL_COMMAND: &str = "/usr/local/sbin/rpibroker-sandbox-firewall";
/// The command in the image that manages login accounts.
pub const USER_COMMAND: &str = "/usr/local/sbin/rpibroker-sandbox-user";

/// Which agent installation a sandbox belongs to: one per device and broker,
/// so several agents can share a Docker Engine without touching each
/// other's containers.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Value of [`INSTANCE_LABEL`].
    pub id: String,
    /// The sandbox container's name.
    pub container: String,
    pub device: DeviceName,
}

impl Instance {
    pub fn new(device: &DeviceName, broker_url: &str) -> Self {
        let digest = Sha256::digest(format!("{broker_url}\n{device}").as_bytes());
        let id = hex::encode(&digest[..8]);
        Self {
            container: format!("rpibroker-{device}-{}", &id[..8]),
            id,
            device: device.clone(),
        }
    }

    pub fn labels(&self, role: &str) -> HashMap<String, String> {
        HashMap::from([
            (INSTANCE_LABEL.to_string(), self.id.clone()),
            (ROLE_LABEL.to_string(), role.to_string()),
            (DEVICE_LABEL.to_string(), self.device.to_string()),
        ])
    }
}

/// The config file's settings with the owner's limits from the broker, if
/// any, in place of its CPU, memory and disk limits.
pub fn with_owner_limits(config: &SandboxConfig, set: Option<&LimitSettings>) -> SandboxConfig {
    let mut config = config.clone();
    if let Some(set) = set {
        config.cpus = Some(set.cpus());
        config.memory_mb = Some(set.memory_mb());
        config.disk_gb = set.disk_gb();
    }
    config
}

/// The limits `config` asks for, as the agent applies and reports them.
pub fn limits(config: &SandboxConfig, disk_enforced: bool) -> SandboxLimits {
    SandboxLimits {
        cpu_millicores: config.cpus.map(|c| c.millicores()),
        memory_bytes: config.memory_mb.map(|m| m * 1024 * 1024),
        pids: Some(config.pids),
        disk_bytes: config.disk_gb.map(|g| g * 1024 * 1024 * 1024),
        disk_enforced,
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The sandbox container: unprivileged, all capabilities but
/// [`CAPABILITIES`] dropped, `no-new-privileges`, the owner's limits, no
/// Docker socket or host paths, ports published on loopback only (Docker
/// picks the host ports; the agent reads them back).
pub fn sandbox(
    instance: &Instance,
    config: &SandboxConfig,
    limits: &SandboxLimits,
) -> ContainerCreateBody {
    let ports: HashMap<String, Option<Vec<PortBinding>>> = Service::ALL
        .iter()
        .map(|s| {
            (
                format!("{}/tcp", s.well_known_port()),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )
        })
        .collect();
    let storage_opt = limits
        .disk_bytes
        .filter(|_| limits.disk_enforced)
        .map(|b| HashMap::from([("size".to_string(), b.to_string())]));
    let host_config = HostConfig {
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        // The renter may run web servers on 80 and 443 without root.
        sysctls: Some(HashMap::from([(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "0".to_string(),
        )])),
        nano_cpus: limits.cpu_millicores.map(|m| to_i64(m * 1_000_000)),
        memory: limits.memory_bytes.map(to_i64),
        // No swap beyond the memory limit.
        memory_swap: limits.memory_bytes.map(to_i64),
        pids_limit: limits.pids.map(to_i64),
        storage_opt,
        port_bindings: Some(ports),
        network_mode: Some(NETWORK.into()),
        // sshd logs every login attempt from the internet: keep the log
        // from filling the owner's disk.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), "10m".to_string()),
                ("max-file".to_string(), "3".to_string()),
            ])),
        }),
        // The agent starts the sandbox itself, so that the LAN block is in
        // place each time it runs.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(config.image.clone()),
        hostname: Some(instance.device.to_string()),
        labels: Some(instance.labels("sandbox")),
        exposed_ports: Some(
            Service::ALL
                .iter()
                .map(|s| format!("{}/tcp", s.well_known_port()))
                .collect(),
        ),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// A one-shot container in the sandbox's network namespace that installs
/// the LAN block there. It holds `NET_ADMIN` only for that namespace, only
/// while it runs; the sandbox itself cannot change the rules.
pub fn firewall(
    instance: &Instance,
    config: &SandboxConfig,
    sandbox_id: &str,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: Some(vec![FIREWALL_COMMAND.into()]),
        labels: Some(instance.labels("firewall")),
        network_disabled: None,
        host_config: Some(HostConfig {
            network_mode: Some(format!("container:{sandbox_id}")),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpibroker_wire::Cpus;

    fn instance() -> Instance {
        Instance::new(&DeviceName::parse("pi").unwrap(), "http://127.0.0.1:8000")
    }

    #[test]
    fn instance_is_stable_and_tells_brokers_apart() {
        let a = instance();
        assert_eq!(a.id, instance().id);
        let b = Instance::new(&DeviceName::parse("pi").unwrap(), "http://other:8000");
        assert_ne!(a.id, b.id);
        assert!(a.container.starts_with("rpibroker-pi-"));
    }

    #[test]
    fn sandbox_is_hardened_and_limited() {
        let config = SandboxConfig {
            cpus: Some(Cpus::from_millicores(1500)),
            memory_mb: Some(256),
            ..SandboxConfig::default()
        };
        let body = sandbox(&instance(), &config, &limits(&config, false));
        let h = body.host_config.unwrap();
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.cap_drop.unwrap(), vec!["ALL"]);
        assert_eq!(h.security_opt.unwrap(), vec!["no-new-privileges"]);
        assert_eq!(h.nano_cpus, Some(1_500_000_000));
        assert_eq!(h.memory, Some(256 * 1024 * 1024));
        assert_eq!(h.memory_swap, h.memory);
        assert_eq!(h.pids_limit, Some(512));
        assert!(
            h.storage_opt.is_none(),
            "no disk size where it cannot be enforced"
        );
        assert!(
            h.binds.is_none() && h.mounts.is_none(),
            "no host paths, no Docker socket"
        );
        let ports = h.port_bindings.unwrap();
        assert_eq!(ports.len(), 3);
        for b in ports.values() {
            assert_eq!(b.as_ref().unwrap()[0].host_ip.as_deref(), Some("127.0.0.1"));
        }
    }

    #[test]
    fn the_owners_limits_replace_the_config_files() {
        let config = SandboxConfig {
            cpus: Some(Cpus::from_millicores(1500)),
            memory_mb: Some(256),
            disk_gb: Some(10),
            pids: 100,
            ..SandboxConfig::default()
        };
        assert_eq!(with_owner_limits(&config, None), config);
        let set = LimitSettings::parse("0.5", "128", "").unwrap();
        let l = limits(&with_owner_limits(&config, Some(&set)), false);
        assert_eq!(l.cpu_millicores, Some(500));
        assert_eq!(l.memory_bytes, Some(128 * 1024 * 1024));
        assert_eq!(l.disk_bytes, None, "no disk limit set: none applied");
        assert_eq!(l.pids, Some(100), "the process cap stays the config file's");
        let h = sandbox(&instance(), &config, &l).host_config.unwrap();
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.memory, Some(128 * 1024 * 1024));
    }
}

//! The `rpibroker device …` commands. They work on the store directly, so
//! they work whether or not a broker is running, and then notify a running
//! broker so it acts at once (see [`crate::notify`]).

use std::path::Path;

use anyhow::{Context, bail};
use rpibroker_wire::agent_config::AgentConfig;
use rpibroker_wire::limits::{LimitSettings, show_cpus};
use rpibroker_wire::{DeviceName, Service};
use russh::keys::{HashAlg, PublicKey};
use serde::Serialize;

use crate::broker::create_private_dir;
use crate::cli::DeviceCommand;
use crate::settings::Settings;
use crate::store::{DeviceRecord, Store, StoreError};
use crate::time::UnixTime;
use crate::{enroll, host_key, notify, presence, private_file, token};

pub async fn run(settings: &Settings, command: DeviceCommand) -> anyhow::Result<()> {
    create_private_dir(&settings.data_dir)?;
    let store = Store::open(&settings.database_path()).context("opening the database")?;
    match command {
        DeviceCommand::Add {
            name,
            ssh_key,
            config_out,
            json,
            sandbox,
        } => {
            let owner_key = ssh_key.as_deref().map(read_public_key).transpose()?;
            let token = token::generate();
            let key = owner_key.as_ref().map(|(f, k)| (f.as_str(), k.as_str()));
            match store.add_device(&name, &token::hash(&token), key, UnixTime::now()) {
                Err(StoreError::NameTaken(name)) => {
                    bail!(
                        "a device named {name} already exists; pick another name or `rpibroker device remove {name}` first"
                    )
                }
                other => other?,
            };
            let enrolled = Enrollment::new(settings, &name, token, sandbox)?;
            enrolled.print("registered", config_out.as_deref(), json)
        }
        DeviceCommand::List { json } => list(settings, &store, json),
        DeviceCommand::Show { name, json } => show(settings, &store, &name, json),
        DeviceCommand::Verify { name, json } => {
            eprintln!("Verifying {name}: logging into its sandbox through the tunnel …");
            let answer = notify::request(
                &settings.data_dir,
                &notify::LocalRequest::Verify {
                    device: name.clone(),
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                let verdict = answer
                    .get("verdict")
                    .and_then(|v| v.as_str())
                    .unwrap_or("-");
                let reasons = answer.get("reasons").and_then(|v| v.as_str()).unwrap_or("");
                println!(
                    "{name}: {verdict}{}",
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", reasons.escape_debug())
                    }
                );
            }
            Ok(())
        }
        DeviceCommand::Limits {
            name,
            cpus,
            memory_mb,
            disk_gb,
        } => {
            let limits =
                LimitSettings::parse(&cpus, &memory_mb, disk_gb.as_deref().unwrap_or_default())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("Setting the limits of {name}: its idle sandbox is recreated under them …");
            notify::request(
                &settings.data_dir,
                &notify::LocalRequest::Limits {
                    device: name.clone(),
                    limits,
                },
            )
            .await?;
            println!(
                "{name}: {} CPU cores, {} MiB memory, {}; the broker is measuring the sandbox again",
                show_cpus(limits.cpus()),
                limits.memory_mb(),
                limits
                    .disk_gb()
                    .map_or("no disk limit".to_string(), |g| format!("{g} GiB disk"))
            );
            Ok(())
        }
        DeviceCommand::Remove { name } => {
            match store.remove_device(&name, UnixTime::now()) {
                Err(StoreError::NoSuchDevice(name)) => bail!("no device named {name}"),
                other => other?,
            }
            tell_broker(&settings.data_dir, &name).await;
            println!(
                "Device {name} removed: its token no longer works, its tunnel is cut and its ports are free."
            );
            Ok(())
        }
        DeviceCommand::Revoke {
            name,
            config_out,
            json,
            sandbox,
        } => {
            let token = token::generate();
            match store.replace_token(&name, &token::hash(&token), UnixTime::now()) {
                Err(StoreError::NoSuchDevice(name)) => bail!("no device named {name}"),
                other => other?,
            }
            tell_broker(&settings.data_dir, &name).await;
            let enrolled = Enrollment::new(settings, &name, token, sandbox)?;
            enrolled.print(
                "given a new token (the old one and its tunnel are cut)",
                config_out.as_deref(),
                json,
            )
        }
    }
}

/// Reads an OpenSSH public key file; returns its fingerprint and canonical text.
fn read_public_key(path: &Path) -> anyhow::Result<(String, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = PublicKey::from_openssh(text.trim()).with_context(|| {
        format!(
            "{} is not an OpenSSH public key (the .pub file)",
            path.display()
        )
    })?;
    Ok((
        key.fingerprint(HashAlg::Sha256).to_string(),
        key.to_openssh().context("encoding the public key")?,
    ))
}

async fn tell_broker(data_dir: &Path, device: &DeviceName) {
    match notify::device_changed_client(data_dir, device).await {
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: could not tell the running broker ({e}); it will refuse the old credentials on the next login, but a live tunnel stays up until it reconnects"
        ),
    }
}

/// A device's token and agent config, shown once.
#[derive(Serialize)]
struct Enrollment {
    device: DeviceName,
    token: String,
    agent_config: AgentConfig,
    #[serde(skip)]
    openssh_command: String,
}

impl Enrollment {
    fn new(
        settings: &Settings,
        name: &DeviceName,
        token: String,
        sandbox: bool,
    ) -> anyhow::Result<Self> {
        let key = host_key::load_or_create(&settings.data_dir)?;
        let fingerprint = host_key::fingerprint(&key);
        Ok(Self {
            device: name.clone(),
            agent_config: enroll::agent_config(settings, &fingerprint, name, &token, sandbox),
            openssh_command: enroll::openssh_command(settings, name),
            token,
        })
    }

    fn print(&self, what: &str, config_out: Option<&Path>, json: bool) -> anyhow::Result<()> {
        let config = serde_json::to_string_pretty(&self.agent_config)?;
        if let Some(path) = config_out {
            private_file::write(path, format!("{config}\n").as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
            return Ok(());
        }
        let name = &self.device;
        println!("Device {name} {what}.\n");
        println!(
            "Device token (shown only this once; the broker keeps only a hash):\n  {}\n",
            self.token
        );
        match config_out {
            Some(path) => println!("Agent config written to {}.", path.display()),
            None => println!("Agent config (save it on the device as device.json):\n{config}"),
        }
        println!("\nOn the device, start the agent:\n  rpibroker-agent --config device.json");
        println!(
            "\nOr use a stock OpenSSH client (its password is the token):\n  {}",
            self.openssh_command
        );
        Ok(())
    }
}

fn show(settings: &Settings, store: &Store, name: &DeviceName, json: bool) -> anyhow::Result<()> {
    let Some(d) = store.device(name)? else {
        bail!("no device named {name}");
    };
    let now = UnixTime::now();
    let online = is_online(&d, now);
    let s = store.full_status(d, &settings.domain, online)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    // Everything below may come from the device: print it escaped.
    let safe = |t: &str| t.escape_debug().to_string();
    println!("{}  ({})", s.name, s.subdomain);
    println!(
        "  state         {}",
        if s.online { "online" } else { "offline" }
    );
    if let Some(p) = &s.ports {
        println!(
            "  ports         ssh {}, http {}, https {}",
            p.ssh, p.http, p.https
        );
    }
    if let Some(h) = &s.hardware {
        println!(
            "  machine       {}, {}, {} cores, {} MiB memory, {} GiB disk{}",
            safe(&h.arch),
            safe(h.cpu_model.as_deref().unwrap_or("unknown CPU")),
            h.cpu_cores.map_or("?".into(), |c| c.to_string()),
            h.memory_bytes.map_or("?".into(), |m| (m >> 20).to_string()),
            h.disk_bytes.map_or("?".into(), |m| (m >> 30).to_string()),
            h.board
                .as_deref()
                .map(|b| format!(", {}", safe(b)))
                .unwrap_or_default()
        );
        if let Some(os) = &h.os {
            println!(
                "  os            {}{}",
                safe(os),
                h.docker
                    .as_deref()
                    .map(|d| format!(", Docker {}", safe(d)))
                    .unwrap_or_default()
            );
        }
    }
    match &s.sandbox {
        None => println!("  sandbox       unknown (not reported yet)"),
        Some(sb) => {
            let detail = sb
                .status
                .as_ref()
                .and_then(|st| st.detail.as_deref())
                .map(|d| format!(": {}", safe(d)))
                .unwrap_or_default();
            println!("  sandbox       {}{detail}", safe(&sb.state));
            if let Some(st) = &sb.status {
                println!(
                    "                image {}, container {}, LAN {}",
                    safe(&st.image),
                    safe(st.container.as_deref().unwrap_or("-")),
                    if st.lan_blocked {
                        "blocked"
                    } else {
                        "reachable"
                    }
                );
            }
        }
    }
    if let Some(c) = &s.claimed {
        println!("  claimed       {}", c.summary());
    }
    match &s.verification {
        None => println!("  verification  none yet"),
        Some(v) => {
            println!(
                "  verification  {} {}{}",
                v.verdict.as_str(),
                UnixTime(v.at).ago(now),
                if v.reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", safe(&v.reasons))
                }
            );
            if let Some(m) = &v.measured {
                println!("  measured      {}", m.figures.summary());
                let mib = |k: Option<u64>| k.map_or("?".into(), |k| (k / 1024).to_string());
                println!(
                    "  benchmark     sha256 {} MiB/s, memory copy {} MiB/s, disk write {} MiB/s",
                    mib(m.cpu_sha256_kib_s),
                    mib(m.memory_copy_kib_s),
                    mib(m.disk_write_kib_s),
                );
            }
        }
    }
    match &s.rental {
        None => println!("  rental        none"),
        Some(r) => println!(
            "  rental        {} ({}), user {}",
            r.id,
            r.state,
            safe(r.username.as_deref().unwrap_or("-"))
        ),
    }
    Ok(())
}

/// A broker refreshes `last_seen` every heartbeat; a device whose record says
/// "online" but was not refreshed for longer belonged to a broker that died.
fn is_online(d: &DeviceRecord, now: UnixTime) -> bool {
    let stale_after = 2 * presence::HEARTBEAT.as_secs() as i64 + 10;
    d.online_since.is_some() && d.last_seen.is_some_and(|t| now.0 - t.0 <= stale_after)
}

fn list(settings: &Settings, store: &Store, json: bool) -> anyhow::Result<()> {
    let devices = store.devices()?;
    let now = UnixTime::now();
    if json {
        let listed = devices
            .into_iter()
            .map(|d| {
                let online = is_online(&d, now);
                store.full_status(d, &settings.domain, online)
            })
            .collect::<Result<Vec<_>, _>>()?;
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    if devices.is_empty() {
        println!("No devices yet. Register one with `rpibroker device add NAME`.");
        return Ok(());
    }
    println!(
        "{:<24} {:<22} {:<20} {:<24}",
        "NAME", "STATE", "PORTS ssh/http/https", "HARDWARE"
    );
    for d in devices {
        let state = if is_online(&d, now) {
            format!(
                "online {}",
                d.online_since
                    .map(|t| t.ago(now))
                    .unwrap_or_default()
                    .replace(" ago", "")
            )
        } else {
            match d.last_seen {
                Some(t) => format!("offline, seen {}", t.ago(now)),
                None => "never connected".into(),
            }
        };
        let ports = d
            .ports
            .map(|p| {
                Service::ALL
                    .iter()
                    .map(|s| p.get(*s).to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_else(|| "-".into());
        let hardware = d
            .hardware
            .map(|h| {
                let mut parts = vec![h.arch];
                if let Some(c) = h.cpu_cores {
                    parts.push(format!("{c} cores"));
                }
                if let Some(m) = h.memory_bytes {
                    parts.push(format!("{} MiB", m / (1024 * 1024)));
                }
                parts.join(", ")
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<22} {:<20} {:<24}",
            d.name.as_str(),
            state,
            ports,
            hardware
        );
    }
    Ok(())
}

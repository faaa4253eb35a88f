//! Benchmark load: connects many devices to a broker from one process, each
//! with its own handshake, SSH session, three forwards and control channel,
//! exactly as `rpibroker-agent` does, then keeps them idle until SIGTERM or Ctrl-C.
//! `bench/rpibroker.sh` uses it to measure the broker's memory per device
//! without starting a thousand agent processes.
//!
//! Usage: idle_devices CONFIG.json...   (prints `ready N` when all are up)

use std::sync::Arc;

use anyhow::Context;
use rpibroker_agent::config::Config;
use rpibroker_agent::targets::LocalTargets;
use rpibroker_agent::{device_key, handshake, hardware, tunnel};
use rpibroker_wire::{ConnectRequest, Service};
use tokio::sync::Semaphore;

/// Devices connecting at the same time.
const PARALLEL: usize = 32;

async fn connect(path: std::path::PathBuf) -> anyhow::Result<tunnel::Tunnel> {
    let config = Config::load(&path)?;
    let key = Arc::new(device_key::load_or_create(&config.key_path)?);
    let request = ConnectRequest {
        token: config.file.token.clone(),
        hardware: hardware::report(&config.key_path),
        public_key: Some(key.public_key().to_openssh()?),
        agent_version: Some("idle-devices".into()),
    };
    let url = config.file.broker_url.clone();
    let answer = tokio::task::spawn_blocking(move || handshake::connect(&url, &request)).await??;
    let fingerprint = answer.host_key_fingerprint.clone();
    let targets = Arc::new(LocalTargets::fixed(
        Service::ALL.map(|s| config.target(s).to_string()),
    ));
    Ok(tunnel::open(&config, key, &answer, &fingerprint, targets, None).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let paths: Vec<_> = std::env::args_os()
        .skip(1)
        .map(std::path::PathBuf::from)
        .collect();
    anyhow::ensure!(!paths.is_empty(), "usage: idle_devices CONFIG.json...");
    let slots = Arc::new(Semaphore::new(PARALLEL));
    let mut pending = Vec::new();
    for path in paths {
        let slots = slots.clone();
        pending.push(tokio::spawn(async move {
            let _slot = slots.acquire().await?;
            connect(path.clone())
                .await
                .with_context(|| format!("device {}", path.display()))
        }));
    }
    let mut tunnels = Vec::new();
    for p in pending {
        tunnels.push(p.await??);
    }
    println!("ready {}", tunnels.len());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    for t in &tunnels {
        t.close().await;
    }
    Ok(())
}

//! The agent's main loop: handshake, open the tunnel, serve until it drops,
//! back off, and again, until shutdown. Every state change is logged with
//! what the agent is doing and why.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rpibroker_wire::{ConnectRequest, Service};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::handshake::{self, HandshakeError};
use crate::sandbox::{Sandbox, spec::Instance};
use crate::targets::LocalTargets;
use crate::{device_key, hardware, tunnel};

/// First reconnect delay; doubles per failure up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A tunnel that stayed up this long counts as working: the next reconnect
/// starts again from the first delay.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Runs until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let key = Arc::new(device_key::load_or_create(&config.key_path)?);
    let public_key = key
        .public_key()
        .to_openssh()
        .context("encoding the device's public key")?;
    let mut backoff = Backoff::new(FIRST_DELAY, MAX_DELAY);
    let url = config.file.broker_url.clone();
    tokio::pin!(shutdown);
    let (targets, sandbox) = match &config.file.sandbox {
        None => (
            Arc::new(LocalTargets::fixed(
                Service::ALL.map(|s| config.target(s).to_string()),
            )),
            None,
        ),
        Some(settings) => {
            let targets = Arc::new(LocalTargets::default());
            let instance = Instance::new(&config.file.device, &url);
            let sandbox = loop {
                match Sandbox::connect(
                    settings.clone(),
                    instance.clone(),
                    config.sandbox_state_path.clone(),
                    targets.clone(),
                )
                .await
                {
                    Ok(s) => break s,
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(retry_in = ?delay, "sandbox: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = &mut shutdown => return Ok(()),
                        }
                    }
                }
            };
            backoff.reset();
            let up = sandbox.clone();
            tokio::spawn(async move {
                up.bring_up().await;
                up.keep_up().await;
            });
            (targets, Some(sandbox))
        }
    };
    loop {
        tracing::info!(broker = %url, device = %config.file.device, "handshake: asking the broker where to connect");
        let request = ConnectRequest {
            token: config.file.token.clone(),
            hardware: claims(&config, sandbox.as_deref()),
            public_key: Some(public_key.clone()),
            agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        };
        let answer = {
            let url = url.clone();
            tokio::task::spawn_blocking(move || handshake::connect(&url, &request))
                .await
                .context("handshake task failed")?
        };
        let why = match answer {
            Err(e) => describe_handshake_error(&e),
            Ok(answer) => {
                let pinned = config.file.host_key_fingerprint.as_deref();
                if pinned.is_some_and(|p| p != answer.host_key_fingerprint) {
                    format!(
                        "the broker announces host key {}, but the config pins {}; refusing to connect",
                        answer.host_key_fingerprint,
                        pinned.unwrap_or_default()
                    )
                } else {
                    let expected = pinned.unwrap_or(&answer.host_key_fingerprint).to_string();
                    tracing::info!(
                        subdomain = %answer.subdomain,
                        ssh = answer.ports.ssh,
                        http = answer.ports.http,
                        https = answer.ports.https,
                        tunnel = %answer.tunnel,
                        "handshake done; opening the tunnel"
                    );
                    match tunnel::open(
                        &config,
                        key.clone(),
                        &answer,
                        &expected,
                        targets.clone(),
                        sandbox.clone(),
                    )
                    .await
                    {
                        Ok(mut t) => {
                            let up_since = Instant::now();
                            for s in Service::ALL {
                                tracing::info!(
                                    service = %s,
                                    public_port = answer.ports.get(s),
                                    local = targets.get(s).as_deref().unwrap_or("the sandbox, once it is up"),
                                    "forwarding"
                                );
                            }
                            tracing::info!(subdomain = %answer.subdomain, "tunnel up: the device is reachable");
                            tokio::select! {
                                reason = t.closed() => {
                                    if up_since.elapsed() >= STABLE_AFTER {
                                        backoff.reset();
                                    }
                                    format!("tunnel lost: {reason}")
                                }
                                _ = &mut shutdown => {
                                    tracing::info!("shutting down: closing the tunnel");
                                    t.close().await;
                                    return Ok(());
                                }
                            }
                        }
                        Err(e) => format!("tunnel failed: {e}"),
                    }
                }
            }
        };
        let delay = backoff.next_delay();
        tracing::warn!(retry_in = ?Duration::from_millis(delay.as_millis() as u64), "{why}");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
        }
    }
}

/// The hardware report: the machine, and for a sandbox the Docker version
/// and the limits the renter gets; the disk is the one Docker keeps the
/// sandbox on when the agent can see it.
fn claims(config: &Config, sandbox: Option<&Sandbox>) -> rpibroker_wire::HardwareReport {
    let Some(sandbox) = sandbox else {
        return hardware::report(&config.key_path);
    };
    let root = sandbox
        .docker_root()
        .map(std::path::Path::new)
        .filter(|p| p.is_dir());
    let mut report = hardware::report(root.unwrap_or(&config.key_path));
    report.docker = Some(sandbox.docker_version().to_string());
    report.sandbox = Some(sandbox.limits());
    report
}

fn describe_handshake_error(e: &HandshakeError) -> String {
    if e.needs_owner() {
        format!("{e} (the agent keeps retrying, but this needs the owner to act)")
    } else {
        format!("handshake failed: {e}")
    }
}

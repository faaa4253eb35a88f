//! What the broker does with a device's sandbox while the device is
//! connected: records the sandbox's state, finishes the end of a rental that
//! a disconnect cut short, and verifies the idle sandbox on connect and then
//! on a schedule. One task per session, from the control channel's opening
//! until the session ends; with billing on, a second one asks a rented
//! sandbox for its state often, so the time it was unhealthy is not charged.

use std::sync::Arc;
use std::time::Duration;

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::{Command, ControlErrorCode, Reply, SandboxState, SandboxStatus};

use crate::broker::Shared;
use crate::control::{CallError, ControlLink};
use crate::store::StoreError;
use crate::time::UnixTime;
use crate::{rental, verify};

/// How often an idle sandbox is measured again.
pub const VERIFY_EVERY: Duration = Duration::from_secs(6 * 3600);
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);
/// First wait before retrying a verification that could not run.
const FIRST_RETRY: Duration = Duration::from_secs(60);

/// The sandbox's state as the agent answers it (as stored: a
/// [`SandboxState`], `none` or `failed`), with its status; `None` when the
/// agent did not answer.
async fn ask(device_id: i64, link: &ControlLink) -> Option<(String, Option<SandboxStatus>)> {
    match link.call(Command::Status, STATUS_TIMEOUT).await {
        Ok(Reply::Status(s)) => match s.check() {
            Ok(()) => Some((s.state.as_str().to_string(), Some(s))),
            Err(e) => {
                tracing::warn!(device_id, error = %e, "ignoring the sandbox status");
                Some(("failed".to_string(), None))
            }
        },
        Err(CallError::Device(e)) if e.code == ControlErrorCode::NoSandbox => {
            Some(("none".to_string(), None))
        }
        _ => None,
    }
}

/// Asks the agent for the sandbox's state and stores it; returns it.
pub async fn refresh(
    shared: &Arc<Shared>,
    device_id: i64,
    link: &ControlLink,
) -> Option<SandboxState> {
    let (state, status) = ask(device_id, link).await?;
    let result = status.as_ref().map(|s| s.state);
    let _ = shared
        .store
        .blocking(move |s| s.set_sandbox(device_id, &state, status.as_ref(), UnixTime::now()))
        .await;
    result
}

pub async fn watch(shared: Arc<Shared>, device: DeviceName, link: Arc<ControlLink>) {
    let name = device.clone();
    let Ok(Some(record)) = shared.store.blocking(move |s| s.device(&name)).await else {
        return;
    };
    let device_id = record.id;
    if shared.settings.billing.enabled {
        tokio::spawn(watch_health(shared.clone(), device_id, link.clone()));
    }
    let mut backoff = FIRST_RETRY;
    // Wait until the agent reports a settled sandbox (it may still be
    // bringing it up, or Docker may be slow to answer).
    loop {
        match refresh(&shared, device_id, &link).await {
            Some(SandboxState::Starting | SandboxState::Wiping) | None => {}
            Some(_) => break,
        }
        if wait_or_closed(&link, Duration::from_secs(1)).await {
            return;
        }
        if shared
            .store
            .blocking(move |s| s.sandbox(device_id))
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.state == "none")
        {
            // An agent without a sandbox: nothing to watch.
            return;
        }
    }
    if let Err(e) = rental::resume_end(&shared, &device, device_id, &link).await {
        tracing::warn!(%device, error = %e, "could not finish the end of the rental");
    }
    loop {
        let last = shared
            .store
            .blocking(move |s| s.last_verification(device_id))
            .await
            .ok()
            .flatten();
        let age = last.map(|l| UnixTime::now().0.saturating_sub(l.at.0).max(0) as u64);
        let due_in = match age {
            None => Duration::ZERO,
            Some(age) => VERIFY_EVERY.saturating_sub(Duration::from_secs(age)),
        };
        if wait_or_closed(&link, due_in).await {
            return;
        }
        let rented = shared
            .store
            .blocking(move |s| s.open_rental(device_id))
            .await
            .ok()
            .flatten()
            .is_some();
        let idle = refresh(&shared, device_id, &link).await == Some(SandboxState::Ready);
        let verified = idle
            && !rented
            && {
                match verify::run(&shared, &device).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::info!(%device, error = %e, retry_in = ?backoff, "scheduled verification could not run");
                        false
                    }
                }
            };
        if verified {
            backoff = FIRST_RETRY;
        } else {
            // Rented, not up, or the device would not be measured: look
            // again later, less often each time.
            if wait_or_closed(&link, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(VERIFY_EVERY);
        }
    }
}

/// While the device has an open rental, asks for its sandbox's state every
/// [`BillingSettings::health_every`](crate::billing::settings::BillingSettings::health_every),
/// and stores an answer that differs from the stored one (and with it
/// whether the sandbox became unhealthy or healthy again).
async fn watch_health(shared: Arc<Shared>, device_id: i64, link: Arc<ControlLink>) {
    let every = shared.settings.billing.health_every();
    loop {
        if wait_or_closed(&link, every).await {
            return;
        }
        let rented = shared
            .store
            .blocking(move |s| s.open_rental(device_id))
            .await
            .ok()
            .flatten()
            .is_some();
        if !rented {
            continue;
        }
        let Some((state, status)) = ask(device_id, &link).await else {
            continue;
        };
        let _ = shared
            .store
            .blocking(move |s| -> Result<(), StoreError> {
                let stored = s.sandbox(device_id)?;
                if stored.is_none_or(|r| r.state != state || r.status != status) {
                    s.set_sandbox(device_id, &state, status.as_ref(), UnixTime::now())?;
                }
                Ok(())
            })
            .await;
    }
}

/// Sleeps for `delay`; true if the session ended meanwhile.
async fn wait_or_closed(link: &ControlLink, delay: Duration) -> bool {
    tokio::select! {
        _ = link.closed() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

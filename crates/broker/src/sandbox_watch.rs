//! What the broker does with a device's sandbox while the device is
//! connected: records the sandbox's state, finishes the end of a rental that
//! a disconnect cut short, and verifies the idle sandbox on connect and then
//! on a schedule. One task per session, from the control channel's opening
//! until the session ends.

use std::sync::Arc;
use std::time::Duration;

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::{Command, ControlErrorCode, Reply, SandboxState};

use crate::broker::Shared;
use crate::control::{CallError, ControlLink};
use crate::store::RentalState;
use crate::time::UnixTime;
use crate::{rental, verify};

/// How often an idle sandbox is measured again.
pub const VERIFY_EVERY: Duration = Duration::from_secs(6 * 3600);
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks the agent for the sandbox's state and stores it; returns it.
pub async fn refresh(
    shared: &Arc<Shared>,
    device_id: i64,
    link: &ControlLink,
) -> Option<SandboxState> {
    let (state, status) = match link.call(Command::Status, STATUS_TIMEOUT).await {
        Ok(Reply::Status(s)) => match s.check() {
            Ok(()) => (s.state.as_str().to_string(), Some(s)),
            Err(e) => {
                tracing::warn!(device_id, error = %e, "ignoring the sandbox status");
                ("failed".to_string(), None)
            }
        },
        Err(CallError::Device(e)) if e.code == ControlErrorCode::NoSandbox => {
            ("none".to_string(), None)
        }
        _ => return None,
    };
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
    // The agent may still be bringing the sandbox up: wait for it to settle.
    let mut state = None;
    for _ in 0..60 {
        state = refresh(&shared, device_id, &link).await;
        if !matches!(state, Some(SandboxState::Starting | SandboxState::Wiping)) {
            break;
        }
        tokio::select! {
            _ = link.closed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    if state.is_none() {
        return;
    }
    let open = shared
        .store
        .blocking(move |s| s.open_rental(device_id))
        .await
        .ok()
        .flatten();
    if let Some(r) = open.filter(|r| r.state == RentalState::Ending) {
        tracing::info!(%device, rental = %r.id, "finishing the end of a rental that a disconnect cut short");
        if let Err(e) = rental::finish(&shared, &device, device_id, &r).await {
            tracing::warn!(%device, error = %e, "could not finish the end of the rental");
        }
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
        tokio::select! {
            _ = link.closed() => return,
            _ = tokio::time::sleep(due_in) => {}
        }
        let rented = shared
            .store
            .blocking(move |s| s.open_rental(device_id))
            .await
            .ok()
            .flatten()
            .is_some();
        let idle = refresh(&shared, device_id, &link).await == Some(SandboxState::Ready);
        if idle && !rented {
            if let Err(e) = verify::run(&shared, &device).await {
                tracing::info!(%device, error = %e, "scheduled verification skipped");
            }
        } else {
            // Rented or not up: look again later.
            tokio::select! {
                _ = link.closed() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
        }
    }
}

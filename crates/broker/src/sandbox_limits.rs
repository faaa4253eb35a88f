//! An owner changes the CPU, memory and disk limits of their device's
//! sandbox: the broker checks that the device is theirs, online and not
//! rented, asks the agent to `configure` them (the agent recreates the idle
//! sandbox under them and keeps them across restarts), stores the limits in
//! force as the device's new claims, and verifies the fresh sandbox, since
//! what a renter gets has changed.
//!
//! The web page and `rpibroker device limits` share this one action. It
//! never touches a rented sandbox: a renter keeps what they rented.

use std::sync::Arc;
use std::time::Duration;

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::{Command, ControlErrorCode, Reply, SandboxStatus};
use rpibroker_wire::limits::LimitSettings;

use crate::broker::Shared;
use crate::control::{CallError, unreachable};
use crate::store::{RentalState, StoreError};
use crate::{sandbox_watch, verify};

/// Time for the agent to recreate the sandbox under the new limits.
const CONFIGURE_TIMEOUT: Duration = Duration::from_secs(300);

/// Why the limits were not changed; each message is written for the owner.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// No such device, or not the caller's: the same answer either way.
    #[error("no device named {0}")]
    NoSuchDevice(DeviceName),
    #[error("{0} is offline: its limits can be changed while it is connected")]
    Offline(DeviceName),
    #[error("{0} is rented: change limits between rentals")]
    Rented(DeviceName),
    #[error("{0} is being wiped after a rental: try again when it is ready")]
    Ending(DeviceName),
    #[error("{0} runs no sandbox: its agent forwards the owner's own services")]
    NoSandbox(DeviceName),
    #[error("{device}: {reason}")]
    OutOfRange { device: DeviceName, reason: String },
    #[error("{0}: {1}")]
    Device(DeviceName, CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sets `device`'s sandbox limits. `owner` is the account acting (a device
/// of another account is answered as no device); `None` is the operator.
/// Returns the sandbox with the limits in force; the verification of the
/// fresh sandbox runs on in the background.
pub async fn configure(
    shared: &Arc<Shared>,
    device: &DeviceName,
    owner: Option<i64>,
    set: LimitSettings,
) -> Result<SandboxStatus, LimitsError> {
    let record = {
        let name = device.clone();
        shared.store.blocking(move |s| s.device(&name)).await?
    }
    .filter(|d| owner.is_none_or(|o| d.owner_id == Some(o)))
    .ok_or_else(|| LimitsError::NoSuchDevice(device.clone()))?;
    let device_id = record.id;
    let link =
        shared
            .registry
            .control(device)
            .ok_or_else(|| match unreachable(shared, device) {
                CallError::Offline => LimitsError::Offline(device.clone()),
                e => LimitsError::Device(device.clone(), e),
            })?;
    // The agent checks again against what it reads itself; this answers
    // the owner at once with the figures the broker shows them.
    let hardware = record.hardware.unwrap_or_default();
    set.fits(
        hardware.cpu_cores,
        hardware.memory_bytes,
        hardware.disk_bytes,
    )
    .map_err(|reason| LimitsError::OutOfRange {
        device: device.clone(),
        reason,
    })?;
    // Held until the agent answers, so no rental starts meanwhile.
    let _ops = link.ops.lock().await;
    let open = shared
        .store
        .blocking(move |s| s.open_rental(device_id))
        .await?;
    match open.map(|r| r.state) {
        Some(RentalState::Ending) => return Err(LimitsError::Ending(device.clone())),
        Some(_) => return Err(LimitsError::Rented(device.clone())),
        None => {}
    }
    tracing::info!(%device, cpus = %rpibroker_wire::limits::show_cpus(set.cpus()), memory_mb = set.memory_mb(), disk_gb = ?set.disk_gb(), "sandbox limits: asking the agent to apply them");
    let status = match link
        .call(Command::Configure { limits: set }, CONFIGURE_TIMEOUT)
        .await
    {
        Ok(Reply::Status(s)) => {
            s.check()
                .map_err(|e| LimitsError::Device(device.clone(), CallError::Malformed(e)))?;
            s
        }
        Ok(_) => {
            return Err(LimitsError::Device(
                device.clone(),
                CallError::Malformed("not the sandbox's status".into()),
            ));
        }
        Err(CallError::Device(e)) => {
            return Err(match e.code {
                ControlErrorCode::Busy => LimitsError::Rented(device.clone()),
                ControlErrorCode::NoSandbox => LimitsError::NoSandbox(device.clone()),
                ControlErrorCode::BadRequest => LimitsError::OutOfRange {
                    device: device.clone(),
                    reason: e.message,
                },
                ControlErrorCode::Failed => {
                    LimitsError::Device(device.clone(), CallError::Device(e))
                }
            });
        }
        Err(e) => return Err(LimitsError::Device(device.clone(), e)),
    };
    let limits = status.limits.clone();
    shared
        .store
        .blocking(move |s| s.set_claimed_limits(device_id, &limits))
        .await?;
    sandbox_watch::refresh(shared, device_id, &link).await;
    tracing::info!(%device, "sandbox limits: applied; verifying the fresh sandbox");
    let (shared, name) = (shared.clone(), device.clone());
    tokio::spawn(async move {
        if let Err(e) = verify::run(&shared, &name).await {
            tracing::warn!(device = %name, error = %e, "could not verify the sandbox under its new limits");
        }
    });
    Ok(status)
}

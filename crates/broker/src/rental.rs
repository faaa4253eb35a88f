//! Rentals of a device's sandbox: start (the agent provisions a fresh
//! account) and stop (the agent wipes the sandbox, then the broker verifies
//! the fresh one). The store records each step before the broker asks the
//! agent, so a repeated start returns the same rental and credentials, and a
//! stop cut short by a disconnect is finished when the device comes back.
//!
//! The marketplace drives these, and so do `rpibroker rental start` and
//! `rental stop` through the broker's local socket. Each step reloads the
//! device's [`crate::access`], so visitors reach the sandbox only while the
//! rental is active and are cut as soon as it ends.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use rpibroker_wire::control::{
    Command, Credentials, MAX_SSH_KEYS, RentalId, Reply, check_public_key,
};
use rpibroker_wire::{DeviceName, ServicePorts};
use serde::Serialize;

use crate::broker::Shared;
use crate::control::{CallError, ControlLink, unreachable};
use crate::store::{RentalRecord, RentalState, RenterTerms, StoreError};
use crate::time::UnixTime;
use crate::{sandbox_watch, verify};

/// Time for the agent to provision an account (it may first have to start
/// the sandbox).
const PROVISION_TIMEOUT: Duration = Duration::from_secs(180);
/// Time for the agent to wipe (remove, create, start, check).
const WIPE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum RentalError {
    #[error("no device named {0}")]
    NoSuchDevice(DeviceName),
    #[error("device {0} is rented (rental {1}); stop that rental first")]
    AlreadyRented(DeviceName, RentalId),
    #[error("device {0} is being wiped after rental {1}; try again when it is ready")]
    Ending(DeviceName, RentalId),
    #[error("device {0} has no rental to stop")]
    NotRented(DeviceName),
    #[error("{0}")]
    BadKey(String),
    #[error("device {0}: {1}")]
    Device(DeviceName, CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest reason for ending someone's rental, in characters.
pub const MAX_REASON: usize = 200;

/// Checks the reason an owner or administrator gives a renter for ending
/// their rental: 1 to [`MAX_REASON`] characters, no control characters.
pub fn parse_reason(text: &str) -> Result<String, String> {
    let reason = text.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON
        || reason.chars().any(char::is_control)
    {
        return Err(format!(
            "Give the renter a reason of 1 to {MAX_REASON} characters."
        ));
    }
    Ok(reason.to_string())
}

/// A rental that has its account: what the renter needs to log in.
#[derive(Debug, Serialize)]
pub struct Started {
    pub rental: RentalId,
    pub device: DeviceName,
    pub username: String,
    pub password: String,
    pub ssh_keys: usize,
    pub ssh_host: String,
    pub ssh_port: Option<u16>,
    pub http_url: String,
    pub https_url: String,
}

impl Started {
    /// The exact command that logs the renter in, once the device has its
    /// public SSH port.
    pub fn ssh_command(&self) -> Option<String> {
        self.ssh_port
            .map(|p| format!("ssh -p {p} {}@{}", self.username, self.ssh_host))
    }
}

/// The device's address on the edge, with the port unless it is the default.
fn edge_url(scheme: &str, device: &DeviceName, domain: &str, port: u16, default: u16) -> String {
    if port == default {
        format!("{scheme}://{device}.{domain}/")
    } else {
        format!("{scheme}://{device}.{domain}:{port}/")
    }
}

fn new_rental_id() -> RentalId {
    let bytes: [u8; 8] = rand::rng().random();
    RentalId::parse(&format!("rnt-{}", hex::encode(bytes))).expect("a valid rental id")
}

async fn device_id(
    shared: &Arc<Shared>,
    device: &DeviceName,
) -> Result<(i64, Option<ServicePorts>), RentalError> {
    let name = device.clone();
    shared
        .store
        .blocking(move |s| s.device(&name))
        .await?
        .map(|d| (d.id, d.ports))
        .ok_or_else(|| RentalError::NoSuchDevice(device.clone()))
}

/// Starts a rental of `device`, or finishes starting the one that was cut
/// short (same rental, same credentials).
pub async fn start(
    shared: &Arc<Shared>,
    device: &DeviceName,
    ssh_keys: Vec<String>,
    renter: Option<RenterTerms>,
) -> Result<Started, RentalError> {
    let renter_id = renter.map(|t| t.renter_id);
    if ssh_keys.len() > MAX_SSH_KEYS {
        return Err(RentalError::BadKey(format!(
            "at most {MAX_SSH_KEYS} SSH keys per rental"
        )));
    }
    for k in &ssh_keys {
        check_public_key(k).map_err(RentalError::BadKey)?;
        russh::keys::PublicKey::from_openssh(k)
            .map_err(|e| RentalError::BadKey(format!("not a valid OpenSSH public key: {e}")))?;
    }
    let (id, ports) = device_id(shared, device).await?;
    let link = shared
        .registry
        .control(device)
        .ok_or_else(|| RentalError::Device(device.clone(), unreachable(shared, device)))?;
    let _ops = link.ops.lock().await;
    let new_id = new_rental_id();
    let rental = {
        let (new_id, keys) = (new_id.clone(), ssh_keys.clone());
        shared
            .store
            .blocking(move |s| s.begin_rental(id, &new_id, &keys, renter, UnixTime::now()))
            .await?
    };
    shared.registry.access.refresh(device).await;
    // An open rental of someone else (a renter racing for the same device,
    // or one being set up) is theirs: never hand out its credentials.
    if rental.id != new_id && rental.renter_id != renter_id {
        return Err(RentalError::AlreadyRented(device.clone(), rental.id));
    }
    match rental.state {
        RentalState::Active => {
            return Err(RentalError::AlreadyRented(device.clone(), rental.id));
        }
        RentalState::Ending => return Err(RentalError::Ending(device.clone(), rental.id)),
        RentalState::Provisioning | RentalState::Ended => {}
    }
    tracing::info!(%device, rental = %rental.id, "rental: provisioning");
    let command = Command::Provision {
        rental: rental.id.clone(),
        ssh_keys: rental.ssh_keys.clone(),
    };
    let credentials: Credentials = match link.call(command, PROVISION_TIMEOUT).await {
        Ok(Reply::Provisioned(c)) if c.rental == rental.id => match c.check() {
            Ok(()) => c,
            Err(e) => return Err(RentalError::Device(device.clone(), CallError::Malformed(e))),
        },
        Ok(_) => {
            return Err(RentalError::Device(
                device.clone(),
                CallError::Malformed("not the credentials of this rental".into()),
            ));
        }
        Err(e) => return Err(RentalError::Device(device.clone(), e)),
    };
    let activated = {
        let (rid, user) = (rental.id.clone(), credentials.username.clone());
        shared
            .store
            .blocking(move |s| s.set_rental_active(&rid, &user))
            .await?
    };
    if !activated {
        // Stopped while the agent worked: its wipe removes this account.
        return Err(RentalError::Ending(device.clone(), rental.id));
    }
    shared.registry.access.refresh(device).await;
    sandbox_watch::refresh(shared, id, &link).await;
    tracing::info!(%device, rental = %rental.id, username = %credentials.username, "rental: active");
    let domain = &shared.settings.domain;
    Ok(Started {
        rental: rental.id,
        device: device.clone(),
        username: credentials.username,
        password: credentials.password,
        ssh_keys: credentials.ssh_keys,
        ssh_host: format!("{device}.{domain}"),
        ssh_port: ports.map(|p| p.ssh),
        http_url: edge_url(
            "http",
            device,
            domain,
            shared.settings.http_listen.port(),
            80,
        ),
        https_url: edge_url(
            "https",
            device,
            domain,
            shared.settings.https_listen.port(),
            443,
        ),
    })
}

/// Stops the device's rental: the sandbox is wiped, then verified again.
/// The rental is marked ending first, so if the device is offline it is
/// wiped as soon as it reconnects.
pub async fn stop(shared: &Arc<Shared>, device: &DeviceName) -> Result<RentalRecord, RentalError> {
    stop_rental(shared, device, None, None).await
}

/// [`stop`], only if the open rental is `expected` (when given): a renter
/// ends their own rental, never the next one. `reason` is the sentence the
/// renter is shown when the owner or an administrator ends it.
pub async fn stop_rental(
    shared: &Arc<Shared>,
    device: &DeviceName,
    expected: Option<&RentalId>,
    reason: Option<String>,
) -> Result<RentalRecord, RentalError> {
    let (id, _) = device_id(shared, device).await?;
    let link = shared.registry.control(device);
    let _ops = match &link {
        Some(l) => Some(l.ops.lock().await),
        None => None,
    };
    let open = shared.store.blocking(move |s| s.open_rental(id)).await?;
    let Some(rental) = open.filter(|r| expected.is_none_or(|e| *e == r.id)) else {
        return Err(RentalError::NotRented(device.clone()));
    };
    {
        let rid = rental.id.clone();
        shared
            .store
            .blocking(move |s| s.set_rental_ending(&rid, reason.as_deref(), UnixTime::now()))
            .await?;
    }
    // Visitors are cut now, before the wipe.
    shared.registry.access.refresh(device).await;
    tracing::info!(%device, rental = %rental.id, "rental: ending; wiping the sandbox");
    let Some(link) = &link else {
        return Err(RentalError::Device(
            device.clone(),
            unreachable(shared, device),
        ));
    };
    wipe_after(shared, device, id, &rental, link).await?;
    Ok(rental)
}

/// Finishes the end of the device's rental that a disconnect cut short, if
/// it is still ending.
pub async fn resume_end(
    shared: &Arc<Shared>,
    device: &DeviceName,
    device_id: i64,
    link: &ControlLink,
) -> Result<(), RentalError> {
    let _ops = link.ops.lock().await;
    let open = shared
        .store
        .blocking(move |s| s.open_rental(device_id))
        .await?;
    match open {
        Some(rental) if rental.state == RentalState::Ending => {
            tracing::info!(%device, rental = %rental.id, "finishing the end of a rental that a disconnect cut short");
            wipe_after(shared, device, device_id, &rental, link).await
        }
        _ => Ok(()),
    }
}

/// Wipes after `rental` and records it ended; then verifies the fresh
/// sandbox in the background. The caller holds `link.ops`.
async fn wipe_after(
    shared: &Arc<Shared>,
    device: &DeviceName,
    device_id: i64,
    rental: &RentalRecord,
    link: &ControlLink,
) -> Result<(), RentalError> {
    let wipe = Command::Wipe {
        after: Some(rental.id.clone()),
    };
    if let Err(e) = link.call(wipe, WIPE_TIMEOUT).await {
        return Err(RentalError::Device(device.clone(), e));
    }
    {
        let rid = rental.id.clone();
        shared
            .store
            .blocking(move |s| s.end_rental(&rid, UnixTime::now()))
            .await?;
    }
    shared.registry.access.refresh(device).await;
    sandbox_watch::refresh(shared, device_id, link).await;
    tracing::info!(%device, rental = %rental.id, "rental: ended; the sandbox is fresh");
    let (shared, device) = (shared.clone(), device.clone());
    tokio::spawn(async move {
        if let Err(e) = verify::run(&shared, &device).await {
            tracing::warn!(%device, error = %e, "could not verify the fresh sandbox");
        }
    });
    Ok(())
}

//! An owner's devices: register one (seed step 1: its token and agent config
//! are handed out once), list them, set the hourly rate and list or unlist
//! on the market, end the current rental with a reason the renter sees,
//! remove one (its rental ended with a wipe first).

use std::sync::Arc;

use rpibroker_wire::{AgentConfig, DeviceName, DeviceStatus, Token};
use serde::Serialize;

use super::Actor;
use crate::broker::Shared;
use crate::rental::{self, RentalError};
use crate::store::{DeviceRecord, StoreError};
use crate::time::UnixTime;
use crate::{enroll, token};

/// Devices one account may register (each takes three public ports).
pub const MAX_DEVICES_PER_ACCOUNT: i64 = 20;
/// Highest hourly rate, in minor units (999999.99).
pub const MAX_HOURLY_RATE: i64 = 99_999_999;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("this account is suspended")]
    Suspended,
    #[error("{0}")]
    BadName(String),
    #[error("an account may register at most {MAX_DEVICES_PER_ACCOUNT} devices")]
    TooMany,
    #[error("the name {0} is taken")]
    NameTaken(DeviceName),
    #[error("you have no device by that name")]
    NotFound,
    #[error("the hourly rate is a whole number of minor units from 0 to {MAX_HOURLY_RATE}")]
    BadRate,
    #[error("{0}")]
    BadReason(String),
    #[error("{0} has no rental")]
    NotRented(DeviceName),
    #[error("{0} is suspended by the broker's administrators: {1}")]
    DeviceSuspended(DeviceName, String),
    #[error("{0} has a rental that could not be ended cleanly: {1}")]
    RentalStuck(DeviceName, RentalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A device just registered: the token is handed out this once.
#[derive(Debug, Serialize)]
pub struct Registered {
    pub name: DeviceName,
    pub token: Token,
    /// The file to put on the device for `rpibroker-agent --config`.
    pub agent_config: AgentConfig,
    /// How to connect with a stock OpenSSH client instead (the token is the
    /// password).
    pub openssh_command: String,
}

/// A rental the owner ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ended {
    pub device: DeviceName,
    /// True when the sandbox is already wiped; false when the device could
    /// not be reached and is wiped as soon as it is.
    pub wiped: bool,
}

fn active(actor: Actor) -> Result<(), DeviceError> {
    if actor.suspended {
        Err(DeviceError::Suspended)
    } else {
        Ok(())
    }
}

/// Refuses a device the administrators suspended: it stays off the market
/// and on record until they reinstate it.
async fn not_suspended(shared: &Arc<Shared>, device: &DeviceRecord) -> Result<(), DeviceError> {
    let id = device.id;
    match shared
        .store
        .blocking(move |s| s.device_suspension(id))
        .await?
    {
        Some(s) => Err(DeviceError::DeviceSuspended(device.name.clone(), s.reason)),
        None => Ok(()),
    }
}

/// The device called `name` if `actor` owns it (or, with `admin_too`, is an
/// administrator); anything else is [`DeviceError::NotFound`].
async fn reachable(
    shared: &Arc<Shared>,
    actor: Actor,
    name: &str,
    admin_too: bool,
) -> Result<DeviceRecord, DeviceError> {
    let name = DeviceName::parse(name).map_err(|_| DeviceError::NotFound)?;
    shared
        .store
        .blocking(move |s| s.device(&name))
        .await?
        .filter(|d| d.owner_id == Some(actor.id) || (admin_too && actor.is_admin))
        .ok_or(DeviceError::NotFound)
}

/// The owner's devices, by name, with their live state and what each
/// earned.
pub async fn mine(shared: &Arc<Shared>, actor: Actor) -> Result<Vec<DeviceStatus>, StoreError> {
    let (owner, domain) = (actor.id, shared.settings.domain.clone());
    let registry = shared.registry.clone();
    shared
        .store
        .blocking(move |s| {
            let mut earnings = s.earnings_of_owner(owner, UnixTime::now())?;
            s.devices_of_owner(owner)?
                .into_iter()
                .map(|d| {
                    let online = registry.is_online(&d.name);
                    let id = d.id;
                    let mut status = s.full_status(d, &domain, online)?;
                    status.earnings = Some(earnings.remove(&id).unwrap_or_default());
                    Ok(status)
                })
                .collect()
        })
        .await
}

/// Registers a device called `name` for the owner.
pub async fn register(
    shared: &Arc<Shared>,
    actor: Actor,
    name: &str,
) -> Result<Registered, DeviceError> {
    active(actor)?;
    let name = DeviceName::parse(name.trim()).map_err(|e| DeviceError::BadName(e.to_string()))?;
    let owner = actor.id;
    let device_token = token::generate();
    let (hash, device) = (token::hash(&device_token), name.clone());
    let added = shared
        .store
        .blocking(move |s| {
            s.add_owned_device(
                &device,
                &hash,
                owner,
                MAX_DEVICES_PER_ACCOUNT,
                UnixTime::now(),
            )
        })
        .await;
    match added {
        Ok(_) => {}
        Err(StoreError::NameTaken(_)) => return Err(DeviceError::NameTaken(name)),
        Err(StoreError::TooManyDevices(_)) => return Err(DeviceError::TooMany),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(device = %name, owner, "device registered");
    let agent_config = enroll::agent_config(
        &shared.settings,
        &shared.host_key_fingerprint,
        &name,
        &device_token,
        true,
    );
    Ok(Registered {
        openssh_command: enroll::openssh_command(&shared.settings, &name),
        name,
        token: Token(device_token),
        agent_config,
    })
}

/// Lists or unlists one of the owner's devices at `hourly_rate` minor units.
pub async fn set_listing(
    shared: &Arc<Shared>,
    actor: Actor,
    name: &str,
    listed: bool,
    hourly_rate: i64,
) -> Result<(), DeviceError> {
    active(actor)?;
    if !(0..=MAX_HOURLY_RATE).contains(&hourly_rate) {
        return Err(DeviceError::BadRate);
    }
    let device = reachable(shared, actor, name, false).await?;
    if listed {
        not_suspended(shared, &device).await?;
    }
    let id = device.id;
    shared
        .store
        .blocking(move |s| s.set_listing(id, listed, Some(hourly_rate)))
        .await?;
    // Listing closes an owner's open routes; unlisting opens them.
    shared.registry.access.refresh(&device.name).await;
    Ok(())
}

/// Ends the rental of one of the owner's devices (or, for an administrator,
/// any device), with a reason the renter sees.
pub async fn end_rental(
    shared: &Arc<Shared>,
    actor: Actor,
    name: &str,
    reason: &str,
) -> Result<Ended, DeviceError> {
    active(actor)?;
    let reason = rental::parse_reason(reason).map_err(DeviceError::BadReason)?;
    let device = reachable(shared, actor, name, true).await?;
    let by = if device.owner_id == Some(actor.id) {
        "the owner"
    } else {
        "an administrator"
    };
    let reason = format!("Ended by {by}: {reason}");
    match rental::stop_rental(shared, &device.name, None, Some(reason)).await {
        Ok(_) => Ok(Ended {
            device: device.name,
            wiped: true,
        }),
        Err(RentalError::NotRented(_)) => Err(DeviceError::NotRented(device.name)),
        Err(e) => {
            tracing::warn!(device = %device.name, error = %e, "ending a rental failed");
            Ok(Ended {
                device: device.name,
                wiped: false,
            })
        }
    }
}

/// Removes one of the owner's devices, ending its rental (with a wipe)
/// first; its token stops working and its session is cut.
pub async fn remove(
    shared: &Arc<Shared>,
    actor: Actor,
    name: &str,
) -> Result<DeviceName, DeviceError> {
    active(actor)?;
    let device = reachable(shared, actor, name, false).await?;
    not_suspended(shared, &device).await?;
    let name = device.name;
    match rental::stop_rental(
        shared,
        &name,
        None,
        Some("Ended by the owner: the device was removed.".into()),
    )
    .await
    {
        Ok(_) | Err(RentalError::NotRented(_)) => {}
        Err(e) => {
            tracing::warn!(device = %name, error = %e, "could not end the rental before removing");
            return Err(DeviceError::RentalStuck(name, e));
        }
    }
    let gone = name.clone();
    shared
        .store
        .blocking(move |s| s.remove_device(&gone, UnixTime::now()))
        .await?;
    shared.registry.access.refresh(&name).await;
    if let Some((generation, _)) = shared.registry.credential(&name) {
        shared
            .registry
            .kick_generation(&name, generation, "the device was removed by its owner");
    }
    tracing::info!(device = %name, owner = actor.id, "device removed by its owner");
    Ok(name)
}

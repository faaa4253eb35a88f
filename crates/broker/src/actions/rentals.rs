//! Rentals as a renter sees them: rent a listed device that is free, list
//! one's rentals, stop one's own open rental. The rental machinery itself
//! (provision, wipe) is [`crate::rental`].

use std::sync::Arc;

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;
use serde::Serialize;

use super::Actor;
use crate::broker::Shared;
use crate::rental::{self, RentalError, Started};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RentError {
    #[error("this account is suspended")]
    Suspended,
    #[error("no listed device has that name")]
    NotListed,
    #[error("{0} cannot be rented now: {1}")]
    Unavailable(DeviceName, &'static str),
    #[error("{0} was just rented by someone else")]
    Taken(DeviceName),
    #[error("{0}")]
    BadKey(String),
    #[error("{0} could not be set up: {1}")]
    Failed(DeviceName, RentalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("this account is suspended")]
    Suspended,
    #[error("you have no open rental of that device")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One rental of the renter, without its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rental {
    pub id: RentalId,
    pub device: String,
    /// `provisioning`, `active`, `ending` or `ended`.
    pub state: &'static str,
    pub username: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// Why the owner or an administrator ended it.
    pub end_reason: Option<String>,
}

/// Which of the renter's open rentals to stop.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    /// By its id.
    Id(&'a str),
    /// The open rental of the device with this name.
    Device(&'a str),
}

/// A rental the renter stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stopped {
    pub rental: RentalId,
    pub device: DeviceName,
    /// True when the sandbox is already wiped; false when the device could
    /// not be reached and is wiped as soon as it is.
    pub wiped: bool,
}

/// Rents the listed device called `device` for `actor`, with optional SSH
/// public keys for the login.
pub async fn rent(
    shared: &Arc<Shared>,
    actor: Actor,
    device: &str,
    ssh_keys: Vec<String>,
) -> Result<Started, RentError> {
    if actor.suspended {
        return Err(RentError::Suspended);
    }
    let name = DeviceName::parse(device).map_err(|_| RentError::NotListed)?;
    let current = super::market::listing(shared)
        .await?
        .into_iter()
        .find(|d| d.name == name)
        .ok_or(RentError::NotListed)?;
    if let Err(why) = super::market::availability(&current) {
        return Err(RentError::Unavailable(current.name, why));
    }
    match rental::start(shared, &current.name, ssh_keys, Some(actor.id)).await {
        Ok(started) => {
            tracing::info!(device = %current.name, renter = actor.id, rental = %started.rental, "rented");
            Ok(started)
        }
        Err(RentalError::AlreadyRented(..) | RentalError::Ending(..)) => {
            Err(RentError::Taken(current.name))
        }
        Err(RentalError::BadKey(why)) => Err(RentError::BadKey(why)),
        Err(e) => Err(RentError::Failed(current.name, e)),
    }
}

/// The renter's rentals, newest first (the latest 50).
pub async fn mine(shared: &Arc<Shared>, actor: Actor) -> Result<Vec<Rental>, StoreError> {
    let renter = actor.id;
    let rows = shared
        .store
        .blocking(move |s| s.rentals_of_renter(renter))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(device, r)| Rental {
            id: r.id,
            device,
            state: r.state.as_str(),
            username: r.username,
            started_at: r.started_at,
            ended_at: r.ended_at,
            end_reason: r.end_reason,
        })
        .collect())
}

/// Stops one of the renter's own open rentals: visitor access is cut and
/// the sandbox wiped.
pub async fn stop(
    shared: &Arc<Shared>,
    actor: Actor,
    which: Which<'_>,
) -> Result<Stopped, StopError> {
    if actor.suspended {
        return Err(StopError::Suspended);
    }
    let open = mine(shared, actor).await?.into_iter().find(|r| {
        r.ended_at.is_none()
            && match which {
                Which::Id(id) => r.id.as_str() == id,
                Which::Device(name) => r.device == name,
            }
    });
    let Some((device, rental_id)) =
        open.and_then(|r| Some((DeviceName::parse(&r.device).ok()?, r.id)))
    else {
        return Err(StopError::NotFound);
    };
    let wiped = match rental::stop_rental(shared, &device, Some(&rental_id), None).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(%device, error = %e, "stopping a rental failed");
            false
        }
    };
    Ok(Stopped {
        rental: rental_id,
        device,
        wiped,
    })
}

//! Rentals as a renter sees them: rent a listed device that is free, list
//! one's rentals, see what each hour of one cost, stop one's own open
//! rental. The rental machinery itself
//! (provision, wipe) is [`crate::rental`].

use std::sync::Arc;

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;
use serde::Serialize;

use super::Actor;
use crate::billing::{self, usage::Usage};
use crate::broker::Shared;
use crate::ledger::Account;
use crate::mail;
use crate::market::{self, Unavailable};
use crate::rental::{self, RentalError, Started};
use crate::store::{RenterTerms, StoreError};
use crate::time::UnixTime;

/// How long renting waits for the copy of the login by mail before it says
/// the mail is still on its way (sending goes on regardless).
const MAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RentError {
    #[error("this account is suspended")]
    Suspended,
    #[error("no listed device has that name")]
    NotListed,
    #[error("{0} cannot be rented now: {1}")]
    Unavailable(DeviceName, Unavailable),
    #[error("{0} was just rented by someone else")]
    Taken(DeviceName),
    /// The owner changed the price after the renter saw it; the new one.
    #[error("the price of {0} changed since it was shown")]
    PriceChanged(DeviceName, Option<i64>),
    #[error("an account may have at most {MAX_OPEN_RENTALS} open rentals; stop one first")]
    TooMany,
    #[error("{0} is your own device; unlist it to use it yourself")]
    OwnDevice(DeviceName),
    /// Billing is on and the wallet cannot cover the first hour.
    #[error("your wallet holds {}, less than the first hour ({})", crate::price::show_price(*.0), crate::price::show_price(*.1))]
    LowBalance(i64, i64),
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

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("you have no rental with that id")]
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

/// What became of the copy of the login mailed to the renter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mailed {
    Sent,
    /// Still being sent when renting stopped waiting.
    Sending,
    Failed,
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

/// Open rentals one account may hold at once.
pub const MAX_OPEN_RENTALS: i64 = 10;

/// Rents the listed device called `device` for `actor`, with optional SSH
/// public keys for the login, and mails a copy of the login to `email`
/// (the renter's address). With `agreed_rate`, the rental starts only at
/// that hourly rate (the one the renter was shown).
pub async fn rent(
    shared: &Arc<Shared>,
    actor: Actor,
    email: &str,
    device: &str,
    ssh_keys: Vec<String>,
    agreed_rate: Option<i64>,
) -> Result<(Started, Mailed), RentError> {
    if actor.suspended {
        return Err(RentError::Suspended);
    }
    let name = DeviceName::parse(device).map_err(|_| RentError::NotListed)?;
    let current = market::find(shared, &name)
        .await?
        .ok_or(RentError::NotListed)?;
    if let Err(why) = current.availability() {
        return Err(RentError::Unavailable(name, why));
    }
    if current.device.owner_id == Some(actor.id) {
        return Err(RentError::OwnDevice(name));
    }
    let billing = &shared.settings.billing;
    let rate = current.device.hourly_rate.unwrap_or(0);
    if billing.enabled && rate > 0 {
        let (renter, currency) = (actor.id, billing.currency.clone());
        let wallet = shared
            .store
            .blocking(move |s| s.balance(&Account::Wallet(renter), &currency))
            .await?;
        if wallet < rate {
            return Err(RentError::LowBalance(wallet, rate));
        }
    }
    let terms = RenterTerms {
        renter_id: actor.id,
        hourly_rate: agreed_rate,
        max_open: MAX_OPEN_RENTALS,
        billed: billing.enabled,
    };
    match rental::start(shared, &name, ssh_keys, Some(terms)).await {
        Ok(started) => {
            tracing::info!(device = %name, renter = actor.id, rental = %started.rental, "rented");
            let mailed = mail_login(shared, email, &started).await;
            Ok((started, mailed))
        }
        Err(RentalError::AlreadyRented(..) | RentalError::Ending(..)) => {
            Err(RentError::Taken(name))
        }
        Err(RentalError::BadKey(why)) => Err(RentError::BadKey(why)),
        Err(RentalError::Store(StoreError::RateChanged(now))) => {
            Err(RentError::PriceChanged(name, now))
        }
        Err(RentalError::Store(StoreError::TooManyRentals(_))) => Err(RentError::TooMany),
        Err(e) => Err(RentError::Failed(name, e)),
    }
}

/// Mails the renter a copy of the login, waiting at most [`MAIL_WAIT`].
pub async fn mail_login(shared: &Arc<Shared>, to: &str, started: &Started) -> Mailed {
    let message = match mail::rental_credentials(to, started, &shared.settings.public_url) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "composing the rental mail failed");
            return Mailed::Failed;
        }
    };
    match tokio::time::timeout(MAIL_WAIT, shared.mailer.send_in_background(message)).await {
        Ok(Ok(Ok(()))) => Mailed::Sent,
        Ok(_) => Mailed::Failed,
        Err(_) => Mailed::Sending,
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

/// What each period (hour) of rental `id` cost and why; only for its
/// renter and administrators.
pub async fn usage(shared: &Arc<Shared>, actor: Actor, id: &str) -> Result<Usage, UsageError> {
    let id = RentalId::parse(id).map_err(|_| UsageError::NotFound)?;
    let shared2 = shared.clone();
    shared
        .store
        .blocking(move |s| {
            let rental = s
                .rental_billing(id.as_str())?
                .filter(|r| actor.is_admin || r.renter_id == Some(actor.id))
                .ok_or(UsageError::NotFound)?;
            Ok(billing::usage::usage_at(
                s,
                &shared2.settings.billing,
                &rental,
                UnixTime::now(),
            )?)
        })
        .await
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
    let renter = actor.id;
    let (id, name) = match which {
        Which::Id(id) => (Some(id.to_string()), None),
        Which::Device(name) => (None, Some(name.to_string())),
    };
    let open = shared
        .store
        .blocking(move |s| s.open_rental_of_renter(renter, id.as_deref(), name.as_deref()))
        .await?;
    let Some((device, rental_id)) =
        open.and_then(|(device, id)| Some((DeviceName::parse(&device).ok()?, id)))
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

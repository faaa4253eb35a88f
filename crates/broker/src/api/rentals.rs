//! The caller's rentals: rent a listed device (`POST /api/v1/rentals`), list
//! them, see what each hour of one cost, stop one, as on the marketplace
//! and My rentals pages.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rpibroker_wire::ErrorCode;
use serde::{Deserialize, Serialize};

use super::Failure;
use super::body::JsonBody;
use super::caller::Caller;
use crate::actions::rentals::{
    self, Mailed, RentError, Rental, StopError, Stopped, UsageError, Which,
};
use crate::billing::usage::Usage;
use crate::broker::Shared;
use crate::rental::Started;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRental {
    device: String,
    /// An OpenSSH public key that may log in besides the password.
    #[serde(default)]
    ssh_key: Option<String>,
    /// The hourly rate the renter agreed to, in cents; omitted, the current one.
    #[serde(default)]
    hourly_rate_cents: Option<i64>,
}

/// A rental just started: its login, shown this once, and what became of
/// the copy mailed to the renter.
#[derive(Serialize)]
pub struct Rented {
    #[serde(flatten)]
    started: Started,
    mail: Mailed,
}

#[derive(Serialize)]
pub struct Rentals {
    rentals: Vec<Rental>,
}

fn suspended() -> Failure {
    Failure::new(
        StatusCode::FORBIDDEN,
        ErrorCode::AccountSuspended,
        "this account is suspended",
    )
}

impl From<RentError> for Failure {
    fn from(e: RentError) -> Self {
        let (status, code) = match &e {
            RentError::Suspended => return suspended(),
            RentError::NotListed => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            RentError::Unavailable(..) | RentError::OwnDevice(_) => {
                (StatusCode::CONFLICT, ErrorCode::DeviceUnavailable)
            }
            RentError::Taken(_) => (StatusCode::CONFLICT, ErrorCode::AlreadyRented),
            RentError::PriceChanged(device, now) => {
                return Failure::new(
                    StatusCode::CONFLICT,
                    ErrorCode::PriceChanged,
                    match now {
                        Some(rate) => format!(
                            "the price of {device} changed since it was shown: it is now {rate} cents per hour"
                        ),
                        None => format!("{device} has no price any more"),
                    },
                );
            }
            RentError::TooMany => (StatusCode::CONFLICT, ErrorCode::LimitReached),
            RentError::LowBalance(..) => {
                (StatusCode::PAYMENT_REQUIRED, ErrorCode::InsufficientFunds)
            }
            RentError::BadKey(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput),
            RentError::Failed(device, why) => {
                tracing::warn!(%device, error = %why, "rental failed");
                return Failure::new(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::DeviceUnreachable,
                    format!("{device} could not be set up for you; try again later"),
                );
            }
            RentError::Store(_) => return Failure::internal("renting failed", e),
        };
        Failure::new(status, code, e.to_string())
    }
}

impl From<StopError> for Failure {
    fn from(e: StopError) -> Self {
        match e {
            StopError::Suspended => suspended(),
            StopError::NotFound => Failure::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "you have no open rental with that id",
            ),
            StopError::Store(e) => Failure::internal("stopping a rental failed", e),
        }
    }
}

pub async fn rent(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    JsonBody(body): JsonBody<NewRental>,
) -> Result<(StatusCode, Json<Rented>), Failure> {
    let keys = body.ssh_key.into_iter().collect();
    let (started, mail) = rentals::rent(
        &shared,
        caller.actor,
        &caller.user.email,
        &body.device,
        keys,
        body.hourly_rate_cents,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Rented { started, mail })))
}

pub async fn mine(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Rentals>, Failure> {
    let rentals = rentals::mine(&shared, caller.actor)
        .await
        .map_err(|e| Failure::internal("listing rentals failed", e))?;
    Ok(Json(Rentals { rentals }))
}

/// 200 when the sandbox is wiped; 202 when the device could not be reached
/// and is wiped as soon as it is.
pub async fn stop(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Stopped>), Failure> {
    let stopped = rentals::stop(&shared, caller.actor, Which::Id(&id)).await?;
    let status = if stopped.wiped {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(stopped)))
}

/// What each hour of one of the caller's rentals cost; 404 for another
/// account's rental (administrators see any).
pub async fn usage(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Usage>, Failure> {
    match rentals::usage(&shared, caller.actor, &id).await {
        Ok(usage) => Ok(Json(usage)),
        Err(UsageError::NotFound) => Err(Failure::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "you have no rental with that id",
        )),
        Err(UsageError::Store(e)) => Err(Failure::internal("reading a rental's usage failed", e)),
    }
}

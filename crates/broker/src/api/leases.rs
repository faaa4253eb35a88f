//! The caller's leases of devices peer brokers manage: rent one shown on
//! this broker's marketplace (`POST /api/v1/leases`), list them, stop one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rpibroker_wire::ErrorCode;
use serde::{Deserialize, Serialize};

use super::Failure;
use super::body::JsonBody;
use super::caller::Caller;
use crate::actions::leases::{self, Lease, LeaseError, LeaseUsage, Leased, StopError, UsageError};
use crate::broker::Shared;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLease {
    /// The peer broker that manages the device.
    broker: String,
    device: String,
    /// The hourly rate the renter was shown, in cents.
    hourly_rate_cents: i64,
    #[serde(default)]
    ssh_key: Option<String>,
}

#[derive(Serialize)]
pub struct Leases {
    leases: Vec<Lease>,
}

impl From<LeaseError> for Failure {
    fn from(e: LeaseError) -> Self {
        let (status, code) = match &e {
            LeaseError::Suspended => (StatusCode::FORBIDDEN, ErrorCode::AccountSuspended),
            LeaseError::NoSuchPeer(_) | LeaseError::NotListed { .. } => {
                (StatusCode::NOT_FOUND, ErrorCode::NotFound)
            }
            LeaseError::Unavailable(_) | LeaseError::Refused(..) | LeaseError::StoppedMeanwhile => {
                (StatusCode::CONFLICT, ErrorCode::DeviceUnavailable)
            }
            LeaseError::PriceChanged(device, now) => {
                return Failure::new(
                    StatusCode::CONFLICT,
                    ErrorCode::PriceChanged,
                    format!(
                        "the price of {device} changed since it was shown: it is now {now} cents per hour"
                    ),
                );
            }
            LeaseError::Currency { .. } | LeaseError::Period { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput)
            }
            LeaseError::LowBalance(..) => {
                (StatusCode::PAYMENT_REQUIRED, ErrorCode::InsufficientFunds)
            }
            LeaseError::TooMany => (StatusCode::CONFLICT, ErrorCode::LimitReached),
            LeaseError::NoBilling(_) => (StatusCode::CONFLICT, ErrorCode::DeviceUnavailable),
            LeaseError::Unreachable(_) => (StatusCode::BAD_GATEWAY, ErrorCode::DeviceUnreachable),
            LeaseError::Store(_) => return Failure::internal("leasing failed", e),
        };
        Failure::new(status, code, e.to_string())
    }
}

impl From<StopError> for Failure {
    fn from(e: StopError) -> Self {
        match e {
            StopError::Suspended => Failure::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AccountSuspended,
                "this account is suspended",
            ),
            StopError::NotFound => Failure::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "you have no open lease with that id",
            ),
            StopError::Store(e) => Failure::internal("stopping a lease failed", e),
        }
    }
}

pub async fn rent(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    JsonBody(body): JsonBody<NewLease>,
) -> Result<(StatusCode, Json<Leased>), Failure> {
    let leased = leases::rent(
        &shared,
        caller.actor,
        &caller.user.email,
        &body.broker,
        &body.device,
        body.ssh_key,
        body.hourly_rate_cents,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(leased)))
}

pub async fn mine(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Leases>, Failure> {
    let leases = leases::mine(&shared, caller.actor)
        .await
        .map_err(|e| Failure::internal("listing leases failed", e))?;
    Ok(Json(Leases { leases }))
}

/// Ended here at once; the peer that runs it is told (retried until it
/// confirms), and wipes the sandbox.
pub async fn stop(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Lease>, Failure> {
    Ok(Json(leases::stop(&shared, caller.actor, &id).await?))
}

/// What each hour of one of the caller's leases cost, from the peer's
/// usage records; 404 for another account's lease.
pub async fn usage(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseUsage>, Failure> {
    match leases::usage(&shared, caller.actor, &id).await {
        Ok(usage) => Ok(Json(usage)),
        Err(UsageError::NotFound) => Err(Failure::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "you have no lease with that id",
        )),
        Err(UsageError::Store(e)) => Err(Failure::internal("reading a lease's usage failed", e)),
    }
}

//! The caller's devices, as on the My devices page: list, register (the
//! token and agent config are in the answer, once), price and list on the
//! market, end the current rental with a reason, remove.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rpibroker_wire::{DeviceStatus, ErrorCode};
use serde::{Deserialize, Serialize};

use super::Failure;
use super::body::JsonBody;
use super::caller::Caller;
use crate::actions::devices::{self, DeviceError, Ended, Registered};
use crate::broker::Shared;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    name: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    listed: bool,
    /// Price per hour in minor units (cents).
    hourly_rate_cents: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndRental {
    /// What the renter is told.
    reason: String,
}

#[derive(Serialize)]
pub struct Devices {
    devices: Vec<DeviceStatus>,
}

impl From<DeviceError> for Failure {
    fn from(e: DeviceError) -> Self {
        let (status, code) = match &e {
            DeviceError::Suspended => (StatusCode::FORBIDDEN, ErrorCode::AccountSuspended),
            DeviceError::DeviceSuspended(..) => (StatusCode::FORBIDDEN, ErrorCode::DeviceSuspended),
            DeviceError::BadName(_) | DeviceError::BadRate | DeviceError::BadReason(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput)
            }
            DeviceError::TooMany => (StatusCode::CONFLICT, ErrorCode::LimitReached),
            DeviceError::NameTaken(_) => (StatusCode::CONFLICT, ErrorCode::NameTaken),
            DeviceError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            DeviceError::NotRented(_) => (StatusCode::CONFLICT, ErrorCode::NotRented),
            DeviceError::RentalStuck(name, _) => {
                return Failure::new(
                    StatusCode::CONFLICT,
                    ErrorCode::DeviceUnreachable,
                    format!(
                        "{name} has a rental that could not be ended cleanly (is the device online?); try again when it is"
                    ),
                );
            }
            DeviceError::Store(_) => return Failure::internal("a device action failed", e),
        };
        Failure::new(status, code, e.to_string())
    }
}

pub async fn mine(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Devices>, Failure> {
    let devices = devices::mine(&shared, caller.actor)
        .await
        .map_err(|e| Failure::internal("listing devices failed", e))?;
    Ok(Json(Devices { devices }))
}

pub async fn register(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    JsonBody(body): JsonBody<NewDevice>,
) -> Result<(StatusCode, Json<Registered>), Failure> {
    let registered = devices::register(&shared, caller.actor, &body.name).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

pub async fn set_listing(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Listing>,
) -> Result<Json<Listing>, Failure> {
    devices::set_listing(
        &shared,
        caller.actor,
        &name,
        body.listed,
        body.hourly_rate_cents,
    )
    .await?;
    Ok(Json(body))
}

/// 200 when the sandbox is wiped; 202 when the device could not be reached
/// and is wiped as soon as it is.
pub async fn end_rental(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<EndRental>,
) -> Result<(StatusCode, Json<Ended>), Failure> {
    let ended = devices::end_rental(&shared, caller.actor, &name, &body.reason).await?;
    let status = if ended.wiped {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(ended)))
}

pub async fn remove(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    devices::remove(&shared, caller.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! The administrators' endpoints, as on the administrators' page: every
//! account, device and rental; suspend or reinstate an account or a device,
//! lift a sign-in lock, end anyone's rental, see the revenue. To any other caller they
//! answer 404, like an unknown address.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rpibroker_wire::ErrorCode;
use serde::{Deserialize, Serialize};

use super::Failure;
use super::body::JsonBody;
use super::caller::Caller;
use crate::actions::admin::{
    self, AccountSuspension, AdminError, Device, DeviceSuspension, Ended, Revenue,
};
use crate::broker::Shared;
use crate::store::{AdminRental, AdminUser};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSuspensionBody {
    suspended: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSuspensionBody {
    suspended: bool,
    /// What the owner is told; required to suspend.
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndRental {
    /// What the renter is told.
    reason: String,
}

#[derive(Serialize)]
pub struct Users {
    users: Vec<AdminUser>,
}

#[derive(Serialize)]
pub struct Devices {
    devices: Vec<Device>,
}

#[derive(Serialize)]
pub struct Rentals {
    rentals: Vec<AdminRental>,
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        let (status, code) = match &e {
            AdminError::NotAdmin => {
                return Failure::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NotFound,
                    "there is no endpoint at this address",
                );
            }
            AdminError::NoSuchAccount
            | AdminError::NoSuchDevice
            | AdminError::NoSuchRental
            | AdminError::NoSuchPeer => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            AdminError::OpenLeases(_) => (StatusCode::CONFLICT, ErrorCode::InvalidInput),
            AdminError::OwnAccount | AdminError::BadReason(_) | AdminError::Payouts(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput)
            }
            AdminError::Store(_) => {
                return Failure::internal("an administrator's action failed", e);
            }
        };
        Failure::new(status, code, e.to_string())
    }
}

pub async fn users(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Users>, Failure> {
    let users = admin::users(&shared, caller.actor).await?;
    Ok(Json(Users { users }))
}

pub async fn devices(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Devices>, Failure> {
    let devices = admin::devices(&shared, caller.actor).await?;
    Ok(Json(Devices { devices }))
}

pub async fn rentals(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Rentals>, Failure> {
    let rentals = admin::rentals(&shared, caller.actor).await?;
    Ok(Json(Rentals { rentals }))
}

/// The broker's fees, what it owes owners, and payouts.
pub async fn revenue(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Revenue>, Failure> {
    Ok(Json(admin::revenue(&shared, caller.actor).await?))
}

pub async fn set_account_suspension(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(email): Path<String>,
    JsonBody(body): JsonBody<AccountSuspensionBody>,
) -> Result<Json<AccountSuspension>, Failure> {
    let done = admin::set_account_suspension(&shared, caller.actor, &email, body.suspended).await?;
    Ok(Json(done))
}

pub async fn unlock(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(email): Path<String>,
) -> Result<StatusCode, Failure> {
    admin::unlock(&shared, caller.actor, &email).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn set_device_suspension(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<DeviceSuspensionBody>,
) -> Result<Json<DeviceSuspension>, Failure> {
    // Suspending without a reason is refused like an empty one.
    let reason = body.suspended.then(|| body.reason.unwrap_or_default());
    let done =
        admin::set_device_suspension(&shared, caller.actor, &name, reason.as_deref()).await?;
    Ok(Json(done))
}

/// 200 when the sandbox is wiped; 202 when the device could not be reached
/// and is wiped as soon as it is.
pub async fn end_rental(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EndRental>,
) -> Result<(StatusCode, Json<Ended>), Failure> {
    let ended = admin::end_rental(&shared, caller.actor, &id, &body.reason).await?;
    let status = if ended.wiped {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(ended)))
}

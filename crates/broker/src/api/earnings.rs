//! An owner's earnings (`GET /api/v1/earnings`), payouts (`GET
//! /api/v1/payouts`) and payout method (`PUT /api/v1/earnings/method`), as
//! on the earnings page.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rpibroker_wire::ErrorCode;
use serde::{Deserialize, Serialize};

use super::Failure;
use super::body::JsonBody;
use super::caller::Caller;
use crate::actions::earnings::{self, Earnings, EarningsError};
use crate::broker::Shared;
use crate::payouts::method::PayoutMethod;
use crate::store::PayoutRecord;

impl From<EarningsError> for Failure {
    fn from(e: EarningsError) -> Self {
        let (status, code) = match &e {
            EarningsError::Suspended => (StatusCode::FORBIDDEN, ErrorCode::AccountSuspended),
            EarningsError::PayoutsOff | EarningsError::PaypalOff | EarningsError::BadMethod(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput)
            }
            EarningsError::Store(_) => return Failure::internal("reading earnings failed", e),
        };
        Failure::new(status, code, e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodBody {
    /// `paypal`, `crypto` or `none`.
    kind: String,
    #[serde(default)]
    destination: String,
}

#[derive(Serialize)]
pub struct Method {
    method: Option<PayoutMethod>,
}

#[derive(Serialize)]
pub struct Payouts {
    payouts: Vec<PayoutRecord>,
}

pub async fn earnings(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Earnings>, Failure> {
    Ok(Json(earnings::earnings(&shared, caller.actor).await?))
}

pub async fn payouts(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Payouts>, Failure> {
    let e = earnings::earnings(&shared, caller.actor).await?;
    Ok(Json(Payouts { payouts: e.payouts }))
}

pub async fn set_method(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    JsonBody(body): JsonBody<MethodBody>,
) -> Result<Json<Method>, Failure> {
    let method = earnings::set_method(&shared, caller.actor, &body.kind, &body.destination).await?;
    Ok(Json(Method { method }))
}

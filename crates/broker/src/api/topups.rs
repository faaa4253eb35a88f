//! The caller's wallet top-ups: start one through a payment provider
//! (`POST /api/v1/topups`, answered with the checkout link to pay at), list
//! them, and look at one, as on the wallet page.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rpibroker_wire::ErrorCode;
use serde::{Deserialize, Serialize};

use super::Failure;
use super::body::JsonBody;
use super::caller::Caller;
use crate::actions::topups::{self, StartError, Topup};
use crate::broker::Shared;
use crate::payments::topup::TopupError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTopup {
    /// `paypal` or `btcpay`.
    provider: String,
    /// In the billing currency, as people write it: `10` or `12.50`.
    amount: String,
}

#[derive(Serialize)]
pub struct Topups {
    topups: Vec<Topup>,
}

impl From<StartError> for Failure {
    fn from(e: StartError) -> Self {
        let (status, code) = match &e {
            StartError::Suspended => (StatusCode::FORBIDDEN, ErrorCode::AccountSuspended),
            StartError::UnknownProvider(_)
            | StartError::BadAmount(_)
            | StartError::Topup(TopupError::NotOffered(_) | TopupError::BadAmount) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput)
            }
            StartError::Topup(TopupError::TooMany) => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitReached)
            }
            StartError::Topup(TopupError::Provider { .. }) => (
                StatusCode::BAD_GATEWAY,
                ErrorCode::PaymentProviderUnavailable,
            ),
            StartError::Topup(TopupError::Store(_)) => {
                return Failure::internal("starting a top-up failed", e);
            }
        };
        Failure::new(status, code, e.to_string())
    }
}

pub async fn start(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    JsonBody(body): JsonBody<NewTopup>,
) -> Result<(StatusCode, Json<Topup>), Failure> {
    let topup = topups::start(&shared, caller.actor, &body.provider, &body.amount).await?;
    Ok((StatusCode::CREATED, Json(topup)))
}

pub async fn mine(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<Topups>, Failure> {
    let topups = topups::mine(&shared, caller.actor)
        .await
        .map_err(|e| Failure::internal("listing top-ups failed", e))?;
    Ok(Json(Topups { topups }))
}

pub async fn one(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Topup>, Failure> {
    topups::look(&shared, caller.actor, &id)
        .await
        .map_err(|e| Failure::internal("reading a top-up failed", e))?
        .map(Json)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "you have no top-up with that id",
            )
        })
}

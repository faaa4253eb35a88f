//! `GET /api/v1/market`: the public listing, as on the marketplace page.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::Failure;
use crate::actions::market::{self, Offer};
use crate::broker::Shared;

#[derive(Serialize)]
pub struct Market {
    devices: Vec<Offer>,
}

pub async fn listing(State(shared): State<Arc<Shared>>) -> Result<Json<Market>, Failure> {
    let devices = market::listing(&shared)
        .await
        .map_err(|e| Failure::internal("listing the marketplace failed", e))?;
    Ok(Json(Market {
        devices: devices.iter().map(Offer::from).collect(),
    }))
}

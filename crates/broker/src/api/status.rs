//! `GET /api/v1/device`: a device's own state (online since, last seen,
//! ports, sandbox, claimed and verified hardware, current rental), for the owner's scripts on the device. Authenticated with the
//! device token as `Authorization: Bearer <token>`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use rpibroker_wire::{DeviceStatus, ErrorCode};

use super::{Failure, token_refused};
use crate::broker::Shared;
use crate::store::TokenLookup;
use crate::token;

pub async fn status(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<DeviceStatus>, Failure> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Failure::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::BadToken,
                "send the device token as `Authorization: Bearer <token>`",
            )
        })?;
    let hash = token::hash(bearer.trim());
    let lookup = shared
        .store
        .blocking(move |s| s.lookup_token(&hash))
        .await
        .map_err(|e| Failure::internal("device status lookup failed", e))?;
    match lookup {
        TokenLookup::Current(device) => {
            let online = shared.registry.is_online(&device.name);
            let domain = shared.settings.domain.clone();
            let status = shared
                .store
                .blocking(move |s| s.full_status(*device, &domain, online))
                .await
                .map_err(|e| Failure::internal("device status lookup failed", e))?;
            Ok(Json(status))
        }
        other => Err(token_refused(other)),
    }
}

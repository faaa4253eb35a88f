//! Request bodies of the API: bounded in size (the router's middleware has
//! already bounded the time they take to arrive); for people's scripts,
//! `application/json` parsed strictly (unknown fields are refused), with
//! every failure in the API's error shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use rpibroker_wire::ErrorCode;
use serde::de::DeserializeOwned;

use super::Failure;

/// Largest body of a request from people's scripts.
pub const MAX_BODY: usize = 16 * 1024;

/// A request body parsed as `T`.
pub struct JsonBody<T>(pub T);

/// The body of `req`, if it is at most `max` bytes.
pub async fn bounded(req: Request, max: usize) -> Result<Bytes, Failure> {
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            format!("request bodies here are limited to {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), max)
        .await
        .map_err(|_| too_large())
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::MalformedRequest,
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = bounded(req, MAX_BODY).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MalformedRequest,
                format!("the body is not a valid request: {e}"),
            )
        })
    }
}

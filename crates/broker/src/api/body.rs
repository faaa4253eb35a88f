//! JSON request bodies of the API for people's scripts: bounded in size and
//! in time, `application/json`, and parsed strictly (unknown fields are
//! refused), with every failure in the API's error shape.

use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use rpibroker_wire::ErrorCode;
use serde::de::DeserializeOwned;

use super::Failure;

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Time allowed to receive the body once the head has arrived.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body parsed as `T`.
pub struct JsonBody<T>(pub T);

fn too_large() -> Failure {
    Failure::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BodyTooLarge,
        format!("request bodies are limited to {MAX_BODY} bytes"),
    )
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
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY) {
            return Err(too_large());
        }
        let bytes = tokio::time::timeout(
            BODY_TIMEOUT,
            axum::body::to_bytes(req.into_body(), MAX_BODY),
        )
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::MalformedRequest,
                "the request body did not arrive in time",
            )
        })?
        .map_err(|_| too_large())?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MalformedRequest,
                format!("the body is not a valid request: {e}"),
            )
        })
    }
}

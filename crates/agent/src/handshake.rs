//! The handshake (seed step 3): `POST /api/v1/connect` with the token,
//! hardware report and the agent's public key; the broker answers with the
//! device's subdomain, public ports, tunnel endpoint and host key fingerprint.

use std::time::Duration;

use rpibroker_wire::handshake::CONNECT_PATH;
use rpibroker_wire::{ApiError, ConnectRequest, ConnectResponse, ErrorCode};

/// Whole-call time limit.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read from the broker.
const MAX_ANSWER: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The broker answered and said no; the message says why and what to do.
    #[error("the broker refused the handshake ({code:?}): {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the broker's answer is not understood (HTTP {status}): {reason}")]
    BadAnswer { status: u16, reason: String },
}

impl HandshakeError {
    /// Whether retrying cannot help until someone changes the config or the
    /// broker (bad, revoked or removed token).
    pub fn needs_owner(&self) -> bool {
        matches!(
            self,
            HandshakeError::Refused {
                code: ErrorCode::BadToken | ErrorCode::RevokedToken | ErrorCode::DeviceRemoved,
                ..
            }
        )
    }
}

/// Calls the broker's connect API. Blocking; run it off the async runtime.
pub fn connect(
    broker_url: &str,
    request: &ConnectRequest,
) -> Result<ConnectResponse, HandshakeError> {
    let url = format!("{}{CONNECT_PATH}", broker_url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response =
        agent
            .post(&url)
            .send_json(request)
            .map_err(|e| HandshakeError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| HandshakeError::BadAnswer {
            status,
            reason: e.to_string(),
        })?;
    if status == 200 {
        return serde_json::from_str(&body).map_err(|e| HandshakeError::BadAnswer {
            status,
            reason: e.to_string(),
        });
    }
    match serde_json::from_str::<ApiError>(&body) {
        Ok(e) => Err(HandshakeError::Refused {
            code: e.code,
            message: e.message,
        }),
        Err(_) => Err(HandshakeError::BadAnswer {
            status,
            reason: body.chars().take(200).collect(),
        }),
    }
}

//! The handshake (seed step 3): a device presents its token and hardware
//! report; the broker answers with its subdomain, ports, tunnel endpoint and
//! host key fingerprint. Ports are assigned at the first handshake, in the
//! same transaction as everything else, so a failure leaves nothing behind.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use rpibroker_wire::handshake::MAX_CONNECT_BODY;
use rpibroker_wire::{ConnectRequest, ConnectResponse, ErrorCode};
use russh::keys::{HashAlg, PublicKey};

use super::{Failure, token_refused};
use crate::broker::Shared;
use crate::store::{StoreError, TokenLookup};
use crate::time::UnixTime;
use crate::token;

/// Longest agent version accepted (it is logged).
const MAX_AGENT_VERSION: usize = 64;

fn malformed(message: impl Into<String>) -> Failure {
    Failure::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::MalformedRequest,
        message,
    )
}

pub async fn connect(
    State(shared): State<Arc<Shared>>,
    req: Request,
) -> Result<Json<ConnectResponse>, Failure> {
    let body = super::body::bounded(req, MAX_CONNECT_BODY).await?;
    let request: ConnectRequest = serde_json::from_slice(&body)
        .map_err(|e| malformed(format!("the handshake is not valid: {e}")))?;
    if !request.hardware.is_well_formed() {
        return Err(malformed(
            "the hardware report has an overlong or non-printable field",
        ));
    }
    let version_ok = request
        .agent_version
        .as_deref()
        .is_none_or(|v| v.len() <= MAX_AGENT_VERSION && !v.chars().any(|c| c.is_control()));
    if !version_ok {
        return Err(malformed(format!(
            "agent_version must be printable and at most {MAX_AGENT_VERSION} bytes"
        )));
    }
    let agent_key = match &request.public_key {
        Some(text) => {
            let key = PublicKey::from_openssh(text.trim()).map_err(|e| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadPublicKey,
                    format!("public_key is not an OpenSSH public key: {e}"),
                )
            })?;
            let canonical = key
                .to_openssh()
                .map_err(|e| Failure::internal("encoding a device key", e))?;
            Some((key.fingerprint(HashAlg::Sha256).to_string(), canonical))
        }
        None => None,
    };

    let hash = token::hash(&request.token.0);
    let pool = shared.settings.port_pool;
    let hardware = request.hardware.clone();
    let outcome = shared
        .store
        .blocking(move |s| -> Result<_, StoreError> {
            let device = match s.lookup_token(&hash)? {
                TokenLookup::Current(d) => d,
                other => return Ok(Err(token_refused(other))),
            };
            if let Some(suspension) = s.device_suspension(device.id)? {
                return Ok(Err(Failure::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::DeviceSuspended,
                    format!(
                        "device {} was suspended by the broker's administrators: {}",
                        device.name, suspension.reason
                    ),
                )));
            }
            let key = agent_key.as_ref().map(|(f, k)| (f.as_str(), k.as_str()));
            let ports = s.record_handshake(device.id, pool, key, &hardware, UnixTime::now())?;
            Ok(Ok((device, ports)))
        })
        .await;
    let (device, ports) = match outcome {
        Ok(Ok(found)) => found,
        Ok(Err(refused)) => return Err(refused),
        Err(StoreError::PoolExhausted(pool)) => {
            tracing::error!(%pool, "device port pool exhausted");
            return Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::PortPoolExhausted,
                format!(
                    "the broker has no free public ports left (pool {pool}); its operator must enlarge the pool"
                ),
            ));
        }
        Err(e) => return Err(Failure::internal("handshake failed", e)),
    };
    tracing::info!(
        device = %device.name,
        agent = request.agent_version.as_deref().unwrap_or("unknown"),
        arch = %request.hardware.arch,
        "handshake"
    );
    Ok(Json(ConnectResponse {
        device_id: device.id,
        subdomain: format!("{}.{}", device.name, shared.settings.domain),
        device: device.name,
        ports,
        tunnel: format!("{}:{}", shared.settings.tunnel_host, shared.ssh_port),
        host_key_fingerprint: shared.host_key_fingerprint.clone(),
    }))
}

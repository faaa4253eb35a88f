//! Calling a peer: a signed request, a bounded wait and a bounded answer,
//! whose signature is checked against the peer's keys before its body is
//! believed.

use std::time::Duration;

use axum::http::{HeaderMap, Method};

use super::identity::{KeyRing, PublicKey};
use super::signature::{self, RequestTarget, SignatureError};
use super::url::Origin;
use super::wire::{FederationError, MAX_RESPONSE_BYTES};
use crate::time::UnixTime;

/// Longest a call to a peer may take, connection to last byte.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("could not reach {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("{url} answered more than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url} refused ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} answered with a bad signature: {why}")]
    BadSignature { url: String, why: SignatureError },
    #[error("{url} answered something that is not what was asked for: {why}")]
    BadAnswer { url: String, why: String },
}

/// The HTTP client for peers: no redirects (a signed request is for one
/// target), bounded time.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(CALL_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("building the federation HTTP client")
}

/// A verified answer from a peer.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
}

/// Sends a signed `method` request for `path_and_query` on `origin` and
/// checks the answer's signature with `peer_keys`. POST and PUT carry
/// `idempotency_key`.
#[allow(clippy::too_many_arguments)]
pub async fn call(
    http: &reqwest::Client,
    ring: &KeyRing,
    origin: &Origin,
    method: Method,
    path_and_query: &str,
    body: Vec<u8>,
    idempotency_key: Option<&str>,
    peer_keys: &(dyn Fn(&str) -> Option<PublicKey> + Sync),
) -> Result<Answer, CallError> {
    let url = origin.target(path_and_query);
    let target = RequestTarget {
        method: method.as_str(),
        target_uri: &url,
        authority: &origin.authority,
    };
    let signed = signature::sign_request(ring, target, &body, idempotency_key, UnixTime::now());
    let request_signature = signed
        .iter()
        .find(|(n, _)| n == signature::SIGNATURE)
        .and_then(|(_, v)| v.to_str().ok())
        .and_then(|v| v.strip_prefix(&format!("{}=", signature::LABEL)))
        .unwrap_or_default()
        .to_string();
    let mut headers: HeaderMap = signed.into_iter().collect();
    if !body.is_empty() {
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
    }
    let unreachable = |e: reqwest::Error| CallError::Unreachable {
        url: url.clone(),
        why: e.to_string(),
    };
    let mut response = http
        .request(method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let answer_headers = response.headers().clone();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(CallError::TooLarge { url });
        }
        bytes.extend_from_slice(&chunk);
    }
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<FederationError>(&bytes)
            .map(|e| e.message.chars().take(300).collect())
            .unwrap_or_else(|_| "no explanation".into());
        return Err(CallError::Refused {
            url,
            status,
            message,
        });
    }
    signature::verify_response(
        &answer_headers,
        status,
        &bytes,
        &request_signature,
        UnixTime::now(),
        peer_keys,
    )
    .map_err(|why| CallError::BadSignature {
        url: url.clone(),
        why,
    })?;
    Ok(Answer { body: bytes })
}

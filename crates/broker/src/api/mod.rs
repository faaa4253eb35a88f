//! The broker's HTTP listener: the agents' handshake (`POST
//! /api/v1/connect`, see [`connect`]), a device's own status, the JSON API
//! for people's scripts, its OpenAPI document, a health check, and the web
//! pages ([`crate::web`]).
//!
//! The JSON API does what the web pages do, through the same
//! [`crate::actions`]: [`account`] (who am I, API tokens), [`market`],
//! [`rentals`], [`topups`], [`devices`], [`earnings`], and for administrators [`admin`]. Its callers authenticate with an API token
//! ([`caller`]); bodies are bounded and parsed strictly ([`body`]). Every
//! endpoint under `/api/v1` is listed once in [`endpoints`], and the
//! OpenAPI document ([`openapi`]) describes exactly those.
//!
//! Every failure is a JSON [`ApiError`] with a machine-readable code and a
//! sentence for a person; details of internal errors go to the log only.
//! Connections are bounded: a request head must arrive within the edge read
//! timeout, its body within [`BODY_TIMEOUT`], and bodies are size-limited
//! per endpoint.

mod account;
mod admin;
mod body;
mod caller;
mod connect;
mod devices;
mod earnings;
pub mod leases;
mod market;
pub mod openapi;
mod rentals;
mod status;
mod topups;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rpibroker_wire::handshake::CONNECT_PATH;
use rpibroker_wire::status::STATUS_PATH;
use rpibroker_wire::{ApiError, ErrorCode};
use tokio::net::TcpListener;

use crate::accept;
use crate::broker::Shared;
use crate::gate::Gate;
use crate::shutdown::Shutdown;
use crate::store::{RetiredReason, TokenLookup};
use crate::time::UnixTime;

/// Open API connections, at most, in total and from one address.
const MAX_CONNECTIONS: usize = 1024;
const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;

/// A failed API call, rendered as [`ApiError`] JSON.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    error: ApiError,
}

impl Failure {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            error: ApiError {
                code,
                message: message.into(),
            },
        }
    }

    /// An internal error: logged in full, reported to the client in general terms.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the broker hit an internal error; its operator can find details in its log",
        )
    }
}

/// Why a token that is not a device's current one is refused; shared by
/// every endpoint a device authenticates to with its token.
pub fn token_refused(lookup: TokenLookup) -> Failure {
    match lookup {
        TokenLookup::Retired { device, reason, at } => {
            let when = at.ago(UnixTime::now());
            match reason {
                RetiredReason::Revoked => Failure::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::RevokedToken,
                    format!(
                        "this token of device {device} was revoked {when}; put the new token from `rpibroker device revoke` in the agent's config"
                    ),
                ),
                RetiredReason::Removed => Failure::new(
                    StatusCode::GONE,
                    ErrorCode::DeviceRemoved,
                    format!(
                        "device {device} was removed from this broker {when}; register it again with `rpibroker device add`"
                    ),
                ),
            }
        }
        TokenLookup::Current(_) | TokenLookup::Unknown => Failure::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::BadToken,
            "no device has this token; check the token in the agent's config",
        ),
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.error)).into_response()
    }
}

/// Every endpoint under `/api/v1`: method, path and handler. The OpenAPI
/// document lists exactly these (a test holds the two together).
pub fn endpoints() -> Vec<(Method, &'static str, MethodRouter<Arc<Shared>>)> {
    vec![
        (Method::POST, CONNECT_PATH, post(connect::connect)),
        (Method::GET, STATUS_PATH, get(status::status)),
        (Method::GET, openapi::PATH, get(openapi::document)),
        (Method::GET, "/api/v1/me", get(account::me)),
        (Method::GET, "/api/v1/tokens", get(account::tokens)),
        (
            Method::DELETE,
            "/api/v1/tokens/{id}",
            delete(account::revoke_token),
        ),
        (Method::GET, "/api/v1/market", get(market::listing)),
        (Method::GET, "/api/v1/rentals", get(rentals::mine)),
        (Method::POST, "/api/v1/rentals", post(rentals::rent)),
        (
            Method::POST,
            "/api/v1/rentals/{id}/stop",
            post(rentals::stop),
        ),
        (
            Method::GET,
            "/api/v1/rentals/{id}/usage",
            get(rentals::usage),
        ),
        (Method::GET, "/api/v1/leases", get(leases::mine)),
        (Method::POST, "/api/v1/leases", post(leases::rent)),
        (Method::POST, "/api/v1/leases/{id}/stop", post(leases::stop)),
        (Method::GET, "/api/v1/leases/{id}/usage", get(leases::usage)),
        (Method::GET, "/api/v1/topups", get(topups::mine)),
        (Method::POST, "/api/v1/topups", post(topups::start)),
        (Method::GET, "/api/v1/topups/{id}", get(topups::one)),
        (Method::GET, "/api/v1/devices", get(devices::mine)),
        (Method::POST, "/api/v1/devices", post(devices::register)),
        (
            Method::PUT,
            "/api/v1/devices/{name}/listing",
            put(devices::set_listing),
        ),
        (
            Method::POST,
            "/api/v1/devices/{name}/end-rental",
            post(devices::end_rental),
        ),
        (
            Method::DELETE,
            "/api/v1/devices/{name}",
            delete(devices::remove),
        ),
        (Method::GET, "/api/v1/earnings", get(earnings::earnings)),
        (
            Method::PUT,
            "/api/v1/earnings/method",
            put(earnings::set_method),
        ),
        (Method::GET, "/api/v1/payouts", get(earnings::payouts)),
        (Method::GET, "/api/v1/admin/users", get(admin::users)),
        (
            Method::PUT,
            "/api/v1/admin/users/{email}/suspension",
            put(admin::set_account_suspension),
        ),
        (
            Method::POST,
            "/api/v1/admin/users/{email}/unlock",
            post(admin::unlock),
        ),
        (Method::GET, "/api/v1/admin/devices", get(admin::devices)),
        (
            Method::PUT,
            "/api/v1/admin/devices/{name}/suspension",
            put(admin::set_device_suspension),
        ),
        (Method::GET, "/api/v1/admin/rentals", get(admin::rentals)),
        (Method::GET, "/api/v1/admin/revenue", get(admin::revenue)),
        (
            Method::POST,
            "/api/v1/admin/rentals/{id}/end",
            post(admin::end_rental),
        ),
    ]
}

/// API answers may carry secrets (tokens, passwords): never cache them.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Time a client has to send a request's whole body once its head arrived.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest body any endpoint reads (forms, the handshake and the JSON API
/// all stop at 16 KiB), so many open requests cannot buffer much memory.
/// Payment providers' webhooks, under [`WEBHOOKS`], may send up to
/// [`crate::payments::webhooks::MAX_BODY`].
const MAX_ANY_BODY: usize = 16 * 1024;
/// Where payment providers' webhooks are.
const WEBHOOKS: &str = "/webhooks/";

/// Reads the request body before any handler runs, within [`BODY_TIMEOUT`]
/// and [`MAX_ANY_BODY`], so a client that trickles a body cannot hold a
/// handler (or a password hashing slot) open.
async fn body_deadline(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let max = if parts.uri.path().starts_with(WEBHOOKS) {
        crate::payments::webhooks::MAX_BODY
    } else {
        MAX_ANY_BODY
    };
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            format!("request bodies are limited to {max} bytes"),
        )
        .into_response(),
        Err(_) => Failure::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::MalformedRequest,
            "the request body did not arrive in time",
        )
        .into_response(),
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let api = endpoints()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        })
        .layer(axum::middleware::map_response(no_store));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/webhooks/paypal", post(crate::payments::webhooks::paypal))
        .route("/webhooks/btcpay", post(crate::payments::webhooks::btcpay))
        .merge(crate::web::routes())
        .merge(crate::federation::server::routes())
        .layer(axum::middleware::from_fn(body_deadline))
        .with_state(shared)
}

/// Serves the API until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: Shutdown) {
    let header_timeout = shared.settings.edge_read_timeout;
    let app = router(shared);
    let gate = Gate::new("API", MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS);
    loop {
        let (socket, peer) = tokio::select! {
            conn = accept::next(&listener, "API") => conn,
            _ = shutdown.wait() => return,
        };
        let Some(permit) = gate.admit(peer.ip()) else {
            continue;
        };
        // Handlers that rate-limit by address read it from here.
        let service = TowerToHyperService::new(
            app.clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(socket), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "API connection ended with an error");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn the_openapi_document_lists_exactly_the_served_endpoints() {
        let doc: serde_json::Value = serde_json::from_str(super::openapi::DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "parameters" {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<_> = super::endpoints()
            .into_iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, served);
    }
}

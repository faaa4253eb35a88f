//! This broker's federation endpoints. Every `/federation/v1/…` request
//! must be signed ([`super::signature`]); its target and authority are
//! rebuilt from this broker's own public URL. Answers to verified requests
//! are signed and bound to the request's signature. Bodies are bounded by
//! the API listener (16 KiB) before any handler runs.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::identity::{KeyRing, PublicKey};
use super::signature::{self, RequestTarget, SignatureError, VerifiedRequest};
use super::url::Origin;
use super::usage;
use super::wire::{
    BrokerDocument, FederationError, LEASES_PATH, LISTINGS_PATH, LeaseRequest, LeaseStop,
    PEERING_PATH, PeeringAnswer, PeeringRequest, STATEMENT_PATH, USAGE_NEWS_PATH, USAGE_PATH,
    UsageNews, WELL_KNOWN_PATH,
};
use crate::broker::Shared;
use crate::store::{Direction, NewPeer, PeerRecord, Redeemed};
use crate::time::UnixTime;

pub fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route(WELL_KNOWN_PATH, get(well_known))
        .route(PEERING_PATH, post(peering))
        .route(LISTINGS_PATH, get(listings))
        .route(LEASES_PATH, post(lease_open))
        .route(&format!("{LEASES_PATH}/{{id}}"), get(lease_show))
        .route(&format!("{LEASES_PATH}/{{id}}/stop"), post(lease_stop))
        .route(USAGE_PATH, get(usage))
        .route(USAGE_NEWS_PATH, post(usage_news))
        .route(STATEMENT_PATH, get(statement))
}

/// A refused federation request, as JSON.
fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = FederationError {
        code: code.into(),
        message: message.into(),
    };
    (status, Json(body)).into_response()
}

fn internal(context: &str, error: impl std::fmt::Display) -> Response {
    tracing::error!(error = %error, "{context}");
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the broker hit an internal error; its operator can find details in its log",
    )
}

fn bad_signature(e: SignatureError) -> Response {
    let status = match e {
        SignatureError::NonceCacheFull => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    refuse(status, "bad_signature", e.to_string())
}

/// This broker's key ring, read afresh so a rotation applies at once.
fn ring(shared: &Shared) -> Result<KeyRing, Box<Response>> {
    KeyRing::load_or_create(&shared.settings.data_dir, UnixTime::now())
        .map_err(|e| Box::new(internal("reading the federation keys failed", e)))
}

/// This broker as it describes itself to peers.
pub fn own_document(
    settings: &crate::settings::Settings,
    ring: &KeyRing,
    now: UnixTime,
) -> BrokerDocument {
    BrokerDocument {
        name: settings.federation.name.clone(),
        url: settings.public_url.clone(),
        keys: ring.published(now),
    }
}

/// `GET /.well-known/rpibroker-broker`: name, URL and keys with validity.
async fn well_known(State(shared): State<Arc<Shared>>) -> Response {
    match ring(&shared) {
        Ok(ring) => {
            let mut response =
                Json(own_document(&shared.settings, &ring, UnixTime::now())).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("max-age=300"),
            );
            response
        }
        Err(r) => *r,
    }
}

/// Checks a request's signature against `key_of`.
fn verify(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    key_of: &dyn Fn(&str) -> Option<PublicKey>,
) -> Result<VerifiedRequest, Box<Response>> {
    let own = Origin::parse(&shared.settings.public_url).map_err(|e| {
        Box::new(internal(
            "the public URL cannot sign federation requests",
            e,
        ))
    })?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let target_uri = own.target(path);
    let target = RequestTarget {
        method: method.as_str(),
        target_uri: &target_uri,
        authority: &own.authority,
    };
    signature::verify_request(
        headers,
        target,
        body,
        UnixTime::now(),
        key_of,
        &shared.federation.nonces,
    )
    .map_err(|e| Box::new(bad_signature(e)))
}

/// A signed answer to a verified request.
fn signed<T: Serialize>(
    ring: &KeyRing,
    status: StatusCode,
    value: &T,
    request: &VerifiedRequest,
) -> Response {
    let body = serde_json::to_vec(value).expect("answers serialize");
    let headers = signature::sign_response(
        ring,
        status.as_u16(),
        &body,
        &request.signature,
        UnixTime::now(),
    );
    let mut response = (status, body).into_response();
    response.headers_mut().extend(headers);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A verified request's refusal for bad input, signed.
fn invalid(ring: &KeyRing, verified: &VerifiedRequest, why: impl Into<String>) -> Response {
    let error = FederationError {
        code: "invalid_input".into(),
        message: why.into(),
    };
    signed(ring, StatusCode::BAD_REQUEST, &error, verified)
}

/// `POST /federation/v1/peering`: a broker presents an invite, signed with
/// the key it publishes in the same request (which proves it holds it);
/// the invite proves this broker's operator agreed.
async fn peering(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: PeeringRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "invalid_input", e.to_string()),
    };
    if let Err(why) = request.broker.check() {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", why);
    }
    if request.invite.len() > 128 {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "invite too long",
        );
    }
    // Only an invite's holder gets as far as the signature check (and its
    // nonce into the cache).
    let hash = crate::token::hash(&request.invite);
    let (lookup, name) = (hash.clone(), request.broker.name.clone());
    match shared
        .store
        .blocking(move |s| s.invite_open(&lookup, &name, UnixTime::now()))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "invite_refused",
                "no such invite, or it expired or was already used",
            );
        }
        Err(e) => return internal("looking up an invite failed", e),
    }
    let keys = request.broker.keys.clone();
    let key_of = move |id: &str| keys.iter().find(|k| k.keyid == id).cloned();
    let verified = match verify(&shared, &method, &uri, &headers, &body, &key_of) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let ring = match ring(&shared) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if request.broker.name == shared.settings.federation.name {
        return signed(
            &ring,
            StatusCode::CONFLICT,
            &FederationError {
                code: "same_name".into(),
                message: "a broker cannot peer with one of its own name".into(),
            },
            &verified,
        );
    }
    let peer = NewPeer {
        name: request.broker.name.clone(),
        base_url: request.broker.url.clone(),
        keys: request.broker.keys.clone(),
        credit_limit: 0,
        currency: String::new(),
    };
    let key = verified.idempotency_key.clone().unwrap_or_default();
    let redeemed = shared
        .store
        .blocking(move |s| s.redeem_invite(&hash, &peer, &key, UnixTime::now()))
        .await;
    match redeemed {
        Ok(Redeemed::Peered {
            credit_limit,
            currency,
        }) => {
            tracing::info!(peer = %request.broker.name, url = %request.broker.url, "a broker accepted an invite and is now a peer");
            let answer = PeeringAnswer {
                broker: own_document(&shared.settings, &ring, UnixTime::now()),
                credit_limit,
                currency,
            };
            signed(&ring, StatusCode::OK, &answer, &verified)
        }
        Ok(Redeemed::Refused(why)) => signed(
            &ring,
            StatusCode::FORBIDDEN,
            &FederationError {
                code: "invite_refused".into(),
                message: why.into(),
            },
            &verified,
        ),
        Err(e) => internal("redeeming an invite failed", e),
    }
}

/// The active peer whose key signed the request, with the verified request
/// and this broker's key ring to sign the answer; or the refusal.
async fn from_peer(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(PeerRecord, VerifiedRequest, KeyRing), Box<Response>> {
    let (peer, verified) = signing_peer(shared, method, uri, headers, body).await?;
    Ok((peer, verified, ring(shared)?))
}

/// [`from_peer`] for a GET, which has no body.
async fn from_peer_get(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(PeerRecord, VerifiedRequest, KeyRing), Box<Response>> {
    if !body.is_empty() {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "GET has no body",
        )));
    }
    from_peer(shared, method, uri, headers, &[]).await
}

/// The active peer whose key signed the request, or the refusal. A key no
/// peer has may be one a peer rotated to: peers' published keys are read
/// again (each at most once a minute) before the request is refused.
async fn signing_peer(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(PeerRecord, VerifiedRequest), Box<Response>> {
    let read_peers = || async {
        shared
            .store
            .blocking(|s| s.peers())
            .await
            .map_err(|e| Box::new(internal("reading the peers failed", e)))
    };
    let mut peers = read_peers().await?;
    let mut verified = verify(shared, method, uri, headers, body, &active_key(&peers));
    let claimed = signature_keyid(headers);
    let unknown = claimed
        .as_ref()
        .is_some_and(|id| !peers.iter().any(|p| p.keys.iter().any(|k| &k.keyid == id)));
    if verified.is_err() && unknown {
        let mut learned = false;
        for peer in peers.iter().filter(|p| p.active) {
            if shared.federation.may_refresh(peer.id)
                && let Ok(Some(_)) =
                    super::peering::refresh_keys(&shared.store, &shared.federation.http, peer).await
            {
                learned = true;
            }
        }
        if learned {
            peers = read_peers().await?;
            verified = verify(shared, method, uri, headers, body, &active_key(&peers));
        }
    }
    let verified = match verified {
        Ok(v) => v,
        Err(r) => {
            let removed = claimed.and_then(|id| {
                peers
                    .iter()
                    .find(|p| !p.active && p.keys.iter().any(|k| k.keyid == id))
            });
            return Err(Box::new(match removed {
                Some(p) => refuse(
                    StatusCode::FORBIDDEN,
                    "peer_removed",
                    format!("{} is no longer a peer of this broker", p.name),
                ),
                None => *r,
            }));
        }
    };
    let peer = peers
        .iter()
        .find(|p| p.active && p.keys.iter().any(|k| k.keyid == verified.keyid))
        .cloned()
        .expect("the key was found among active peers");
    Ok((peer, verified))
}

/// Finds a key among active peers' keys.
fn active_key(peers: &[PeerRecord]) -> impl Fn(&str) -> Option<PublicKey> + '_ {
    move |id| {
        peers
            .iter()
            .filter(|p| p.active)
            .flat_map(|p| &p.keys)
            .find(|k| k.keyid == id)
            .cloned()
    }
}

/// The `keyid` a request claims, for telling a removed peer why.
fn signature_keyid(headers: &HeaderMap) -> Option<String> {
    let text = headers.get(signature::SIGNATURE_INPUT)?.to_str().ok()?;
    if text.len() > signature::MAX_HEADER_BYTES {
        return None;
    }
    let (_, rest) = text.split_once("keyid=\"")?;
    Some(rest.split('"').next()?.to_string())
}

/// `GET /federation/v1/listings?cursor=N&limit=M`: this broker's own listed
/// devices changed after `cursor`, removals as tombstones; from cursor 0,
/// every listed device; from a cursor older than the pruned tombstones,
/// every listed device marked `resync`.
async fn listings(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let (peer, verified, ring) = match from_peer_get(&shared, &method, &uri, &headers, &body).await
    {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let (cursor, limit) = match super::listings::parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(why) => return invalid(&ring, &verified, why),
    };
    match super::listings::page(&shared, cursor, limit).await {
        Ok(page) => {
            tracing::debug!(peer = %peer.name, cursor, changes = page.changes.len(), "listings pulled");
            signed(&ring, StatusCode::OK, &page, &verified)
        }
        Err(e) => internal("listing devices for a peer failed", e),
    }
}

/// A verified request's answer: the lease, or the refusal, signed.
fn lease_answer(
    ring: &KeyRing,
    verified: &VerifiedRequest,
    result: Result<super::wire::LeaseAnswer, super::leases::Refusal>,
) -> Response {
    match result {
        Ok(lease) => signed(ring, StatusCode::OK, &lease, verified),
        Err((status, error)) => signed(ring, status, &error, verified),
    }
}

/// `POST /federation/v1/leases`: a peer's renter rents one of this
/// broker's devices (see [`super::leases::open`]).
async fn lease_open(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (peer, verified, ring) = match from_peer(&shared, &method, &uri, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let parsed = serde_json::from_slice::<LeaseRequest>(&body)
        .map_err(|e| e.to_string())
        .and_then(|r| r.check().map(|()| r));
    let request = match parsed {
        Ok(r) => r,
        Err(why) => return invalid(&ring, &verified, why),
    };
    let key = verified.idempotency_key.clone();
    let result = super::leases::open(&shared, &peer, key, request).await;
    lease_answer(&ring, &verified, result)
}

/// `GET /federation/v1/leases/{id}`: one of the peer's leases as it is now.
async fn lease_show(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (peer, verified, ring) = match from_peer_get(&shared, &method, &uri, &headers, &body).await
    {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let result = super::leases::show(&shared, &peer, &id).await;
    lease_answer(&ring, &verified, result)
}

/// `POST /federation/v1/leases/{id}/stop`: the peer's renter ended it.
async fn lease_stop(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (peer, verified, ring) = match from_peer(&shared, &method, &uri, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let stop = match serde_json::from_slice::<LeaseStop>(&body) {
        Ok(stop) => stop,
        Err(e) => return invalid(&ring, &verified, e.to_string()),
    };
    let result = super::leases::stop(&shared, &peer, &id, stop.at).await;
    lease_answer(&ring, &verified, result)
}

/// `GET /federation/v1/usage?after=N`: the usage records this broker
/// issued to the caller after record `N` (a page of them), and the head of
/// that chain.
async fn usage(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let (peer, verified, ring) = match from_peer_get(&shared, &method, &uri, &headers, &body).await
    {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let after = match parse_after(raw.as_deref()) {
        Ok(after) => after,
        Err(why) => return invalid(&ring, &verified, why),
    };
    let id = peer.id;
    let page = shared
        .store
        .blocking(move |s| {
            let head = s.chain_head(Direction::Issued, id)?;
            let records = s.records_after(Direction::Issued, id, after, usage::PAGE)?;
            Ok::<_, crate::store::StoreError>(usage::UsagePage { records, head })
        })
        .await;
    match page {
        Ok(mut page) => {
            page.records = page
                .records
                .into_iter()
                .map(|r| r.signed_now(&ring))
                .collect();
            tracing::debug!(peer = %peer.name, after, records = page.records.len(), "usage records pulled");
            signed(&ring, StatusCode::OK, &page, &verified)
        }
        Err(e) => internal("reading usage records for a peer failed", e),
    }
}

/// `POST /federation/v1/usage/news`: the caller issued records worth
/// pulling now; they are pulled in the background.
async fn usage_news(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (peer, verified, ring) = match from_peer(&shared, &method, &uri, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if let Err(e) = serde_json::from_slice::<UsageNews>(&body) {
        return invalid(&ring, &verified, e.to_string());
    }
    shared
        .federation
        .pull_soon
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(peer.id);
    shared.federation.outbox_wake.notify_one();
    signed(
        &ring,
        StatusCode::ACCEPTED,
        &serde_json::json!({}),
        &verified,
    )
}

/// The `after` of a usage query: a record number, 0 unless given.
fn parse_after(raw: Option<&str>) -> Result<i64, String> {
    let mut after = 0;
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("after", v)) if v.len() <= 18 => {
                after = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("after={v} is not a record number"))?;
            }
            _ => return Err(format!("unknown or malformed query parameter {pair:?}")),
        }
    }
    Ok(after)
}

/// `GET /federation/v1/statement[?month=2026-11]`: this broker's side of
/// its statement with the caller, of one month or of every record.
async fn statement(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let (peer, verified, ring) = match from_peer_get(&shared, &method, &uri, &headers, &body).await
    {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let month = match raw.as_deref().unwrap_or_default() {
        "" => None,
        q => match q.strip_prefix("month=") {
            Some(m) if m.len() <= 7 => Some(m.to_string()),
            _ => {
                return invalid(
                    &ring,
                    &verified,
                    format!("unknown or malformed query {q:?}"),
                );
            }
        },
    };
    let (name, currency) = (
        shared.settings.federation.name.clone(),
        shared.settings.billing.currency.clone(),
    );
    let id = peer.id;
    let made = shared
        .store
        .blocking(move |s| {
            usage::Statement::of(s, &name, id, &currency, month.as_deref(), UnixTime::now())
        })
        .await;
    match made {
        Ok(Ok(statement)) => signed(&ring, StatusCode::OK, &statement, &verified),
        Ok(Err(why)) => invalid(&ring, &verified, why),
        Err(e) => internal("making a statement for a peer failed", e),
    }
}

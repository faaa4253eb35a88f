//! Leases: a renter of one broker (the lessee) rents a device another
//! broker manages (the lessor). The lessee chooses the lease id and asks
//! with a signed `POST /federation/v1/leases` carrying an idempotency key,
//! so a retry gets the same lease. The lessor checks the listing is as the
//! renter saw it and the peer's open leases stay within its credit limit,
//! then runs the rental as usual for an account that stands for the peer
//! (it cannot sign in), without billing it itself. Brokers do not yet
//! settle leases with each other, so while a broker bills, it neither asks
//! for nor grants a lease of a priced device: only free ones are leased.
//! Either side may end a lease; the lessee learns of an end on the lessor
//! when it next looks at the lease.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;

use super::client::{self, CallError};
use super::identity::KeyRing;
use super::url::Origin;
use super::wire::{FederationError, LEASES_PATH, LeaseAnswer, LeaseRequest, LeaseStop};
use crate::broker::Shared;
use crate::rental::{self, RentalError, Started};
use crate::store::{
    LeaseLogin, LeaseRecord, LeaseRole, NewLease, Opened, PeerRecord, RentalState, RenterTerms,
    StoreError,
};
use crate::time::UnixTime;

/// Longest a peer's stop may take to arrive and still count from when its
/// renter stopped (a partition that long).
const MAX_STOP_DELAY_SECS: i64 = 86_400;

/// Open rentals the account standing for one peer may hold at once.
const MAX_OPEN_PER_PEER: i64 = 1000;

/// A lease request refused, with the status to answer.
pub type Refusal = (StatusCode, FederationError);

fn refusal(status: StatusCode, code: &str, message: impl Into<String>) -> Refusal {
    (
        status,
        FederationError {
            code: code.into(),
            message: message.into(),
        },
    )
}

fn internal(context: &str, e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "{context}");
    refusal(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the broker hit an internal error; its operator can find details in its log",
    )
}

fn not_found() -> Refusal {
    refusal(StatusCode::NOT_FOUND, "not_found", "no such lease")
}

/// How a lease looks to the peer, with `password` when it was just made.
fn answer(lease: &LeaseRecord, password: Option<String>) -> LeaseAnswer {
    let login = lease.login.as_ref();
    LeaseAnswer {
        lease: lease.id.clone(),
        device: lease.device.clone(),
        state: if lease.open { "active" } else { "ended" }.into(),
        hourly_rate: lease.hourly_rate,
        currency: lease.currency.clone(),
        username: login.map(|l| l.username.clone()),
        password,
        ssh_host: login.map(|l| l.ssh_host.clone()),
        ssh_port: login.and_then(|l| l.ssh_port),
        ssh_command: login.and_then(|l| {
            l.ssh_port
                .map(|p| format!("ssh -p {p} {}@{}", l.username, l.ssh_host))
        }),
        http_url: login.map(|l| l.http_url.clone()),
        https_url: login.map(|l| l.https_url.clone()),
        ended_at: lease.ended_at,
        end_reason: lease.end_reason.clone(),
        period_secs: Some(lease.period_secs),
    }
}

/// Lessor: opens the lease `request` asks for on behalf of `peer`, or
/// returns the one the same request opened before.
pub async fn open(
    shared: &Arc<Shared>,
    peer: &PeerRecord,
    idempotency_key: Option<String>,
    request: LeaseRequest,
) -> Result<LeaseAnswer, Refusal> {
    let Some(key) = idempotency_key else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "a lease request carries an Idempotency-Key",
        ));
    };
    let name = DeviceName::parse(&request.device)
        .map_err(|e| refusal(StatusCode::BAD_REQUEST, "invalid_input", e.to_string()))?;
    let conflict = |code: &str, message: String| refusal(StatusCode::CONFLICT, code, message);
    let currency = shared.settings.billing.currency.to_string();
    if request.currency != currency || peer.currency != currency {
        return Err(conflict(
            "currency",
            format!(
                "this broker lists in {currency} and settles with {} in {}; the lease asked for {}",
                peer.name,
                if peer.currency.is_empty() {
                    "no currency"
                } else {
                    &peer.currency
                },
                request.currency
            ),
        ));
    }
    let now = UnixTime::now();
    let peer_name = peer.name.clone();
    let renter_id = shared
        .store
        .blocking(move |s| s.peer_renter(&peer_name, now))
        .await
        .map_err(|e| internal("making the peer's renter account failed", e))?;
    let existing = {
        let (peer_id, id) = (peer.id, request.lease.clone());
        shared
            .store
            .blocking(move |s| s.lease(LeaseRole::Lessor, peer_id, &id))
            .await
            .map_err(|e| internal("reading a lease failed", e))?
    };
    if existing.is_none() {
        let listing = crate::market::find(shared, &name)
            .await
            .map_err(|e| internal("reading the listing failed", e))?
            .ok_or_else(|| conflict("listing_changed", format!("{name} is no longer listed")))?;
        let rate = listing.device.hourly_rate.unwrap_or(0);
        if rate != request.hourly_rate {
            return Err(conflict(
                "listing_changed",
                format!(
                    "the rate of {name} changed: it is {} per hour now",
                    crate::price::show_price(rate)
                ),
            ));
        }
        if let Err(why) = listing.availability() {
            return Err(conflict(
                "unavailable",
                format!("{name} cannot be rented now: {why}"),
            ));
        }
    }
    let new = NewLease {
        peer_id: peer.id,
        id: request.lease.clone(),
        device: request.device.clone(),
        hourly_rate: request.hourly_rate,
        currency: request.currency.clone(),
        renter_id,
        idempotency_key: Some(key),
        period_secs: shared.settings.billing.period.as_secs() as i64,
    };
    let limit = peer.credit_limit;
    let opened = shared
        .store
        .blocking(move |s| s.open_lessor_lease(&new, limit, now))
        .await
        .map_err(|e| internal("recording a lease failed", e))?;
    let lease = match opened {
        Opened::Lease(lease) => *lease,
        Opened::OverLimit { exposure, limit } => {
            return Err(refusal(
                StatusCode::PAYMENT_REQUIRED,
                "credit_limit",
                format!(
                    "{} would owe {} with this lease's first hour (what it owes now and an hour of each open lease), more than its credit limit of {}; it can pay what it owes, which this broker's operator records with `rpibroker peer settle`",
                    peer.name,
                    crate::price::show_price(exposure),
                    crate::price::show_price(limit)
                ),
            ));
        }
        Opened::Conflict => {
            return Err(conflict(
                "lease_conflict",
                "that lease id or idempotency key belongs to another lease".into(),
            ));
        }
    };
    if !lease.open {
        return Err(conflict(
            "lease_ended",
            format!(
                "lease {} has ended{}",
                lease.id,
                lease
                    .end_reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        ));
    }
    if lease.login.is_some() {
        // A retry of a lease already running: the same lease, whose password
        // was in the first answer only (this broker does not keep it).
        return Ok(answer(&lease, None));
    }
    if let (Ok(device), Some(Ok(rid))) = (
        DeviceName::parse(&lease.device),
        lease.rental_id.as_deref().map(RentalId::parse),
    ) {
        // Its set-up was interrupted after the rental started (this broker
        // stopped), and the password is gone: end it rather than start a
        // second rental.
        let why = "its set-up was interrupted; ask for a new lease".to_string();
        if let Err(e) = rental::stop_rental(shared, &device, Some(&rid), Some(why.clone())).await {
            tracing::warn!(%device, lease = %lease.id, error = %e, "stopping an interrupted lease's rental failed");
        }
        let (peer_id, id, reason) = (peer.id, lease.id.clone(), why.clone());
        shared
            .store
            .blocking(move |s| {
                s.end_lease(
                    LeaseRole::Lessor,
                    peer_id,
                    &id,
                    Some(&reason),
                    UnixTime::now(),
                )
            })
            .await
            .map_err(|e| internal("ending a lease failed", e))?;
        return Err(conflict(
            "lease_ended",
            format!("lease {} has ended: {why}", lease.id),
        ));
    }
    let terms = RenterTerms {
        renter_id,
        hourly_rate: Some(request.hourly_rate),
        max_open: MAX_OPEN_PER_PEER,
        billed: false,
    };
    let keys: Vec<String> = request.ssh_key.into_iter().collect();
    match rental::start(shared, &name, keys, Some(terms)).await {
        Ok(started) => {
            let login = login_of(&started);
            let (peer_id, id, rid) = (peer.id, lease.id.clone(), started.rental.to_string());
            let stored = login.clone();
            shared
                .store
                .blocking(move |s| s.set_lessor_rental(peer_id, &id, &rid, &stored))
                .await
                .map_err(|e| internal("recording a lease's rental failed", e))?;
            tracing::info!(peer = %peer.name, lease = %lease.id, device = %name, rental = %started.rental, "leased to a peer");
            let lease = LeaseRecord {
                rental_id: Some(started.rental.to_string()),
                login: Some(login),
                ..lease
            };
            Ok(answer(&lease, Some(started.password)))
        }
        Err(e) => {
            let (status, code, message) = match &e {
                RentalError::AlreadyRented(..) | RentalError::Ending(..) => (
                    StatusCode::CONFLICT,
                    "unavailable",
                    format!("{name} was just rented by someone else"),
                ),
                RentalError::Store(StoreError::RateChanged(_)) => (
                    StatusCode::CONFLICT,
                    "listing_changed",
                    format!("the rate of {name} changed"),
                ),
                RentalError::BadKey(why) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_input",
                    why.clone(),
                ),
                _ => {
                    tracing::warn!(peer = %peer.name, device = %name, error = %e, "a lease could not be set up");
                    (
                        StatusCode::BAD_GATEWAY,
                        "device_unreachable",
                        format!("{name} could not be set up; try again later"),
                    )
                }
            };
            let (peer_id, id, why) = (peer.id, lease.id.clone(), message.clone());
            shared
                .store
                .blocking(move |s| {
                    s.end_lease(LeaseRole::Lessor, peer_id, &id, Some(&why), UnixTime::now())
                })
                .await
                .map_err(|e| internal("ending a lease failed", e))?;
            Err(refusal(status, code, message))
        }
    }
}

fn login_of(started: &Started) -> LeaseLogin {
    LeaseLogin {
        username: started.username.clone(),
        ssh_host: started.ssh_host.clone(),
        ssh_port: started.ssh_port,
        http_url: started.http_url.clone(),
        https_url: started.https_url.clone(),
    }
}

/// Lessor: the lease `id` of `peer` as it is now; a lease whose rental
/// ended here (its owner or an administrator ended it) is ended.
pub async fn show(
    shared: &Arc<Shared>,
    peer: &PeerRecord,
    id: &str,
) -> Result<LeaseAnswer, Refusal> {
    let (peer_id, id) = (peer.id, id.to_string());
    let lease = shared
        .store
        .blocking(move |s| -> Result<_, StoreError> {
            let Some(lease) = s.lease(LeaseRole::Lessor, peer_id, &id)? else {
                return Ok(None);
            };
            if !lease.open {
                return Ok(Some(lease));
            }
            let rental = match lease.rental_id.as_deref().map(RentalId::parse) {
                Some(Ok(rid)) => s.rental(&rid)?,
                _ => None,
            };
            if let Some(rental) = rental.filter(|r| r.state == RentalState::Ended) {
                let reason = rental
                    .end_reason
                    .unwrap_or_else(|| "the rental ended".into());
                s.end_lease(
                    LeaseRole::Lessor,
                    peer_id,
                    &id,
                    Some(&reason),
                    UnixTime::now(),
                )?;
                return s.lease(LeaseRole::Lessor, peer_id, &id);
            }
            Ok(Some(lease))
        })
        .await
        .map_err(|e| internal("reading a lease failed", e))?
        .ok_or_else(not_found)?;
    Ok(answer(&lease, None))
}

/// Lessor: `peer` ends lease `id`, whose renter stopped it at `at` (by the
/// peer's clock; nothing after it is charged): visitors are cut and the
/// sandbox wiped (at once, or when the device is back). Ending an ended
/// lease is a no-op.
pub async fn stop(
    shared: &Arc<Shared>,
    peer: &PeerRecord,
    id: &str,
    at: Option<i64>,
) -> Result<LeaseAnswer, Refusal> {
    let lease = show(shared, peer, id).await?;
    if let Some(at) = at {
        let (peer_id, lid) = (peer.id, id.to_string());
        // A stop counts from when the renter stopped, however late it
        // arrives, but not from before a day ago.
        let now = UnixTime::now().0;
        let at = at.clamp(now - MAX_STOP_DELAY_SECS, now);
        let (name, fee_percent, data_dir) = (
            shared.settings.federation.name.clone(),
            shared.settings.billing.fee_percent,
            shared.settings.data_dir.clone(),
        );
        let credited = shared
            .store
            .blocking(move |s| -> Result<usize, String> {
                s.set_lease_stop_at(peer_id, &lid, at)
                    .map_err(|e| e.to_string())?;
                // Ended here before the stop arrived: what its records
                // charged after the stop is credited now.
                let ring = KeyRing::load_or_create(&data_dir, UnixTime::now())
                    .map_err(|e| e.to_string())?;
                let issuer = super::metering::Issuer {
                    name: &name,
                    ring: &ring,
                    fee_percent,
                };
                super::metering::credit_late_stop(s, &issuer, peer_id, &lid, UnixTime::now())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| internal("recording a lease's stop failed", e))?;
        if credited > 0 {
            shared.federation.outbox_wake.notify_one();
        }
    }
    if lease.state == "ended" {
        return Ok(lease);
    }
    let record = {
        let (peer_id, id) = (peer.id, id.to_string());
        shared
            .store
            .blocking(move |s| {
                // A rental this broker started but did not record on the
                // lease (it stopped in between) is stopped too.
                s.link_lessor_rental(peer_id, &id)?;
                s.lease(LeaseRole::Lessor, peer_id, &id)
            })
            .await
            .map_err(|e| internal("reading a lease failed", e))?
            .ok_or_else(not_found)?
    };
    let reason = format!("ended by the renter at {}", peer.name);
    if let (Ok(device), Some(Ok(rid))) = (
        DeviceName::parse(&record.device),
        record.rental_id.as_deref().map(RentalId::parse),
    ) {
        match rental::stop_rental(shared, &device, Some(&rid), Some(reason.clone())).await {
            Ok(_) | Err(RentalError::NotRented(_)) => {}
            // Marked ending: the wipe happens when the device is back.
            Err(e) => {
                tracing::warn!(%device, lease = %record.id, error = %e, "stopping a leased rental failed")
            }
        }
    }
    let (peer_id, lid) = (peer.id, id.to_string());
    shared
        .store
        .blocking(move |s| {
            s.end_lease(
                LeaseRole::Lessor,
                peer_id,
                &lid,
                Some(&reason),
                UnixTime::now(),
            )
        })
        .await
        .map_err(|e| internal("ending a lease failed", e))?;
    tracing::info!(peer = %peer.name, lease = %id, "a peer ended its lease");
    show(shared, peer, id).await
}

/// The path of lease `id` on its lessor.
pub fn lease_path(id: &str) -> String {
    format!("{LEASES_PATH}/{id}")
}

/// How the idempotency key of a lease's stop begins.
const STOP_KEY: &str = "stop-";

/// The message that ends lease `id` on its lessor, stopped by its renter
/// at `at`: path, body and idempotency key.
pub fn stop_message(id: &str, at: UnixTime) -> (String, String, String) {
    let stop = LeaseStop { at: Some(at.0) };
    (
        format!("{LEASES_PATH}/{id}/stop"),
        serde_json::to_string(&stop).expect("a stop serializes"),
        format!("{STOP_KEY}{id}"),
    )
}

/// The lease a queued message stops, if it is a [`stop_message`] (by its
/// idempotency key).
pub fn stopped_lease(key: &str) -> Option<&str> {
    key.strip_prefix(STOP_KEY)
}

/// Lessee: a signed call to `peer`, checked against its keys.
pub async fn call_peer(
    shared: &Arc<Shared>,
    peer: &PeerRecord,
    method: Method,
    path: &str,
    body: Vec<u8>,
    idempotency_key: Option<&str>,
) -> Result<Vec<u8>, CallError> {
    let origin = Origin::parse(&peer.base_url).map_err(|why| CallError::BadAnswer {
        url: peer.base_url.clone(),
        why,
    })?;
    let ring =
        KeyRing::load_or_create(&shared.settings.data_dir, UnixTime::now()).map_err(|e| {
            CallError::Unreachable {
                url: peer.base_url.clone(),
                why: format!("this broker's keys cannot be read: {e}"),
            }
        })?;
    let keys = peer.keys.clone();
    let key_of = move |id: &str| keys.iter().find(|k| k.keyid == id).cloned();
    let answer = client::call(
        &shared.federation.http,
        &ring,
        &origin,
        method,
        path,
        body,
        idempotency_key,
        &key_of,
    )
    .await?;
    Ok(answer.body)
}

/// Lessee: asks `peer` for the lease `request` (idempotent by its id).
pub async fn request(
    shared: &Arc<Shared>,
    peer: &PeerRecord,
    request: &LeaseRequest,
) -> Result<LeaseAnswer, CallError> {
    let body = serde_json::to_vec(request).expect("a lease request serializes");
    let bytes = call_peer(
        shared,
        peer,
        Method::POST,
        LEASES_PATH,
        body,
        Some(&request.lease),
    )
    .await?;
    parse_answer(peer, &bytes, &request.lease, &request.device)
}

fn parse_answer(
    peer: &PeerRecord,
    bytes: &[u8],
    id: &str,
    device: &str,
) -> Result<LeaseAnswer, CallError> {
    let bad = |why: String| CallError::BadAnswer {
        url: peer.base_url.clone(),
        why,
    };
    let answer: LeaseAnswer = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    answer.check(id, device).map_err(bad)?;
    Ok(answer)
}

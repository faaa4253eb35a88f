//! Renting a device a peer broker manages (a lease), as this broker's
//! renter sees it: rent it from this broker's marketplace at the rate shown,
//! list one's leases, stop one. The exchange with the peer is
//! [`crate::federation::leases`]; a stop reaches the peer through the
//! outbox ([`crate::federation::outbox`]), so it is never lost.

use std::sync::Arc;

use rand::RngExt;
use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;
use serde::Serialize;

use super::Actor;
use super::rentals::{MAX_OPEN_RENTALS, Mailed};
use crate::broker::Shared;
use crate::federation::client::CallError;
use crate::federation::usage::{RecordBody, RecordKind};
use crate::federation::wire::{ExportedDevice, LeaseRequest};
use crate::ledger::Account;
use crate::rental::Started;
use crate::store::{Direction, LeaseLogin, LeaseRecord, NewLease, PeerRecord, StoreError};
use crate::time::UnixTime;

/// Attempts at asking a peer for a lease when it cannot be reached (the
/// same request each time, so the peer makes one lease at most).
const ATTEMPTS: u32 = 3;
/// Longer than asking can take (three calls and the waits between them):
/// a lease with no answer by then is stopped on the peer, in case it made
/// it.
const ANSWER_GRACE_SECS: i64 = 180;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("this account is suspended")]
    Suspended,
    #[error("{0} is not a peer of this broker")]
    NoSuchPeer(String),
    #[error("{broker} lists no device {device} here (or its listing is out of date)")]
    NotListed { broker: String, device: String },
    #[error("{0} cannot be rented now")]
    Unavailable(String),
    /// The rate shown differs from the listing's now (the new one).
    #[error("the price of {0} changed since it was shown")]
    PriceChanged(String, i64),
    #[error("{device} is priced in {listed}; this broker's wallets hold {wallet}")]
    Currency {
        device: String,
        listed: String,
        wallet: String,
    },
    #[error("{device} is priced per {listed} s; this broker bills per {own} s")]
    Period {
        device: String,
        listed: i64,
        own: i64,
    },
    #[error("your wallet holds {}, less than the first hour ({})", crate::price::show_price(*.0), crate::price::show_price(*.1))]
    LowBalance(i64, i64),
    #[error("an account may have at most {MAX_OPEN_RENTALS} open leases; stop one first")]
    TooMany,
    /// A priced device of a peer while this broker does not bill: it could
    /// not charge the renter what it owes the peer.
    #[error(
        "{0} has a price, and this broker does not bill its renters; only free peer devices can be rented here"
    )]
    NoBilling(String),
    /// The lease was stopped while the peer was setting it up.
    #[error("the rental was stopped while it was being set up")]
    StoppedMeanwhile,
    /// The peer refused; its explanation.
    #[error("{0} refused: {1}")]
    Refused(String, String),
    #[error("{0} could not be reached; try again later")]
    Unreachable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("you have no lease with that id")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records shown at most (the latest; a week of hours).
const MAX_RECORDS: usize = 168;

/// One of the peer's usage records of a lease, as its renter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseCharge {
    /// `usage` (an hour), `end` or `correction`.
    pub kind: &'static str,
    /// The hour it is about, from 1 (for an end, the hours the lease had).
    pub hour: i64,
    /// Usage: the stretch of the hour the lease covered (the peer's clock).
    pub from: i64,
    pub to: i64,
    pub reachable_secs: i64,
    pub reachable_minutes: i64,
    pub amount_cents: i64,
    /// Why the lease ended, or was corrected.
    pub note: String,
}

/// What a lease cost, record by record (newest first).
#[derive(Debug, Clone, Serialize)]
pub struct LeaseUsage {
    #[serde(flatten)]
    pub lease: Lease,
    pub charges: Vec<LeaseCharge>,
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("this account is suspended")]
    Suspended,
    #[error("you have no open lease with that id")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One of the renter's leases, without its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub id: String,
    /// The peer broker that manages the device.
    pub broker: String,
    pub device: String,
    /// `active` or `ended`.
    pub state: &'static str,
    pub hourly_rate_cents: i64,
    pub currency: String,
    pub username: Option<String>,
    pub ssh_host: Option<String>,
    pub ssh_port: Option<u16>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    /// What the peer's usage records charged so far.
    pub charged_cents: i64,
    /// The rate is per this many seconds (an hour, unless the peer bills
    /// otherwise).
    pub period_secs: i64,
    /// Whether the peer's last usage record is in: nothing more will be
    /// charged.
    pub settled: bool,
}

impl From<LeaseRecord> for Lease {
    fn from(l: LeaseRecord) -> Self {
        Self {
            state: if l.open { "active" } else { "ended" },
            broker: l.peer,
            device: l.device,
            hourly_rate_cents: l.hourly_rate,
            currency: l.currency,
            username: l.login.as_ref().map(|x| x.username.clone()),
            ssh_host: l.login.as_ref().map(|x| x.ssh_host.clone()),
            ssh_port: l.login.as_ref().and_then(|x| x.ssh_port),
            started_at: l.created_at,
            ended_at: l.ended_at,
            end_reason: l.end_reason,
            charged_cents: l.charged,
            period_secs: l.period_secs,
            settled: l.usage_closed,
            id: l.id,
        }
    }
}

/// A lease just made: the login, shown this once.
#[derive(Debug, Serialize)]
pub struct Leased {
    pub lease: String,
    pub broker: String,
    #[serde(flatten)]
    pub started: Started,
    pub ssh_command: Option<String>,
    pub mail: Mailed,
}

fn new_lease_id() -> String {
    let bytes: [u8; 8] = rand::rng().random();
    format!("lse-{}", hex::encode(bytes))
}

/// The active peer `broker` and its fresh listing of `device`.
async fn offer(
    shared: &Arc<Shared>,
    broker: &str,
    device: &str,
) -> Result<(PeerRecord, ExportedDevice), LeaseError> {
    let hide_after = shared.settings.federation.hide_after_missed_pulls;
    let (peers, visible) = shared
        .store
        .blocking(move |s| Ok::<_, StoreError>((s.peers()?, s.visible_peer_devices(hide_after)?)))
        .await?;
    let peer = peers
        .into_iter()
        .find(|p| p.active && p.name == broker)
        .ok_or_else(|| LeaseError::NoSuchPeer(broker.to_string()))?;
    let listed = visible
        .iter()
        .find(|d| d.peer == broker && d.name == device)
        .and_then(|d| serde_json::from_str::<ExportedDevice>(&d.listing).ok())
        .ok_or_else(|| LeaseError::NotListed {
            broker: broker.to_string(),
            device: device.to_string(),
        })?;
    Ok((peer, listed))
}

/// Rents `device` of peer `broker` for `actor` at `agreed_rate` (the rate
/// the renter was shown), with an optional SSH key, and mails a copy of the
/// login to `email`.
#[allow(clippy::too_many_arguments)]
pub async fn rent(
    shared: &Arc<Shared>,
    actor: Actor,
    email: &str,
    broker: &str,
    device: &str,
    ssh_key: Option<String>,
    agreed_rate: i64,
) -> Result<Leased, LeaseError> {
    if actor.suspended {
        return Err(LeaseError::Suspended);
    }
    let (peer, listed) = offer(shared, broker, device).await?;
    if !shared.settings.billing.enabled && listed.hourly_rate.unwrap_or(0) > 0 {
        return Err(LeaseError::NoBilling(device.to_string()));
    }
    if !listed.available {
        return Err(LeaseError::Unavailable(device.to_string()));
    }
    let rate = listed.hourly_rate.unwrap_or(0);
    if rate != agreed_rate {
        return Err(LeaseError::PriceChanged(device.to_string(), rate));
    }
    // The rate is per the peer's period; this marketplace shows it per its
    // own, so they must be the same.
    let period = listed.period_secs.unwrap_or(3600);
    let own_period = shared.settings.billing.period.as_secs() as i64;
    if rate > 0 && period != own_period {
        return Err(LeaseError::Period {
            device: device.to_string(),
            listed: period,
            own: own_period,
        });
    }
    let billing = &shared.settings.billing;
    let wallet_currency = billing.currency.to_string();
    if listed.currency != wallet_currency {
        return Err(LeaseError::Currency {
            device: device.to_string(),
            listed: listed.currency,
            wallet: wallet_currency,
        });
    }
    let renter = actor.id;
    let (balance, open) = {
        let currency = billing.currency.clone();
        shared
            .store
            .blocking(move |s| {
                let open = s
                    .leases_of_renter(renter)?
                    .into_iter()
                    .filter(|l| l.open)
                    .count();
                Ok::<_, StoreError>((s.balance(&Account::Wallet(renter), &currency)?, open))
            })
            .await?
    };
    if i64::try_from(open).unwrap_or(i64::MAX) >= MAX_OPEN_RENTALS {
        return Err(LeaseError::TooMany);
    }
    if billing.enabled && rate > 0 && balance < rate {
        return Err(LeaseError::LowBalance(balance, rate));
    }
    let request = LeaseRequest {
        lease: new_lease_id(),
        device: device.to_string(),
        hourly_rate: rate,
        currency: wallet_currency,
        ssh_key,
    };
    let new = NewLease {
        peer_id: peer.id,
        id: request.lease.clone(),
        device: request.device.clone(),
        hourly_rate: rate,
        currency: request.currency.clone(),
        renter_id: renter,
        idempotency_key: None,
        period_secs: period,
    };
    let asked_at = UnixTime::now();
    let (path, body, stop_key) = crate::federation::leases::stop_message(&request.lease, asked_at);
    {
        let (new, path, body, key) = (new.clone(), path.clone(), body.clone(), stop_key.clone());
        let due = UnixTime(asked_at.0 + ANSWER_GRACE_SECS);
        shared
            .store
            .blocking(move |s| s.add_lessee_lease(&new, (&path, &body, &key), due, asked_at))
            .await?;
    }
    let answer = match ask(shared, &peer, &request).await {
        Ok(answer) => answer,
        Err(e) => {
            let (peer_id, lease_id, key) = (peer.id, request.lease.clone(), stop_key.clone());
            match &e {
                LeaseError::Refused(_, why) => {
                    let why = format!("refused: {why}");
                    shared
                        .store
                        .blocking(move |s| s.drop_lessee_lease(peer_id, &lease_id, &why, &key))
                        .await?;
                }
                _ => abandon(shared, peer_id, &lease_id, asked_at).await?,
            }
            return Err(e);
        }
    };
    let login = LeaseLogin {
        username: answer.username.clone().unwrap_or_default(),
        ssh_host: answer.ssh_host.clone().unwrap_or_default(),
        ssh_port: answer.ssh_port,
        http_url: answer.http_url.clone().unwrap_or_default(),
        https_url: answer.https_url.clone().unwrap_or_default(),
    };
    let password = answer.password.clone().unwrap_or_default();
    let period_secs = answer.period_secs.unwrap_or(3600);
    if rate > 0 && period_secs != period {
        // Not what the renter agreed to: end it there, charging nothing.
        tracing::warn!(peer = %peer.name, lease = %request.lease, period_secs, "a peer granted a lease at another period than it listed");
        abandon(shared, peer.id, &request.lease, asked_at).await?;
        return Err(LeaseError::Period {
            device: device.to_string(),
            listed: period_secs,
            own: own_period,
        });
    }
    let granted = {
        let login = login.clone();
        shared
            .store
            .blocking(move |s| {
                if !s.set_lessee_login(new.peer_id, &new.id, &login, period_secs, &stop_key)? {
                    return Ok(None);
                }
                crate::federation::settlement::hold_first(s, new.peer_id, &new.id, UnixTime::now())
                    .map(Some)
            })
            .await?
    };
    let Some(covered) = granted else {
        // Stopped while it was being set up: the stop goes out as queued.
        shared.federation.outbox_wake.notify_one();
        return Err(LeaseError::StoppedMeanwhile);
    };
    if !covered {
        // Spent meanwhile: the lease was ended and its stop queued.
        shared.federation.outbox_wake.notify_one();
        let currency = billing.currency.clone();
        let balance = shared
            .store
            .blocking(move |s| s.balance(&Account::Wallet(renter), &currency))
            .await?;
        return Err(LeaseError::LowBalance(balance, rate));
    }
    tracing::info!(peer = %peer.name, device, lease = %request.lease, renter, "leased from a peer");
    let started = Started {
        rental: RentalId::parse(&request.lease).expect("lease ids are rental ids"),
        device: DeviceName::parse(device).expect("a listed name is a device name"),
        username: login.username,
        password,
        ssh_keys: usize::from(request.ssh_key.is_some()),
        ssh_host: login.ssh_host,
        ssh_port: login.ssh_port,
        http_url: login.http_url,
        https_url: login.https_url,
    };
    let mail = super::rentals::mail_login(shared, email, &started).await;
    Ok(Leased {
        lease: request.lease,
        broker: peer.name,
        ssh_command: started.ssh_command(),
        started,
        mail,
    })
}

/// Ends lease `id`, whose answer did not arrive or was not what was asked
/// for, and stops it on the peer as of `asked_at`: if the peer made it, it
/// charges nothing.
async fn abandon(
    shared: &Arc<Shared>,
    peer_id: i64,
    id: &str,
    asked_at: UnixTime,
) -> Result<(), StoreError> {
    let (path, body, key) = crate::federation::leases::stop_message(id, asked_at);
    let id = id.to_string();
    shared
        .store
        .blocking(move |s| {
            s.end_lease_and_tell(
                peer_id,
                &id,
                Some("the peer could not be reached"),
                (&path, &body, &key),
                UnixTime::now(),
            )
        })
        .await?;
    shared.federation.outbox_wake.notify_one();
    Ok(())
}

/// Asks `peer` for the lease `request` (the same request again when the
/// peer cannot be reached, so it makes one lease at most); its answer,
/// which carries the login.
async fn ask(
    shared: &Arc<Shared>,
    peer: &PeerRecord,
    request: &LeaseRequest,
) -> Result<crate::federation::wire::LeaseAnswer, LeaseError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match crate::federation::leases::request(shared, peer, request).await {
            Ok(a) if a.username.is_some() && a.password.is_some() => return Ok(a),
            Ok(_) => {
                tracing::warn!(peer = %peer.name, lease = %request.lease, "a peer answered a new lease without its login");
                return Err(LeaseError::Unreachable(peer.name.clone()));
            }
            // The peer understood the first request and said no. Anything
            // else (a 5xx, a proxy's error page, a refusal of a retry whose
            // first try may have reached it) may hide a lease it made.
            Err(CallError::Refused {
                status, message, ..
            }) if attempt == 1
                && (400..500).contains(&status)
                && status != 408
                && status != 429 =>
            {
                return Err(LeaseError::Refused(peer.name.clone(), message));
            }
            Err(e @ (CallError::Unreachable { .. } | CallError::Refused { .. }))
                if attempt < ATTEMPTS =>
            {
                tracing::warn!(peer = %peer.name, error = %e, "asking a peer for a lease failed; asking again");
                tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
            }
            Err(e) => {
                tracing::warn!(peer = %peer.name, error = %e, "asking a peer for a lease failed");
                return Err(LeaseError::Unreachable(peer.name.clone()));
            }
        }
    }
}

/// The renter's leases, open first, then the latest.
pub async fn mine(shared: &Arc<Shared>, actor: Actor) -> Result<Vec<Lease>, StoreError> {
    let renter = actor.id;
    let rows = shared
        .store
        .blocking(move |s| s.leases_of_renter(renter))
        .await?;
    Ok(rows.into_iter().map(Lease::from).collect())
}

/// What the renter's lease `id` cost, from the peer's usage records.
pub async fn usage(shared: &Arc<Shared>, actor: Actor, id: &str) -> Result<LeaseUsage, UsageError> {
    let (renter, id) = (actor.id, id.to_string());
    let (lease, bodies) = shared
        .store
        .blocking(move |s| -> Result<_, StoreError> {
            let Some(lease) = s.lease_of_renter(renter, &id)? else {
                return Ok(None);
            };
            let bodies = s.records_of_lease(Direction::Received, lease.peer_id, &lease.id)?;
            Ok(Some((lease, bodies)))
        })
        .await?
        .ok_or(UsageError::NotFound)?;
    let charges = bodies
        .iter()
        .rev()
        .take(MAX_RECORDS)
        .filter_map(|b| serde_json::from_str::<RecordBody>(b).ok())
        .map(|r| LeaseCharge {
            kind: r.kind.as_str(),
            hour: match r.kind {
                RecordKind::End => r.period,
                _ => r.period + 1,
            },
            from: r.from,
            to: r.to,
            reachable_secs: r.reachable_secs,
            reachable_minutes: r.reachable_secs / 60,
            amount_cents: r.amount,
            note: r.note,
        })
        .collect();
    Ok(LeaseUsage {
        lease: lease.into(),
        charges,
    })
}

/// Stops one of the renter's open leases: ended here at once, and the peer
/// is told through the outbox (retried until it confirms).
pub async fn stop(shared: &Arc<Shared>, actor: Actor, id: &str) -> Result<Lease, StopError> {
    if actor.suspended {
        return Err(StopError::Suspended);
    }
    let (renter, id) = (actor.id, id.to_string());
    let lease = shared
        .store
        .blocking(move |s| -> Result<_, StoreError> {
            let Some(lease) = s.lease_of_renter(renter, &id)?.filter(|l| l.open) else {
                return Ok(None);
            };
            let now = UnixTime::now();
            let (path, body, key) = crate::federation::leases::stop_message(&lease.id, now);
            s.end_lease_and_tell(
                lease.peer_id,
                &lease.id,
                Some("stopped by the renter"),
                (&path, &body, &key),
                now,
            )?;
            s.lease_of_renter(renter, &id)
        })
        .await?
        .ok_or(StopError::NotFound)?;
    shared.federation.outbox_wake.notify_one();
    tracing::info!(peer = %lease.peer, lease = %lease.id, renter, "the renter stopped a lease");
    Ok(lease.into())
}

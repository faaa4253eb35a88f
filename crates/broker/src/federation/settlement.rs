//! Paying for leases this broker's renters hold on peers (as lessee).
//!
//! - **Holds.** When a period of a priced lease begins, one period at the
//!   lease's rate is held from the renter's wallet, as for a local rental.
//!   A wallet that cannot cover it ends the lease (the stop is queued for
//!   the peer with the moment it happened, after which the peer charges
//!   nothing).
//! - **Records.** The peer's usage records are pulled (`GET
//!   /federation/v1/usage?after=N`), checked (signature, chain, lease, the
//!   amount is the reachable seconds at the agreed rate) and booked one
//!   transaction each: the renter is charged the record's amount from the
//!   hold, the rest is released, and this broker owes the peer the amount.
//!   An end record ends the lease here too and releases holds no record
//!   used; a correction charges or credits the renter. A record that fails
//!   a check moves no money and stops the chain until the peer mends it;
//!   the problem is shown to the operator.
//! - **Comparing.** After each pull the peer's chain head (number, hash,
//!   total) is compared with this broker's copy.
//!
//! After a partition the next pull carries on from the last record this
//! broker has, so usage catches up by itself.

use std::sync::Arc;

use axum::http::Method;
use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;

use super::client::CallError;
use super::metering::{PEERS_CLEARING, period_transfer, record_transfer};
use super::usage::{RecordBody, RecordError, RecordKind, SignedRecord, UsagePage};
use crate::billing::pass::LowBalance;
use crate::broker::Shared;
use crate::ledger::{Account, Currency, LedgerError, Transfer, TransferId};
use crate::store::{
    Batch, Direction, LeaseRecord, LeaseRole, PeerRecord, Posted, Store, StoreError,
};
use crate::time::UnixTime;

/// How long the hold of an hour the wallet cannot cover waits for the
/// record of the hour before (whose hold it releases) before the lease
/// ends, at most (and two periods at most): the peer's record reaches this
/// broker a pull after the hour.
const RECORD_GRACE_SECS: i64 = 600;

/// Pages of records pulled from one peer per round.
const MAX_PAGES: usize = 20;

/// The id of the transfer that holds period `k` of a lease.
fn hold_transfer(peer_id: i64, lease: &str, k: i64) -> Result<TransferId, StoreError> {
    Ok(TransferId::derive(
        "lease-hold",
        &[&peer_id.to_string(), lease, &k.to_string()],
    )?)
}

/// What holding leases' periods left for the caller to do.
#[derive(Debug, Default)]
pub struct Holds {
    /// Leases whose renters' wallets could not cover a period: ended here,
    /// their stop queued for their peers.
    pub ended: Vec<LeaseRecord>,
    /// Renters whose wallets, after a period's hold, cannot cover the next
    /// (once per period, since a hold is placed once).
    pub low_balance: Vec<LowBalance>,
}

/// Holds the periods of priced leases that began by `now`.
pub fn hold_due_at(store: &Store, now: UnixTime) -> Result<Holds, StoreError> {
    let mut holds = Holds::default();
    for lease in store.leases_to_hold()? {
        // Read again in the transaction: its end record may have been
        // booked since, and nothing would release a hold placed after it.
        let (covered, left) =
            store.batch(
                |b| match b.lease(LeaseRole::Lessee, lease.peer_id, &lease.id)? {
                    Some(fresh) if holdable(&fresh) => hold_lease(b, &fresh, now),
                    _ => Ok((true, None)),
                },
            )?;
        if let Some(left) = left
            && let (Ok(rental), Ok(device), Some(renter)) = (
                RentalId::parse(&lease.id),
                DeviceName::parse(&lease.device),
                store.user(lease.renter_id)?,
            )
        {
            holds.low_balance.push(LowBalance {
                rental,
                period: lease.periods_done,
                device,
                renter_email: renter.email,
                left,
                rate: lease.hourly_rate,
            });
        }
        if !covered {
            holds.ended.push(lease);
        }
    }
    Ok(holds)
}

/// Whether a lease's periods are still to be held: open, granted, priced,
/// its wallet never short, its last record not in.
fn holdable(lease: &LeaseRecord) -> bool {
    lease.open
        && lease.login.is_some()
        && lease.hourly_rate > 0
        && lease.unpaid_period.is_none()
        && !lease.usage_closed
}

/// Holds the first period of lease `id` just made; false if the wallet
/// could not cover it (the lease is then ended and its peer told).
pub fn hold_first(
    store: &Store,
    peer_id: i64,
    id: &str,
    now: UnixTime,
) -> Result<bool, StoreError> {
    store.batch(|b| match b.lease(LeaseRole::Lessee, peer_id, id)? {
        Some(lease) if holdable(&lease) => Ok(hold_lease(b, &lease, now)?.0),
        _ => Ok(true),
    })
}

/// Holds the periods of `lease` that began: false if the wallet could not
/// cover one (the lease is then ended and its peer told), and what the
/// wallet holds if a hold was placed and it cannot cover the next.
fn hold_lease(
    b: &Batch<'_>,
    lease: &LeaseRecord,
    now: UnixTime,
) -> Result<(bool, Option<i64>), StoreError> {
    if now.0 < lease.created_at {
        return Ok((true, None));
    }
    let current = (now.0 - lease.created_at) / lease.period_secs;
    let currency = Currency::parse(&lease.currency)?;
    let renter = lease.renter_id;
    let mut k = lease.periods_done;
    let mut covered = true;
    let mut held = false;
    while k <= current {
        if !b.transfer_posted(&period_transfer(lease.peer_id, &lease.id, k)?)? {
            let hold = Transfer::simple(
                hold_transfer(lease.peer_id, &lease.id, k)?,
                currency.clone(),
                &format!(
                    "hold for hour {} of lease {} of {} at {}",
                    k + 1,
                    lease.id,
                    lease.device,
                    lease.peer
                ),
                Account::Wallet(renter),
                Account::Held(renter),
                lease.hourly_rate,
            )?;
            match b.post(&hold, now) {
                Ok(posted) => held |= posted == Posted::Now,
                Err(StoreError::Ledger(LedgerError::InsufficientFunds { .. })) => {
                    // The hour before may still be held, waiting for its
                    // record (which releases what it did not use): wait a
                    // while for it before ending the lease.
                    let start = lease.created_at + k * lease.period_secs;
                    let grace = RECORD_GRACE_SECS.min(2 * lease.period_secs);
                    let waiting = k > 0
                        && now.0 < start + grace
                        && b.transfer_posted(&hold_transfer(lease.peer_id, &lease.id, k - 1)?)?
                        && !b.transfer_posted(&period_transfer(
                            lease.peer_id,
                            &lease.id,
                            k - 1,
                        )?)?;
                    covered = waiting;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        k += 1;
    }
    b.set_periods_done(LeaseRole::Lessee, lease.peer_id, &lease.id, k)?;
    if !covered {
        tracing::info!(lease = %lease.id, peer = %lease.peer, "the renter's wallet cannot cover the next hour of a lease; ending it");
        b.set_lease_unpaid(lease.peer_id, &lease.id, k)?;
        let (path, body, key) = super::leases::stop_message(&lease.id, now);
        b.end_lease_and_tell(
            lease.peer_id,
            &lease.id,
            Some("Ended: your wallet could not cover the next hour."),
            (&path, &body, &key),
            now,
        )?;
    }
    let left = b.balance(&Account::Wallet(renter), &currency)?;
    let low = (covered && held && left < lease.hourly_rate).then_some(left);
    Ok((covered, low))
}

/// Why a record was not booked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("record {seq} does not follow record {have} this broker has")]
    OutOfOrder { seq: i64, have: i64 },
    #[error("record {0} does not name the hash of the record before it")]
    BrokenChain(i64),
    #[error("record {seq}: {why}")]
    Wrong { seq: i64, why: String },
}

/// Checks `body` (already verified as signed by `peer`) against this
/// broker's copy of the chain and its lease, and books it. `Err(Rejected)`
/// moves no money.
///
/// What an honest lessor never signs is refused: a record out of place in
/// the chain, for a lease not held from it, at another rate or period, for
/// a period that cannot have ended yet (by this broker's clock, within the
/// allowed skew), or bringing a lease above its rate for every period it
/// may have had. What a lessor may have signed in good faith is booked: a
/// period after the renter's stop, if the stop reached it late (it credits
/// that time with a correction of its own once the stop arrives).
pub fn book(
    b: &Batch<'_>,
    own_name: &str,
    peer: &PeerRecord,
    body: &RecordBody,
    signed: &SignedRecord,
    now: UnixTime,
) -> Result<Result<(), Rejected>, StoreError> {
    let (have, hash) = b.chain_tip(Direction::Received, peer.id)?;
    if body.seq != have + 1 {
        return Ok(Err(Rejected::OutOfOrder {
            seq: body.seq,
            have,
        }));
    }
    if body.prev != hash {
        return Ok(Err(Rejected::BrokenChain(body.seq)));
    }
    let wrong = |why: String| Ok(Err(Rejected::Wrong { seq: body.seq, why }));
    if body.issuer != peer.name || body.recipient != own_name {
        return wrong(format!(
            "it is from {} to {}, not from {} to {own_name}",
            body.issuer, body.recipient, peer.name
        ));
    }
    let booked = match body.kind {
        RecordKind::Payment => book_payment(b, peer, body, now)?,
        _ => book_for_lease(b, peer, body, now)?,
    };
    if let Err(why) = booked {
        return wrong(why);
    }
    b.append_record(Direction::Received, peer.id, body, signed, now)?;
    Ok(Ok(()))
}

/// Books a payment the peer received from this broker: it owes that much
/// less. `Err` (why it is refused) moves no money.
fn book_payment(
    b: &Batch<'_>,
    peer: &PeerRecord,
    body: &RecordBody,
    now: UnixTime,
) -> Result<Result<(), String>, StoreError> {
    if body.currency != peer.currency {
        return Ok(Err(format!(
            "a payment in {}; this broker settles with {} in {}",
            body.currency, peer.name, peer.currency
        )));
    }
    let legs = vec![
        (Account::Peer(peer.id), body.amount),
        (Account::Clearing(PEERS_CLEARING.into()), -body.amount),
    ];
    let memo = format!("paid to {}: {}", peer.name, clip(&body.note));
    let currency = Currency::parse(&body.currency)?;
    post(
        b,
        record_transfer(peer.id, body.seq)?,
        &currency,
        &memo,
        legs,
        now,
    )?;
    Ok(Ok(()))
}

/// Books a record of one of the leases this broker's renters hold from
/// `peer`. `Err` (why it is refused) moves no money.
fn book_for_lease(
    b: &Batch<'_>,
    peer: &PeerRecord,
    body: &RecordBody,
    now: UnixTime,
) -> Result<Result<(), String>, StoreError> {
    let wrong = |why: String| Ok(Err(why));
    let Some(lease) = b.lease(LeaseRole::Lessee, peer.id, &body.lease)? else {
        return wrong(format!(
            "no lease {} is held from {}",
            body.lease, peer.name
        ));
    };
    if body.currency != lease.currency {
        return wrong(format!(
            "it is in {}, the lease in {}",
            body.currency, lease.currency
        ));
    }
    if lease.usage_closed && body.kind != RecordKind::Correction {
        return wrong(format!("lease {} already had its end record", lease.id));
    }
    let currency = Currency::parse(&lease.currency)?;
    let skew = super::signature::ALLOWED_SKEW_SECS;
    // Periods that may have begun by now, however the two clocks differ.
    let begun = (now.0 + skew - lease.created_at).max(0) / lease.period_secs + 1;
    let so_far = b.lease_total(Direction::Received, peer.id, &lease.id)?;
    match body.kind {
        RecordKind::Usage => {
            if body.rate != lease.hourly_rate || body.period_secs != lease.period_secs {
                return wrong(format!(
                    "it charges {} per {} s; the lease agreed {} per {} s",
                    body.rate, body.period_secs, lease.hourly_rate, lease.period_secs
                ));
            }
            if body.period >= begun || body.from < lease.created_at - skew || body.to > now.0 + skew
            {
                return wrong(format!(
                    "hour {} of {} cannot have ended by now",
                    body.period + 1,
                    lease.id
                ));
            }
            let settle = period_transfer(peer.id, &lease.id, body.period)?;
            let recorded =
                b.has_usage_record(Direction::Received, peer.id, &lease.id, body.period)?;
            if recorded || b.transfer_posted(&settle)? {
                return wrong(format!(
                    "hour {} of {} was charged already",
                    body.period + 1,
                    lease.id
                ));
            }
            let held = b.transfer_posted(&hold_transfer(peer.id, &lease.id, body.period)?)?;
            let memo = format!(
                "hour {} of lease {} of {} at {}: {} of {} s reachable",
                body.period + 1,
                lease.id,
                lease.device,
                peer.name,
                body.reachable_secs,
                body.period_secs
            );
            let legs = if held {
                vec![
                    (Account::Held(lease.renter_id), -lease.hourly_rate),
                    (
                        Account::Wallet(lease.renter_id),
                        lease.hourly_rate - body.amount,
                    ),
                    (Account::Peer(peer.id), body.amount),
                ]
            } else {
                charge_legs(b, &lease, &currency, peer.id, body.amount)?
            };
            post(b, settle, &currency, &memo, legs, now)?;
        }
        RecordKind::End => {
            let reason = if body.note.is_empty() {
                format!("ended at {}", peer.name)
            } else {
                body.note.clone()
            };
            b.end_lease(LeaseRole::Lessee, peer.id, &lease.id, Some(&reason), now)?;
            release_holds(b, &lease, "its last record is in", now)?;
            b.close_lease_usage(LeaseRole::Lessee, peer.id, &lease.id)?;
        }
        RecordKind::Correction => {
            // Never more than the rate for each hour it reported.
            let hours = b.usage_records(Direction::Received, peer.id, &lease.id)?;
            let most = lease.hourly_rate.saturating_mul(hours);
            if body.amount == 0 || body.amount < -so_far || so_far + body.amount > most {
                return wrong(format!(
                    "a correction of {} to a lease that cost {so_far}, at most {most} by its rate",
                    body.amount
                ));
            }
            let memo = format!(
                "correction of lease {} at {}: {}",
                lease.id,
                peer.name,
                clip(&body.note)
            );
            let legs = if body.amount > 0 {
                charge_legs(b, &lease, &currency, peer.id, body.amount)?
            } else {
                vec![
                    (payer(&lease), -body.amount),
                    (Account::Peer(peer.id), body.amount),
                ]
            };
            post(
                b,
                record_transfer(peer.id, body.seq)?,
                &currency,
                &memo,
                legs,
                now,
            )?;
        }
        RecordKind::Payment => return wrong("a payment names no lease".into()),
    }
    Ok(Ok(()))
}

fn clip(note: &str) -> String {
    note.chars().take(120).collect()
}

/// Whose money pays what a lease's records charge: its renter's wallet,
/// or, for a lease the peer never granted this broker's renter (no login
/// arrived), this broker's.
fn payer(lease: &LeaseRecord) -> Account {
    match lease.login {
        Some(_) => Account::Wallet(lease.renter_id),
        None => Account::Revenue,
    }
}

/// Legs charging `amount` not held: from the renter's wallet as far as it
/// goes, the rest owed by the renter (or all of it from this broker, for
/// a lease never granted); owed to the peer in full.
fn charge_legs(
    b: &Batch<'_>,
    lease: &LeaseRecord,
    currency: &Currency,
    peer_id: i64,
    amount: i64,
) -> Result<Vec<(Account, i64)>, StoreError> {
    if lease.login.is_none() {
        return Ok(vec![
            (Account::Revenue, -amount),
            (Account::Peer(peer_id), amount),
        ]);
    }
    let wallet = b.balance(&Account::Wallet(lease.renter_id), currency)?;
    let paid = amount.min(wallet.max(0));
    Ok(vec![
        (Account::Wallet(lease.renter_id), -paid),
        (Account::Receivable(lease.renter_id), paid - amount),
        (Account::Peer(peer_id), amount),
    ])
}

fn post(
    b: &Batch<'_>,
    id: TransferId,
    currency: &Currency,
    memo: &str,
    mut legs: Vec<(Account, i64)>,
    now: UnixTime,
) -> Result<(), StoreError> {
    legs.retain(|(_, a)| *a != 0);
    if legs.len() < 2 {
        return Ok(());
    }
    b.post(&Transfer::new(id, currency.clone(), memo, legs)?, now)?;
    Ok(())
}

/// Releases the holds of `lease`'s periods no record charged (holds exist
/// only for the periods held so far), saying `why`.
fn release_holds(
    b: &Batch<'_>,
    lease: &LeaseRecord,
    why: &str,
    now: UnixTime,
) -> Result<(), StoreError> {
    let currency = Currency::parse(&lease.currency)?;
    for k in 0..lease.periods_done {
        let settle = period_transfer(lease.peer_id, &lease.id, k)?;
        if b.transfer_posted(&settle)?
            || !b.transfer_posted(&hold_transfer(lease.peer_id, &lease.id, k)?)?
        {
            continue;
        }
        let memo = format!(
            "hold for hour {} of lease {} released: {why}",
            k + 1,
            lease.id
        );
        let legs = vec![
            (Account::Held(lease.renter_id), -lease.hourly_rate),
            (Account::Wallet(lease.renter_id), lease.hourly_rate),
        ];
        post(b, settle, &currency, &memo, legs, now)?;
    }
    Ok(())
}

/// Ends lease `id`, which its peer says it never made (it answered its
/// stop with 404): nothing of it will come, so what is held for it goes
/// back to the renter and its usage is closed; the queued stop
/// (`stop_key`) is dropped.
pub fn drop_unknown(
    store: &Store,
    peer_id: i64,
    id: &str,
    stop_key: &str,
    now: UnixTime,
) -> Result<(), StoreError> {
    store.drop_lessee_lease(peer_id, id, "the peer never made it", stop_key)?;
    if let Some(lease) = store.lease(LeaseRole::Lessee, peer_id, id)? {
        store.batch(|b| release_holds(b, &lease, "the peer never made it", now))?;
    }
    Ok(())
}

/// After peer `peer_id` was removed no record of it is pulled any more:
/// releases what is held for its leases and closes them. What records
/// already charged stays charged, and owed.
pub fn close_removed(store: &Store, peer_id: i64, now: UnixTime) -> Result<(), StoreError> {
    for lease in store.unsettled_leases(peer_id)? {
        store.batch(|b| {
            release_holds(b, &lease, "its broker is no longer a peer", now)?;
            b.close_lease_usage(LeaseRole::Lessee, peer_id, &lease.id)
        })?;
    }
    Ok(())
}

/// Pulls and books the usage records of every active peer, and compares
/// its chain with this broker's copy.
pub async fn pull_all(shared: &Arc<Shared>) {
    let peers = match shared.store.blocking(|s| s.peers()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "reading the peers failed");
            return;
        }
    };
    for peer in peers.into_iter().filter(|p| p.active) {
        pull_and_check(shared, peer).await;
    }
}

/// [`pull_all`] for peer `peer_id` alone.
pub async fn pull_peer(shared: &Arc<Shared>, peer_id: i64) {
    match shared.store.blocking(|s| s.peers()).await {
        Ok(peers) => {
            if let Some(peer) = peers.into_iter().find(|p| p.active && p.id == peer_id) {
                pull_and_check(shared, peer).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "reading the peers failed"),
    }
}

async fn pull_and_check(shared: &Arc<Shared>, peer: PeerRecord) {
    if !shared.federation.breakers.allows(peer.id) {
        return;
    }
    let problem = match pull(shared, peer.clone()).await {
        Ok(problem) => problem,
        Err(e) => {
            shared
                .federation
                .breakers
                .record(peer.id, !matches!(e, CallError::Unreachable { .. }));
            tracing::warn!(peer = %peer.name, error = %e, "pulling usage records failed");
            return;
        }
    };
    shared.federation.breakers.record(peer.id, true);
    if let Some(why) = &problem {
        tracing::error!(peer = %peer.name, problem = %why, "a peer's usage records do not check out; none after it are booked");
    }
    let id = peer.id;
    if let Err(e) = shared
        .store
        .blocking(move |s| s.set_usage_check(id, problem.as_deref(), UnixTime::now()))
        .await
    {
        tracing::error!(error = %e, "recording a usage check failed");
    }
}

/// Pulls `peer`'s records after the last one this broker has and books
/// them; what is wrong with its chain, if anything.
async fn pull(shared: &Arc<Shared>, mut peer: PeerRecord) -> Result<Option<String>, CallError> {
    let own = shared.settings.federation.name.clone();
    let mut refreshed = false;
    for _ in 0..MAX_PAGES {
        let id = peer.id;
        let (have, _) = shared
            .store
            .blocking(move |s| s.chain_tip(Direction::Received, id))
            .await
            .map_err(|e| internal(&peer, e))?;
        let path = format!("{}?after={have}", super::wire::USAGE_PATH);
        let bytes =
            super::leases::call_peer(shared, &peer, Method::GET, &path, Vec::new(), None).await?;
        let page: UsagePage = serde_json::from_slice(&bytes).map_err(|e| CallError::BadAnswer {
            url: peer.base_url.clone(),
            why: e.to_string(),
        })?;
        if page.records.len() > super::usage::PAGE {
            return Err(CallError::BadAnswer {
                url: peer.base_url.clone(),
                why: "too many records in one page".into(),
            });
        }
        if page.records.is_empty() {
            // Every record is in: compare totals too, once.
            let ours = shared
                .store
                .blocking(move |s| s.chain_head(Direction::Received, id))
                .await
                .map_err(|e| internal(&peer, e))?;
            return Ok(compare(&ours, &page));
        }
        for record in page.records {
            let body = match record.open(&peer.keys, UnixTime::now()) {
                Ok(body) => body,
                Err(RecordError::UnknownKey(_)) if !refreshed => {
                    // The peer may have rotated its key: learn it and read
                    // this page again.
                    refreshed = true;
                    if let Ok(Some(keys)) =
                        super::peering::refresh_keys(&shared.store, &shared.federation.http, &peer)
                            .await
                    {
                        peer.keys = keys;
                    }
                    break;
                }
                Err(e) => return Ok(Some(Rejected::from(e).to_string())),
            };
            let (own, booked_peer) = (own.clone(), peer.clone());
            let booked = shared
                .store
                .blocking(move |s| {
                    s.batch(|b| book(b, &own, &booked_peer, &body, &record, UnixTime::now()))
                })
                .await
                .map_err(|e| internal(&peer, e))?;
            if let Err(rejected) = booked {
                return Ok(Some(rejected.to_string()));
            }
        }
    }
    Ok(None)
}

/// What differs between the peer's chain head and this broker's copy,
/// once this broker has every record the peer listed.
fn compare(have: &super::usage::ChainHead, page: &UsagePage) -> Option<String> {
    let theirs = &page.head;
    if theirs.seq < have.seq {
        return Some(format!(
            "the peer lists {} records; this broker has {}",
            theirs.seq, have.seq
        ));
    }
    if theirs.seq == have.seq && (theirs.hash != have.hash || theirs.total != have.total) {
        return Some(format!(
            "record {} differs: the peer's chain totals {}, this broker's copy {}",
            have.seq, theirs.total, have.total
        ));
    }
    None
}

fn internal(peer: &PeerRecord, e: StoreError) -> CallError {
    tracing::error!(error = %e, "booking usage records failed");
    CallError::Unreachable {
        url: peer.base_url.clone(),
        why: format!("this broker's store failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use rpibroker_wire::DeviceName;
    use rpibroker_wire::control::RentalId;

    use super::*;
    use crate::federation::identity::KeyRing;
    use crate::federation::metering::{
        Issuer, Payment, correct, credit_late_stop, meter_at, record_payment,
    };
    use crate::store::{LeaseLogin, NewLease, NewPeer, Opened, RenterTerms};

    const HOUR: i64 = 3600;
    const T0: i64 = 1_000_000;
    const RATE: i64 = 600;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    /// Broker `b.example` (the lessor) runs lease `lse-1` of its device for
    /// a renter of `a.example` (the lessee), from `T0` at 6.00 an hour.
    struct Pair {
        a: Store,
        b: Store,
        ring: KeyRing,
        _dir: tempfile::TempDir,
        /// The peer ids: B as A knows it, A as B knows it.
        b_at_a: i64,
        a_at_b: i64,
        renter: i64,
        owner: i64,
        device: i64,
        rental: RentalId,
    }

    fn peer_on(
        store: &Store,
        name: &str,
        keys: Vec<crate::federation::identity::PublicKey>,
    ) -> i64 {
        let new = NewPeer {
            name: name.into(),
            base_url: format!("https://{name}"),
            keys,
            credit_limit: 100_000,
            currency: "USD".into(),
        };
        store.add_peer(&new, UnixTime(1)).unwrap();
        store
            .peers()
            .unwrap()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap()
            .id
    }

    fn pair(wallet: i64) -> Pair {
        pair_with(wallet, true)
    }

    /// [`pair`], with the lessor's rental recorded on its lease or not.
    fn pair_with(wallet: i64, recorded: bool) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_create(dir.path(), UnixTime(1)).unwrap();
        let a = Store::open(std::path::Path::new(":memory:")).unwrap();
        let b = Store::open(std::path::Path::new(":memory:")).unwrap();
        let b_at_a = peer_on(&a, "b.example", ring.published(UnixTime(1)));
        let a_at_b = peer_on(&b, "a.example", Vec::new());

        let renter = a
            .add_user("r@a.example", "h", false, UnixTime(0))
            .unwrap()
            .id;
        let credit = Transfer::simple(
            TransferId::parse("topup:test:1").unwrap(),
            usd(),
            "",
            Account::Clearing("test".into()),
            Account::Wallet(renter),
            wallet,
        )
        .unwrap();
        a.post(&credit, UnixTime(0)).unwrap();
        let lease = |peer_id, renter_id, key: Option<&str>| NewLease {
            peer_id,
            id: "lse-1".into(),
            device: "pi".into(),
            hourly_rate: RATE,
            currency: "USD".into(),
            renter_id,
            idempotency_key: key.map(str::to_string),
            period_secs: HOUR,
        };
        let (path, body, key) = super::super::leases::stop_message("lse-1", UnixTime(T0));
        a.add_lessee_lease(
            &lease(b_at_a, renter, None),
            (&path, &body, &key),
            UnixTime(T0 + 180),
            UnixTime(T0),
        )
        .unwrap();
        let login = LeaseLogin {
            username: "renter".into(),
            ..LeaseLogin::default()
        };
        a.set_lessee_login(b_at_a, "lse-1", &login, HOUR, &key)
            .unwrap();
        assert!(hold_first(&a, b_at_a, "lse-1", UnixTime(T0)).unwrap());

        let owner = b
            .add_user("o@b.example", "h", false, UnixTime(0))
            .unwrap()
            .id;
        let device = b
            .add_owned_device(
                &DeviceName::parse("pi").unwrap(),
                "h",
                owner,
                i64::MAX,
                UnixTime(0),
            )
            .unwrap()
            .id;
        b.set_listing(device, true, Some(RATE)).unwrap();
        b.set_online(device, UnixTime(T0)).unwrap();
        let peer_renter = b.peer_renter("a.example", UnixTime(0)).unwrap();
        let Opened::Lease(_) = b
            .open_lessor_lease(
                &lease(a_at_b, peer_renter, Some("k")),
                100_000,
                UnixTime(T0),
            )
            .unwrap()
        else {
            panic!("the lease opens");
        };
        let rental = RentalId::parse("rnt-1").unwrap();
        let terms = RenterTerms {
            renter_id: peer_renter,
            hourly_rate: Some(RATE),
            max_open: 10,
            billed: false,
        };
        b.begin_rental(device, &rental, &[], Some(terms), UnixTime(T0))
            .unwrap();
        b.set_rental_active(&rental, "renter").unwrap();
        if recorded {
            b.set_lessor_rental(a_at_b, "lse-1", rental.as_str(), &LeaseLogin::default())
                .unwrap();
        }
        Pair {
            a,
            b,
            ring,
            _dir: dir,
            b_at_a,
            a_at_b,
            renter,
            owner,
            device,
            rental,
        }
    }

    impl Pair {
        fn issuer(&self) -> Issuer<'_> {
            Issuer {
                name: "b.example",
                ring: &self.ring,
                fee_percent: 10,
            }
        }

        fn meter(&self, at: i64) {
            meter_at(&self.b, &self.issuer(), UnixTime(at)).unwrap();
        }

        /// A pulls every record B issued it and books them; the first
        /// rejection, if any.
        fn pull(&self, at: i64) -> Option<Rejected> {
            let peer = self
                .a
                .peers()
                .unwrap()
                .into_iter()
                .find(|p| p.id == self.b_at_a)
                .unwrap();
            let have = self.a.chain_head(Direction::Received, self.b_at_a).unwrap();
            for signed in self
                .b
                .records_after(Direction::Issued, self.a_at_b, have.seq, 500)
                .unwrap()
            {
                if let Some(rejected) = self.deliver(&peer, signed, at) {
                    return Some(rejected);
                }
            }
            None
        }

        fn deliver(&self, peer: &PeerRecord, signed: SignedRecord, at: i64) -> Option<Rejected> {
            let body = match signed.open(&peer.keys, UnixTime(at)) {
                Ok(body) => body,
                Err(e) => return Some(e.into()),
            };
            self.a
                .batch(|b| book(b, "a.example", peer, &body, &signed, UnixTime(at)))
                .unwrap()
                .err()
        }

        fn a_balance(&self, account: Account) -> i64 {
            self.a.balance(&account, &usd()).unwrap()
        }

        fn b_balance(&self, account: Account) -> i64 {
            self.b.balance(&account, &usd()).unwrap()
        }

        /// Both ledgers are whole and agree on what A owes B.
        fn assert_agree(&self) {
            assert!(self.a.ledger_problems().unwrap().is_empty());
            assert!(self.b.ledger_problems().unwrap().is_empty());
            assert_eq!(
                self.a_balance(Account::Peer(self.b_at_a)),
                -self.b_balance(Account::Peer(self.a_at_b)),
                "what A owes B is what B is owed by A"
            );
            assert_eq!(
                self.a.chain_head(Direction::Received, self.b_at_a).unwrap(),
                self.b.chain_head(Direction::Issued, self.a_at_b).unwrap()
            );
        }
    }

    #[test]
    fn the_lessor_meters_each_hour_and_the_lessee_charges_its_renter_the_same() {
        let p = pair(10_000);
        assert_eq!(
            p.a_balance(Account::Held(p.renter)),
            RATE,
            "the first hour is held"
        );
        // Down for 20 minutes of the first hour.
        p.b.set_offline(p.device, UnixTime(T0 + 600)).unwrap();
        p.b.set_online(p.device, UnixTime(T0 + 1800)).unwrap();
        p.meter(T0 + 100);
        assert_eq!(
            p.b.chain_head(Direction::Issued, p.a_at_b).unwrap().seq,
            0,
            "no hour ended yet"
        );
        hold_due_at(&p.a, UnixTime(T0 + HOUR + 1)).unwrap();
        p.meter(T0 + HOUR + 5);
        p.meter(T0 + HOUR + 6);
        assert_eq!(p.pull(T0 + HOUR + 10), None);
        // 40 minutes of 6.00: 4.00, of which the owner gets 3.60.
        assert_eq!(p.b_balance(Account::Peer(p.a_at_b)), -400);
        assert_eq!(p.b_balance(Account::Payable(p.owner)), 360);
        assert_eq!(p.b_balance(Account::Revenue), 40);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), 400);
        assert_eq!(
            p.a_balance(Account::Held(p.renter)),
            RATE,
            "the second hour is held"
        );
        assert_eq!(p.a_balance(Account::Wallet(p.renter)), 10_000 - 400 - RATE);
        p.assert_agree();

        // The renter stops at 1:30 on A; the stop reaches B at 1:50, and
        // B charges only to 1:30.
        let stop = T0 + HOUR + 1800;
        p.b.set_lease_stop_at(p.a_at_b, "lse-1", stop).unwrap();
        p.b.set_rental_ending(&p.rental, None, UnixTime(T0 + HOUR + 3000))
            .unwrap();
        p.meter(T0 + HOUR + 3001);
        assert_eq!(p.pull(T0 + HOUR + 3002), None);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), 400 + 300);
        assert_eq!(
            p.a_balance(Account::Held(p.renter)),
            0,
            "nothing is left held"
        );
        assert_eq!(p.a_balance(Account::Wallet(p.renter)), 10_000 - 700);
        let lease =
            p.a.lease(LeaseRole::Lessee, p.b_at_a, "lse-1")
                .unwrap()
                .unwrap();
        assert!(
            !lease.open && lease.usage_closed,
            "the end record ended it on A"
        );
        p.assert_agree();

        // Nothing more is metered; a credit of 1.00 reaches the renter.
        p.meter(T0 + 5 * HOUR);
        let seq = correct(
            &p.b,
            &p.issuer(),
            p.a_at_b,
            "lse-1",
            -100,
            "down for maintenance",
            UnixTime(T0 + 5 * HOUR),
        )
        .unwrap()
        .unwrap();
        assert_eq!(seq, 4, "two hours, the end, the correction");
        assert!(
            correct(
                &p.b,
                &p.issuer(),
                p.a_at_b,
                "lse-1",
                -10_000,
                "too much",
                UnixTime(T0 + 5 * HOUR)
            )
            .unwrap()
            .is_err(),
            "no credit above what the lease cost"
        );
        assert_eq!(p.pull(T0 + 5 * HOUR + 1), None);
        assert_eq!(p.a_balance(Account::Wallet(p.renter)), 10_000 - 600);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), 600);
        p.assert_agree();

        // A pays 5.00 of it by bank transfer; B records it (once), and A
        // learns it from B's next record.
        let a_at_b =
            p.b.peers()
                .unwrap()
                .into_iter()
                .find(|x| x.id == p.a_at_b)
                .unwrap();
        let at = UnixTime(T0 + 6 * HOUR);
        assert_eq!(
            record_payment(&p.b, &p.issuer(), &a_at_b, 500, "bank-7", at).unwrap(),
            Payment::Recorded(5)
        );
        assert_eq!(
            record_payment(&p.b, &p.issuer(), &a_at_b, 500, "bank-7", at).unwrap(),
            Payment::Already
        );
        assert_eq!(p.pull(T0 + 6 * HOUR + 1), None);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), 100);
        assert_eq!(p.b_balance(Account::Peer(p.a_at_b)), -100);
        assert_eq!(p.a_balance(Account::Clearing("peers".into())), 500);
        assert_eq!(p.b_balance(Account::Clearing("peers".into())), -500);
        p.assert_agree();
    }

    #[test]
    fn a_stop_that_arrives_late_is_credited_back_and_the_chain_goes_on() {
        let p = pair(10_000);
        // The renter stops at 0:30; B, cut off, meters two full hours
        // before it hears of the stop at 2:10.
        let stop = T0 + 1800;
        p.a.batch(|b| {
            let (path, body, key) = super::super::leases::stop_message("lse-1", UnixTime(stop));
            b.end_lease_and_tell(
                p.b_at_a,
                "lse-1",
                None,
                (&path, &body, &key),
                UnixTime(stop),
            )
        })
        .unwrap();
        p.meter(T0 + HOUR + 5);
        p.meter(T0 + 2 * HOUR + 5);
        assert_eq!(p.b_balance(Account::Peer(p.a_at_b)), -2 * RATE);
        p.b.set_lease_stop_at(p.a_at_b, "lse-1", stop).unwrap();
        p.b.set_rental_ending(&p.rental, None, UnixTime(T0 + 2 * HOUR + 600))
            .unwrap();
        p.meter(T0 + 2 * HOUR + 601);
        p.meter(T0 + 2 * HOUR + 602);
        // Two usage records, two credits (the second half of the first
        // hour, all of the second), the end: A books them all.
        assert_eq!(p.b.chain_head(Direction::Issued, p.a_at_b).unwrap().seq, 5);
        assert_eq!(p.pull(T0 + 2 * HOUR + 700), None);
        assert_eq!(
            p.a_balance(Account::Peer(p.b_at_a)),
            RATE / 2,
            "half an hour"
        );
        assert_eq!(p.a_balance(Account::Wallet(p.renter)), 10_000 - RATE / 2);
        assert_eq!(p.a_balance(Account::Held(p.renter)), 0);
        assert_eq!(p.a_balance(Account::Receivable(p.renter)), 0);
        assert_eq!(
            p.b_balance(Account::Payable(p.owner)) + p.b_balance(Account::Revenue),
            RATE / 2
        );
        p.assert_agree();
    }

    #[test]
    fn a_stop_that_arrives_after_the_lease_ended_here_is_credited_too() {
        let p = pair(10_000);
        // The owner ends the rental at 1:30 and B issues every record; the
        // renter had stopped at 0:30, which B learns only now.
        p.b.set_rental_ending(&p.rental, None, UnixTime(T0 + HOUR + 1800))
            .unwrap();
        p.meter(T0 + HOUR + 1801);
        assert!(p.b.leases_to_meter().unwrap().is_empty(), "all issued");
        p.b.set_lease_stop_at(p.a_at_b, "lse-1", T0 + 1800).unwrap();
        let credits = credit_late_stop(
            &p.b,
            &p.issuer(),
            p.a_at_b,
            "lse-1",
            UnixTime(T0 + 2 * HOUR),
        )
        .unwrap();
        assert_eq!(credits, 2, "the rest of the first hour, and the second");
        assert_eq!(
            credit_late_stop(
                &p.b,
                &p.issuer(),
                p.a_at_b,
                "lse-1",
                UnixTime(T0 + 2 * HOUR)
            )
            .unwrap(),
            0,
            "once"
        );
        assert_eq!(p.pull(T0 + 2 * HOUR + 1), None);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), RATE / 2);
        assert_eq!(p.a_balance(Account::Wallet(p.renter)), 10_000 - RATE / 2);
        assert_eq!(
            p.b_balance(Account::Payable(p.owner)) + p.b_balance(Account::Revenue),
            RATE / 2
        );
        p.assert_agree();
    }

    #[test]
    fn records_an_honest_lessor_never_signs_are_refused() {
        let p = pair(10_000);
        p.meter(T0 + HOUR + 5);
        let peer =
            p.a.peers()
                .unwrap()
                .into_iter()
                .find(|x| x.id == p.b_at_a)
                .unwrap();
        let first =
            p.b.records_after(Direction::Issued, p.a_at_b, 0, 10)
                .unwrap()
                .remove(0);
        let body: RecordBody = serde_json::from_str(&first.body).unwrap();
        let at = T0 + HOUR + 10;
        // An hour that cannot have ended yet.
        let early = RecordBody {
            period: 5,
            from: T0 + 5 * HOUR,
            to: T0 + 6 * HOUR,
            ..body.clone()
        };
        assert!(matches!(
            p.deliver(&peer, early.seal(&p.ring), at),
            Some(Rejected::Wrong { .. })
        ));
        // Time before the lease was asked for.
        let before = RecordBody {
            from: T0 - 2 * HOUR,
            to: T0 - HOUR,
            ..body.clone()
        };
        assert!(matches!(
            p.deliver(&peer, before.seal(&p.ring), at),
            Some(Rejected::Wrong { .. })
        ));
        // A correction above the rate for the hours the lease may have had.
        let greedy = RecordBody {
            kind: RecordKind::Correction,
            amount: 3 * RATE,
            ..body.clone()
        };
        assert!(matches!(
            p.deliver(&peer, greedy.seal(&p.ring), at),
            Some(Rejected::Wrong { .. })
        ));
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), 0);
        assert_eq!(p.pull(at), None, "the honest record is booked");
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), RATE);
        // The operator's correction is bounded the same way.
        assert!(
            correct(
                &p.b,
                &p.issuer(),
                p.a_at_b,
                "lse-1",
                150_000,
                "typo",
                UnixTime(at)
            )
            .unwrap()
            .is_err()
        );
        p.assert_agree();
    }

    #[test]
    fn a_record_tampered_forged_replayed_or_out_of_order_moves_no_money() {
        let p = pair(10_000);
        p.meter(T0 + HOUR + 5);
        p.meter(T0 + 2 * HOUR + 5);
        let peer =
            p.a.peers()
                .unwrap()
                .into_iter()
                .find(|x| x.id == p.b_at_a)
                .unwrap();
        let records =
            p.b.records_after(Direction::Issued, p.a_at_b, 0, 10)
                .unwrap();
        assert_eq!(records.len(), 2);
        let at = T0 + 2 * HOUR + 10;

        let mut tampered = records[0].clone();
        tampered.body = tampered.body.replace("\"amount\":600", "\"amount\":60");
        assert!(matches!(
            p.deliver(&peer, tampered, at),
            Some(Rejected::Record(RecordError::BadHash))
        ));
        assert!(matches!(
            p.deliver(&peer, records[1].clone(), at),
            Some(Rejected::OutOfOrder { seq: 2, have: 0 })
        ));
        // Someone else's key.
        let other = tempfile::tempdir().unwrap();
        let stranger = KeyRing::load_or_create(other.path(), UnixTime(1)).unwrap();
        let body: RecordBody = serde_json::from_str(&records[0].body).unwrap();
        assert!(matches!(
            p.deliver(&peer, body.seal(&stranger), at),
            Some(Rejected::Record(RecordError::UnknownKey(_)))
        ));
        // Signed by B, but charging more than the agreed rate.
        let greedy = RecordBody {
            rate: 900,
            amount: 900,
            ..body.clone()
        };
        assert!(matches!(
            p.deliver(&peer, greedy.seal(&p.ring), at),
            Some(Rejected::Wrong { .. })
        ));
        // For a lease A never held.
        let stray = RecordBody {
            lease: "lse-2".into(),
            ..body.clone()
        };
        assert!(matches!(
            p.deliver(&peer, stray.seal(&p.ring), at),
            Some(Rejected::Wrong { .. })
        ));
        assert_eq!(
            p.a_balance(Account::Peer(p.b_at_a)),
            0,
            "nothing was booked"
        );

        assert_eq!(p.deliver(&peer, records[0].clone(), at), None);
        assert!(
            matches!(
                p.deliver(&peer, records[0].clone(), at),
                Some(Rejected::OutOfOrder { seq: 1, have: 1 })
            ),
            "a replay is refused"
        );
        // A record that names another as the one before it.
        let forked = RecordBody {
            seq: 2,
            prev: "00".repeat(32),
            period: 1,
            ..body
        };
        assert!(matches!(
            p.deliver(&peer, forked.seal(&p.ring), at),
            Some(Rejected::BrokenChain(2))
        ));
        assert_eq!(p.pull(at), None);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), 2 * RATE);
        p.assert_agree();
    }

    #[test]
    fn a_lease_never_started_has_no_record_and_one_abandoned_costs_nothing() {
        let p = pair(10_000);
        // A lease whose rental never started (refused): closed, no record.
        let peer_renter = p.b.peer_renter("a.example", UnixTime(0)).unwrap();
        let refused = NewLease {
            peer_id: p.a_at_b,
            id: "lse-2".into(),
            device: "pi".into(),
            hourly_rate: RATE,
            currency: "USD".into(),
            renter_id: peer_renter,
            idempotency_key: Some("k2".into()),
            period_secs: HOUR,
        };
        assert!(matches!(
            p.b.open_lessor_lease(&refused, 100_000, UnixTime(T0))
                .unwrap(),
            Opened::Lease(_)
        ));
        p.b.end_lease(
            LeaseRole::Lessor,
            p.a_at_b,
            "lse-2",
            Some("device unreachable"),
            UnixTime(T0 + 1),
        )
        .unwrap();
        // The first lease's answer was lost: A stops it as of when it
        // asked, and B, told late, charges nothing.
        p.b.set_lease_stop_at(p.a_at_b, "lse-1", T0 - 1).unwrap();
        p.b.set_rental_ending(&p.rental, None, UnixTime(T0 + 2 * HOUR))
            .unwrap();
        p.meter(T0 + 2 * HOUR + 1);
        let records =
            p.b.records_after(Direction::Issued, p.a_at_b, 0, 10)
                .unwrap();
        assert_eq!(records.len(), 1, "only lse-1's end");
        let end: RecordBody = serde_json::from_str(&records[0].body).unwrap();
        assert_eq!(
            (end.lease.as_str(), end.kind, end.period),
            ("lse-1", RecordKind::End, 0)
        );
        assert!(p.b.leases_to_meter().unwrap().is_empty(), "both are done");
        assert_eq!(p.pull(T0 + 2 * HOUR + 2), None);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), 0);
        assert_eq!(
            p.a_balance(Account::Held(p.renter)),
            0,
            "the hold is released"
        );
        assert_eq!(p.a_balance(Account::Wallet(p.renter)), 10_000);
        p.assert_agree();
    }

    #[test]
    fn a_renter_whose_wallet_will_not_cover_the_next_hour_is_warned_once() {
        let p = pair(2 * RATE + 100);
        assert!(
            hold_due_at(&p.a, UnixTime(T0 + 10))
                .unwrap()
                .low_balance
                .is_empty()
        );
        let holds = hold_due_at(&p.a, UnixTime(T0 + HOUR + 1)).unwrap();
        assert!(holds.ended.is_empty());
        assert_eq!(holds.low_balance.len(), 1);
        let low = &holds.low_balance[0];
        assert_eq!((low.period, low.left, low.rate), (1, 100, RATE));
        assert_eq!(low.renter_email, "r@a.example");
        assert_eq!(low.device.as_str(), "pi");
        let again = hold_due_at(&p.a, UnixTime(T0 + HOUR + 2)).unwrap();
        assert!(again.low_balance.is_empty(), "one warning per hour");
    }

    #[test]
    fn a_leased_rental_never_recorded_on_its_lease_is_found_and_metered() {
        // As if the broker stopped between starting the rental and
        // recording it on the lease.
        let p = pair_with(10_000, false);
        assert_eq!(
            p.b.link_lessor_rentals(UnixTime(T0 + 10)).unwrap(),
            0,
            "a lease being set up is left alone"
        );
        p.meter(T0 + HOUR + 5);
        let lease =
            p.b.lease(LeaseRole::Lessor, p.a_at_b, "lse-1")
                .unwrap()
                .unwrap();
        assert_eq!(lease.rental_id.as_deref(), Some(p.rental.as_str()));
        assert_eq!(p.pull(T0 + HOUR + 10), None);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), RATE);
        p.assert_agree();
    }

    #[test]
    fn a_peers_stop_finds_a_rental_never_recorded_on_its_lease() {
        let p = pair_with(10_000, false);
        assert_eq!(
            p.b.link_lessor_rental(p.a_at_b, "lse-1")
                .unwrap()
                .as_deref(),
            Some(p.rental.as_str())
        );
        assert_eq!(
            p.b.link_lessor_rental(p.a_at_b, "lse-2").unwrap(),
            None,
            "no such lease"
        );
    }

    #[test]
    fn the_next_hour_waits_for_the_record_that_releases_the_last_one() {
        // Enough for one hour and a half: the second hour's hold fits once
        // the first hour's record has released what it did not use.
        let p = pair(RATE + RATE / 2);
        p.b.set_offline(p.device, UnixTime(T0 + 1800)).unwrap();
        let holds = hold_due_at(&p.a, UnixTime(T0 + HOUR + 1)).unwrap();
        assert!(
            holds.ended.is_empty(),
            "the record of the first hour is not in yet"
        );
        p.meter(T0 + HOUR + 5);
        assert_eq!(p.pull(T0 + HOUR + 30), None);
        let holds = hold_due_at(&p.a, UnixTime(T0 + HOUR + 31)).unwrap();
        assert!(holds.ended.is_empty());
        assert_eq!(
            p.a_balance(Account::Held(p.renter)),
            RATE,
            "the second hour is held"
        );
        assert_eq!(p.a_balance(Account::Wallet(p.renter)), 0);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), RATE / 2);
        p.assert_agree();
    }

    #[test]
    fn a_wallet_that_cannot_hold_an_hour_ends_the_lease_and_tells_the_peer() {
        let p = pair(RATE + 100);
        // The first hour's record may yet release some of its hold: the
        // lease waits for it a while.
        let holds = hold_due_at(&p.a, UnixTime(T0 + HOUR + 1)).unwrap();
        assert!(holds.ended.is_empty());
        let stop = T0 + HOUR + RECORD_GRACE_SECS;
        let holds = hold_due_at(&p.a, UnixTime(stop)).unwrap();
        assert_eq!(holds.ended.len(), 1);
        assert!(holds.low_balance.is_empty(), "no hour was held");
        let lease =
            p.a.lease(LeaseRole::Lessee, p.b_at_a, "lse-1")
                .unwrap()
                .unwrap();
        assert!(!lease.open);
        assert_eq!(lease.stop_at, Some(stop));
        let queued = p.a.due_messages(UnixTime(stop), 10).unwrap();
        assert_eq!(queued.len(), 1);
        assert!(queued[0].body.contains(&format!("\"at\":{stop}")));
        let again = hold_due_at(&p.a, UnixTime(stop + 1)).unwrap();
        assert!(again.ended.is_empty(), "once");

        // B learns of the stop late, and meters the full first hour and the
        // second to the stop: 600 s at 6.00 an hour, 1.00, which the wallet
        // covers.
        p.b.set_lease_stop_at(p.a_at_b, "lse-1", stop).unwrap();
        p.b.set_rental_ending(&p.rental, None, UnixTime(stop + 120))
            .unwrap();
        p.meter(stop + 121);
        assert_eq!(p.pull(stop + 122), None);
        assert_eq!(p.a_balance(Account::Peer(p.b_at_a)), RATE + 100);
        assert_eq!(p.a_balance(Account::Wallet(p.renter)), 0);
        assert_eq!(p.a_balance(Account::Held(p.renter)), 0);
        assert_eq!(p.a_balance(Account::Receivable(p.renter)), 0);
        p.assert_agree();
    }
}

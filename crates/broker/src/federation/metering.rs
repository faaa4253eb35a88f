//! Metering the leases this broker runs for peers (as lessor): when a
//! period of a leased rental ends, the seconds its device was reachable are
//! charged at the lease's rate to the peer's ledger account, split between
//! the device's owner and this broker's fee as for a local rental, and a
//! usage record saying so is added to the peer's chain, in one transaction.
//! When the renter's access ends (stopped here, or by the peer's renter,
//! whose stop time counts even if the stop arrives late), the last period
//! is metered to that moment and an end record follows.
//!
//! Each lease is metered in its own transaction, and the records and
//! transfers name the lease and period, so a pass killed half-way and run
//! again records every period once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::billing::meter;
use crate::ledger::{Account, Currency, Transfer, TransferId};
use crate::store::{Batch, Direction, LeaseRole, Meterable, MeteredRental, Store, StoreError};
use crate::time::UnixTime;

use super::identity::KeyRing;
use super::usage::{RecordBody, RecordKind};
use super::wire::{USAGE_NEWS_PATH, UsageNews};
use crate::broker::Shared;
use crate::shutdown::Shutdown;

/// Who issues the records.
pub struct Issuer<'a> {
    /// This broker's name among peers.
    pub name: &'a str,
    pub ring: &'a KeyRing,
    /// This broker's share of what owners' devices earn.
    pub fee_percent: u8,
}

/// Time between two metering passes.
const EVERY: Duration = Duration::from_secs(2);

/// Meters the leases this broker runs every few seconds, until shutdown;
/// on its own, so a slow peer never delays it.
pub async fn run(shared: Arc<Shared>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.wait() => return,
        }
        meter(&shared).await;
    }
}

/// One metering pass now.
async fn meter(shared: &Arc<Shared>) {
    let (name, fee_percent, data_dir) = (
        shared.settings.federation.name.clone(),
        shared.settings.billing.fee_percent,
        shared.settings.data_dir.clone(),
    );
    let metered = shared
        .store
        .blocking(move |s| {
            let now = UnixTime::now();
            let leases = s.leases_to_meter().map_err(|e| e.to_string())?;
            if leases.is_empty() {
                return Ok(Metered::default());
            }
            // Read afresh, so a rotated key signs at once.
            let ring = KeyRing::load_or_create(&data_dir, now).map_err(|e| e.to_string())?;
            let issuer = Issuer {
                name: &name,
                ring: &ring,
                fee_percent,
            };
            meter_leases(s, &issuer, &leases, now).map_err(|e| e.to_string())
        })
        .await;
    match metered {
        Ok(m) => {
            for (peer, lease) in m.ended {
                tracing::info!(%peer, %lease, "a lease ended; its last usage record is issued");
            }
            if m.records > 0 {
                // News for peers may be queued.
                shared.federation.outbox_wake.notify_one();
            }
        }
        Err(e) => tracing::error!(error = %e, "metering leases failed"),
    }
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Metered {
    /// Records issued.
    pub records: usize,
    /// Leases whose end record was issued: `(peer, lease)`.
    pub ended: Vec<(String, String)>,
}

/// The id of the transfer that books period `k` of a lease with a peer
/// (the same on both sides, each in its own ledger).
pub fn period_transfer(peer_id: i64, lease: &str, k: i64) -> Result<TransferId, StoreError> {
    Ok(TransferId::derive(
        "lease",
        &[&peer_id.to_string(), lease, &k.to_string()],
    )?)
}

/// The id of the transfer that books the correction or payment numbered
/// `seq` in a peer's chain.
pub fn record_transfer(peer_id: i64, seq: i64) -> Result<TransferId, StoreError> {
    Ok(TransferId::derive(
        "peer-record",
        &[&peer_id.to_string(), &seq.to_string()],
    )?)
}

/// The id of the transfer that books a payment received from peer
/// `peer_id` under `reference`: recording it again changes nothing.
fn payment_transfer(peer_id: i64, reference: &str) -> Result<TransferId, StoreError> {
    Ok(TransferId::derive(
        "peer-paid",
        &[&peer_id.to_string(), reference],
    )?)
}

/// The clearing account of money paid between peers outside the brokers.
pub const PEERS_CLEARING: &str = "peers";

/// Meters every lease this broker runs, at `now`.
pub fn meter_at(store: &Store, issuer: &Issuer<'_>, now: UnixTime) -> Result<Metered, StoreError> {
    meter_leases(store, issuer, &store.leases_to_meter()?, now)
}

/// Meters `leases` (those this broker runs whose usage it has not
/// finished recording, as read a moment ago), at `now`.
fn meter_leases(
    store: &Store,
    issuer: &Issuer<'_>,
    leases: &[Meterable],
    now: UnixTime,
) -> Result<Metered, StoreError> {
    let linked = store.link_lessor_rentals(now)?;
    if linked > 0 {
        tracing::warn!(
            linked,
            "leases found their rentals again after an interruption"
        );
    }
    let mut metered = Metered::default();
    for m in leases {
        // Read again in the transaction: a stop may have arrived since.
        let (records, ended) =
            store.batch(|b| match b.meterable(m.lease.peer_id, &m.lease.id)? {
                Some(fresh) if !fresh.lease.usage_closed => meter_lease(b, issuer, &fresh, now),
                _ => Ok((0, false)),
            })?;
        metered.records += records;
        if ended {
            metered
                .ended
                .push((m.lease.peer.clone(), m.lease.id.clone()));
        }
    }
    Ok(metered)
}

/// When the renter's access to the lease ended, if it has: the rental's
/// stop, the peer's renter's stop, or the lease's end here.
fn access_end(m: &Meterable) -> Option<i64> {
    let lease = &m.lease;
    let started = m.rental.as_ref().map_or(lease.created_at, |r| r.started_at);
    [
        m.rental.as_ref().and_then(|r| r.access_end),
        lease.stop_at.map(|s| s.max(started)),
        lease.ended_at.filter(|_| !lease.open),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// Records the periods of one lease that ended, and its end once access
/// ended; the number of records, and whether the lease is finished.
fn meter_lease(
    b: &Batch<'_>,
    issuer: &Issuer<'_>,
    m: &Meterable,
    now: UnixTime,
) -> Result<(usize, bool), StoreError> {
    let lease = &m.lease;
    let period = lease.period_secs;
    let ends = access_end(m);
    let mut k = lease.periods_done;
    let mut records = 0;
    if let Some(rental) = &m.rental {
        if let Some(end) = ends {
            records += credit_after_end(b, issuer, m, rental, end, now)?;
        }
        loop {
            let start = rental.started_at + k * period;
            if ends.is_some_and(|e| start >= e) {
                break;
            }
            let to = ends.map_or(start + period, |e| e.min(start + period));
            if to > now.0 {
                break;
            }
            let connected = b.connected_stretches(rental.device_id, start, to, now)?;
            let unhealthy = b.unhealthy_stretches(rental.device_id, start, to, now)?;
            let reachable = meter::reachable(&connected, &unhealthy, start, to);
            let amount = meter::charge(lease.hourly_rate, reachable, period);
            book_period(b, issuer, m, k, amount, now)?;
            let body = RecordBody {
                kind: RecordKind::Usage,
                period: k,
                from: start,
                to,
                reachable_secs: reachable,
                amount,
                ..record(issuer, m, now)
            };
            issue(b, issuer, lease.peer_id, body, now)?;
            records += 1;
            k += 1;
        }
        b.set_periods_done(LeaseRole::Lessor, lease.peer_id, &lease.id, k)?;
    }
    let finished = match (&m.rental, ends) {
        (Some(rental), Some(e)) => rental.started_at + k * period >= e,
        (None, _) => !lease.open,
        (Some(_), None) => false,
    };
    if !finished {
        return Ok((records, false));
    }
    if m.rental.is_none() {
        // Its rental never started: the lease was refused, and the peer,
        // told so, expects no record of it.
        b.close_lease_usage(LeaseRole::Lessor, lease.peer_id, &lease.id)?;
        return Ok((records, true));
    }
    let reason = m
        .rental
        .as_ref()
        .and_then(|r| r.end_reason.clone())
        .or_else(|| lease.end_reason.clone())
        .unwrap_or_else(|| "the lease ended".into());
    b.end_lease(
        LeaseRole::Lessor,
        lease.peer_id,
        &lease.id,
        Some(&reason),
        now,
    )?;
    let body = RecordBody {
        kind: RecordKind::End,
        period: k,
        note: reason.chars().take(500).collect(),
        ..record(issuer, m, now)
    };
    issue(b, issuer, lease.peer_id, body, now)?;
    b.close_lease_usage(LeaseRole::Lessor, lease.peer_id, &lease.id)?;
    Ok((records + 1, true))
}

/// How a correction for time after a late stop begins its note; it marks
/// the period as corrected.
const LATE_STOP: &str = "stopped by the renter at";

/// Credits what periods already recorded charged for time after the
/// renter's access ended at `end`, which this broker learned late (a stop
/// that waited out a partition): a correction per period, issued once.
fn credit_after_end(
    b: &Batch<'_>,
    issuer: &Issuer<'_>,
    m: &Meterable,
    rental: &MeteredRental,
    end: i64,
    now: UnixTime,
) -> Result<usize, StoreError> {
    let lease = &m.lease;
    let records: Vec<RecordBody> = b
        .records_of_lease(Direction::Issued, lease.peer_id, &lease.id)?
        .iter()
        .filter_map(|body| serde_json::from_str(body).ok())
        .collect();
    let corrected: HashSet<i64> = records
        .iter()
        .filter(|r| r.kind == RecordKind::Correction && r.note.starts_with(LATE_STOP))
        .map(|r| r.period)
        .collect();
    let mut issued = 0;
    for r in records
        .iter()
        .filter(|r| r.kind == RecordKind::Usage && r.to > end && !corrected.contains(&r.period))
    {
        let to = end.max(r.from);
        let connected = b.connected_stretches(rental.device_id, r.from, to, now)?;
        let unhealthy = b.unhealthy_stretches(rental.device_id, r.from, to, now)?;
        let reachable = meter::reachable(&connected, &unhealthy, r.from, to);
        // Never more than the lease still costs (an operator may have
        // credited some of it already).
        let left = b.lease_total(Direction::Issued, lease.peer_id, &lease.id)?;
        let credit = (r.amount - meter::charge(r.rate, reachable, r.period_secs)).min(left);
        if credit <= 0 {
            continue;
        }
        let body = RecordBody {
            kind: RecordKind::Correction,
            period: r.period,
            amount: -credit,
            note: format!(
                "{LATE_STOP} {}; hour {} is charged to then",
                UnixTime(end).date_time(),
                r.period + 1
            ),
            ..record(issuer, m, now)
        };
        let seq = issue(b, issuer, lease.peer_id, body, now)?;
        let id = record_transfer(lease.peer_id, seq)?;
        let currency = Currency::parse(&lease.currency)?;
        let memo = format!(
            "hour {} of lease {} credited: stopped earlier",
            r.period + 1,
            lease.id
        );
        // Taken back from the owner and the fee as they were shared; what
        // the owner was paid out meanwhile, from the fee.
        let mut legs = vec![(Account::Peer(lease.peer_id), credit)];
        let owner_part = match rental.owner_id {
            Some(owner) => {
                let share = meter::split(credit, issuer.fee_percent).0;
                let owed = b.balance(&Account::Payable(owner), &currency)?;
                let taken = share.min(owed.max(0));
                legs.push((Account::Payable(owner), -taken));
                taken
            }
            None => 0,
        };
        legs.push((Account::Revenue, owner_part - credit));
        legs.retain(|(_, a)| *a != 0);
        b.post(&Transfer::new(id, currency, &memo, legs)?, now)?;
        issued += 1;
    }
    Ok(issued)
}

/// Credits what lease `id` of peer `peer_id` charged after its renter's
/// stop, when the stop arrived after the lease had ended here (its owner
/// ended it, say) and its records were all issued.
pub fn credit_late_stop(
    store: &Store,
    issuer: &Issuer<'_>,
    peer_id: i64,
    id: &str,
    now: UnixTime,
) -> Result<usize, StoreError> {
    store.batch(|b| match b.meterable(peer_id, id)? {
        Some(m) if m.lease.usage_closed => match (&m.rental, m.lease.stop_at) {
            (Some(rental), Some(stop)) => {
                credit_after_end(b, issuer, &m, rental, stop.max(rental.started_at), now)
            }
            _ => Ok(0),
        },
        _ => Ok(0),
    })
}

/// A record of lease `m` with nothing in it yet.
fn record(issuer: &Issuer<'_>, m: &Meterable, now: UnixTime) -> RecordBody {
    let lease = &m.lease;
    RecordBody {
        issuer: issuer.name.to_string(),
        recipient: lease.peer.clone(),
        seq: 0,
        prev: String::new(),
        lease: lease.id.clone(),
        kind: RecordKind::End,
        period: 0,
        from: 0,
        to: 0,
        reachable_secs: 0,
        period_secs: lease.period_secs,
        rate: lease.hourly_rate,
        amount: 0,
        currency: lease.currency.clone(),
        note: String::new(),
        issued_at: now.0,
    }
}

/// Numbers, chains, signs and stores `body` as the next record issued to
/// peer `peer_id`; its sequence number.
pub fn issue(
    b: &Batch<'_>,
    issuer: &Issuer<'_>,
    peer_id: i64,
    mut body: RecordBody,
    now: UnixTime,
) -> Result<i64, StoreError> {
    let (last, hash) = b.chain_tip(Direction::Issued, peer_id)?;
    body.seq = last + 1;
    body.prev = hash;
    let signed = body.seal(issuer.ring);
    b.append_record(Direction::Issued, peer_id, &body, &signed, now)?;
    if body.kind != RecordKind::Usage {
        // An end, a correction or a payment matters to the peer now: tell
        // it to pull (the hourly records wait for its next pull).
        let news = serde_json::to_string(&UsageNews { seq: body.seq }).expect("news serializes");
        let key = format!("usage-news-{peer_id}-{}", body.seq);
        b.queue_message(peer_id, (USAGE_NEWS_PATH, &news, &key), now)?;
    }
    Ok(body.seq)
}

/// Books period `k` of the lease: the peer owes `amount`, the owner earns
/// it less this broker's fee.
fn book_period(
    b: &Batch<'_>,
    issuer: &Issuer<'_>,
    m: &Meterable,
    k: i64,
    amount: i64,
    now: UnixTime,
) -> Result<(), StoreError> {
    if amount == 0 {
        return Ok(());
    }
    let lease = &m.lease;
    let owner = m.rental.as_ref().and_then(|r| r.owner_id);
    let (owner_part, fee) = match owner {
        Some(_) => meter::split(amount, issuer.fee_percent),
        None => (0, amount),
    };
    let mut legs = vec![(Account::Peer(lease.peer_id), -amount)];
    if let Some(owner) = owner {
        legs.push((Account::Payable(owner), owner_part));
    }
    legs.push((Account::Revenue, fee));
    legs.retain(|(_, a)| *a != 0);
    let transfer = Transfer::new(
        period_transfer(lease.peer_id, &lease.id, k)?,
        Currency::parse(&lease.currency)?,
        &format!(
            "hour {} of lease {} of {} to {}",
            k + 1,
            lease.id,
            lease.device,
            lease.peer
        ),
        legs,
    )?;
    b.post(&transfer, now)?;
    Ok(())
}

/// Issues a correction of `amount` (positive: the peer owes more;
/// negative: a credit) to lease `lease` of peer `peer_id`, borne by this
/// broker's revenue; its sequence number. A credit is at most what the
/// lease cost so far; a charge at most what the rate leaves for the hours
/// it had.
pub fn correct(
    store: &Store,
    issuer: &Issuer<'_>,
    peer_id: i64,
    lease: &str,
    amount: i64,
    note: &str,
    now: UnixTime,
) -> Result<Result<i64, String>, StoreError> {
    store.batch(|b| {
        let Some(found) = b.lease(LeaseRole::Lessor, peer_id, lease)? else {
            return Ok(Err(format!("no lease {lease} runs here for that peer")));
        };
        if note.starts_with(LATE_STOP) {
            return Ok(Err(format!("a reason may not begin with {LATE_STOP:?}")));
        }
        let total = b.lease_total(Direction::Issued, peer_id, lease)?;
        // A lease never costs more than its rate for each period it had.
        let most = found
            .hourly_rate
            .saturating_mul(found.periods_done.max(1))
            .saturating_sub(total);
        if amount == 0 || amount < -total || amount > most {
            return Ok(Err(format!(
                "a correction is not zero, credits at most what the lease cost so far ({}), and charges at most what its rate leaves for the hours it had ({})",
                crate::price::show_price(total),
                crate::price::show_price(most.max(0))
            )));
        }
        let m = Meterable {
            lease: found,
            rental: None,
        };
        let body = RecordBody {
            kind: RecordKind::Correction,
            period: m.lease.periods_done.saturating_sub(1).max(0),
            amount,
            note: note.chars().take(500).collect(),
            ..record(issuer, &m, now)
        };
        let seq = issue(b, issuer, peer_id, body, now)?;
        let transfer = Transfer::new(
            record_transfer(peer_id, seq)?,
            Currency::parse(&m.lease.currency)?,
            &format!("correction of lease {lease}: {}", note.chars().take(120).collect::<String>()),
            vec![(Account::Peer(peer_id), -amount), (Account::Revenue, amount)],
        )?;
        b.post(&transfer, now)?;
        Ok(Ok(seq))
    })
}

/// What became of recording a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    /// Recorded now, as record `seq`.
    Recorded(i64),
    /// A payment with this reference was recorded before.
    Already,
}

/// Records that peer `peer_id` paid `amount` (in `currency`) outside the
/// brokers, under `reference` (a bank transfer's, say): it owes that much
/// less, and a payment record tells it so. Recording the same reference
/// again changes nothing.
pub fn record_payment(
    store: &Store,
    issuer: &Issuer<'_>,
    peer: &crate::store::PeerRecord,
    amount: i64,
    reference: &str,
    now: UnixTime,
) -> Result<Payment, StoreError> {
    let currency = Currency::parse(&peer.currency)?;
    let id = payment_transfer(peer.id, reference)?;
    store.batch(|b| {
        if b.transfer_posted(&id)? {
            return Ok(Payment::Already);
        }
        let body = RecordBody {
            issuer: issuer.name.to_string(),
            recipient: peer.name.clone(),
            seq: 0,
            prev: String::new(),
            lease: String::new(),
            kind: RecordKind::Payment,
            period: 0,
            from: 0,
            to: 0,
            reachable_secs: 0,
            period_secs: 3600,
            rate: 0,
            amount: -amount,
            currency: currency.to_string(),
            note: reference.to_string(),
            issued_at: now.0,
        };
        let seq = issue(b, issuer, peer.id, body, now)?;
        let transfer = Transfer::new(
            id,
            currency,
            &format!("paid by {}: {reference}", peer.name),
            vec![
                (Account::Peer(peer.id), amount),
                (Account::Clearing(PEERS_CLEARING.into()), -amount),
            ],
        )?;
        b.post(&transfer, now)?;
        Ok(Payment::Recorded(seq))
    })
}

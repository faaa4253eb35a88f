//! One billing pass at a given moment: every decision billing makes, on the
//! store alone, with the clock passed in. What it cannot do itself (ending a
//! rental, which needs the device; mailing) it returns to the caller.
//!
//! The rentals are billed [`BATCH`] at a time, each batch in one
//! transaction; a pass killed half-way leaves whole batches, and the next
//! pass carries on (every transfer id names its rental and period).

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;

use super::meter;
use super::settings::BillingSettings;
use crate::ledger::{Account, LedgerError, Transfer, TransferId};
use crate::store::{Batch, Billable, Posted, Store, StoreError};
use crate::time::UnixTime;

/// What a pass leaves for the caller to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Rentals whose wallet could not cover a period and that have not
    /// been stopped yet: end them. A later pass names them again until
    /// their stop is recorded.
    pub to_end: Vec<ToEnd>,
    /// Renters whose wallet, after this period's hold, cannot cover the
    /// next: at most one per rental period, since a hold is placed once.
    pub low_balance: Vec<LowBalance>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToEnd {
    pub rental: RentalId,
    pub device: DeviceName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowBalance {
    pub rental: RentalId,
    /// The period just held.
    pub period: i64,
    pub device: DeviceName,
    pub renter_email: String,
    /// What the wallet holds now.
    pub left: i64,
    pub rate: i64,
}

/// Rentals billed in one transaction: few enough that the store is not
/// held for long, enough that commits do not dominate.
const BATCH: usize = 500;

/// One pass over the rentals not yet fully billed, at `now`: holds the
/// periods that began, settles the ones that ended (or that a stop cut
/// short), and records how far each rental is billed.
pub fn bill_once_at(
    store: &Store,
    settings: &BillingSettings,
    now: UnixTime,
) -> Result<Outcome, StoreError> {
    let mut outcome = Outcome::default();
    for rentals in store.rentals_to_bill()?.chunks(BATCH) {
        store.batch(|b| {
            for r in rentals {
                bill_rental(b, settings, r, now.0, &mut outcome)?;
            }
            Ok(())
        })?;
    }
    Ok(outcome)
}

fn bill_rental(
    store: &Batch<'_>,
    settings: &BillingSettings,
    r: &Billable,
    now: i64,
    outcome: &mut Outcome,
) -> Result<(), StoreError> {
    let period = settings.period.as_secs() as i64;
    let until = r.ended_at.map_or(now, |e| e.min(now));
    let mut billed = r.billed_periods;
    let mut unpaid = r.unpaid_period;
    if until > r.started_at {
        // The period under way (or the last one the rental reached).
        let last = (until - r.started_at - 1) / period;
        for k in r.billed_periods..=last {
            let start = r.started_at + k * period;
            let end = start + period;
            if end <= now || r.ended_at.is_some() {
                let access_end = r.ended_at.map_or(end, |e| e.min(end));
                let free = unpaid.is_some_and(|u| k >= u);
                if !settle(store, settings, r, k, start, access_end, free, now)? {
                    break;
                }
                billed = k + 1;
            } else if unpaid.is_some() {
                break;
            } else if !hold(store, settings, r, k, now, outcome)? {
                unpaid = Some(k);
                break;
            }
        }
    }
    if unpaid.is_some() && r.ended_at.is_none() {
        outcome.to_end.push(ToEnd {
            rental: r.id.clone(),
            device: r.device.clone(),
        });
    }
    let closed = r
        .ended_at
        .is_some_and(|e| e <= r.started_at || billed > (e.min(now) - r.started_at - 1) / period);
    store.set_billed(&r.id, billed, closed)
}

pub fn transfer_id(kind: &str, rental: &RentalId, k: i64) -> Result<TransferId, StoreError> {
    Ok(TransferId::derive(
        kind,
        &[rental.as_str(), &k.to_string()],
    )?)
}

/// Holds period `k` of the rental; false when the wallet cannot cover it
/// (recorded, so the rental ends and the period is free). A period already
/// settled (by a pass whose clock saw it end) is never held: the hold would
/// have no settlement left to release it.
fn hold(
    store: &Batch<'_>,
    settings: &BillingSettings,
    r: &Billable,
    k: i64,
    now: i64,
    outcome: &mut Outcome,
) -> Result<bool, StoreError> {
    if store.transfer_posted(&transfer_id("settle", &r.id, k)?)? {
        return Ok(true);
    }
    let transfer = Transfer::simple(
        transfer_id("hold", &r.id, k)?,
        settings.currency.clone(),
        &format!("hold for hour {} of rental {} of {}", k + 1, r.id, r.device),
        Account::Wallet(r.renter_id),
        Account::Held(r.renter_id),
        r.rate,
    )?;
    match store.post(&transfer, UnixTime(now)) {
        Ok(Posted::Already) => Ok(true),
        Ok(Posted::Now) => {
            let left = store.balance(&Account::Wallet(r.renter_id), &settings.currency)?;
            if left < r.rate {
                outcome.low_balance.push(LowBalance {
                    rental: r.id.clone(),
                    period: k,
                    device: r.device.clone(),
                    renter_email: r.renter_email.clone(),
                    left,
                    rate: r.rate,
                });
            }
            Ok(true)
        }
        Err(StoreError::Ledger(LedgerError::InsufficientFunds { .. })) => {
            tracing::info!(rental = %r.id, device = %r.device, "the renter's wallet cannot cover the hour; ending the rental");
            store.set_unpaid(&r.id, k)?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Seconds of `[from, to)` the rental's device was reachable, as known at
/// `now`.
fn reachable_secs(
    store: &Batch<'_>,
    device_id: i64,
    from: i64,
    to: i64,
    now: UnixTime,
) -> Result<i64, StoreError> {
    let connected = store.connected_stretches(device_id, from, to, now)?;
    let unhealthy = store.unhealthy_stretches(device_id, from, to, now)?;
    Ok(meter::reachable(&connected, &unhealthy, from, to))
}

/// Charges period `k` (`[start, access_end)`) for the seconds the device
/// was reachable, and releases the rest of its hold; a `free` period (the
/// wallet could not hold it) is charged nothing. False when it is left
/// for a later pass.
#[allow(clippy::too_many_arguments)]
fn settle(
    store: &Batch<'_>,
    settings: &BillingSettings,
    r: &Billable,
    k: i64,
    start: i64,
    access_end: i64,
    free: bool,
    now: i64,
) -> Result<bool, StoreError> {
    let period = settings.period.as_secs() as i64;
    let id = transfer_id("settle", &r.id, k)?;
    if store.transfer_posted(&id)? {
        return Ok(true);
    }
    let renter = r.renter_id;
    let held = store.transfer_posted(&transfer_id("hold", &r.id, k)?)?;
    let reachable = reachable_secs(store, r.device_id, start, access_end, UnixTime(now))?;
    let mut amount = if free {
        0
    } else {
        meter::charge(r.rate, reachable, period)
    };
    if !held {
        // No hold was placed for this period (billing was down when it
        // began): charge what the wallet has, never more.
        let wallet = store.balance(&Account::Wallet(renter), &settings.currency)?;
        amount = amount.min(wallet.max(0));
    }
    let (owner_part, fee) = match r.owner_id {
        Some(_) => meter::split(amount, settings.fee_percent),
        None => (0, amount),
    };
    let mut legs = Vec::new();
    if held {
        legs.push((Account::Held(renter), -r.rate));
        legs.push((Account::Wallet(renter), r.rate - amount));
    } else {
        legs.push((Account::Wallet(renter), -amount));
    }
    if let Some(owner) = r.owner_id {
        legs.push((Account::Payable(owner), owner_part));
    }
    legs.push((Account::Revenue, fee));
    legs.retain(|(_, a)| *a != 0);
    if legs.len() < 2 {
        return Ok(true);
    }
    let memo = format!(
        "hour {} of rental {} of {}: {} of {} s reachable",
        k + 1,
        r.id,
        r.device,
        reachable,
        period
    );
    let transfer = Transfer::new(id, settings.currency.clone(), &memo, legs)?;
    match store.post(&transfer, UnixTime(now)) {
        Ok(_) => {
            tracing::info!(rental = %r.id, period = k, reachable, amount, "rental period charged");
            Ok(true)
        }
        // A pass running alongside settled it first (with the wallet as it
        // saw it); the period is settled once.
        Err(StoreError::Ledger(LedgerError::Conflict(_))) => Ok(true),
        // An unheld period takes what the wallet held when read; a hold
        // taken since leaves this one for the next pass.
        Err(StoreError::Ledger(LedgerError::InsufficientFunds { .. })) if !held => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rpibroker_wire::DeviceName;

    use super::*;
    use crate::ledger::Currency;
    use crate::store::RenterTerms;

    const HOUR: i64 = 3600;
    const T0: i64 = 1_000_000;

    fn settings() -> BillingSettings {
        BillingSettings {
            enabled: true,
            currency: Currency::parse("USD").unwrap(),
            fee_percent: 10,
            period: Duration::from_secs(HOUR as u64),
        }
    }

    /// An owner's device rented at `T0` for 6.00 an hour by a renter with
    /// `wallet`; the device, owner and renter ids, and the rental's.
    fn rented(store: &Store, wallet: i64) -> (i64, i64, i64, RentalId) {
        let owner = store
            .add_user("o@example.org", "h", false, UnixTime(0))
            .unwrap()
            .id;
        let renter = store
            .add_user("r@example.org", "h", false, UnixTime(0))
            .unwrap()
            .id;
        let name = DeviceName::parse("pi").unwrap();
        let device = store
            .add_owned_device(&name, "h", owner, i64::MAX, UnixTime(0))
            .unwrap()
            .id;
        store.set_listing(device, true, Some(600)).unwrap();
        store.set_online(device, UnixTime(T0)).unwrap();
        let credit = Transfer::simple(
            TransferId::parse("topup:test:1").unwrap(),
            settings().currency,
            "",
            Account::Clearing("test".into()),
            Account::Wallet(renter),
            wallet,
        )
        .unwrap();
        store.post(&credit, UnixTime(0)).unwrap();
        let id = RentalId::parse("rnt-1").unwrap();
        let terms = RenterTerms {
            renter_id: renter,
            hourly_rate: Some(600),
            max_open: 10,
            billed: true,
        };
        store
            .begin_rental(device, &id, &[], Some(terms), UnixTime(T0))
            .unwrap();
        store.set_rental_active(&id, "renter").unwrap();
        (device, owner, renter, id)
    }

    fn memory() -> Store {
        Store::open(std::path::Path::new(":memory:")).unwrap()
    }

    #[test]
    fn twenty_minutes_unreachable_of_an_hour_cost_forty() {
        let usd = settings().currency;
        for sandbox_down in [true, false] {
            let store = memory();
            let (device, owner, renter, _) = rented(&store, 10_000);
            bill_once_at(&store, &settings(), UnixTime(T0 + 10)).unwrap();
            assert_eq!(store.balance(&Account::Held(renter), &usd).unwrap(), 600);
            // Down from minute 10 to minute 30: the sandbox failed, or the
            // tunnel dropped.
            if sandbox_down {
                store
                    .set_sandbox(device, "failed", None, UnixTime(T0 + 600))
                    .unwrap();
                store
                    .set_sandbox(device, "rented", None, UnixTime(T0 + 1800))
                    .unwrap();
            } else {
                store.set_offline(device, UnixTime(T0 + 600)).unwrap();
                store.set_online(device, UnixTime(T0 + 1800)).unwrap();
            }
            bill_once_at(&store, &settings(), UnixTime(T0 + HOUR + 5)).unwrap();
            let revenue = store.balance(&Account::Revenue, &usd).unwrap();
            let payable = store.balance(&Account::Payable(owner), &usd).unwrap();
            assert_eq!((payable, revenue), (360, 40), "40 minutes of 6.00 an hour");
            assert_eq!(
                store.balance(&Account::Wallet(renter), &usd).unwrap(),
                10_000 - 400 - 600,
                "the first hour's rest released, the second held"
            );
        }
    }

    /// A pass that read the rental before another pass (with a later
    /// clock) settled the period unheld does not hold that period after:
    /// nothing would ever release such a hold.
    #[test]
    fn a_period_settled_already_is_never_held() {
        let store = memory();
        let usd = settings().currency;
        let (_, owner, renter, id) = rented(&store, 10_000);
        let stale = store.rentals_to_bill().unwrap();
        bill_once_at(&store, &settings(), UnixTime(T0 + HOUR + 5)).unwrap();
        assert_eq!(store.balance(&Account::Held(renter), &usd).unwrap(), 600);
        store
            .batch(|b| {
                let mut out = Outcome::default();
                for r in &stale {
                    bill_rental(b, &settings(), r, T0 + 10, &mut out)?;
                }
                Ok(())
            })
            .unwrap();
        assert!(
            !store
                .transfer_posted(&transfer_id("hold", &id, 0).unwrap())
                .unwrap(),
            "the first hour was settled unheld"
        );
        assert_eq!(
            store.balance(&Account::Held(renter), &usd).unwrap(),
            600,
            "only the second hour is held"
        );
        assert_eq!(
            store.balance(&Account::Wallet(renter), &usd).unwrap(),
            10_000 - 600 - 600
        );
        assert_eq!(store.balance(&Account::Payable(owner), &usd).unwrap(), 540);
        assert!(store.ledger_problems().unwrap().is_empty());
    }

    #[test]
    fn an_hour_the_wallet_cannot_hold_ends_the_rental_and_is_free() {
        let store = memory();
        let usd = settings().currency;
        let (_, _, renter, id) = rented(&store, 900);
        let first = bill_once_at(&store, &settings(), UnixTime(T0 + 1)).unwrap();
        assert!(first.to_end.is_empty());
        assert_eq!(first.low_balance.len(), 1, "300 left, less than an hour");
        assert_eq!(first.low_balance[0].left, 300);
        // The second hour cannot be held: the rental is to end, and each
        // pass says so until it has ended.
        for at in [T0 + HOUR + 1, T0 + HOUR + 2, T0 + HOUR + 3] {
            let out = bill_once_at(&store, &settings(), UnixTime(at)).unwrap();
            assert_eq!(out.to_end.len(), 1);
            assert_eq!(out.to_end[0].rental, id);
            assert!(out.low_balance.is_empty(), "one warning per hour");
        }
        store
            .set_rental_ending(&id, None, UnixTime(T0 + HOUR + 900))
            .unwrap();
        store.end_rental(&id, UnixTime(T0 + HOUR + 950)).unwrap();
        let last = bill_once_at(&store, &settings(), UnixTime(T0 + HOUR + 1000)).unwrap();
        assert_eq!(last, Outcome::default());
        // The first hour charged in full; the 15 minutes of the second free.
        assert_eq!(store.balance(&Account::Wallet(renter), &usd).unwrap(), 300);
        assert_eq!(store.balance(&Account::Held(renter), &usd).unwrap(), 0);
        assert!(store.rental_billing("rnt-1").unwrap().unwrap().closed);
        let usage = super::super::usage::usage_at(
            &store,
            &settings(),
            &store.rental_billing("rnt-1").unwrap().unwrap(),
            UnixTime(T0 + 2 * HOUR),
        )
        .unwrap();
        let states: Vec<_> = usage
            .periods
            .iter()
            .map(|p| {
                (
                    p.period,
                    p.state.as_str(),
                    p.charged_cents,
                    p.released_cents,
                )
            })
            .collect();
        assert_eq!(states, vec![(2, "unpaid", 0, 0), (1, "charged", 600, 0)]);
        assert_eq!(usage.periods[1].reachable_minutes, 60);
    }
}

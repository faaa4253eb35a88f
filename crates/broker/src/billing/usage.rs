//! What a renter paid for each period (hour) of a rental, and why: how long
//! the device was reachable in it, the agreed rate, what was charged and
//! what released from the hold, from the ledger and the same stretches
//! billing reads.

use serde::Serialize;

use super::meter;
use super::settings::BillingSettings;
use crate::store::{RentalBilling, Store, StoreError};
use crate::time::UnixTime;

/// Periods shown at most (the latest; a week of hours).
pub const MAX_PERIODS: i64 = 168;

/// Where a period's billing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodState {
    /// A period's rate is held from the wallet; it is charged when it ends.
    Held,
    /// Charged for its reachable time; the rest of the hold released.
    Charged,
    /// The wallet could not hold it: the rental ended, and it is free.
    Unpaid,
    /// Nothing was charged (billing was off, or nothing was reachable
    /// without a hold).
    Free,
    /// Not billed yet.
    Pending,
}

impl PeriodState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodState::Held => "held",
            PeriodState::Charged => "charged",
            PeriodState::Unpaid => "unpaid",
            PeriodState::Free => "free",
            PeriodState::Pending => "pending",
        }
    }
}

/// One period of a rental.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodUsage {
    /// 1 for the first hour.
    pub period: i64,
    pub start: i64,
    pub end: i64,
    /// Seconds the device was reachable in the period (so far, while it
    /// runs), and the same in whole minutes.
    pub reachable_secs: i64,
    pub reachable_minutes: i64,
    pub rate_cents: i64,
    /// Held from the wallet for the period, if it was.
    pub held_cents: i64,
    pub charged_cents: i64,
    pub released_cents: i64,
    pub state: PeriodState,
}

/// A rental's usage, newest period first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub rental: String,
    pub device: String,
    pub currency: String,
    pub period_secs: i64,
    pub rate_cents: i64,
    /// All that was charged for the periods listed.
    pub charged_cents: i64,
    pub periods: Vec<PeriodUsage>,
}

/// The usage of `rental` at `now`, newest period first (at most
/// [`MAX_PERIODS`]).
pub fn usage_at(
    store: &Store,
    settings: &BillingSettings,
    rental: &RentalBilling,
    now: UnixTime,
) -> Result<Usage, StoreError> {
    let period = settings.period.as_secs() as i64;
    let until = rental.ended_at.map_or(now.0, |e| e.min(now.0));
    let legs = store.rental_legs(&rental.id)?;
    let mut periods = Vec::new();
    if until > rental.started_at {
        let last = (until - rental.started_at - 1) / period;
        for k in (0.max(last - MAX_PERIODS + 1)..=last).rev() {
            let start = rental.started_at + k * period;
            let end = start + period;
            let access_end = end.min(until);
            let connected = store.connected_stretches(rental.device_id, start, access_end, now)?;
            let unhealthy = store.unhealthy_stretches(rental.device_id, start, access_end, now)?;
            let reachable = meter::reachable(&connected, &unhealthy, start, access_end);
            let sum = |kind: &str, accounts: &[&str]| -> Option<i64> {
                let mine = legs
                    .iter()
                    .filter(|l| l.kind == kind && l.period == k)
                    .collect::<Vec<_>>();
                (!mine.is_empty()).then(|| {
                    mine.iter()
                        .filter(|l| accounts.contains(&l.account.as_str()))
                        .map(|l| l.amount)
                        .sum()
                })
            };
            let held = sum("hold", &["held"]);
            let settled = sum("settle", &["payable", "revenue"]);
            let released = sum("settle", &["wallet"]).unwrap_or(0).max(0);
            let state = if settled.is_some() {
                PeriodState::Charged
            } else if held.is_some() {
                PeriodState::Held
            } else if rental.unpaid_period.is_some_and(|u| k >= u) {
                PeriodState::Unpaid
            } else if rental.closed || k < rental.billed_periods {
                PeriodState::Free
            } else {
                PeriodState::Pending
            };
            periods.push(PeriodUsage {
                period: k + 1,
                start,
                end,
                reachable_secs: reachable,
                reachable_minutes: reachable / 60,
                rate_cents: rental.rate,
                held_cents: held.unwrap_or(0),
                charged_cents: settled.unwrap_or(0),
                released_cents: released,
                state,
            });
        }
    }
    Ok(Usage {
        rental: rental.id.to_string(),
        device: rental.device.clone(),
        currency: settings.currency.to_string(),
        period_secs: period,
        rate_cents: rental.rate,
        charged_cents: periods.iter().map(|p| p.charged_cents).sum(),
        periods,
    })
}

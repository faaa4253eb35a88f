//! An owner's earnings, from the ledger: what the broker owes them, what
//! their devices earned per day and per payout period, their payouts, and
//! where they want to be paid.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::Actor;
use crate::broker::Shared;
use crate::ledger::Account;
use crate::payouts::method::{MethodError, PayoutMethod};
use crate::store::{PayoutRecord, PayoutState, StoreError};
use crate::time::UnixTime;

/// Days of earnings shown per day.
pub const DAYS: i64 = 31;
/// Payout periods of earnings shown per period.
pub const PERIODS: i64 = 12;
/// Payouts listed.
const PAYOUTS: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum EarningsError {
    #[error("this account is suspended")]
    Suspended,
    #[error("this broker does not pay owners out yet")]
    PayoutsOff,
    #[error("this broker does not pay out through PayPal; give a crypto address")]
    PaypalOff,
    #[error(transparent)]
    BadMethod(#[from] MethodError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one device earned in one day or payout period (`from` is its
/// first day, UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceEarning {
    pub from: String,
    /// The device's name; `null` when the device was removed since.
    pub device: Option<String>,
    pub currency: String,
    /// In minor units.
    pub amount: i64,
}

/// An amount of one currency, in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Amount {
    pub currency: String,
    pub amount: i64,
}

/// How this broker pays owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Terms {
    pub enabled: bool,
    pub period_secs: u64,
    /// Smaller balances wait for a later period; in minor units.
    pub minimum: i64,
    /// Methods an owner may choose.
    pub methods: Vec<&'static str>,
}

/// Everything the earnings page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Earnings {
    /// Owed to the owner now, per currency.
    pub payable: Vec<Amount>,
    /// Sent and not yet confirmed, per currency.
    pub in_flight: Vec<Amount>,
    pub method: Option<PayoutMethod>,
    pub terms: Terms,
    /// Per device and day, the last [`DAYS`] days, newest first.
    pub by_day: Vec<DeviceEarning>,
    /// Per device and payout period, the last [`PERIODS`], newest first.
    pub by_period: Vec<DeviceEarning>,
    pub payouts: Vec<PayoutRecord>,
}

fn terms(shared: &Shared) -> Terms {
    let p = &shared.settings.payouts;
    let mut methods = Vec::new();
    if p.enabled {
        if p.paypal {
            methods.push("paypal");
        }
        methods.push("crypto");
    }
    Terms {
        enabled: p.enabled,
        period_secs: p.period.as_secs(),
        minimum: p.minimum,
        methods,
    }
}

/// The rental a charge's transfer id (`settle:<rental>:<period>`) names.
fn rental_of(transfer: &str) -> Option<&str> {
    let rest = transfer.strip_prefix("settle:")?;
    rest.rsplit_once(':').map(|(rental, _)| rental)
}

/// The signed-in owner's earnings.
pub async fn earnings(shared: &Arc<Shared>, actor: Actor) -> Result<Earnings, EarningsError> {
    let owner = actor.id;
    let period = shared.settings.payouts.period.as_secs() as i64;
    let now = UnixTime::now().0;
    let since_day = (now / 86_400 - (DAYS - 1)) * 86_400;
    let since_period = (now / period - (PERIODS - 1)) * period;
    let since = since_day.min(since_period);
    let (balances, credits, rentals, payouts, method) = shared
        .store
        .blocking(move |s| -> Result<_, StoreError> {
            Ok((
                s.balances_of_user(owner)?,
                s.earnings_of(owner, since)?,
                s.rental_devices_of_owner(owner)?,
                s.payouts_of_owner(owner, PAYOUTS)?,
                s.payout_method(owner)?,
            ))
        })
        .await?;
    let payable = balances
        .into_iter()
        .filter(|(a, _, _)| matches!(a, Account::Payable(_)))
        .map(|(_, c, amount)| Amount {
            currency: c.to_string(),
            amount,
        })
        .collect();
    let mut in_flight: BTreeMap<String, i64> = BTreeMap::new();
    for p in payouts.iter().filter(|p| p.state == PayoutState::Sent) {
        *in_flight.entry(p.currency.clone()).or_default() += p.amount;
    }
    let mut by_day: BTreeMap<(i64, Option<String>, String), i64> = BTreeMap::new();
    let mut by_period: BTreeMap<(i64, Option<String>, String), i64> = BTreeMap::new();
    for c in &credits {
        let device = rental_of(&c.transfer).and_then(|r| rentals.get(r)).cloned();
        if c.at >= since_day {
            *by_day
                .entry((c.at / 86_400 * 86_400, device.clone(), c.currency.clone()))
                .or_default() += c.amount;
        }
        if c.at >= since_period {
            *by_period
                .entry((c.at / period * period, device, c.currency.clone()))
                .or_default() += c.amount;
        }
    }
    let rows = |m: BTreeMap<(i64, Option<String>, String), i64>| -> Vec<DeviceEarning> {
        m.into_iter()
            .rev()
            .map(|((from, device, currency), amount)| DeviceEarning {
                from: UnixTime(from).date(),
                device,
                currency,
                amount,
            })
            .collect()
    };
    Ok(Earnings {
        payable,
        in_flight: in_flight
            .into_iter()
            .map(|(currency, amount)| Amount { currency, amount })
            .collect(),
        method,
        terms: terms(shared),
        by_day: rows(by_day),
        by_period: rows(by_period),
        payouts,
    })
}

/// Sets where the owner is paid (`kind` `paypal` or `crypto`), or with
/// kind `none` stops payouts to them.
pub async fn set_method(
    shared: &Arc<Shared>,
    actor: Actor,
    kind: &str,
    destination: &str,
) -> Result<Option<PayoutMethod>, EarningsError> {
    if actor.suspended {
        return Err(EarningsError::Suspended);
    }
    let settings = &shared.settings.payouts;
    if !settings.enabled {
        return Err(EarningsError::PayoutsOff);
    }
    let method = match kind {
        "none" => None,
        "paypal" if !settings.paypal => return Err(EarningsError::PaypalOff),
        _ => Some(PayoutMethod::parse(kind, destination)?),
    };
    let (owner, saved) = (actor.id, method.clone());
    shared
        .store
        .blocking(move |s| s.set_payout_method(owner, saved.as_ref(), UnixTime::now()))
        .await?;
    tracing::info!(
        user = owner,
        method = method.as_ref().map_or("none", PayoutMethod::kind),
        "payout method set"
    );
    Ok(method)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_charge_names_its_rental() {
        assert_eq!(super::rental_of("settle:rnt-1f:7"), Some("rnt-1f"));
        assert_eq!(super::rental_of("hold:rnt-1f:7"), None);
    }
}

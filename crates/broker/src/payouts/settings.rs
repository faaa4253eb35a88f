//! The `[payouts]` table of the config file.
//!
//! Payouts are off unless the operator turns them on. Each payout period
//! (a week unless set) the owners whose payable balance reached the minimum
//! are paid what they are owed: by PayPal Payouts automatically when
//! `paypal = true` (and PayPal is configured), by the operator's own
//! transfers for crypto addresses (`rpibroker admin payouts export`).

use std::time::Duration;

use serde::Deserialize;

/// The `[payouts]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePayouts {
    pub enabled: Option<bool>,
    /// Seconds per payout period; a week unless set (tests shorten it).
    pub period_secs: Option<u64>,
    /// The least an owner is paid out, like "10.00"; smaller balances wait
    /// for a later period.
    pub minimum: Option<String>,
    /// Pay owners who chose PayPal through PayPal Payouts.
    pub paypal: Option<bool>,
}

/// Payouts, resolved.
#[derive(Debug, Clone)]
pub struct PayoutSettings {
    pub enabled: bool,
    pub period: Duration,
    /// In minor units of each currency.
    pub minimum: i64,
    pub paypal: bool,
}

/// A week.
const WEEK: u64 = 7 * 86_400;

pub fn resolve(file: FilePayouts) -> anyhow::Result<PayoutSettings> {
    let period = file.period_secs.unwrap_or(WEEK);
    anyhow::ensure!(
        (1..=366 * 86_400).contains(&period),
        "payouts.period_secs is from 1 to a year (31622400)"
    );
    let minimum = crate::price::parse_price(file.minimum.as_deref().unwrap_or("10.00"))
        .map_err(|e| anyhow::anyhow!("payouts.minimum: {e}"))?;
    anyhow::ensure!(minimum > 0, "payouts.minimum must be more than zero");
    Ok(PayoutSettings {
        enabled: file.enabled.unwrap_or(false),
        period: Duration::from_secs(period),
        minimum,
        paypal: file.paypal.unwrap_or(false),
    })
}

impl PayoutSettings {
    /// The last payout period that has ended at `now` (periods count from
    /// the Unix epoch), or `None` before the first has ended.
    pub fn last_ended_period(&self, now: i64) -> Option<i64> {
        let len = self.period.as_secs() as i64;
        let current = now.max(0) / len;
        (current > 0).then_some(current - 1)
    }

    /// Start and end (exclusive) of period `k`, in Unix seconds.
    pub fn bounds(&self, k: i64) -> (i64, i64) {
        let len = self.period.as_secs() as i64;
        (k * len, (k + 1) * len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payouts_are_off_weekly_and_from_ten_unless_set() {
        let p = resolve(FilePayouts::default()).unwrap();
        assert!(!p.enabled && !p.paypal);
        assert_eq!(p.period, Duration::from_secs(WEEK));
        assert_eq!(p.minimum, 1000);
        assert_eq!(p.last_ended_period(WEEK as i64 * 3 + 5), Some(2));
        assert_eq!(p.last_ended_period(5), None);
        assert_eq!(p.bounds(2), (2 * WEEK as i64, 3 * WEEK as i64));
        for bad in [
            FilePayouts {
                period_secs: Some(0),
                ..FilePayouts::default()
            },
            FilePayouts {
                minimum: Some("0".into()),
                ..FilePayouts::default()
            },
            FilePayouts {
                minimum: Some("1.234".into()),
                ..FilePayouts::default()
            },
        ] {
            assert!(resolve(bad).is_err());
        }
    }
}

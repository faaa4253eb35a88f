//! The `[billing]` table of the config file.
//!
//! Billing is on unless the operator turns it off (`enabled = false`, for
//! a broker whose devices are free to use): renters pay for rented time
//! from wallets they top up through the payment providers of `[payments]`,
//! or that the operator credits (`rpibroker admin credit`).

use std::time::Duration;

use serde::Deserialize;

use crate::ledger::Currency;

/// The `[billing]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBilling {
    pub enabled: Option<bool>,
    pub currency: Option<String>,
    pub fee_percent: Option<u8>,
    /// The billing period; an hour unless set (tests shorten it).
    pub period_secs: Option<u64>,
}

/// Billing, resolved.
#[derive(Debug, Clone)]
pub struct BillingSettings {
    pub enabled: bool,
    pub currency: Currency,
    /// The broker's share of every charge.
    pub fee_percent: u8,
    /// Rentals are held for and charged per period (an hour).
    pub period: Duration,
}

impl BillingSettings {
    /// How often a rented sandbox is asked for its state: a hundred and
    /// twentieth of the period (30 s of an hour), from 1 to 30 s.
    pub fn health_every(&self) -> Duration {
        (self.period / 120).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

pub fn resolve(file: FileBilling) -> anyhow::Result<BillingSettings> {
    let currency = Currency::parse(file.currency.as_deref().unwrap_or("USD"))?;
    let fee_percent = file.fee_percent.unwrap_or(10);
    anyhow::ensure!(
        fee_percent <= 100,
        "billing.fee_percent is a percentage from 0 to 100"
    );
    let period = file.period_secs.unwrap_or(3600);
    anyhow::ensure!(
        (1..=86_400).contains(&period),
        "billing.period_secs is from 1 to 86400"
    );
    Ok(BillingSettings {
        enabled: file.enabled.unwrap_or(true),
        currency,
        fee_percent,
        period: Duration::from_secs(period),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_is_on_hourly_and_ten_percent_unless_set() {
        let b = resolve(FileBilling::default()).unwrap();
        assert!(b.enabled);
        assert_eq!((b.currency.as_str(), b.fee_percent), ("USD", 10));
        assert_eq!(b.period, Duration::from_secs(3600));
        assert_eq!(b.health_every(), Duration::from_secs(30));
        let bad = |f: FileBilling| resolve(f).is_err();
        assert!(bad(FileBilling {
            fee_percent: Some(101),
            ..FileBilling::default()
        }));
        assert!(bad(FileBilling {
            currency: Some("usd".into()),
            ..FileBilling::default()
        }));
        assert!(bad(FileBilling {
            period_secs: Some(0),
            ..FileBilling::default()
        }));
    }
}

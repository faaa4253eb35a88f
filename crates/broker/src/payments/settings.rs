//! The `[payments]` table of the config file: which payment providers
//! renters may top up through, and how often pending top-ups are checked.
//!
//! Secrets (PayPal's client secret, BTCPay's API key and webhook secret)
//! never sit in the config file itself: each comes from a file named there
//! or from an environment variable, and prints as `MASKED`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::mail::settings::Secret;

use super::btcpay::{BtcpaySettings, FileBtcpay};
use super::paypal::settings::{FilePaypal, PaypalSettings};

/// Longest secret file read.
const MAX_SECRET_FILE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PaymentSettingsError {
    #[error("reading {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is larger than {MAX_SECRET_FILE} bytes; it should hold only the secret")]
    FileTooLarge(PathBuf),
    #[error("{0} is empty")]
    Empty(PathBuf),
    #[error("{what} is missing: set {key} in the config file or the {env} environment variable")]
    MissingSecret {
        what: &'static str,
        key: &'static str,
        env: &'static str,
    },
    #[error("{key} is missing")]
    Missing { key: &'static str },
    #[error("{key} {value:?} must start with http:// or https://")]
    BadUrl { key: &'static str, value: String },
    #[error("{key} {value:?} is not valid: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The `[payments]` table; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePayments {
    /// How often pending top-ups are checked with their provider.
    pub reconcile_every_secs: Option<u64>,
    /// A PayPal order the renter has not approved this long after it was
    /// made is given up (BTCPay invoices expire by themselves).
    pub expire_after_secs: Option<u64>,
    pub paypal: Option<FilePaypal>,
    pub btcpay: Option<FileBtcpay>,
}

/// Payment settings, resolved.
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    pub reconcile_every: Duration,
    pub expire_after: Duration,
    pub paypal: Option<PaypalSettings>,
    pub btcpay: Option<BtcpaySettings>,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            reconcile_every: Duration::from_secs(300),
            expire_after: Duration::from_secs(3 * 86_400),
            paypal: None,
            btcpay: None,
        }
    }
}

pub fn resolve(file: FilePayments) -> Result<PaymentSettings, PaymentSettingsError> {
    let default = PaymentSettings::default();
    let secs = |key, v: Option<u64>, default: Duration| match v {
        None => Ok(default),
        Some(s) if (1..=30 * 86_400).contains(&s) => Ok(Duration::from_secs(s)),
        Some(s) => Err(PaymentSettingsError::Invalid {
            key,
            value: s.to_string(),
            why: "it is from 1 to 2592000 seconds",
        }),
    };
    Ok(PaymentSettings {
        reconcile_every: secs(
            "payments.reconcile_every_secs",
            file.reconcile_every_secs,
            default.reconcile_every,
        )?,
        expire_after: secs(
            "payments.expire_after_secs",
            file.expire_after_secs,
            default.expire_after,
        )?,
        paypal: file
            .paypal
            .map(super::paypal::settings::resolve)
            .transpose()?,
        btcpay: file.btcpay.map(super::btcpay::resolve).transpose()?,
    })
}

/// Reads a secret from `file` if given, else from environment variable `env`.
pub fn secret(
    file: Option<&Path>,
    env: &'static str,
    what: &'static str,
    key: &'static str,
) -> Result<Secret, PaymentSettingsError> {
    if let Some(path) = file {
        let read = |source| PaymentSettingsError::ReadFile {
            path: path.to_path_buf(),
            source,
        };
        if std::fs::metadata(path).map_err(read)?.len() > MAX_SECRET_FILE {
            return Err(PaymentSettingsError::FileTooLarge(path.to_path_buf()));
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let text = text.trim();
        if text.is_empty() {
            return Err(PaymentSettingsError::Empty(path.to_path_buf()));
        }
        return Ok(Secret::new(text.to_string()));
    }
    std::env::var(env)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .map(Secret::new)
        .ok_or(PaymentSettingsError::MissingSecret { what, key, env })
}

/// A provider's base URL without its trailing slash.
pub fn base_url(key: &'static str, value: String) -> Result<String, PaymentSettingsError> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.trim_end_matches('/').to_string())
    } else {
        Err(PaymentSettingsError::BadUrl { key, value })
    }
}

/// A required plain setting.
pub fn required(key: &'static str, value: Option<String>) -> Result<String, PaymentSettingsError> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or(PaymentSettingsError::Missing { key })
}

/// A request timeout in seconds (default 20).
pub fn timeout(key: &'static str, v: Option<u64>) -> Result<Duration, PaymentSettingsError> {
    match v.unwrap_or(20) {
        s @ 1..=300 => Ok(Duration::from_secs(s)),
        s => Err(PaymentSettingsError::Invalid {
            key,
            value: s.to_string(),
            why: "it is from 1 to 300 seconds",
        }),
    }
}

//! The `[payments.paypal]` table: which PayPal REST app the broker uses.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::payments::settings::{
    PaymentSettingsError, Secret, base_url, required, secret, timeout,
};

/// PayPal's live REST API.
pub const LIVE_API: &str = "https://api-m.paypal.com";
/// Where the client secret comes from when no file is named.
pub const SECRET_ENV: &str = "RPIBROKER_PAYPAL_CLIENT_SECRET";

/// The `[payments.paypal]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePaypal {
    /// `https://api-m.sandbox.paypal.com` for PayPal's sandbox.
    pub base_url: Option<String>,
    pub client_id: Option<String>,
    /// A file holding the client secret (else `RPIBROKER_PAYPAL_CLIENT_SECRET`).
    pub client_secret_file: Option<PathBuf>,
    /// The id PayPal gave the webhook pointing at `/webhooks/paypal`.
    pub webhook_id: Option<String>,
    pub timeout_secs: Option<u64>,
}

/// PayPal settings, resolved.
#[derive(Debug, Clone)]
pub struct PaypalSettings {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub webhook_id: String,
    /// Longest any one call to PayPal may take.
    pub timeout: Duration,
}

pub fn resolve(file: FilePaypal) -> Result<PaypalSettings, PaymentSettingsError> {
    Ok(PaypalSettings {
        base_url: base_url(
            "payments.paypal.base_url",
            file.base_url.unwrap_or_else(|| LIVE_API.to_string()),
        )?,
        client_id: required("payments.paypal.client_id", file.client_id)?,
        client_secret: secret(
            file.client_secret_file.as_deref(),
            SECRET_ENV,
            "PayPal's client secret",
            "payments.paypal.client_secret_file",
        )?,
        webhook_id: required("payments.paypal.webhook_id", file.webhook_id)?,
        timeout: timeout("payments.paypal.timeout_secs", file.timeout_secs)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_comes_from_a_file_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cr3t-value\n").unwrap();
        let s = resolve(FilePaypal {
            client_id: Some("app".into()),
            client_secret_file: Some(path),
            webhook_id: Some("WH-1".into()),
            ..FilePaypal::default()
        })
        .unwrap();
        assert_eq!(s.base_url, LIVE_API);
        assert_eq!(s.client_secret.expose(), "s3cr3t-value");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let missing = resolve(FilePaypal {
            client_id: Some("app".into()),
            client_secret_file: Some(dir.path().join("absent")),
            webhook_id: Some("WH-1".into()),
            ..FilePaypal::default()
        });
        assert!(missing.is_err());
    }
}

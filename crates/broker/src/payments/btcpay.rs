//! BTCPay Server (Greenfield API): renters' top-ups as invoices of the
//! operator's store, paid in crypto.
//!
//! The broker creates an invoice for the top-up's amount and sends the
//! renter to its `checkoutLink`. BTCPay tells the broker about the invoice
//! through webhooks signed with `BTCPay-Sig: sha256=<HMAC of the body>`;
//! only `InvoiceSettled` credits the wallet. Reconciliation reads the
//! invoice when a webhook was lost.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderMap;
use serde::Deserialize;

use super::http::{HttpError, client, read_body};
use super::settings::{PaymentSettingsError, Secret, base_url, required, secret, timeout};
use super::signature::{constant_time_eq, hmac_sha256};
use super::{Checkout, PaymentState};
use crate::price::show_price;
use crate::store::TopupRecord;

/// Where the API key comes from when no file is named.
pub const API_KEY_ENV: &str = "RPIBROKER_BTCPAY_API_KEY";
/// Where the webhook secret comes from when no file is named.
pub const WEBHOOK_SECRET_ENV: &str = "RPIBROKER_BTCPAY_WEBHOOK_SECRET";

/// The `[payments.btcpay]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBtcpay {
    /// The BTCPay Server, e.g. `https://pay.example.org`.
    pub base_url: Option<String>,
    pub store_id: Option<String>,
    /// A file holding a Greenfield API key with the
    /// `btcpay.store.cancreateinvoice` and `btcpay.store.canviewinvoices`
    /// permissions (else `RPIBROKER_BTCPAY_API_KEY`).
    pub api_key_file: Option<PathBuf>,
    /// A file holding the secret of the store's webhook pointing at
    /// `/webhooks/btcpay` (else `RPIBROKER_BTCPAY_WEBHOOK_SECRET`).
    pub webhook_secret_file: Option<PathBuf>,
    pub timeout_secs: Option<u64>,
}

/// BTCPay settings, resolved.
#[derive(Debug, Clone)]
pub struct BtcpaySettings {
    pub base_url: String,
    pub store_id: String,
    pub api_key: Secret,
    pub webhook_secret: Secret,
    pub timeout: Duration,
}

pub fn resolve(file: FileBtcpay) -> Result<BtcpaySettings, PaymentSettingsError> {
    let store_id = required("payments.btcpay.store_id", file.store_id)?;
    if !store_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(PaymentSettingsError::Invalid {
            key: "payments.btcpay.store_id",
            value: store_id,
            why: "a store id is letters and digits",
        });
    }
    Ok(BtcpaySettings {
        base_url: base_url(
            "payments.btcpay.base_url",
            required("payments.btcpay.base_url", file.base_url)?,
        )?,
        store_id,
        api_key: secret(
            file.api_key_file.as_deref(),
            API_KEY_ENV,
            "BTCPay's API key",
            "payments.btcpay.api_key_file",
        )?,
        webhook_secret: secret(
            file.webhook_secret_file.as_deref(),
            WEBHOOK_SECRET_ENV,
            "BTCPay's webhook secret",
            "payments.btcpay.webhook_secret_file",
        )?,
        timeout: timeout("payments.btcpay.timeout_secs", file.timeout_secs)?,
    })
}

/// Whether `headers` carry a `BTCPay-Sig` that is the HMAC of `body` under
/// the webhook secret.
pub fn signature_valid(secret: &Secret, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(given) = headers
        .get("btcpay-sig")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
    else {
        return false;
    };
    constant_time_eq(&given, &hmac_sha256(secret.expose().as_bytes(), body))
}

/// An invoice as BTCPay shows it (only the fields the broker reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub checkout_link: Option<String>,
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    /// `None`, `PaidPartial`, `PaidLate`, `PaidOver`, `Marked`, `Invalid`.
    #[serde(default)]
    pub additional_status: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BtcpayError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("BTCPay Server answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("BTCPay Server's answer could not be read: {0}")]
    BadAnswer(String),
}

impl From<reqwest::Error> for BtcpayError {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(HttpError::Transport(e))
    }
}

/// Whether `id` can be a BTCPay invoice id in a URL path.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A Greenfield API client for one store.
pub struct BtcpayClient {
    http: reqwest::Client,
    settings: BtcpaySettings,
}

impl BtcpayClient {
    pub fn new(settings: BtcpaySettings) -> Result<Self, BtcpayError> {
        Ok(Self {
            http: client(settings.timeout)?,
            settings,
        })
    }

    pub fn settings(&self) -> &BtcpaySettings {
        &self.settings
    }

    fn invoices_url(&self) -> String {
        format!(
            "{}/api/v1/stores/{}/invoices",
            self.settings.base_url, self.settings.store_id
        )
    }

    /// Creates the invoice for `topup`; the renter pays at its checkout
    /// link and is sent back to `redirect_url`.
    pub async fn create_invoice(
        &self,
        topup: &TopupRecord,
        redirect_url: &str,
    ) -> Result<Checkout, BtcpayError> {
        let body = serde_json::json!({
            "amount": show_price(topup.amount),
            "currency": topup.currency.as_str(),
            "metadata": {
                "orderId": topup.id,
                "itemDesc": "Wallet top-up",
            },
            "checkout": {
                "redirectURL": redirect_url,
                "redirectAutomatically": true,
            },
        });
        let response = self
            .http
            .post(self.invoices_url())
            .header(
                "authorization",
                format!("token {}", self.settings.api_key.expose()),
            )
            .json(&body)
            .send()
            .await?;
        let invoice: Invoice = parse(response).await?;
        let url = invoice
            .checkout_link
            .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
            .ok_or_else(|| BtcpayError::BadAnswer("the invoice has no checkout link".into()))?;
        if !valid_id(&invoice.id) {
            return Err(BtcpayError::BadAnswer("the invoice id is not an id".into()));
        }
        Ok(Checkout {
            reference: invoice.id,
            url,
        })
    }

    /// Invoice `id` as BTCPay has it now.
    pub async fn invoice(&self, id: &str) -> Result<Invoice, BtcpayError> {
        let response = self
            .http
            .get(format!("{}/{id}", self.invoices_url()))
            .header(
                "authorization",
                format!("token {}", self.settings.api_key.expose()),
            )
            .send()
            .await?;
        parse(response).await
    }
}

/// An invoice amount as BTCPay writes it (`"10"`, `"10.5"`, `"10.50000"`)
/// in minor units; `None` if it is not a whole number of them.
fn minor_units(text: &str) -> Option<i64> {
    let text = match text.split_once('.') {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{frac}")
            }
        }
        None => text.to_string(),
    };
    crate::price::parse_price(&text).ok()
}

/// What `invoice` means for `topup`: paid only if settled for the top-up's
/// amount and currency. An expired invoice that received money is not
/// simply expired: the operator must look at it.
pub fn state(invoice: &Invoice, topup: &TopupRecord) -> PaymentState {
    match invoice.status.as_str() {
        "Settled" => {
            let amount = invoice.amount.as_deref().and_then(minor_units);
            let currency = invoice.currency.as_deref();
            if amount == Some(topup.amount) && currency == Some(topup.currency.as_str()) {
                PaymentState::Paid { payment_id: None }
            } else {
                PaymentState::Failed(format!(
                    "BTCPay Server settled an invoice for other than {} {}; ask the operator",
                    show_price(topup.amount),
                    topup.currency
                ))
            }
        }
        "Expired"
            if matches!(
                invoice.additional_status.as_deref(),
                Some("PaidPartial" | "PaidLate")
            ) =>
        {
            PaymentState::Failed(
                "BTCPay Server received a partial or late payment; ask the operator".into(),
            )
        }
        "Expired" => PaymentState::Expired,
        "Invalid" => PaymentState::Failed("BTCPay Server marked the payment invalid".into()),
        _ => PaymentState::Waiting,
    }
}

async fn parse<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, BtcpayError> {
    let status = response.status();
    let body = read_body(response).await?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| BtcpayError::BadAnswer(e.to_string()));
    }
    #[derive(Deserialize, Default)]
    struct ErrorAnswer {
        #[serde(default)]
        message: String,
    }
    let error: ErrorAnswer = serde_json::from_slice(&body).unwrap_or_default();
    Err(BtcpayError::Refused {
        status: status.as_u16(),
        message: error.message.chars().take(200).collect(),
    })
}

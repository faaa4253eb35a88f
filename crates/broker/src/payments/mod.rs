//! Renters' top-ups through payment providers (PayPal, BTCPay Server).
//!
//! A top-up is ours first (a pending row), then the provider's (an order or
//! invoice the renter pays at the provider's checkout link). The provider
//! tells the broker about the payment by webhook, and the broker also asks
//! it ([`reconcile`]) so a lost webhook still credits. Crediting is one
//! ledger transfer `Clearing(provider) -> Wallet(renter)` named
//! `topup:<provider>:<provider's reference>`, posted in the transaction that
//! marks the top-up credited: however often and in whatever order the
//! provider, the renter's return and reconciliation report the payment, the
//! wallet gets it once.
//!
//! - [`settings`]: the `[payments]` table; secrets from files or the
//!   environment.
//! - [`http`]: calls to providers, each with a deadline and a bounded answer.
//! - [`signature`]: HMAC-SHA256 and constant-time comparison for webhooks.
//! - [`paypal`]: PayPal's REST API and Orders.
//! - [`btcpay`]: BTCPay Server's Greenfield API and invoices.
//! - [`topup`]: starting a top-up, asking its provider, crediting it.
//! - [`reconcile`]: the job that asks providers about pending top-ups.
//! - [`webhooks`]: the providers' webhook endpoints.

pub mod btcpay;
pub mod http;
pub mod paypal;
pub mod reconcile;
pub mod settings;
pub mod signature;
pub mod topup;
pub mod webhooks;

use settings::PaymentSettings;

/// A payment provider renters can top up through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Paypal,
    Btcpay,
}

impl Provider {
    /// The provider's name in the store, forms, the API and ledger ids.
    pub fn name(self) -> &'static str {
        match self {
            Self::Paypal => "paypal",
            Self::Btcpay => "btcpay",
        }
    }

    /// The provider as people know it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Paypal => "PayPal",
            Self::Btcpay => "Bitcoin (BTCPay Server)",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::Paypal, Self::Btcpay]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// Where the renter pays, and the provider's reference for the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub reference: String,
    pub url: String,
}

/// What a provider says about a top-up's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentState {
    /// Paid in full; `payment_id` is the provider's id of the payment
    /// itself (a PayPal capture), if it has one apart from the reference.
    Paid { payment_id: Option<String> },
    /// The renter approved it; the broker must capture it to be paid.
    Approved,
    /// Not paid yet.
    Waiting,
    /// It will never be paid, for this reason.
    Failed(String),
    /// It was not paid in time.
    Expired,
}

/// Currencies whose providers' amounts are not in hundredths (no minor
/// unit, or thousandths, or whole units only at PayPal); the broker's
/// minor units are hundredths, so top-ups refuse them.
pub const NOT_IN_CENTS: &[&str] = &[
    "BHD", "BIF", "CLP", "DJF", "GNF", "HUF", "IQD", "ISK", "JOD", "JPY", "KMF", "KRW", "KWD",
    "LYD", "OMR", "PYG", "RWF", "TND", "TWD", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
];

/// PayPal webhook deliveries verified with PayPal at once, at most: each
/// costs an outbound call, and anyone can post one.
const VERIFYING_AT_ONCE: usize = 4;

/// The providers this broker is configured for, with their clients.
pub struct Payments {
    pub settings: PaymentSettings,
    /// Slots for verifying a PayPal webhook delivery with PayPal.
    pub verifying: tokio::sync::Semaphore,
    pub paypal: Option<paypal::PaypalClient>,
    pub btcpay: Option<btcpay::BtcpayClient>,
}

impl Payments {
    pub fn new(settings: PaymentSettings) -> anyhow::Result<Self> {
        Ok(Self {
            paypal: settings
                .paypal
                .clone()
                .map(paypal::PaypalClient::new)
                .transpose()?,
            btcpay: settings
                .btcpay
                .clone()
                .map(btcpay::BtcpayClient::new)
                .transpose()?,
            settings,
            verifying: tokio::sync::Semaphore::new(VERIFYING_AT_ONCE),
        })
    }

    /// The configured providers, in the order pages offer them.
    pub fn providers(&self) -> Vec<Provider> {
        let mut out = Vec::new();
        if self.paypal.is_some() {
            out.push(Provider::Paypal);
        }
        if self.btcpay.is_some() {
            out.push(Provider::Btcpay);
        }
        out
    }
}

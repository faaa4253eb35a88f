//! A top-up's life: started for a renter (a pending row, then the
//! provider's order or invoice and checkout link), asked about (the
//! renter's return, reconciliation), and credited or closed by what the
//! provider says.

use rand::RngExt;

use super::{Checkout, PaymentState, Provider, btcpay, paypal};
use crate::broker::Shared;
use crate::store::{Credit, StoreError, TopupRecord, TopupState};
use crate::time::UnixTime;

/// Smallest and largest top-up, in minor units.
pub const MIN_AMOUNT: i64 = 100;
pub const MAX_AMOUNT: i64 = 1_000_000;
/// Top-ups one account may start in an hour.
const MAX_STARTED_PER_HOUR: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum TopupError {
    #[error("{0} is not offered on this broker")]
    NotOffered(&'static str),
    #[error(
        "a top-up is from {} to {}",
        crate::price::show_price(MIN_AMOUNT),
        crate::price::show_price(MAX_AMOUNT)
    )]
    BadAmount,
    #[error("at most {MAX_STARTED_PER_HOUR} top-ups an hour; try again later")]
    TooMany,
    #[error("{provider} could not start the payment; try again later")]
    Provider {
        provider: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn new_id() -> String {
    let bytes: [u8; 12] = rand::rng().random();
    format!("top-{}", hex::encode(bytes))
}

/// The page a renter returns to from the provider's checkout.
pub fn return_url(shared: &Shared, id: &str) -> String {
    format!("{}/wallet/topups/{id}", shared.settings.public_url)
}

/// Starts a top-up of `amount` (minor units of the billing currency) for
/// account `user` through `provider`: records it, asks the provider for a
/// payment, and returns it with its checkout link.
pub async fn start(
    shared: &Shared,
    user: i64,
    provider: Provider,
    amount: i64,
) -> Result<TopupRecord, TopupError> {
    if !shared.payments.providers().contains(&provider) {
        return Err(TopupError::NotOffered(provider.label()));
    }
    if !(MIN_AMOUNT..=MAX_AMOUNT).contains(&amount) {
        return Err(TopupError::BadAmount);
    }
    let id = new_id();
    let currency = shared.settings.billing.currency.clone();
    let now = UnixTime::now();
    let topup = {
        let id = id.clone();
        shared
            .store
            .blocking(move |s| -> Result<TopupRecord, TopupError> {
                let limit = (MAX_STARTED_PER_HOUR, UnixTime(now.0 - 3600));
                if !s.insert_topup(&id, user, provider.name(), amount, &currency, now, limit)? {
                    return Err(TopupError::TooMany);
                }
                Ok(s.topup(&id)?.expect("the top-up was just inserted"))
            })
            .await?
    };
    let checkout = match create(shared, provider, &topup).await {
        Ok(c) => c,
        Err(detail) => {
            tracing::warn!(topup = %id, provider = provider.name(), error = %detail, "a provider could not start a top-up");
            let close = id.clone();
            shared
                .store
                .blocking(move |s| {
                    s.close_topup(
                        &close,
                        TopupState::Failed,
                        "the payment provider could not be reached",
                        UnixTime::now(),
                    )
                })
                .await?;
            return Err(TopupError::Provider {
                provider: provider.label(),
                detail,
            });
        }
    };
    tracing::info!(topup = %id, provider = provider.name(), reference = %checkout.reference, amount, "top-up started");
    Ok(shared
        .store
        .blocking(move |s| -> Result<TopupRecord, StoreError> {
            s.set_topup_checkout(&id, &checkout.reference, &checkout.url, UnixTime::now())?;
            Ok(s.topup(&id)?.expect("the top-up exists"))
        })
        .await?)
}

async fn create(
    shared: &Shared,
    provider: Provider,
    topup: &TopupRecord,
) -> Result<Checkout, String> {
    let back = return_url(shared, &topup.id);
    match provider {
        Provider::Paypal => {
            let client = shared.payments.paypal.as_ref().ok_or("not configured")?;
            paypal::orders::create(client, topup, &back, &format!("{back}?cancelled=1"))
                .await
                .map_err(|e| e.to_string())
        }
        Provider::Btcpay => {
            let client = shared.payments.btcpay.as_ref().ok_or("not configured")?;
            client
                .create_invoice(topup, &back)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// Asks `topup`'s provider about its payment, captures an approved PayPal
/// order, and credits or closes the top-up accordingly. The top-up as it
/// is afterwards; unchanged if the provider could not be asked (that is
/// logged, and reconciliation asks again later).
pub async fn settle(shared: &Shared, topup: TopupRecord) -> Result<TopupRecord, StoreError> {
    let Some(reference) = topup.provider_ref.clone() else {
        return Ok(topup);
    };
    let id = topup.id.clone();
    shared
        .store
        .blocking(move |s| s.set_topup_checked(&id, UnixTime::now()))
        .await?;
    let state = match ask(shared, &topup, &reference).await {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(topup = %topup.id, provider = %topup.provider, error = %e, "asking a provider about a top-up failed");
            return Ok(topup);
        }
    };
    apply(shared, &topup.provider, &reference, state).await?;
    let id = topup.id.clone();
    Ok(shared
        .store
        .blocking(move |s| s.topup(&id))
        .await?
        .unwrap_or(topup))
}

/// What the provider says about `topup`'s payment now; an approved PayPal
/// order is captured first.
async fn ask(
    shared: &Shared,
    topup: &TopupRecord,
    reference: &str,
) -> Result<PaymentState, String> {
    match Provider::parse(&topup.provider) {
        Some(Provider::Paypal) => {
            let client = shared
                .payments
                .paypal
                .as_ref()
                .ok_or("PayPal is not configured")?;
            let order = paypal::orders::get(client, reference)
                .await
                .map_err(|e| e.to_string())?;
            match paypal::orders::state(&order, topup) {
                PaymentState::Waiting
                    if paypal::orders::unapproved(&order)
                        && UnixTime::now().0 - topup.created_at
                            > i64::try_from(shared.payments.settings.expire_after.as_secs())
                                .unwrap_or(i64::MAX) =>
                {
                    Ok(PaymentState::Expired)
                }
                PaymentState::Approved => {
                    let captured = paypal::orders::capture(client, topup, reference)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(paypal::orders::state(&captured, topup))
                }
                other => Ok(other),
            }
        }
        Some(Provider::Btcpay) => {
            let client = shared
                .payments
                .btcpay
                .as_ref()
                .ok_or("BTCPay Server is not configured")?;
            let invoice = client.invoice(reference).await.map_err(|e| e.to_string())?;
            Ok(btcpay::state(&invoice, topup))
        }
        None => Err(format!("unknown provider {:?}", topup.provider)),
    }
}

/// Acts on what `provider` says about the payment it knows as `reference`:
/// credits a paid top-up (once, however often this is called), closes a
/// failed or expired one, leaves a waiting one. `None` if no top-up has
/// this reference.
pub async fn apply(
    shared: &Shared,
    provider: &str,
    reference: &str,
    state: PaymentState,
) -> Result<Option<TopupRecord>, StoreError> {
    let (provider, reference) = (provider.to_string(), reference.to_string());
    let label = Provider::parse(&provider).map_or("a payment provider", Provider::label);
    let memo = format!("top-up through {label}");
    let now = UnixTime::now();
    shared
        .store
        .blocking(move |s| -> Result<Option<TopupRecord>, StoreError> {
            let closed = |state, why: &str| -> Result<Option<TopupRecord>, StoreError> {
                let Some(topup) = s.topup_by_ref(&provider, &reference)? else {
                    return Ok(None);
                };
                if s.close_topup(&topup.id, state, why, now)? {
                    tracing::info!(topup = %topup.id, %provider, state = state.as_str(), reason = why, "top-up closed");
                }
                s.topup(&topup.id)
            };
            match state {
                PaymentState::Paid { payment_id } => {
                    match s.credit_topup(&provider, &reference, payment_id.as_deref(), &memo, now)? {
                        Credit::Now(topup) => {
                            tracing::info!(topup = %topup.id, %provider, %reference, user = topup.user_id, amount = topup.amount, currency = %topup.currency, "top-up credited");
                            Ok(Some(topup))
                        }
                        Credit::Already(topup) => Ok(Some(topup)),
                        Credit::Unknown => Ok(None),
                    }
                }
                PaymentState::Failed(why) => closed(TopupState::Failed, &why),
                PaymentState::Expired => closed(TopupState::Expired, "not paid in time"),
                PaymentState::Waiting | PaymentState::Approved => s.topup_by_ref(&provider, &reference),
            }
        })
        .await
}

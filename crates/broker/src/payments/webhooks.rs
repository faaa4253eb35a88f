//! The providers' webhook endpoints, `POST /webhooks/paypal` and
//! `POST /webhooks/btcpay`.
//!
//! A delivery is believed only once verified: PayPal's by asking PayPal
//! whether it sent it, BTCPay's by its HMAC signature. Bodies are bounded
//! (by the router, [`MAX_BODY`]) and parsed; a bad delivery is answered 400
//! and logged by its ids only. A delivery handled before (by its event or
//! delivery id) is answered 200 without acting again; acting twice would
//! change nothing anyway, since crediting is idempotent. A delivery that
//! could not be handled is answered 5xx, so the provider repeats it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::paypal::orders::{self, Capture};
use super::topup::{apply, settle};
use super::{Provider, btcpay};
use crate::broker::Shared;
use crate::store::{Refund, StoreError, TopupRecord, TopupState};
use crate::time::UnixTime;

/// Largest webhook body read.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest event or delivery id kept.
const MAX_ID: usize = 128;

fn answer(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

fn bad(provider: &str, why: &str) -> Response {
    tracing::warn!(provider, reason = why, "refused a webhook delivery");
    answer(StatusCode::BAD_REQUEST, "refused\n")
}

fn failed(provider: &str, error: impl std::fmt::Display) -> Response {
    tracing::error!(provider, error = %error, "handling a webhook delivery failed");
    answer(StatusCode::SERVICE_UNAVAILABLE, "try again later\n")
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Deserialize)]
struct PaypalEvent {
    id: String,
    event_type: String,
    #[serde(default)]
    resource: serde_json::Value,
}

#[derive(Deserialize)]
struct CaptureResource {
    #[serde(flatten)]
    capture: Capture,
    #[serde(default)]
    supplementary_data: Option<Supplementary>,
}

#[derive(Deserialize)]
struct Supplementary {
    #[serde(default)]
    related_ids: Option<RelatedIds>,
}

#[derive(Deserialize)]
struct RelatedIds {
    #[serde(default)]
    order_id: Option<String>,
}

#[derive(Deserialize)]
struct RefundResource {
    id: String,
    amount: orders::Money,
    #[serde(default)]
    links: Vec<orders::Link>,
}

/// `POST /webhooks/paypal`.
pub async fn paypal(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const NAME: &str = "paypal";
    let Some(client) = shared.payments.paypal.as_ref() else {
        return answer(StatusCode::NOT_FOUND, "not found\n");
    };
    let Ok(event) = serde_json::from_slice::<PaypalEvent>(&body) else {
        return bad(NAME, "the body is not a PayPal event");
    };
    if !valid_id(&event.id) {
        return bad(NAME, "the event id is malformed");
    }
    let Ok(_slot) = shared.payments.verifying.try_acquire() else {
        tracing::warn!(provider = NAME, event = %event.id, "too many webhook deliveries being verified; refused one");
        return answer(StatusCode::SERVICE_UNAVAILABLE, "busy; try again later\n");
    };
    match client.verify_webhook(&headers, &body).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(provider = NAME, event = %event.id, "PayPal did not vouch for a webhook delivery");
            return answer(StatusCode::BAD_REQUEST, "refused\n");
        }
        Err(e @ super::paypal::PaypalError::MissingHeader(_)) => {
            return bad(NAME, &e.to_string());
        }
        Err(e) => return failed(NAME, format!("verifying event {}: {e}", event.id)),
    }
    if let Some(r) = handled_before(&shared, NAME, &event.id).await {
        return r;
    }
    if let Err(e) = handle_paypal(&shared, &event).await {
        return failed(NAME, format!("event {}: {e}", event.id));
    }
    record(&shared, NAME, event.id).await
}

/// The answer to a delivery handled before (or that could not be looked
/// up); `None` if it is new.
async fn handled_before(shared: &Shared, provider: &'static str, id: &str) -> Option<Response> {
    let id = id.to_string();
    match shared
        .store
        .blocking(move |s| s.delivery_seen(provider, &id))
        .await
    {
        Ok(true) => Some(answer(StatusCode::OK, "already handled\n")),
        Ok(false) => None,
        Err(e) => Some(failed(provider, e)),
    }
}

async fn record(shared: &Shared, provider: &'static str, id: String) -> Response {
    match shared
        .store
        .blocking(move |s| s.record_delivery(provider, &id, UnixTime::now()))
        .await
    {
        Ok(()) => answer(StatusCode::OK, "ok\n"),
        Err(e) => failed(provider, e),
    }
}

async fn topup_by_ref(shared: &Shared, reference: &str) -> Result<Option<TopupRecord>, StoreError> {
    let reference = reference.to_string();
    shared
        .store
        .blocking(move |s| s.topup_by_ref(Provider::Paypal.name(), &reference))
        .await
}

async fn handle_paypal(shared: &Shared, event: &PaypalEvent) -> Result<(), StoreError> {
    let name = Provider::Paypal.name();
    match event.event_type.as_str() {
        "PAYMENT.CAPTURE.COMPLETED" | "PAYMENT.CAPTURE.DENIED" | "PAYMENT.CAPTURE.DECLINED" => {
            let Ok(resource) = CaptureResource::deserialize(&event.resource) else {
                tracing::warn!(event = %event.id, "a capture event without a capture");
                return Ok(());
            };
            let order = resource
                .supplementary_data
                .and_then(|s| s.related_ids)
                .and_then(|r| r.order_id)
                .filter(|o| orders::valid_id(o));
            let Some(order) = order else {
                tracing::warn!(event = %event.id, "a capture event without its order");
                return Ok(());
            };
            let Some(topup) = topup_by_ref(shared, &order).await? else {
                tracing::info!(event = %event.id, %order, "a capture event for an order that is no top-up");
                return Ok(());
            };
            let state = orders::capture_state(&resource.capture, &topup);
            apply(shared, name, &order, state).await?;
        }
        "CHECKOUT.ORDER.APPROVED" => {
            // The renter approved the order but may never come back to the
            // broker: capture it now.
            let Some(order) = event
                .resource
                .get("id")
                .and_then(|v| v.as_str())
                .filter(|o| orders::valid_id(o))
            else {
                return Ok(());
            };
            if let Some(topup) = topup_by_ref(shared, order).await?
                && topup.state == TopupState::Pending
            {
                settle(shared, topup).await?;
            }
        }
        "PAYMENT.CAPTURE.REFUNDED" | "PAYMENT.CAPTURE.REVERSED" => {
            // Both carry the refund (full or partial), which links "up" to
            // the capture it gives back.
            let Ok(refund) = RefundResource::deserialize(&event.resource) else {
                tracing::warn!(event = %event.id, "a refund event without a refund");
                return Ok(());
            };
            let capture = refund
                .links
                .iter()
                .find(|l| l.rel == "up")
                .and_then(|l| l.href.rsplit('/').next())
                .filter(|c| orders::valid_id(c))
                .map(str::to_string);
            let (Some(capture), true) = (capture, orders::valid_id(&refund.id)) else {
                tracing::warn!(event = %event.id, "a refund event without a valid refund or capture id");
                return Ok(());
            };
            let Ok(amount) = crate::price::parse_price(&refund.amount.value) else {
                tracing::warn!(event = %event.id, "a refund event with a malformed amount");
                return Ok(());
            };
            let (currency, refund_id) = (refund.amount.currency_code, refund.id);
            let booked = shared
                .store
                .blocking(move |s| -> Result<_, StoreError> {
                    let Some(topup) = s.topup_by_payment(name, &capture)? else {
                        return Ok(None);
                    };
                    if topup.currency.as_str() != currency {
                        tracing::error!(topup = %topup.id, %refund_id, %currency, "a refund in another currency than its top-up; ask the operator");
                        return Ok(None);
                    }
                    Ok(Some(s.refund_topup(&topup.id, &refund_id, amount, UnixTime::now())?))
                })
                .await?;
            match booked {
                Some(Refund::Now { topup, taken, owed }) if owed > 0 => {
                    tracing::warn!(topup = %topup.id, user = topup.user_id, refunded = amount, taken_back = taken, owed, "a refunded top-up was partly spent; the rest is owed by the renter");
                }
                Some(Refund::Now { topup, taken, .. }) => {
                    tracing::info!(topup = %topup.id, user = topup.user_id, amount = taken, "a refund was taken back from the wallet");
                }
                Some(Refund::Refused) => {
                    tracing::error!(event = %event.id, refunded = amount, "a refund of a top-up not credited or refunded beyond its amount; ask the operator");
                }
                Some(Refund::Already) | None => {}
            }
        }
        kind if kind.starts_with("PAYMENT.PAYOUTS-ITEM.") => {
            crate::payouts::paypal::on_item_event(shared, &event.resource).await?;
        }
        other => {
            tracing::debug!(event = %event.id, event_type = other, "ignored a PayPal event");
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BtcpayEvent {
    delivery_id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    invoice_id: Option<String>,
    #[serde(default)]
    store_id: Option<String>,
}

/// `POST /webhooks/btcpay`.
pub async fn btcpay(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const NAME: &str = "btcpay";
    let Some(client) = shared.payments.btcpay.as_ref() else {
        return answer(StatusCode::NOT_FOUND, "not found\n");
    };
    if !btcpay::signature_valid(&client.settings().webhook_secret, &headers, &body) {
        return bad(NAME, "the BTCPay-Sig signature is missing or wrong");
    }
    let Ok(event) = serde_json::from_slice::<BtcpayEvent>(&body) else {
        return bad(NAME, "the body is not a BTCPay event");
    };
    if !valid_id(&event.delivery_id) {
        return bad(NAME, "the delivery id is malformed");
    }
    if event
        .store_id
        .as_deref()
        .is_some_and(|s| s != client.settings().store_id)
    {
        return bad(NAME, "the delivery is about another store");
    }
    if let Some(r) = handled_before(&shared, NAME, &event.delivery_id).await {
        return r;
    }
    // The event says only that something happened: the invoice itself
    // (its status, amount and currency) decides what it means.
    let settles = matches!(
        event.kind.as_str(),
        "InvoiceSettled" | "InvoiceExpired" | "InvoiceInvalid"
    );
    let invoice = event.invoice_id.as_deref().filter(|i| btcpay::valid_id(i));
    if let (true, Some(invoice)) = (settles, invoice) {
        let reference = invoice.to_string();
        let topup = shared
            .store
            .blocking(move |s| s.topup_by_ref(NAME, &reference))
            .await;
        match topup {
            Ok(Some(topup)) if topup.state == TopupState::Pending => {
                if let Err(e) = settle(&shared, topup).await {
                    return failed(NAME, format!("delivery {}: {e}", event.delivery_id));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::info!(delivery = %event.delivery_id, %invoice, "a BTCPay event for an invoice that is no top-up");
            }
            Err(e) => return failed(NAME, format!("delivery {}: {e}", event.delivery_id)),
        }
    }
    record(&shared, NAME, event.delivery_id).await
}

//! Renters' top-ups as PayPal Orders (v2): an order to capture the amount,
//! the renter approving it at PayPal, the broker capturing it. Only a
//! capture that is itself `COMPLETED` pays a top-up: an order can be
//! `COMPLETED` while its capture is `DECLINED` or `PENDING`.

use serde::Deserialize;
use serde_json::json;

use super::client::{PaypalClient, PaypalError};
use crate::payments::{Checkout, PaymentState};
use crate::price::show_price;
use crate::store::TopupRecord;

/// An order as PayPal shows it (only the fields the broker reads).
#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub purchase_units: Vec<PurchaseUnit>,
}

#[derive(Debug, Deserialize)]
pub struct Link {
    pub href: String,
    pub rel: String,
}

#[derive(Debug, Deserialize)]
pub struct PurchaseUnit {
    #[serde(default)]
    pub payments: Option<Payments>,
}

#[derive(Debug, Deserialize)]
pub struct Payments {
    #[serde(default)]
    pub captures: Vec<Capture>,
}

#[derive(Debug, Deserialize)]
pub struct Capture {
    pub id: String,
    pub status: String,
    pub amount: Option<Money>,
}

#[derive(Debug, Deserialize)]
pub struct Money {
    pub currency_code: String,
    pub value: String,
}

/// Whether `reference` can be a PayPal id (order, capture) in a URL path.
pub fn valid_id(reference: &str) -> bool {
    (1..=64).contains(&reference.len())
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Creates the order for `topup`; the renter approves it at the checkout
/// link. Repeating the call for the same top-up gives the same order.
pub async fn create(
    client: &PaypalClient,
    topup: &TopupRecord,
    return_url: &str,
    cancel_url: &str,
) -> Result<Checkout, PaypalError> {
    let body = json!({
        "intent": "CAPTURE",
        "purchase_units": [{
            "reference_id": topup.id,
            "custom_id": topup.id,
            "description": "Wallet top-up",
            "amount": {
                "currency_code": topup.currency.as_str(),
                "value": show_price(topup.amount),
            },
        }],
        "payment_source": { "paypal": { "experience_context": {
            "return_url": return_url,
            "cancel_url": cancel_url,
            "user_action": "PAY_NOW",
            "shipping_preference": "NO_SHIPPING",
        } } },
    });
    let order: Order = client
        .post(
            "/v2/checkout/orders",
            &body,
            Some(&format!("create-{}", topup.id)),
        )
        .await?;
    if !valid_id(&order.id) {
        return Err(PaypalError::BadAnswer("the order id is not an id".into()));
    }
    let link = order
        .links
        .iter()
        .find(|l| l.rel == "payer-action" || l.rel == "approve")
        .filter(|l| l.href.starts_with("https://") || l.href.starts_with("http://"))
        .ok_or_else(|| PaypalError::BadAnswer("the order has no approval link".into()))?;
    Ok(Checkout {
        reference: order.id,
        url: link.href.clone(),
    })
}

/// The order `id` as PayPal has it now.
pub async fn get(client: &PaypalClient, id: &str) -> Result<Order, PaypalError> {
    client.get(&format!("/v2/checkout/orders/{id}")).await
}

/// Captures the approved order `id` for `topup`; capturing it again gives
/// the first capture's answer.
pub async fn capture(
    client: &PaypalClient,
    topup: &TopupRecord,
    id: &str,
) -> Result<Order, PaypalError> {
    let answer = client
        .post(
            &format!("/v2/checkout/orders/{id}/capture"),
            &json!({}),
            Some(&format!("capture-{}", topup.id)),
        )
        .await;
    match answer {
        Err(e) if e.is_issue("ORDER_ALREADY_CAPTURED") => get(client, id).await,
        other => other,
    }
}

/// What a capture of `topup`'s order means for it: paid only if the capture
/// itself completed, for the top-up's amount and currency.
pub fn capture_state(capture: &Capture, topup: &TopupRecord) -> PaymentState {
    match capture.status.as_str() {
        "COMPLETED" => {}
        "PENDING" => return PaymentState::Waiting,
        _ => return PaymentState::Failed("PayPal declined the payment".into()),
    }
    let expected = show_price(topup.amount);
    let matches = capture
        .amount
        .as_ref()
        .is_some_and(|m| m.currency_code == topup.currency.as_str() && m.value == expected);
    if matches {
        PaymentState::Paid {
            payment_id: Some(capture.id.clone()),
        }
    } else {
        PaymentState::Failed(format!(
            "PayPal captured an amount other than {expected} {}; ask the operator",
            topup.currency
        ))
    }
}

/// Whether the renter has not approved `order` at PayPal yet: nothing can
/// have been paid through it.
pub fn unapproved(order: &Order) -> bool {
    matches!(
        order.status.as_str(),
        "CREATED" | "SAVED" | "PAYER_ACTION_REQUIRED"
    ) && order
        .purchase_units
        .iter()
        .filter_map(|u| u.payments.as_ref())
        .all(|p| p.captures.is_empty())
}

/// What `order` means for `topup`.
pub fn state(order: &Order, topup: &TopupRecord) -> PaymentState {
    let captures: Vec<&Capture> = order
        .purchase_units
        .iter()
        .filter_map(|u| u.payments.as_ref())
        .flat_map(|p| &p.captures)
        .collect();
    if let Some(capture) = captures.iter().find(|c| c.status == "COMPLETED") {
        return capture_state(capture, topup);
    }
    if captures.iter().any(|c| c.status == "PENDING") {
        return PaymentState::Waiting;
    }
    if captures
        .iter()
        .any(|c| c.status == "DECLINED" || c.status == "FAILED")
    {
        return PaymentState::Failed("PayPal declined the payment".into());
    }
    match order.status.as_str() {
        "APPROVED" => PaymentState::Approved,
        "VOIDED" => PaymentState::Failed("the PayPal order was voided".into()),
        // A completed order without a completed capture paid nothing.
        "COMPLETED" => PaymentState::Failed("PayPal completed the order without payment".into()),
        _ => PaymentState::Waiting,
    }
}

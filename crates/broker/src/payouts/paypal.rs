//! Payouts through PayPal Payouts (`/v1/payments/payouts`), on the PayPal
//! client of [`crate::payments::paypal`].
//!
//! Each payout is one batch of one item whose `sender_batch_id` (and
//! `sender_item_id`, and `PayPal-Request-Id`) is the payout's id, derived
//! from owner, period and currency: PayPal pays a `sender_batch_id` once,
//! so sending again after a crash or a 5xx never pays twice. When PayPal
//! refuses the repeat as a duplicate, the batch it made the first time is
//! looked up (PayPal's error links to it). The batch is then polled until
//! its item ends: `SUCCESS` confirms the payout; `FAILED`, `BLOCKED`,
//! `RETURNED`, `REFUNDED`, `REVERSED` (or a denied or canceled batch) put
//! the money back in the owner's payable. `PAYMENT.PAYOUTS-ITEM.*` webhooks
//! make the broker poll the item's batch at once, which also catches a paid
//! item returned later.
//!
//! A payout is recorded as sent before its first request goes out, and
//! only a payout whose first send PayPal refuses is failed: a refused
//! repeat (without a link to a batch) may follow a send PayPal paid, so it
//! stays in flight, is sent again on each run until PayPal names its batch,
//! and is flagged for the operator to look up.

use serde::{Deserialize, Serialize};

use crate::broker::Shared;
use crate::payments::paypal::{PaypalClient, PaypalError};
use crate::price::show_price;
use crate::store::{Outcome, PayoutRecord, PayoutState, Settled, StoreError};
use crate::time::UnixTime;

/// The method name of PayPal payouts (and their clearing account).
pub const METHOD: &str = "paypal";
/// Where payouts are made and looked up.
const PAYOUTS: &str = "/v1/payments/payouts";
/// Longest PayPal id believed.
const MAX_ID: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error(transparent)]
    Paypal(#[from] PaypalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("PayPal's answer about payout {0} does not match it: {1}")]
    Mismatch(String, String),
    #[error("PayPal is not configured")]
    NotConfigured,
}

async fn settle(shared: &Shared, id: &str, outcome: Outcome) -> Result<Settled, StoreError> {
    let id = id.to_string();
    shared
        .store
        .blocking(move |s| s.settle_payout(&id, &outcome, UnixTime::now()))
        .await
}

#[derive(Serialize)]
struct Money<'a> {
    value: String,
    currency: &'a str,
}

#[derive(Serialize)]
struct SenderBatchHeader<'a> {
    sender_batch_id: &'a str,
    recipient_type: &'static str,
    email_subject: &'static str,
    email_message: &'static str,
}

#[derive(Serialize)]
struct Item<'a> {
    recipient_type: &'static str,
    amount: Money<'a>,
    receiver: &'a str,
    sender_item_id: &'a str,
    note: String,
}

#[derive(Serialize)]
struct CreateBatch<'a> {
    sender_batch_header: SenderBatchHeader<'a>,
    items: Vec<Item<'a>>,
}

#[derive(Deserialize)]
struct BatchHeader {
    payout_batch_id: String,
    #[serde(default)]
    batch_status: String,
}

#[derive(Deserialize)]
struct Created {
    batch_header: BatchHeader,
}

#[derive(Deserialize)]
struct AnswerMoney {
    value: String,
    currency: String,
}

#[derive(Deserialize)]
struct PayoutItem {
    #[serde(default)]
    sender_item_id: String,
    amount: AnswerMoney,
}

#[derive(Deserialize)]
struct BatchItem {
    payout_item_id: String,
    #[serde(default)]
    transaction_status: String,
    payout_item: PayoutItem,
}

#[derive(Deserialize)]
struct Batch {
    batch_header: BatchHeader,
    #[serde(default)]
    items: Vec<BatchItem>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The batch id a duplicate's error links to.
fn linked_batch(links: &[String]) -> Option<String> {
    links.iter().find_map(|href| {
        let (_, id) = href.split_once(&format!("{PAYOUTS}/"))?;
        let id = id.split(['?', '/']).next()?;
        valid_id(id).then(|| id.to_string())
    })
}

/// What PayPal says became of a payout, if it has ended.
fn outcome(batch: &Batch, p: &PayoutRecord) -> Result<Option<Outcome>, PayoutError> {
    let mismatch = |why: String| PayoutError::Mismatch(p.id.clone(), why);
    let Some(item) = batch.items.first() else {
        return Ok(match batch.batch_header.batch_status.as_str() {
            s @ ("DENIED" | "CANCELED") => Some(Outcome::Failed(format!("PayPal: batch {s}"))),
            _ => None,
        });
    };
    if batch.items.len() != 1 || item.payout_item.sender_item_id != p.id {
        return Err(mismatch("not this payout's one item".into()));
    }
    let amount = &item.payout_item.amount;
    if amount.value != show_price(p.amount) || amount.currency != p.currency {
        return Err(mismatch(format!("{} {}", amount.value, amount.currency)));
    }
    let status = item.transaction_status.as_str();
    Ok(match status {
        "SUCCESS" => Some(Outcome::Paid {
            batch: Some(batch.batch_header.payout_batch_id.clone()),
            item: valid_id(&item.payout_item_id).then(|| item.payout_item_id.clone()),
        }),
        "FAILED" | "BLOCKED" | "DENIED" | "CANCELED" => {
            Some(Outcome::Failed(format!("PayPal: {status}")))
        }
        "RETURNED" | "REFUNDED" | "REVERSED" => {
            Some(Outcome::Returned(format!("PayPal: {status}")))
        }
        _ => None,
    })
}

/// Sends payout `p` if it is in flight and its batch is not known yet,
/// then asks PayPal how it ended and records that. Nothing is sent for a
/// payout that is not in flight.
pub async fn advance(shared: &Shared, p: &PayoutRecord) -> Result<Option<Settled>, PayoutError> {
    let client = shared
        .payments
        .paypal
        .as_ref()
        .ok_or(PayoutError::NotConfigured)?;
    let batch_id = match (&p.provider_batch_id, p.state) {
        (Some(id), _) => id.clone(),
        (None, PayoutState::Sent) => match send(client, shared, p).await? {
            Send::Made(id) => id,
            Send::Refused => return Ok(Some(Settled::Now(PayoutState::Failed))),
            Send::Unknown => return Ok(None),
        },
        (None, _) => return Ok(None),
    };
    let batch: Batch = client.get(&format!("{PAYOUTS}/{batch_id}")).await?;
    if batch.batch_header.payout_batch_id != batch_id {
        return Err(PayoutError::Mismatch(p.id.clone(), "another batch".into()));
    }
    let Some(outcome) = outcome(&batch, p)? else {
        return Ok(None);
    };
    let settled = settle(shared, &p.id, outcome).await?;
    if let Settled::Now(state) = &settled {
        tracing::info!(payout = %p.id, %state, batch = %batch_id, "PayPal payout ended");
    }
    Ok(Some(settled))
}

/// A `PAYMENT.PAYOUTS-ITEM.*` webhook: the payout its item names is looked
/// up at PayPal (the event itself is only a hint) and recorded.
pub async fn on_item_event(
    shared: &Shared,
    resource: &serde_json::Value,
) -> Result<(), StoreError> {
    let Some(id) = resource
        .pointer("/payout_item/sender_item_id")
        .and_then(|v| v.as_str())
        .filter(|id| id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
    else {
        tracing::warn!("a payout item event without its sender_item_id");
        return Ok(());
    };
    let lookup = id.clone();
    let Some(p) = shared.store.blocking(move |s| s.payout(&lookup)).await? else {
        tracing::info!(payout = %id, "a payout item event for no payout of this broker");
        return Ok(());
    };
    if p.method != METHOD {
        return Ok(());
    }
    match advance(shared, &p).await {
        Ok(_) => Ok(()),
        Err(PayoutError::Store(e)) => Err(e),
        Err(e) => {
            tracing::warn!(payout = %p.id, error = %e, "looking up a payout after its webhook failed; the payout job tries again");
            Ok(())
        }
    }
}

/// What sending a payout to PayPal came to.
enum Send {
    /// PayPal has its batch, of this id.
    Made(String),
    /// PayPal refused its first send: it never reached PayPal, and is
    /// recorded failed.
    Refused,
    /// PayPal refused a repeat without naming a batch, though an earlier
    /// send may have been paid: it stays in flight, is sent again (so a
    /// duplicate's link finds its batch) and is flagged for the operator.
    Unknown,
}

/// Makes the payout's batch at PayPal and records its id. A payout is
/// recorded as sent before its first request goes out, so a refusal fails
/// it only when no earlier request of it can have reached PayPal.
async fn send(
    client: &PaypalClient,
    shared: &Shared,
    p: &PayoutRecord,
) -> Result<Send, PayoutError> {
    let id = p.id.clone();
    let first = shared
        .store
        .blocking(move |s| s.mark_payout_send_attempted(&id, UnixTime::now()))
        .await?;
    let body = CreateBatch {
        sender_batch_header: SenderBatchHeader {
            sender_batch_id: &p.id,
            recipient_type: "EMAIL",
            email_subject: "You have a payout from rpibroker",
            email_message: "Your devices' earnings from rentals.",
        },
        items: vec![Item {
            recipient_type: "EMAIL",
            amount: Money {
                value: show_price(p.amount),
                currency: &p.currency,
            },
            receiver: &p.destination,
            sender_item_id: &p.id,
            note: format!("Earnings, payout {}", p.id),
        }],
    };
    let made: Result<Created, _> = client.post(PAYOUTS, &body, Some(&p.id)).await;
    let batch_id = match made {
        Ok(created) => created.batch_header.payout_batch_id,
        Err(PaypalError::Refused { status, links, .. })
            if (400..500).contains(&status) && linked_batch(&links).is_some() =>
        {
            // A duplicate sender_batch_id: the first send got through.
            tracing::info!(payout = %p.id, "PayPal already has this payout; looking its batch up");
            linked_batch(&links).expect("checked")
        }
        Err(PaypalError::Refused {
            status,
            name,
            issue,
            ..
        }) if (400..500).contains(&status) && status != 401 && status != 429 => {
            let why = format!(
                "PayPal refused it: {name}{}",
                issue.map(|i| format!(" ({i})")).unwrap_or_default()
            );
            if first {
                tracing::warn!(payout = %p.id, reason = %why, "PayPal refused a payout; the owner is owed it again");
                settle(shared, &p.id, Outcome::Failed(why)).await?;
                return Ok(Send::Refused);
            }
            let look = format!(
                "{why}, after an earlier send that may have been paid: find sender_batch_id {} at PayPal",
                p.id
            );
            tracing::warn!(payout = %p.id, reason = %why, "PayPal refused a repeated payout; it stays in flight until PayPal names its batch or the operator settles it");
            let id = p.id.clone();
            shared
                .store
                .blocking(move |s| s.flag_payout(&id, &look, UnixTime::now()))
                .await?;
            return Ok(Send::Unknown);
        }
        Err(e) => return Err(e.into()),
    };
    if !valid_id(&batch_id) {
        return Err(PayoutError::Mismatch(
            p.id.clone(),
            "a malformed batch id".into(),
        ));
    }
    let (id, batch) = (p.id.clone(), batch_id.clone());
    shared
        .store
        .blocking(move |s| s.set_payout_provider_ids(&id, Some(&batch), None, UnixTime::now()))
        .await?;
    tracing::info!(payout = %p.id, batch = %batch_id, amount = p.amount, "PayPal payout sent");
    Ok(Send::Made(batch_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_names_its_batch_and_amounts_are_exact() {
        assert_eq!(
            linked_batch(&["https://api-m.paypal.com/v1/payments/payouts/5UXD2E8A7EBQJ".into()]),
            Some("5UXD2E8A7EBQJ".into())
        );
        assert_eq!(
            linked_batch(&["https://example.org/other/5UXD".into()]),
            None
        );
        assert_eq!(
            linked_batch(&["https://x/v1/payments/payouts/../../x".into()]),
            None
        );
        let body = serde_json::to_value(Money {
            value: show_price(1205),
            currency: "USD",
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"value": "12.05", "currency": "USD"})
        );
    }
}

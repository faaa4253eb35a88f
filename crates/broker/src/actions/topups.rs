//! A renter's top-ups: starting one through a configured provider, listing
//! them, and looking at one (which asks its provider about it while it is
//! pending, so a renter back from the checkout sees what happened).

use serde::Serialize;

use super::Actor;
use crate::broker::Shared;
use crate::payments::Provider;
use crate::payments::topup::{self, TopupError};
use crate::price::show_price;
use crate::store::{StoreError, TopupRecord, TopupState};
use crate::time::UnixTime;

/// Top-ups listed, at most.
pub const LISTED: i64 = 50;
/// Looking at a pending top-up asks its provider at most this often (in
/// seconds), however often it is looked at.
const ASK_AT_MOST_EVERY: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("this account is suspended")]
    Suspended,
    #[error("{0:?} is not a payment provider of this broker")]
    UnknownProvider(String),
    #[error("{0:?} is not an amount like 10 or 12.50")]
    BadAmount(String),
    #[error(transparent)]
    Topup(#[from] TopupError),
}

/// A top-up as people and scripts see it.
#[derive(Debug, Clone, Serialize)]
pub struct Topup {
    pub id: String,
    pub provider: &'static str,
    /// In minor units (cents).
    pub amount_cents: i64,
    /// As people write it, e.g. `12.50`.
    pub amount: String,
    pub currency: String,
    /// `pending`, `credited`, `failed`, `expired` or `refunded`.
    pub state: &'static str,
    /// Why it failed or expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Where to pay, while it is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<TopupRecord> for Topup {
    fn from(t: TopupRecord) -> Self {
        let pending = t.state == TopupState::Pending;
        Self {
            id: t.id,
            provider: Provider::parse(&t.provider).map_or("unknown", Provider::name),
            amount_cents: t.amount,
            amount: show_price(t.amount),
            currency: t.currency.to_string(),
            state: t.state.as_str(),
            detail: Some(t.detail).filter(|d| !d.is_empty()),
            checkout_url: t.checkout_url.filter(|_| pending),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// Starts a top-up of `amount` (as people write it) through `provider`.
pub async fn start(
    shared: &Shared,
    actor: Actor,
    provider: &str,
    amount: &str,
) -> Result<Topup, StartError> {
    if actor.suspended {
        return Err(StartError::Suspended);
    }
    let which =
        Provider::parse(provider).ok_or_else(|| StartError::UnknownProvider(provider.into()))?;
    let cents = crate::price::parse_price(amount)
        .map_err(|_| StartError::BadAmount(amount.chars().take(40).collect()))?;
    Ok(topup::start(shared, actor.id, which, cents).await?.into())
}

/// The actor's latest top-ups, newest first.
pub async fn mine(shared: &Shared, actor: Actor) -> Result<Vec<Topup>, StoreError> {
    let list = shared
        .store
        .blocking(move |s| s.topups_of_user(actor.id, LISTED))
        .await?;
    Ok(list.into_iter().map(Topup::from).collect())
}

/// The actor's top-up `id`, asking its provider first while it is pending
/// (unless it was asked a moment ago); `None` if the actor has no such
/// top-up.
pub async fn look(shared: &Shared, actor: Actor, id: &str) -> Result<Option<Topup>, StoreError> {
    let lookup = id.to_string();
    let Some(record) = shared
        .store
        .blocking(move |s| s.topup(&lookup))
        .await?
        .filter(|t| t.user_id == actor.id)
    else {
        return Ok(None);
    };
    let asked_lately = UnixTime::now().0 - record.checked_at < ASK_AT_MOST_EVERY;
    let record = if record.state == TopupState::Pending && !actor.suspended && !asked_lately {
        topup::settle(shared, record).await?
    } else {
        record
    };
    Ok(Some(record.into()))
}

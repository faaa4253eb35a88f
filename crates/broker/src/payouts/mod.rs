//! Paying owners what their devices earned.
//!
//! - [`settings`]: the `[payouts]` table (off unless turned on; weekly; a
//!   minimum amount).
//! - [`method`]: where an owner is paid: PayPal email or Bitcoin address.
//! - [`crypto`]: the operator's export of what is owed to crypto addresses,
//!   and the import of what was paid.
//! - [`paypal`]: PayPal Payouts, sent and followed up by the job [`run`].
//!
//! Each payout period that has ended, an owner owed at least the minimum is
//! paid all they are owed, once: the payout's row and its transfer (payable
//! to payouts in flight) are made together and named by owner, period and
//! currency (`store::payouts`), so a retry, a second export or a broker
//! killed half-way never pays anyone twice. A confirmed payout moves to the
//! method's clearing account; a failed or returned one back to payable,
//! where the next period pays it again.

pub mod crypto;
pub mod method;
pub mod paypal;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Shared;
use crate::shutdown::Shutdown;
use crate::store::{PayoutState, Started, StoreError};
use crate::time::UnixTime;

/// Payouts in flight one run follows up at most.
const PER_RUN: i64 = 1000;

/// Pays owners who chose PayPal, each period, until shutdown, if payouts
/// and PayPal payouts are on.
pub async fn run(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let settings = &shared.settings.payouts;
    if !(settings.enabled && settings.paypal) || shared.payments.paypal.is_none() {
        return;
    }
    let every = (settings.period / 6).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        if let Err(e) = pay_once(&shared).await {
            tracing::warn!(error = %e, "payout run failed; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Makes the last ended period's PayPal payouts, then sends and follows up
/// every PayPal payout in flight.
pub async fn pay_once(shared: &Arc<Shared>) -> Result<(), StoreError> {
    let settings = shared.settings.payouts.clone();
    if let Some(period) = settings.last_ended_period(UnixTime::now().0) {
        let minimum = settings.minimum;
        let due = shared
            .store
            .blocking(move |s| s.owners_due(paypal::METHOD, minimum))
            .await?;
        for (owner, currency) in due {
            let made = shared
                .store
                .blocking(move |s| {
                    s.start_payout(owner, period, &currency, minimum, UnixTime::now())
                })
                .await?;
            if let Started::Now(p) = made {
                tracing::info!(payout = %p.id, amount = p.amount, "PayPal payout made");
            }
        }
    }
    let open = shared
        .store
        .blocking(|s| s.payouts_in_state(paypal::METHOD, PayoutState::Sent, PER_RUN))
        .await?;
    for p in open {
        match paypal::advance(shared, &p).await {
            Ok(_) => {}
            Err(paypal::PayoutError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(payout = %p.id, error = %e, "a PayPal payout could not be followed up; trying again later")
            }
        }
    }
    Ok(())
}

//! Reconciliation: every so often the broker asks the providers about
//! pending top-ups, oldest first and a bounded batch at a time, so a top-up
//! whose webhook was lost (or whose renter never came back from PayPal to
//! have it captured) is still credited, exactly once. A top-up is closed
//! only on a definite answer: the provider says it failed or expired (an
//! unapproved PayPal order past the expiry counts as expired), or the
//! provider never took it on. A provider that cannot be reached, or that
//! says the payment is still on its way, leaves the top-up pending, to be
//! asked about again.

use std::sync::Arc;
use std::time::Duration;

use super::topup::settle;
use crate::broker::Shared;
use crate::shutdown::Shutdown;
use crate::store::{StoreError, TopupState};
use crate::time::UnixTime;

/// Top-ups asked about per pass, at most.
const BATCH: i64 = 50;
/// A top-up the provider has not given a reference this long after it was
/// started never reached it, so it cannot be paid.
const NO_ANSWER: i64 = 600;
/// Webhook deliveries are remembered this long.
const KEEP_DELIVERIES: i64 = 30 * 86_400;

/// Runs reconciliation until shutdown, if any provider is configured.
pub async fn run(shared: Arc<Shared>, mut shutdown: Shutdown) {
    if shared.payments.providers().is_empty() {
        return;
    }
    let every = shared.payments.settings.reconcile_every;
    loop {
        if let Err(e) = reconcile_once(&shared).await {
            tracing::warn!(error = %e, "reconciling top-ups failed; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// One pass: up to [`BATCH`] pending top-ups not asked about for a while.
pub async fn reconcile_once(shared: &Shared) -> Result<(), StoreError> {
    let settings = &shared.payments.settings;
    let now = UnixTime::now();
    let recently = UnixTime(now.0 - secs(settings.reconcile_every) + 1);
    let pending = shared
        .store
        .blocking(move |s| {
            s.prune_deliveries(UnixTime(now.0 - KEEP_DELIVERIES))?;
            s.topups_to_check(recently, BATCH)
        })
        .await?;
    for topup in pending {
        let id = topup.id.clone();
        let age = now.0 - topup.created_at;
        let topup = if topup.provider_ref.is_none() {
            topup
        } else {
            settle(shared, topup).await?
        };
        let close = if topup.state != TopupState::Pending {
            None
        } else if topup.provider_ref.is_none() && age > NO_ANSWER {
            Some((
                TopupState::Failed,
                "the payment provider never took the payment on",
            ))
        } else {
            None
        };
        shared
            .store
            .blocking(move |s| -> Result<(), StoreError> {
                if let Some((state, why)) = close
                    && s.close_topup(&id, state, why, now)?
                {
                    tracing::info!(topup = %id, state = state.as_str(), reason = why, "top-up closed");
                }
                s.set_topup_checked(&id, now)
            })
            .await?;
    }
    Ok(())
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

//! Billing rentals by the hour (by the period of the settings), while the
//! device was reachable.
//!
//! - [`settings`]: the `[billing]` table (off unless turned on).
//! - [`meter`]: reachable seconds, charges and the fee split, in minor units.
//! - [`pass`]: one pass over the rentals at a given moment, on the store
//!   alone; this module runs it on a schedule and does what it returns.
//! - [`usage`]: what each period of a rental cost, and why, for its renter.
//!
//! A job looks at every rental it has not finished with, a few times per
//! period. When a period of a rental begins it holds one period at the
//! agreed rate (`hold:<rental>:<k>`: wallet to held). When the period ends,
//! or the rental stops, it charges the seconds the device was connected in
//! it and its sandbox was healthy (reachable), splits that between the
//! owner's payable and the broker's fee, and
//! releases the rest to the wallet (`settle:<rental>:<k>`). Each transfer's
//! id names its rental and period, so a job that runs twice, or is killed
//! half-way and started again, charges each period once. A wallet that
//! cannot cover a hold ends the rental cleanly (wipe, back to the market),
//! and that period is free; one that could not cover the next hold after
//! this one gets its renter a mail, once per period.
//!
//! The same job holds the periods of the leases renters hold on peer
//! brokers ([`crate::federation::settlement`]); those are charged from the
//! peers' usage records.

pub mod meter;
pub mod pass;
pub mod settings;
pub mod usage;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpibroker_wire::control::RentalId;

use crate::broker::Shared;
use crate::shutdown::Shutdown;
use crate::store::StoreError;
use crate::time::UnixTime;
use crate::{mail, rental};
use pass::{LowBalance, ToEnd};

/// Bills until shutdown, if billing is on.
pub async fn run(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let billing = shared.settings.billing.clone();
    if !billing.enabled {
        return;
    }
    let every = (billing.period / 6).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let stopping = Stopping::default();
    loop {
        if let Err(e) = bill_once(&shared, &stopping).await {
            tracing::warn!(error = %e, "billing run failed; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// The rentals whose stop billing started and that have not finished
/// stopping, so a pass that runs meanwhile starts no second stop.
#[derive(Clone, Default)]
pub struct Stopping(Arc<Mutex<HashSet<RentalId>>>);

impl Stopping {
    /// True if `rental` was not being stopped and now is.
    pub fn begin(&self, rental: &RentalId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rental.clone())
    }

    pub fn finish(&self, rental: &RentalId) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(rental);
    }
}

/// One pass now; then mails the renters running low and ends the rentals
/// their wallets could not cover; then holds the leases' periods.
pub async fn bill_once(shared: &Arc<Shared>, stopping: &Stopping) -> Result<(), StoreError> {
    let settings = shared.settings.billing.clone();
    let outcome = shared
        .store
        .blocking(move |s| pass::bill_once_at(s, &settings, UnixTime::now()))
        .await?;
    for low in &outcome.low_balance {
        warn_low_balance(shared, low);
    }
    for end in outcome.to_end {
        if stopping.begin(&end.rental) {
            end_rental(shared, stopping.clone(), end);
        }
    }
    let holds = shared
        .store
        .blocking(|s| crate::federation::settlement::hold_due_at(s, UnixTime::now()))
        .await?;
    for low in &holds.low_balance {
        warn_low_balance(shared, low);
    }
    if !holds.ended.is_empty() {
        shared.federation.outbox_wake.notify_one();
    }
    Ok(())
}

/// Stops a rental the wallet could not cover, in the background.
fn end_rental(shared: &Arc<Shared>, stopping: Stopping, end: ToEnd) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let why = "Ended: your wallet could not cover the next hour.".to_string();
        if let Err(e) =
            rental::stop_rental(&shared, &end.device, Some(&end.rental), Some(why)).await
        {
            tracing::warn!(device = %end.device, error = %e, "ending a rental the wallet could not cover");
        }
        stopping.finish(&end.rental);
    });
}

/// Mails the renter that their wallet will not cover the next hour.
fn warn_low_balance(shared: &Arc<Shared>, low: &LowBalance) {
    let currency = &shared.settings.billing.currency;
    let body = format!(
        "Your wallet holds {} {currency}, less than the next hour of your rental of {} ({} {currency} an hour).\n\
         When the next hour begins and the wallet cannot cover it, the rental ends and the device is wiped.\n\n\
         Your wallet: {}/wallet\n",
        crate::price::show_price(low.left),
        low.device,
        crate::price::show_price(low.rate),
        shared.settings.public_url
    );
    match mail::Mail::new(&low.renter_email, "Your wallet is running low".into(), body) {
        Ok(m) => {
            shared.mailer.send_in_background(m);
        }
        Err(e) => tracing::warn!(error = %e, "composing the low-balance mail failed"),
    }
}

#[cfg(test)]
mod concurrency;
#[cfg(test)]
mod property;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rental_being_stopped_is_not_stopped_again() {
        let stopping = Stopping::default();
        let r = RentalId::parse("rnt-1").unwrap();
        assert!(stopping.begin(&r));
        assert!(!stopping.clone().begin(&r), "a second pass starts no stop");
        stopping.finish(&r);
        assert!(stopping.begin(&r), "a stop that failed may be tried again");
    }
}

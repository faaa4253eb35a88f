//! Billing rentals by the hour (by the period of the settings), while the
//! device was reachable.
//!
//! - [`settings`]: the `[billing]` table (off unless turned on).
//! - [`meter`]: reachable seconds, charges and the fee split, in minor units.
//!
//! A job looks at every rental it has not finished with, a few times per
//! period. When a period of a rental begins it holds one period at the
//! agreed rate (`hold:<rental>:<k>`: wallet to held). When the period ends,
//! or the rental stops, it charges the seconds the device was connected in
//! it, splits that between the owner's payable and the broker's fee, and
//! releases the rest to the wallet (`settle:<rental>:<k>`). Each transfer's
//! id names its rental and period, so a job that runs twice, or is killed
//! half-way and started again, charges each period once. A wallet that
//! cannot cover a hold ends the rental cleanly (wipe, back to the market);
//! one that could not cover the next hold after this one gets its renter a
//! mail.

pub mod meter;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Shared;
use crate::ledger::{Account, LedgerError, Transfer, TransferId};
use crate::shutdown::Shutdown;
use crate::store::{Billable, Posted, StoreError};
use crate::time::UnixTime;
use crate::{mail, rental};

/// Bills until shutdown, if billing is on.
pub async fn run(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let billing = shared.settings.billing.clone();
    if !billing.enabled {
        return;
    }
    let every = (billing.period / 6).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        if let Err(e) = bill_once(&shared).await {
            tracing::warn!(error = %e, "billing run failed; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// One pass over the rentals not yet fully billed.
pub async fn bill_once(shared: &Arc<Shared>) -> Result<(), StoreError> {
    let rentals = shared.store.blocking(|s| s.rentals_to_bill()).await?;
    for r in rentals {
        bill_rental(shared, &r).await?;
    }
    Ok(())
}

async fn post(shared: &Arc<Shared>, transfer: Transfer) -> Result<Posted, StoreError> {
    shared
        .store
        .blocking(move |s| s.post(&transfer, UnixTime::now()))
        .await
}

async fn bill_rental(shared: &Arc<Shared>, r: &Billable) -> Result<(), StoreError> {
    let period = shared.settings.billing.period.as_secs() as i64;
    let now = UnixTime::now().0;
    let until = r.ended_at.map_or(now, |e| e.min(now));
    let mut billed = r.billed_periods;
    if until > r.started_at {
        // The period under way (or the last one the rental reached).
        let last = (until - r.started_at - 1) / period;
        for k in r.billed_periods..=last {
            let start = r.started_at + k * period;
            let end = start + period;
            if end <= now || r.ended_at.is_some() {
                let access_end = r.ended_at.map_or(end, |e| e.min(end));
                settle(shared, r, k, start, access_end).await?;
                billed = k + 1;
            } else if !hold(shared, r, k).await? {
                break;
            }
        }
    }
    let closed = r
        .ended_at
        .is_some_and(|e| e <= r.started_at || billed > (e.min(now) - r.started_at - 1) / period);
    let id = r.id.clone();
    shared
        .store
        .blocking(move |s| s.set_billed(&id, billed, closed))
        .await
}

fn transfer_id(kind: &str, r: &Billable, k: i64) -> Result<TransferId, StoreError> {
    Ok(TransferId::derive(kind, &[r.id.as_str(), &k.to_string()])?)
}

/// Holds period `k` of the rental; false when the wallet cannot cover it
/// (the rental is then ended).
async fn hold(shared: &Arc<Shared>, r: &Billable, k: i64) -> Result<bool, StoreError> {
    let currency = shared.settings.billing.currency.clone();
    let transfer = Transfer::simple(
        transfer_id("hold", r, k)?,
        currency.clone(),
        &format!("hold for hour {} of rental {} of {}", k + 1, r.id, r.device),
        Account::Wallet(r.renter_id),
        Account::Held(r.renter_id),
        r.rate,
    )?;
    match post(shared, transfer).await {
        Ok(Posted::Already) => Ok(true),
        Ok(Posted::Now) => {
            let (renter, c) = (r.renter_id, currency.clone());
            let left = shared
                .store
                .blocking(move |s| s.balance(&Account::Wallet(renter), &c))
                .await?;
            if left < r.rate {
                warn_low_balance(shared, r, left, &currency);
            }
            Ok(true)
        }
        Err(StoreError::Ledger(LedgerError::InsufficientFunds { .. })) => {
            tracing::info!(rental = %r.id, device = %r.device, "the renter's wallet cannot cover the hour; ending the rental");
            let (shared, device, id) = (shared.clone(), r.device.clone(), r.id.clone());
            tokio::spawn(async move {
                let why = "Ended: your wallet could not cover the next hour.".to_string();
                if let Err(e) = rental::stop_rental(&shared, &device, Some(&id), Some(why)).await {
                    tracing::warn!(%device, error = %e, "ending a rental the wallet could not cover");
                }
            });
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Charges period `k` (`[start, access_end)`) for the seconds the device
/// was connected, and releases the rest of its hold.
async fn settle(
    shared: &Arc<Shared>,
    r: &Billable,
    k: i64,
    start: i64,
    access_end: i64,
) -> Result<(), StoreError> {
    let billing = &shared.settings.billing;
    let period = billing.period.as_secs() as i64;
    let id = transfer_id("settle", r, k)?;
    let hold_id = transfer_id("hold", r, k)?;
    let (device_id, renter, currency) = (r.device_id, r.renter_id, billing.currency.clone());
    let (reachable, held, wallet, done) = shared
        .store
        .blocking({
            let (id, currency) = (id.clone(), currency.clone());
            move |s| -> Result<_, StoreError> {
                let stretches =
                    s.connected_stretches(device_id, start, access_end, UnixTime::now())?;
                Ok((
                    meter::covered(&stretches, start, access_end),
                    s.transfer_posted(&hold_id)?,
                    s.balance(&Account::Wallet(renter), &currency)?,
                    s.transfer_posted(&id)?,
                ))
            }
        })
        .await?;
    if done {
        return Ok(());
    }
    let mut amount = meter::charge(r.rate, reachable, period);
    if !held {
        // No hold was placed for this period (the job was down when it
        // began): charge what the wallet has, never more.
        amount = amount.min(wallet.max(0));
    }
    let (owner_part, fee) = match r.owner_id {
        Some(_) => meter::split(amount, billing.fee_percent),
        None => (0, amount),
    };
    let mut legs = Vec::new();
    if held {
        legs.push((Account::Held(renter), -r.rate));
        legs.push((Account::Wallet(renter), r.rate - amount));
    } else {
        legs.push((Account::Wallet(renter), -amount));
    }
    if let Some(owner) = r.owner_id {
        legs.push((Account::Payable(owner), owner_part));
    }
    legs.push((Account::Revenue, fee));
    legs.retain(|(_, a)| *a != 0);
    if legs.len() < 2 {
        return Ok(());
    }
    let memo = format!(
        "hour {} of rental {} of {}: {} of {} s reachable",
        k + 1,
        r.id,
        r.device,
        reachable,
        period
    );
    let transfer = Transfer::new(id, currency, &memo, legs)?;
    post(shared, transfer).await?;
    tracing::info!(rental = %r.id, period = k, reachable, amount, "rental period charged");
    Ok(())
}

/// Mails the renter that their wallet will not cover the next hour.
fn warn_low_balance(
    shared: &Arc<Shared>,
    r: &Billable,
    left: i64,
    currency: &crate::ledger::Currency,
) {
    let body = format!(
        "Your wallet holds {} {currency}, less than the next hour of your rental of {} ({} {currency} an hour).\n\
         When the next hour begins and the wallet cannot cover it, the rental ends and the device is wiped.\n\n\
         Your wallet: {}/wallet\n",
        crate::price::show_price(left),
        r.device,
        crate::price::show_price(r.rate),
        shared.settings.public_url
    );
    match mail::Mail::new(&r.renter_email, "Your wallet is running low".into(), body) {
        Ok(m) => {
            shared.mailer.send_in_background(m);
        }
        Err(e) => tracing::warn!(error = %e, "composing the low-balance mail failed"),
    }
}

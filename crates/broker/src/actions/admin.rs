//! What only administrators do: see every account, device and rental;
//! suspend or reinstate an account; lift a sign-in lock; suspend a device
//! (ending its rental first, cutting its session) or reinstate it; end
//! anyone's rental with a reason its renter sees; see the broker's revenue
//! and what it owes; export and import crypto payouts.
//!
//! To anyone else these actions do not exist: they answer
//! [`AdminError::NotAdmin`], which the pages and the API report like an
//! unknown address.

use std::sync::Arc;

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;
use serde::Serialize;

use super::Actor;
use crate::accounts::normalize_email;
use crate::broker::Shared;
use crate::federation::usage::Statement;
use crate::payouts::crypto::{self, CryptoError, Imported};
use crate::rental::{self, RentalError};
use crate::store::{
    AdminDevice, AdminRental, AdminUser, BucketSum, CurrencyTotal, Direction, LeaseTotal,
    PayoutRecord, PayoutState, PeerRecord, Removal, StoreError, Sum, Suspension,
};
use crate::time::UnixTime;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("only administrators may do this")]
    NotAdmin,
    #[error("no account has that email")]
    NoSuchAccount,
    #[error("you cannot suspend your own account")]
    OwnAccount,
    #[error("no device has that name")]
    NoSuchDevice,
    #[error("no such rental is open")]
    NoSuchRental,
    #[error("no active peer has that name")]
    NoSuchPeer,
    #[error(
        "{0} leases with that peer are open; they must end first (their renters stop them, or the device's owner)"
    )]
    OpenLeases(i64),
    #[error("{0}")]
    BadReason(String),
    #[error("{0}")]
    Payouts(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CryptoError> for AdminError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Store(e) => AdminError::Store(e),
            other => AdminError::Payouts(other.to_string()),
        }
    }
}

/// Days and months of revenue shown.
const REVENUE_DAYS: i64 = 31;
const REVENUE_MONTHS: i64 = 13;
/// Payouts listed on the revenue page.
const RECENT_PAYOUTS: i64 = 100;

/// The broker's money: its fees by day and month, what it owes owners, what
/// is on its way to them, and the payouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revenue {
    /// Fees per day (`YYYY-MM-DD`, UTC), the last 31 days, newest first.
    pub by_day: Vec<BucketSum>,
    /// Fees per month (`YYYY-MM`), the last 13 months, newest first.
    pub by_month: Vec<BucketSum>,
    /// Fees ever, per currency.
    pub total: Vec<Sum>,
    /// Owed to owners and not yet sent, per currency (count: owners owed).
    pub payable: Vec<Sum>,
    /// Sent to owners and not yet confirmed, per currency.
    pub in_flight: Vec<Sum>,
    /// Payouts per state and currency.
    pub payouts_by_state: Vec<PayoutStateSum>,
    /// The latest payouts, newest first.
    pub payouts: Vec<PayoutRecord>,
}

/// Payouts of one state and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayoutStateSum {
    pub state: PayoutState,
    #[serde(flatten)]
    pub sum: Sum,
}

/// A device as administrators see it, with whether it is connected now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    #[serde(flatten)]
    pub record: AdminDevice,
    pub online: bool,
}

/// Everything the administrators' page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub users: Vec<AdminUser>,
    pub devices: Vec<Device>,
    pub rentals: Vec<AdminRental>,
    pub ledger: LedgerCheck,
    pub peers: Vec<PeerRecord>,
}

/// The ledger's sums per currency (always zero) and anything wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCheck {
    pub totals: Vec<CurrencyTotal>,
    pub problems: Vec<String>,
}

/// An account whose suspension was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSuspension {
    pub email: String,
    pub suspended: bool,
}

/// A device whose suspension was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceSuspension {
    pub device: DeviceName,
    pub suspension: Option<Suspension>,
}

/// A rental an administrator ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ended {
    pub rental: RentalId,
    pub device: DeviceName,
    /// True when the sandbox is already wiped; false when the device could
    /// not be reached and is wiped as soon as it is.
    pub wiped: bool,
}

fn admin(actor: Actor) -> Result<(), AdminError> {
    if actor.is_admin && !actor.suspended {
        Ok(())
    } else {
        Err(AdminError::NotAdmin)
    }
}

/// Every account, newest first.
pub async fn users(shared: &Arc<Shared>, actor: Actor) -> Result<Vec<AdminUser>, AdminError> {
    admin(actor)?;
    Ok(shared
        .store
        .blocking(|s| s.admin_users(UnixTime::now()))
        .await?)
}

/// Every device, by name, with whether it is online.
pub async fn devices(shared: &Arc<Shared>, actor: Actor) -> Result<Vec<Device>, AdminError> {
    admin(actor)?;
    let records = shared.store.blocking(|s| s.admin_devices()).await?;
    Ok(records
        .into_iter()
        .map(|record| Device {
            online: shared.registry.is_online(&record.name),
            record,
        })
        .collect())
}

/// Rentals that have not ended, then the latest ended ones.
pub async fn rentals(shared: &Arc<Shared>, actor: Actor) -> Result<Vec<AdminRental>, AdminError> {
    admin(actor)?;
    Ok(shared.store.blocking(|s| s.admin_rentals()).await?)
}

/// Accounts, devices and rentals together.
pub async fn overview(shared: &Arc<Shared>, actor: Actor) -> Result<Overview, AdminError> {
    Ok(Overview {
        users: users(shared, actor).await?,
        devices: devices(shared, actor).await?,
        rentals: rentals(shared, actor).await?,
        ledger: ledger_check(shared, actor).await?,
        peers: peers(shared, actor).await?,
    })
}

/// Every peer broker, active first.
pub async fn peers(shared: &Arc<Shared>, actor: Actor) -> Result<Vec<PeerRecord>, AdminError> {
    admin(actor)?;
    Ok(shared.store.blocking(|s| s.peers()).await?)
}

/// Stops peering with the broker called `name`: its requests are refused
/// and its devices leave the marketplace.
pub async fn remove_peer(shared: &Arc<Shared>, actor: Actor, name: &str) -> Result<(), AdminError> {
    admin(actor)?;
    let name = name.to_string();
    let removed = shared
        .store
        .blocking(move |s| {
            let now = UnixTime::now();
            let removal = s.remove_peer(&name, now)?;
            if let Removal::Removed(id) = removal {
                crate::federation::settlement::close_removed(s, id, now)?;
            }
            Ok::<_, StoreError>(removal)
        })
        .await?;
    match removed {
        Removal::Removed(_) => Ok(()),
        Removal::NoSuchPeer => Err(AdminError::NoSuchPeer),
        Removal::OpenLeases(n) => Err(AdminError::OpenLeases(n)),
    }
}

/// This broker's side of its statement with a peer, for administrators.
#[derive(Debug, Clone)]
pub struct PeerStatement {
    pub peer: PeerRecord,
    pub statement: Statement,
    /// Leases the peer ran for renters here.
    pub run_by_peer: Vec<LeaseTotal>,
    /// Leases this broker ran for the peer's renters.
    pub run_for_peer: Vec<LeaseTotal>,
}

/// The statement with the peer called `name` (active or removed), of
/// every record.
pub async fn peer_statement(
    shared: &Arc<Shared>,
    actor: Actor,
    name: &str,
) -> Result<PeerStatement, AdminError> {
    admin(actor)?;
    let (name, own, currency) = (
        name.to_string(),
        shared.settings.federation.name.clone(),
        shared.settings.billing.currency.clone(),
    );
    shared
        .store
        .blocking(move |s| {
            let Some(peer) = s.peers()?.into_iter().find(|p| p.name == name) else {
                return Ok(Err(AdminError::NoSuchPeer));
            };
            let statement = match Statement::of(s, &own, peer.id, &currency, None, UnixTime::now())?
            {
                Ok(statement) => statement,
                Err(why) => return Ok(Err(AdminError::BadReason(why))),
            };
            Ok(Ok(PeerStatement {
                run_by_peer: s.lease_totals(Direction::Received, peer.id, None)?,
                run_for_peer: s.lease_totals(Direction::Issued, peer.id, None)?,
                statement,
                peer,
            }))
        })
        .await
        .map_err(AdminError::Store)?
}

/// Checks the ledger: the sum of every account per currency, and every
/// broken invariant in words.
pub async fn ledger_check(shared: &Arc<Shared>, actor: Actor) -> Result<LedgerCheck, AdminError> {
    admin(actor)?;
    Ok(shared
        .store
        .blocking(|s| -> Result<_, StoreError> {
            Ok(LedgerCheck {
                totals: s.ledger_totals()?,
                problems: s.ledger_problems()?,
            })
        })
        .await?)
}

/// The broker's revenue, what it owes, and its payouts.
pub async fn revenue(shared: &Arc<Shared>, actor: Actor) -> Result<Revenue, AdminError> {
    admin(actor)?;
    let now = UnixTime::now().0;
    let since_day = (now / 86_400 - (REVENUE_DAYS - 1)) * 86_400;
    let since_month = now - REVENUE_MONTHS * 31 * 86_400;
    Ok(shared
        .store
        .blocking(move |s| -> Result<_, StoreError> {
            Ok(Revenue {
                by_day: s.revenue_by("%Y-%m-%d", since_day)?,
                by_month: s.revenue_by("%Y-%m", since_month)?,
                total: s.sum_of_accounts("revenue")?,
                payable: s.sum_of_accounts("payable")?,
                in_flight: s.sum_of_accounts("payouts_in_flight")?,
                payouts_by_state: s
                    .payout_totals()?
                    .into_iter()
                    .map(|(state, sum)| PayoutStateSum { state, sum })
                    .collect(),
                payouts: s.all_payouts(RECENT_PAYOUTS)?,
            })
        })
        .await?)
}

/// Makes this period's crypto payouts and returns the CSV of every crypto
/// payout in flight, with how many were made now.
pub async fn export_crypto_payouts(
    shared: &Arc<Shared>,
    actor: Actor,
) -> Result<(String, usize), AdminError> {
    admin(actor)?;
    let settings = shared.settings.payouts.clone();
    let done = shared
        .store
        .blocking(move |s| crypto::export(s, &settings, UnixTime::now()))
        .await?;
    tracing::info!(admin = actor.id, made = done.1, "crypto payouts exported");
    Ok(done)
}

/// Records an import of crypto payouts (see [`crypto::import`]).
pub async fn import_crypto_payouts(
    shared: &Arc<Shared>,
    actor: Actor,
    csv: String,
) -> Result<Imported, AdminError> {
    admin(actor)?;
    let done = shared
        .store
        .blocking(move |s| crypto::import(s, &csv, UnixTime::now()))
        .await?;
    tracing::info!(
        admin = actor.id,
        paid = done.paid,
        failed = done.failed,
        "crypto payouts imported"
    );
    Ok(done)
}

/// Suspends the account with `email` (ending its sessions and taking its
/// devices off the market) or reinstates it. Administrators cannot suspend
/// their own account.
pub async fn set_account_suspension(
    shared: &Arc<Shared>,
    actor: Actor,
    email: &str,
    suspended: bool,
) -> Result<AccountSuspension, AdminError> {
    admin(actor)?;
    let email = normalize_email(email).map_err(|_| AdminError::NoSuchAccount)?;
    let target = email.clone();
    let found = shared
        .store
        .blocking(move |s| s.user_by_email(&target))
        .await?
        .ok_or(AdminError::NoSuchAccount)?;
    if suspended && found.id == actor.id {
        return Err(AdminError::OwnAccount);
    }
    let at = suspended.then(|| UnixTime::now().0);
    let target = email.clone();
    if !shared
        .store
        .blocking(move |s| s.set_suspended(&target, at))
        .await?
    {
        return Err(AdminError::NoSuchAccount);
    }
    tracing::info!(
        admin = actor.id,
        account = found.id,
        suspended,
        "account suspension set by an administrator"
    );
    if suspended {
        suspend_account_effects(shared, found.id).await?;
    }
    Ok(AccountSuspension { email, suspended })
}

/// What follows an account's suspension besides the store's records: its
/// devices, now unlisted, are closed to visitors on the market's terms, and
/// its own rentals end (wiped), so nothing keeps running or billing for an
/// account that can no longer sign in to stop it.
async fn suspend_account_effects(shared: &Arc<Shared>, user: i64) -> Result<(), AdminError> {
    let (devices, rentals) = shared
        .store
        .blocking(move |s| -> Result<_, StoreError> {
            Ok((s.devices_of_owner(user)?, s.rentals_of_renter(user)?))
        })
        .await?;
    for d in devices {
        shared.registry.access.refresh(&d.name).await;
    }
    for (device, r) in rentals.into_iter().filter(|(_, r)| r.ended_at.is_none()) {
        let Ok(device) = DeviceName::parse(&device) else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let why =
                "Ended: the account was suspended by the broker's administrators.".to_string();
            if let Err(e) = rental::stop_rental(&shared, &device, Some(&r.id), Some(why)).await {
                tracing::warn!(%device, error = %e, "ending a suspended account's rental");
            }
        });
    }
    Ok(())
}

/// Lifts the sign-in lock that failed attempts put on the account with
/// `email`; returns the account's email.
pub async fn unlock(shared: &Arc<Shared>, actor: Actor, email: &str) -> Result<String, AdminError> {
    admin(actor)?;
    let email = normalize_email(email).map_err(|_| AdminError::NoSuchAccount)?;
    let target = email.clone();
    let found = shared
        .store
        .blocking(move |s| {
            let Some(user) = s.user_by_email(&target)? else {
                return Ok(None);
            };
            s.clear_login_failures(&target)?;
            Ok::<_, StoreError>(Some(user.id))
        })
        .await?
        .ok_or(AdminError::NoSuchAccount)?;
    tracing::info!(
        admin = actor.id,
        account = found,
        "sign-in lock lifted by an administrator"
    );
    Ok(email)
}

/// Suspends the device called `name` with a reason its owner sees, or
/// reinstates it (`reason` is `None`). Suspending ends its rental first
/// (while the device can still be reached to wipe its sandbox), takes it
/// off the market and cuts its session; it cannot connect until
/// reinstated.
pub async fn set_device_suspension(
    shared: &Arc<Shared>,
    actor: Actor,
    name: &str,
    reason: Option<&str>,
) -> Result<DeviceSuspension, AdminError> {
    admin(actor)?;
    let name = DeviceName::parse(name).map_err(|_| AdminError::NoSuchDevice)?;
    let suspension = match reason {
        Some(text) => Some(Suspension {
            at: UnixTime::now().0,
            reason: rental::parse_reason(text).map_err(|_| {
                AdminError::BadReason(format!(
                    "Give the owner a reason of 1 to {} characters.",
                    rental::MAX_REASON
                ))
            })?,
        }),
        None => None,
    };
    if let Some(s) = &suspension {
        // Offline, the wipe waits for the device's return.
        let why = format!("Ended by an administrator: {}", s.reason);
        match rental::stop_rental(shared, &name, None, Some(why)).await {
            Ok(_) | Err(RentalError::NotRented(_)) | Err(RentalError::Device(..)) => {}
            Err(RentalError::NoSuchDevice(_)) => return Err(AdminError::NoSuchDevice),
            Err(e) => {
                tracing::warn!(device = %name, error = %e, "ending the rental of a device being suspended failed");
            }
        }
    }
    let (target, saved) = (name.clone(), suspension.clone());
    if !shared
        .store
        .blocking(move |s| s.set_device_suspension(&target, saved))
        .await?
    {
        return Err(AdminError::NoSuchDevice);
    }
    let suspending = suspension.is_some();
    if suspending && let Some((generation, _)) = shared.registry.credential(&name) {
        shared.registry.kick_generation(
            &name,
            generation,
            "the device was suspended by the broker's administrators",
        );
    }
    shared.registry.access.refresh(&name).await;
    tracing::info!(admin = actor.id, device = %name, suspended = suspending, "device suspension set by an administrator");
    Ok(DeviceSuspension {
        device: name,
        suspension,
    })
}

/// Ends the open rental with id `rental`, whoever rents it, with a reason
/// its renter sees.
pub async fn end_rental(
    shared: &Arc<Shared>,
    actor: Actor,
    rental: &str,
    reason: &str,
) -> Result<Ended, AdminError> {
    admin(actor)?;
    let reason = rental::parse_reason(reason).map_err(AdminError::BadReason)?;
    let id = RentalId::parse(rental).map_err(|_| AdminError::NoSuchRental)?;
    let lookup = id.clone();
    let device = shared
        .store
        .blocking(move |s| s.device_of_open_rental(&lookup))
        .await?
        .ok_or(AdminError::NoSuchRental)?;
    let why = format!("Ended by an administrator: {reason}");
    let wiped = match rental::stop_rental(shared, &device, Some(&id), Some(why)).await {
        Ok(_) => true,
        Err(RentalError::NotRented(_) | RentalError::NoSuchDevice(_)) => {
            return Err(AdminError::NoSuchRental);
        }
        Err(e) => {
            tracing::warn!(%device, error = %e, "ending a rental failed");
            false
        }
    };
    tracing::info!(admin = actor.id, %device, rental = %id, "rental ended by an administrator");
    Ok(Ended {
        rental: id,
        device,
        wiped,
    })
}

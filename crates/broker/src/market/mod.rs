//! The marketplace: which listed devices there are, what a visitor asks of
//! them, and the answer. Pages and API endpoints render what this module
//! finds; they never query the store for listings themselves.
//!
//! - [`query`]: filters, sort order and page, parsed from a URL query string.
//! - [`listing`]: one row per listed device, and the search over the rows.
//!
//! The store answers with every listed device in one query, and with every
//! device's uptime in another; whether a device is online comes from the
//! live registry.

pub mod listing;
pub mod query;

use std::sync::Arc;

use rpibroker_wire::DeviceName;
use rpibroker_wire::status::Uptime;

use crate::broker::Shared;
use crate::store::{ListedDevice, StoreError};
use crate::time::UnixTime;
pub use listing::{Listing, Page, Unavailable, search};
pub use query::{MarketQuery, QueryProblem};

fn with_live_state(shared: &Shared, device: ListedDevice, uptime: Option<Uptime>) -> Listing {
    Listing {
        online: shared.registry.is_online(&device.name),
        uptime,
        device,
    }
}

/// Every listed device, by name.
pub async fn load(shared: &Arc<Shared>) -> Result<Vec<Listing>, StoreError> {
    let (devices, mut uptimes) = shared
        .store
        .blocking(|s| -> Result<_, StoreError> {
            Ok((s.listed_devices()?, s.uptimes(UnixTime::now())?))
        })
        .await?;
    Ok(devices
        .into_iter()
        .map(|d| {
            let uptime = uptimes.remove(&d.id);
            with_live_state(shared, d, uptime)
        })
        .collect())
}

/// The listed device called `name`, if there is one.
pub async fn find(shared: &Arc<Shared>, name: &DeviceName) -> Result<Option<Listing>, StoreError> {
    let lookup = name.clone();
    let found = shared
        .store
        .blocking(move |s| -> Result<_, StoreError> {
            let Some(device) = s.listed_device(&lookup)? else {
                return Ok(None);
            };
            let uptime = s.uptime(device.id, UnixTime::now())?;
            Ok(Some((device, uptime)))
        })
        .await?;
    Ok(found.map(|(d, uptime)| with_live_state(shared, d, uptime)))
}

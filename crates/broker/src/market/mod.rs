//! The marketplace: which listed devices there are, what a visitor asks of
//! them, and the answer. Pages and API endpoints render what this module
//! finds; they never query the store for listings themselves.
//!
//! - [`query`]: filters, sort order and page, parsed from a URL query string.
//! - [`listing`]: one row per listed device, and the search over the rows.
//!
//! The store answers with every listed device in one query; whether a device
//! is online comes from the live registry.

pub mod listing;
pub mod query;

use std::sync::Arc;

use rpibroker_wire::DeviceName;

use crate::broker::Shared;
use crate::store::{ListedDevice, StoreError};
pub use listing::{Listing, Page, Unavailable, Uptime, search};
pub use query::{MarketQuery, QueryProblem};

fn with_live_state(shared: &Shared, device: ListedDevice) -> Listing {
    Listing {
        online: shared.registry.is_online(&device.name),
        uptime: None,
        device,
    }
}

/// Every listed device, by name.
pub async fn load(shared: &Arc<Shared>) -> Result<Vec<Listing>, StoreError> {
    let devices = shared.store.blocking(|s| s.listed_devices()).await?;
    Ok(devices
        .into_iter()
        .map(|d| with_live_state(shared, d))
        .collect())
}

/// The listed device called `name`, if there is one.
pub async fn find(shared: &Arc<Shared>, name: &DeviceName) -> Result<Option<Listing>, StoreError> {
    let lookup = name.clone();
    let device = shared
        .store
        .blocking(move |s| s.listed_device(&lookup))
        .await?;
    Ok(device.map(|d| with_live_state(shared, d)))
}

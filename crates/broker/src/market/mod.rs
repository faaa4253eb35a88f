//! The marketplace: which listed devices there are, what a visitor asks of
//! them, and the answer. Pages and API endpoints render what this module
//! finds; they never query the store for listings themselves.
//!
//! - [`query`]: filters, sort order and page, parsed from a URL query string.
//! - [`listing`]: one row per listed device, and the search over the rows.
//! - [`peers`]: devices peer brokers list, shown marked with their broker.
//!
//! The store answers with every listed device in one query, and with every
//! device's uptime in another, and [`Cache`] keeps the answer while the store
//! does not change; whether a device is online comes from the live registry
//! at each request.

pub mod listing;
pub mod peers;
pub mod query;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rpibroker_wire::DeviceName;
use rpibroker_wire::status::Uptime;

use crate::broker::Shared;
use crate::store::{ListedDevice, Store, StoreError};
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

/// Longest a cached listing is used while the store does not change: only
/// uptimes move on with time alone.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// The last listing read from the store, with the store's change stamp at
/// the time. A marketplace request uses it while the stamp is unchanged, so
/// a busy marketplace costs one stamp check per request instead of reading
/// every listed device.
#[derive(Default)]
pub struct Cache {
    last: Mutex<Option<Snapshot>>,
}

/// Every listed device with its uptime, as read from the store.
type Rows = Arc<Vec<(ListedDevice, Option<Uptime>)>>;

struct Snapshot {
    stamp: (u64, i64),
    at: Instant,
    rows: Rows,
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, Option<Snapshot>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The listing as the store has it now.
    fn read(&self, store: &Store) -> Result<Rows, StoreError> {
        let stamp = store.change_stamp()?;
        if let Some(s) = self.lock().as_ref()
            && s.stamp == stamp
            && s.at.elapsed() < CACHE_FOR
        {
            return Ok(s.rows.clone());
        }
        let mut uptimes = store.uptimes(UnixTime::now())?;
        let rows: Rows = Arc::new(
            store
                .listed_devices()?
                .into_iter()
                .map(|d| {
                    let uptime = uptimes.remove(&d.id);
                    (d, uptime)
                })
                .collect(),
        );
        *self.lock() = Some(Snapshot {
            stamp,
            at: Instant::now(),
            rows: rows.clone(),
        });
        Ok(rows)
    }
}

/// Every listed device, by name.
pub async fn load(shared: &Arc<Shared>) -> Result<Vec<Listing>, StoreError> {
    let cache = shared.market.clone();
    let rows = shared.store.blocking(move |s| cache.read(s)).await?;
    Ok(rows
        .iter()
        .map(|(d, uptime)| with_live_state(shared, d.clone(), *uptime))
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

//! Devices that peer brokers list, as pulled from them (see
//! [`crate::federation::listings`]): shown on the marketplace marked with
//! the broker that manages them, rented there. A peer that missed several
//! pulls in a row has its devices hidden until a pull works again.

use std::sync::Arc;

use rpibroker_wire::verification::Figures;

use crate::broker::Shared;
use crate::federation::wire::ExportedDevice;
use crate::store::StoreError;

/// A device a peer broker manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOffer {
    /// The managing broker's name and URL.
    pub broker: String,
    pub broker_url: String,
    pub device: ExportedDevice,
}

impl PeerOffer {
    pub fn figures(&self) -> Figures {
        Figures {
            cpu_millicores: self.device.cpu_millicores,
            memory_bytes: self.device.memory_bytes,
            disk_bytes: self.device.disk_bytes,
        }
    }

    /// Where a renter rents it: its page on the managing broker.
    pub fn href(&self) -> String {
        format!("{}/market/{}", self.broker_url, self.device.name)
    }
}

/// Every visible peer device, by broker and name.
pub async fn load(shared: &Arc<Shared>) -> Result<Vec<PeerOffer>, StoreError> {
    let hide_after = shared.settings.federation.hide_after_missed_pulls;
    let rows = shared
        .store
        .blocking(move |s| s.visible_peer_devices(hide_after))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let device = serde_json::from_str(&r.listing).ok()?;
            Some(PeerOffer {
                broker: r.peer,
                broker_url: r.peer_url,
                device,
            })
        })
        .collect())
}

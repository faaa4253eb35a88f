//! Devices that peer brokers list, as pulled from them (see
//! [`crate::federation::listings`]): shown on the marketplace marked with
//! the broker that manages them, rented there. The marketplace's filters
//! and sort order apply to them as to this broker's own devices. A peer
//! that missed several pulls in a row has its devices hidden until a pull
//! works again.

use std::sync::Arc;

use rpibroker_wire::verification::Figures;

use super::listing::MarketRow;
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
    /// Its price is in this broker's currency: price filters and sorting
    /// compare it with others' (a price in another currency counts as none).
    pub priced_here: bool,
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

/// Judged like this broker's own listings; peers report no uptime.
impl MarketRow for PeerOffer {
    fn name(&self) -> &str {
        &self.device.name
    }

    fn broker(&self) -> Option<&str> {
        Some(&self.broker)
    }

    fn judged_figures(&self) -> Figures {
        self.figures()
    }

    fn architecture(&self) -> Option<&str> {
        self.device.arch.as_deref().filter(|a| !a.is_empty())
    }

    fn rate(&self) -> Option<i64> {
        self.device.hourly_rate.filter(|_| self.priced_here)
    }

    fn uptime_permille(&self) -> Option<u16> {
        None
    }

    fn is_verified(&self) -> bool {
        self.device.verified
    }

    fn is_available(&self) -> bool {
        self.device.available
    }
}

/// Every visible peer device, by broker and name.
pub async fn load(shared: &Arc<Shared>) -> Result<Vec<PeerOffer>, StoreError> {
    let hide_after = shared.settings.federation.hide_after_missed_pulls;
    let currency = shared.settings.billing.currency.to_string();
    let rows = shared
        .store
        .blocking(move |s| s.visible_peer_devices(hide_after))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let device: ExportedDevice = serde_json::from_str(&r.listing).ok()?;
            Some(PeerOffer {
                broker: r.peer,
                broker_url: r.peer_url,
                priced_here: device.currency == currency,
                device,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::listing::matching;
    use crate::market::query::MarketQuery;

    fn offer(
        broker: &str,
        name: &str,
        rate: i64,
        currency: &str,
        memory_gib: Option<u64>,
    ) -> PeerOffer {
        PeerOffer {
            broker: broker.into(),
            broker_url: format!("http://{broker}.example"),
            device: ExportedDevice {
                name: name.into(),
                arch: Some("aarch64".into()),
                cpu_millicores: Some(4000),
                memory_bytes: memory_gib.map(|g| g << 30),
                disk_bytes: None,
                verified: true,
                hourly_rate: Some(rate),
                currency: currency.into(),
                available: name != "busy",
                period_secs: None,
            },
            priced_here: currency == "USD",
        }
    }

    fn found(offers: &[PeerOffer], raw: &str) -> Vec<String> {
        let (q, problems) = MarketQuery::parse(Some(raw));
        assert_eq!(problems, vec![], "{raw}");
        matching(offers, &q, "here")
            .iter()
            .map(|o| format!("{}/{}", o.broker, o.device.name))
            .collect()
    }

    #[test]
    fn filters_and_sorting_judge_peer_devices_like_own_ones() {
        let offers = vec![
            offer("beta", "small", 50, "USD", Some(1)),
            offer("beta", "busy", 100, "USD", Some(8)),
            offer("gamma", "small", 300, "USD", None),
            offer("gamma", "euro", 10, "EUR", Some(8)),
        ];
        let cases = [
            (
                "",
                vec!["beta/busy", "gamma/euro", "beta/small", "gamma/small"],
            ),
            ("max_price=1", vec!["beta/busy", "beta/small"]),
            ("min_memory=4", vec!["beta/busy", "gamma/euro"]),
            ("available=on&broker=beta", vec!["beta/small"]),
            ("broker=gamma", vec!["gamma/euro", "gamma/small"]),
            ("broker=here", vec![]),
            ("min_uptime=0", vec![]),
            ("arch=x86_64", vec![]),
            (
                "sort=price&order=desc",
                vec!["gamma/small", "beta/busy", "beta/small", "gamma/euro"],
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(found(&offers, raw), expected, "{raw}");
        }
    }
}

//! Listings between brokers. This broker offers its OWN listed devices
//! (never a peer's) as numbered changes, so a peer pulls only what changed
//! since its cursor, removals as tombstones. Tombstones are pruned after a
//! retention (a week by default); a peer whose cursor is older than the
//! pruned ones is answered with the full listing, marked `resync`, and
//! replaces what it had from this broker. It pulls each peer's listings
//! every few minutes (with jitter), fully once a day, into `peer_devices`;
//! a peer that missed several pulls in a row has its devices hidden until a
//! pull works again. A pull that works also closes the peer's circuit
//! breaker ([`super::outbox`]), so what waited for it goes out at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use rand::RngExt;
use sha2::{Digest, Sha256};

use super::client::{self, CallError};
use super::identity::KeyRing;
use super::signature::SignatureError;
use super::url::Origin;
use super::wire::{ExportedDevice, LISTINGS_PATH, ListingChange, ListingsPage, MAX_PAGE};
use crate::broker::Shared;
use crate::market::Listing;
use crate::shutdown::Shutdown;
use crate::store::{Exports, PeerRecord, Store, StoreError};
use crate::time::UnixTime;

/// Most pages one pull reads (a peer listing more than this many times
/// [`MAX_PAGE`] devices is cut off there).
pub const MAX_PAGES: usize = 200;

/// Reads `cursor` and `limit` from a listings query.
pub fn parse_query(raw: Option<&str>) -> Result<(i64, usize), String> {
    let mut cursor = 0;
    let mut limit = MAX_PAGE;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "cursor" => {
                cursor = value
                    .parse::<i64>()
                    .ok()
                    .filter(|c| *c >= 0)
                    .ok_or("cursor must be a whole number, 0 or more")?;
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or(format!("limit must be 1 to {MAX_PAGE}"))?;
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok((cursor, limit))
}

/// A listed device as offered to peers, priced in `currency` per
/// `period_secs`.
pub fn export(listing: &Listing, currency: &str, period_secs: i64) -> ExportedDevice {
    let figures = listing.figures();
    ExportedDevice {
        name: listing.device.name.to_string(),
        arch: listing.arch().map(str::to_string),
        cpu_millicores: figures.cpu_millicores,
        memory_bytes: figures.memory_bytes,
        disk_bytes: figures.disk_bytes,
        verified: listing.verified(),
        hourly_rate: listing.device.hourly_rate,
        currency: currency.to_string(),
        available: listing.availability().is_ok(),
        period_secs: (period_secs != 3600).then_some(period_secs),
    }
}

/// Each exported device's name, digest and JSON.
pub fn export_rows(devices: &[ExportedDevice]) -> Vec<(String, String, String)> {
    devices
        .iter()
        .map(|d| {
            let json = serde_json::to_string(d).expect("listings serialize");
            let digest = hex::encode(Sha256::digest(json.as_bytes()));
            (d.name.clone(), digest, json)
        })
        .collect()
}

/// Numbers what changed in `devices` since the last refresh, and answers
/// the changes after `cursor`.
pub fn page_from(
    store: &Store,
    devices: &[ExportedDevice],
    cursor: i64,
    limit: usize,
    now: UnixTime,
) -> Result<ListingsPage, StoreError> {
    store.refresh_exports(&export_rows(devices), now)?;
    let Exports {
        mut rows,
        latest,
        resync,
    } = store.exports_since(cursor, limit + 1)?;
    let from = if resync { 0 } else { cursor };
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map_or(from, |r| r.seq)
    } else {
        latest.max(from)
    };
    let changes = rows
        .into_iter()
        .map(|r| ListingChange {
            seq: r.seq,
            device: r.listing.and_then(|l| serde_json::from_str(&l).ok()),
            name: r.name,
        })
        .collect();
    Ok(ListingsPage {
        changes,
        cursor: next,
        more,
        resync,
    })
}

/// The page of this broker's listings after `cursor`.
pub async fn page(
    shared: &Arc<Shared>,
    cursor: i64,
    limit: usize,
) -> Result<ListingsPage, StoreError> {
    let currency = shared.settings.billing.currency.to_string();
    let period = shared.settings.billing.period.as_secs() as i64;
    let devices: Vec<ExportedDevice> = crate::market::load(shared)
        .await?
        .iter()
        .map(|l| export(l, &currency, period))
        .collect();
    shared
        .store
        .blocking(move |s| page_from(s, &devices, cursor, limit, UnixTime::now()))
        .await
}

/// What one pull brought.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PullStats {
    pub full: bool,
    pub pages: usize,
    pub changes: usize,
    /// Response bytes read.
    pub bytes: usize,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{peer} sent listings that do not hold together: {why}")]
    Bad { peer: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("peer {peer}'s URL: {why}")]
    Url { peer: String, why: String },
}

/// Reads every page of `peer`'s changes after `cursor` (0: everything);
/// its full listing instead when the peer says the cursor is too old
/// (`stats.full` then tells).
pub async fn fetch(
    http: &reqwest::Client,
    ring: &KeyRing,
    peer: &PeerRecord,
    cursor: i64,
) -> Result<(Vec<(String, Option<String>, i64)>, i64, PullStats), PullError> {
    let origin = Origin::parse(&peer.base_url).map_err(|why| PullError::Url {
        peer: peer.name.clone(),
        why,
    })?;
    let bad = |why: String| PullError::Bad {
        peer: peer.name.clone(),
        why,
    };
    let keys = peer.keys.clone();
    let key_of = move |id: &str| keys.iter().find(|k| k.keyid == id).cloned();
    let mut stats = PullStats {
        full: cursor == 0,
        ..PullStats::default()
    };
    let mut changes = Vec::new();
    let mut at = cursor;
    loop {
        if stats.pages >= MAX_PAGES {
            return Err(bad(format!("more than {MAX_PAGES} pages")));
        }
        let path = format!("{LISTINGS_PATH}?cursor={at}&limit={MAX_PAGE}");
        let answer = client::call(
            http,
            ring,
            &origin,
            Method::GET,
            &path,
            Vec::new(),
            None,
            &key_of,
        )
        .await?;
        stats.pages += 1;
        stats.bytes += answer.body.len();
        let page: ListingsPage =
            serde_json::from_slice(&answer.body).map_err(|e| bad(e.to_string()))?;
        if page.changes.len() > MAX_PAGE {
            return Err(bad(format!("a page of more than {MAX_PAGE} changes")));
        }
        let mut last = at;
        if page.resync {
            // The peer pruned removals this broker has not seen: what was
            // read so far is superseded by its full listing, which starts here.
            tracing::info!(peer = %peer.name, cursor = at, "the peer no longer keeps the removals after this cursor; pulling its full listing");
            changes.clear();
            stats.full = true;
            last = 0;
        }
        for change in page.changes {
            if change.seq <= last {
                return Err(bad(
                    "changes are not in ascending order after the cursor".into()
                ));
            }
            last = change.seq;
            rpibroker_wire::DeviceName::parse(&change.name)
                .map_err(|e| bad(format!("device name: {e}")))?;
            let listing = match change.device {
                Some(device) => {
                    device.check().map_err(bad)?;
                    if device.name != change.name {
                        return Err(bad(format!("change {} names two devices", change.seq)));
                    }
                    Some(serde_json::to_string(&device).expect("listings serialize"))
                }
                None => None,
            };
            changes.push((change.name, listing, change.seq));
        }
        if page.cursor < last {
            return Err(bad("the cursor went backwards".into()));
        }
        at = page.cursor;
        if !page.more {
            break;
        }
    }
    stats.changes = changes.len();
    Ok((changes, at, stats))
}

/// Pulls `peer`'s listings once: fully when `full` (or when the peer
/// pruned removals past its cursor), else the changes since its cursor;
/// stores them, or counts a missed pull.
pub async fn pull(
    store: &Store,
    http: &reqwest::Client,
    ring: &KeyRing,
    peer: &PeerRecord,
    full: bool,
) -> Result<PullStats, PullError> {
    let cursor = if full { 0 } else { peer.listings_cursor };
    let mut fetched = fetch(http, ring, peer, cursor).await;
    if let Err(PullError::Call(CallError::BadSignature {
        why: SignatureError::UnknownKey(_),
        ..
    })) = &fetched
    {
        // The peer may have rotated its key: learn the new one and try again.
        if let Ok(Some(keys)) = super::peering::refresh_keys(store, http, peer).await {
            let renewed = PeerRecord {
                keys,
                ..peer.clone()
            };
            fetched = fetch(http, ring, &renewed, cursor).await;
        }
    }
    match fetched {
        Ok((changes, next, stats)) => {
            let id = peer.id;
            store
                .blocking(move |s| {
                    s.apply_peer_listings(id, &changes, stats.full, next, UnixTime::now())
                })
                .await?;
            Ok(stats)
        }
        Err(e) => {
            let id = peer.id;
            store.blocking(move |s| s.record_missed_pull(id)).await?;
            Err(e)
        }
    }
}

/// `base` varied by up to a fifth either way.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// Deletes the tombstones of this broker's own devices removed longer ago
/// than the retention; a peer whose cursor is older gets the full listing.
async fn prune(shared: &Arc<Shared>) {
    let retention =
        i64::try_from(shared.settings.federation.tombstone_retention.as_secs()).unwrap_or(i64::MAX);
    let before = UnixTime(UnixTime::now().0.saturating_sub(retention));
    match shared
        .store
        .blocking(move |s| s.prune_export_tombstones(before))
        .await
    {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "pruned the tombstones of devices no longer listed"),
        Err(e) => tracing::error!(error = %e, "pruning listing tombstones failed"),
    }
}

/// `peer`, given up on for a while, answers again: what waited for it is
/// delivered now.
async fn reachable_again(shared: &Arc<Shared>, peer: &PeerRecord) {
    tracing::info!(peer = %peer.name, "a peer answers again");
    let id = peer.id;
    if let Err(e) = shared
        .store
        .blocking(move |s| s.messages_due_now(id, UnixTime::now()))
        .await
    {
        tracing::error!(error = %e, "rescheduling the messages to a peer failed");
    }
    shared.federation.outbox_wake.notify_one();
}

/// Pulls every active peer's listings every few minutes, and prunes old
/// tombstones of this broker's own listings now and then, until shutdown.
pub async fn run(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let settings = shared.settings.federation.clone();
    let mut pruned_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(jittered(settings.pull_interval)) => {}
            _ = shutdown.wait() => return,
        }
        if pruned_at.is_none_or(|at| at.elapsed() >= settings.tombstone_prune_interval) {
            pruned_at = Some(Instant::now());
            prune(&shared).await;
        }
        let peers = match shared.store.blocking(|s| s.peers()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "reading the peers failed");
                continue;
            }
        };
        let ring = match KeyRing::load_or_create(&shared.settings.data_dir, UnixTime::now()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading the federation keys failed");
                continue;
            }
        };
        let now = UnixTime::now().0;
        let resync = i64::try_from(settings.full_resync_interval.as_secs()).unwrap_or(i64::MAX);
        for peer in peers.iter().filter(|p| p.active) {
            let full = peer.last_full_at.is_none_or(|at| now - at >= resync);
            match pull(&shared.store, &shared.federation.http, &ring, peer, full).await {
                Ok(stats) => {
                    tracing::debug!(peer = %peer.name, ?stats, "pulled listings");
                    if shared.federation.breakers.answered(peer.id) {
                        reachable_again(&shared, peer).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(peer = %peer.name, missed = peer.missed_pulls + 1, error = %e, "pulling listings failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_bounded() {
        assert_eq!(parse_query(None).unwrap(), (0, MAX_PAGE));
        assert_eq!(parse_query(Some("cursor=7&limit=5")).unwrap(), (7, 5));
        for bad in [
            "cursor=-1",
            "limit=0",
            "limit=100000",
            "cursor=x",
            "other=1",
        ] {
            assert!(parse_query(Some(bad)).is_err(), "{bad}");
        }
    }

    fn device(name: &str, rate: i64) -> ExportedDevice {
        ExportedDevice {
            name: name.into(),
            arch: Some("aarch64".into()),
            cpu_millicores: Some(4000),
            memory_bytes: None,
            disk_bytes: None,
            verified: true,
            hourly_rate: Some(rate),
            currency: "USD".into(),
            available: true,
            period_secs: None,
        }
    }

    #[test]
    fn pages_carry_only_changes_after_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let devices = vec![device("a", 1), device("b", 2), device("c", 3)];
        let first = page_from(&store, &devices, 0, 2, UnixTime(1)).unwrap();
        assert_eq!(
            (first.changes.len(), first.more, first.cursor),
            (2, true, 2)
        );
        let rest = page_from(&store, &devices, first.cursor, 2, UnixTime(1)).unwrap();
        assert_eq!((rest.changes.len(), rest.more, rest.cursor), (1, false, 3));
        let none = page_from(&store, &devices, rest.cursor, 2, UnixTime(2)).unwrap();
        assert!(none.changes.is_empty() && none.cursor == 3);
        let changed = vec![device("a", 1), device("c", 9)];
        let delta = page_from(&store, &changed, 3, 10, UnixTime(3)).unwrap();
        let seen: Vec<(&str, Option<i64>)> = delta
            .changes
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.device.as_ref().and_then(|d| d.hourly_rate),
                )
            })
            .collect();
        assert_eq!(seen, [("c", Some(9)), ("b", None)]);
    }

    #[test]
    fn a_cursor_older_than_the_pruned_tombstones_gets_the_full_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let all = vec![device("a", 1), device("b", 2), device("c", 3)];
        let first = page_from(&store, &all, 0, 10, UnixTime(1)).unwrap();
        assert_eq!(first.cursor, 3);
        let without_b = vec![device("a", 1), device("c", 3)];
        let removal = page_from(&store, &without_b, 3, 10, UnixTime(2)).unwrap();
        assert_eq!((removal.changes.len(), removal.cursor), (1, 4));
        assert_eq!(store.prune_export_tombstones(UnixTime(3)).unwrap(), 1);

        // A peer still at 3 never saw b go: it is told to start over, and
        // pages through the full listing without being told so again.
        let stale = page_from(&store, &without_b, 3, 1, UnixTime(4)).unwrap();
        assert!(stale.resync && stale.more);
        assert_eq!(stale.changes[0].name, "a");
        let rest = page_from(&store, &without_b, stale.cursor, 1, UnixTime(4)).unwrap();
        assert!(!rest.resync && !rest.more);
        assert_eq!(rest.changes[0].name, "c");
        // The flag is on the wire only when set.
        let json = serde_json::to_value(&rest).unwrap();
        assert!(json.get("resync").is_none(), "{json}");
        assert_eq!(serde_json::to_value(&stale).unwrap()["resync"], true);
        // A peer that saw the removal goes on with changes.
        let current = page_from(&store, &without_b, removal.cursor, 10, UnixTime(4)).unwrap();
        assert!(!current.resync);
    }
}

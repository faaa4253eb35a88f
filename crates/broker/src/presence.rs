//! Device presence in the store: whether each device is online, since when,
//! when it was last seen, and the stretches of connection behind uptime.
//! Events from the registry are written in order by one background task, so
//! the store never sees "offline" overtake the "online" that preceded it.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::registry::Registry;
use crate::store::Store;
use crate::time::UnixTime;

/// How often `last_seen` (and the connected stretch behind uptime) is
/// refreshed for connected devices.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// How often stretches too old for any uptime window are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

enum Event {
    Online(i64, UnixTime),
    Offline(i64, UnixTime),
}

/// The sending side, held by the registry.
#[derive(Clone)]
pub struct Presence {
    tx: mpsc::UnboundedSender<Event>,
}

/// The writing side, run as a task by the broker.
pub struct PresenceWriter {
    rx: mpsc::UnboundedReceiver<Event>,
    store: Store,
}

pub fn channel(store: Store) -> (Presence, PresenceWriter) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Presence { tx }, PresenceWriter { rx, store })
}

impl Presence {
    pub fn online(&self, device_id: i64) {
        let _ = self.tx.send(Event::Online(device_id, UnixTime::now()));
    }

    pub fn offline(&self, device_id: i64) {
        let _ = self.tx.send(Event::Offline(device_id, UnixTime::now()));
    }
}

impl PresenceWriter {
    /// Writes events until every [`Presence`] is gone, refreshing `last_seen`
    /// of the registry's online devices every [`HEARTBEAT`].
    pub async fn run(mut self, registry: Weak<Registry>) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut purge = tokio::time::interval(PURGE_EVERY);
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = purge.tick() => {
                    if let Err(e) = self.store.blocking(|s| s.purge_uptime(UnixTime::now())).await {
                        tracing::warn!(error = %e, "could not purge old uptime records");
                    }
                }
                event = self.rx.recv() => {
                    let Some(event) = event else { return };
                    let result = self.store.blocking(move |s| match event {
                        Event::Online(id, at) => s.set_online(id, at),
                        Event::Offline(id, at) => s.set_offline(id, at),
                    }).await;
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "could not record device presence");
                    }
                }
                _ = heartbeat.tick() => {
                    let Some(registry) = registry.upgrade() else { return };
                    let ids = registry.online_ids();
                    if ids.is_empty() {
                        continue;
                    }
                    let result = self.store.blocking(move |s| s.touch_online(&ids, UnixTime::now())).await;
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "could not refresh device presence");
                    }
                }
            }
        }
    }
}

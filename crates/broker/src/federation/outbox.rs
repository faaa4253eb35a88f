//! Messages to peers that must arrive (a renter's stop of a lease), kept in
//! the store until the peer confirms them, retried with exponential backoff
//! and jitter. A circuit breaker per peer stops trying a peer that failed
//! several times in a row for a while, so one unreachable peer costs a call
//! per cool-down, not one per message. When a pull of the peer's listings
//! works again, its breaker closes and its messages are due at once, so a
//! renter's stop reaches it soon after the network heals. The same task
//! meters the leases this broker runs ([`super::metering`]) and pulls the
//! usage records of the leases its renters hold ([`super::settlement`]),
//! which also tell it of leases their lessor ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Method;
use rand::RngExt;

use super::client::CallError;
use crate::broker::Shared;
use crate::shutdown::Shutdown;
use crate::store::{OutboxMessage, PeerRecord};
use crate::time::UnixTime;

/// Failures in a row after which a peer's breaker opens.
const BREAKER_FAILURES: u32 = 3;
/// How long an open breaker keeps a peer from being called.
const BREAKER_COOL_DOWN: Duration = Duration::from_secs(30);
/// Longest wait between two attempts at one message.
const MAX_BACKOFF_SECS: i64 = 600;
/// Messages delivered per round.
const BATCH: usize = 100;

/// Each peer's breaker.
#[derive(Default)]
pub struct Breakers(Mutex<HashMap<i64, Breaker>>);

#[derive(Default, Clone, Copy)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breakers {
    /// Whether peer `peer_id` may be called now.
    pub fn allows(&self, peer_id: i64) -> bool {
        let map = self.0.lock().expect("breakers lock");
        map.get(&peer_id)
            .and_then(|b| b.open_until)
            .is_none_or(|until| Instant::now() >= until)
    }

    /// Closes peer `peer_id`'s breaker, as another call to it (a pull of
    /// its listings) just worked; whether calls to it had been failing, so
    /// what waited for the peer can go at once rather than after the
    /// cool-down and backoff.
    pub fn answered(&self, peer_id: i64) -> bool {
        let mut map = self.0.lock().expect("breakers lock");
        map.remove(&peer_id).is_some_and(|b| b.failures > 0)
    }

    /// Records the outcome of a call to peer `peer_id`.
    pub fn record(&self, peer_id: i64, ok: bool) {
        let mut map = self.0.lock().expect("breakers lock");
        let b = map.entry(peer_id).or_default();
        if ok {
            *b = Breaker::default();
        } else {
            b.failures += 1;
            if b.failures >= BREAKER_FAILURES {
                b.open_until = Some(Instant::now() + BREAKER_COOL_DOWN);
            }
        }
    }
}

/// Seconds before attempt `attempts + 1`: doubling from one second, capped,
/// varied by up to a fifth.
fn backoff(attempts: i64) -> i64 {
    let base = 1i64
        .checked_shl(u32::try_from(attempts.clamp(0, 20)).unwrap_or(20))
        .unwrap_or(MAX_BACKOFF_SECS)
        .min(MAX_BACKOFF_SECS);
    let jitter = rand::rng().random_range(0..=base / 5);
    base + jitter
}

/// Whether a refusal means the message can never be delivered (the peer
/// understood it and said no), so retrying is pointless.
fn permanent(e: &CallError) -> bool {
    matches!(e, CallError::Refused { status, .. } if (400..500).contains(status) && *status != 408 && *status != 429)
}

async fn deliver(shared: &Arc<Shared>, peer: &PeerRecord, m: &OutboxMessage) {
    let breakers = &shared.federation.breakers;
    if !breakers.allows(peer.id) {
        return;
    }
    let result = super::leases::call_peer(
        shared,
        peer,
        Method::POST,
        &m.path,
        m.body.clone().into_bytes(),
        Some(&m.idempotency_key),
    )
    .await;
    let now = UnixTime::now();
    let id = m.id;
    let stored = match result {
        Ok(_) => {
            breakers.record(peer.id, true);
            tracing::info!(peer = %peer.name, path = %m.path, "delivered a message to a peer");
            shared
                .store
                .blocking(move |s| s.message_delivered(id, now))
                .await
        }
        Err(e) if permanent(&e) => {
            breakers.record(peer.id, true);
            tracing::warn!(peer = %peer.name, path = %m.path, error = %e, "a peer refused a message for good");
            let (peer_id, key) = (peer.id, m.idempotency_key.clone());
            let unknown = matches!(e, CallError::Refused { status: 404, .. });
            shared
                .store
                .blocking(move |s| {
                    s.message_delivered(id, now)?;
                    match super::leases::stopped_lease(&key) {
                        // The peer never made the lease this broker asked
                        // for: nothing of it will come.
                        Some(lease) if unknown => {
                            super::settlement::drop_unknown(s, peer_id, lease, &key, now)
                        }
                        _ => Ok(()),
                    }
                })
                .await
        }
        Err(e) => {
            breakers.record(peer.id, false);
            let next = now.0 + backoff(m.attempts);
            tracing::warn!(peer = %peer.name, path = %m.path, attempts = m.attempts + 1, error = %e, "delivering a message to a peer failed; will retry");
            let why = e.to_string();
            shared
                .store
                .blocking(move |s| s.message_failed(id, &why, next))
                .await
        }
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, "recording a delivery failed");
    }
}

/// Delivers every message due now.
pub async fn deliver_due(shared: &Arc<Shared>) {
    let loaded = shared
        .store
        .blocking(|s| {
            let due = s.due_messages(UnixTime::now(), BATCH)?;
            Ok::<_, crate::store::StoreError>((due, s.peers()?))
        })
        .await;
    let (due, peers) = match loaded {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "reading the outbox failed");
            return;
        }
    };
    for m in &due {
        match peers.iter().find(|p| p.id == m.peer_id) {
            Some(peer) => deliver(shared, peer, m).await,
            None => tracing::error!(message = m.id, "a queued message names no known peer"),
        }
    }
}

/// Delivers queued messages every second (and at once when one is
/// queued), and pulls peers' usage records every `lease_poll` (and a
/// peer's at once when it says it issued news), until shutdown.
pub async fn run(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let poll = shared.settings.federation.lease_poll_interval;
    let mut last_poll = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shared.federation.outbox_wake.notified() => {}
            _ = shutdown.wait() => return,
        }
        deliver_due(&shared).await;
        let soon: Vec<i64> = {
            let mut set = shared
                .federation
                .pull_soon
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            set.drain().collect()
        };
        for peer in soon {
            super::settlement::pull_peer(&shared, peer).await;
        }
        if last_poll.elapsed() >= poll {
            last_poll = Instant::now();
            super::settlement::pull_all(&shared).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        for (attempts, base) in [(0, 1), (1, 2), (3, 8), (9, 512), (10, 600), (60, 600)] {
            let b = backoff(attempts);
            assert!((base..=base + base / 5).contains(&b), "{attempts}: {b}");
        }
    }

    #[test]
    fn a_breaker_opens_after_failures_in_a_row_and_closes_on_success() {
        let breakers = Breakers::default();
        breakers.record(1, false);
        breakers.record(1, false);
        assert!(breakers.allows(1));
        breakers.record(1, true);
        breakers.record(1, false);
        breakers.record(1, false);
        assert!(breakers.allows(1), "the success reset the count");
        breakers.record(1, false);
        assert!(!breakers.allows(1));
        assert!(breakers.allows(2), "each peer has its own");
    }

    #[test]
    fn a_peer_that_answers_another_call_closes_its_breaker() {
        let breakers = Breakers::default();
        assert!(!breakers.answered(1), "nothing failed");
        breakers.record(1, true);
        assert!(!breakers.answered(1), "nothing failed since");
        for _ in 0..BREAKER_FAILURES {
            breakers.record(1, false);
        }
        assert!(!breakers.allows(1));
        assert!(breakers.answered(1), "calls to it had failed");
        assert!(breakers.allows(1), "the peer is called again at once");
        breakers.record(1, false);
        assert!(breakers.allows(1), "its failures were forgotten");
    }
}

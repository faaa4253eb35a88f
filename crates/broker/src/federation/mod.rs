//! Federation: brokers that list each other's devices.
//!
//! - [`identity`]: this broker's ed25519 keys, their rotation and validity.
//! - [`signature`]: HTTP Message Signatures (RFC 9421) and Content-Digest
//!   (RFC 9530) on every request and response between brokers.
//! - [`wire`]: what brokers send each other.
//! - [`url`]: a broker's base URL, as signatures cover it.
//! - [`client`]: calling a peer and checking its answer.
//! - [`server`]: this broker's federation endpoints, served on the API
//!   listener: its self-description at `/.well-known/rpibroker-broker`, and
//!   the signed `/federation/v1/…` endpoints.
//! - [`peering`]: invites, and accepting one (consent on both sides).
//! - [`listings`]: offering this broker's own devices to peers, and pulling
//!   theirs.
//! - [`leases`]: renting a peer's device (lessee), and running a rental of
//!   an own device for a peer (lessor).
//! - [`usage`]: signed, hash-chained usage records of leases.
//! - [`metering`]: the lessor's side: metering leased rentals, issuing
//!   their records, and booking what the peer owes, every few seconds.
//! - [`settlement`]: the lessee's side: holding renters' money, booking
//!   the peer's records, and comparing chains.
//! - [`outbox`]: messages to peers retried until delivered; runs the pulls
//!   of usage records.
//! - [`settings`]: the `[federation]` table.

pub mod client;
pub mod identity;
pub mod leases;
pub mod listings;
pub mod metering;
pub mod outbox;
pub mod peering;
pub mod server;
pub mod settings;
pub mod settlement;
pub mod signature;
pub mod url;
pub mod usage;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest time between two readings of one peer's published keys on
/// account of requests signed with a key no peer has.
const KEY_REFRESH_EVERY: Duration = Duration::from_secs(60);

/// What the running broker keeps for federation.
pub struct Federation {
    /// Nonces of signed requests this broker accepted recently.
    pub nonces: signature::NonceCache,
    /// Client for calls to peers.
    pub http: reqwest::Client,
    /// Each peer's circuit breaker.
    pub breakers: outbox::Breakers,
    /// Wakes the outbox when a message was queued, or a peer's records
    /// are to be pulled now.
    pub outbox_wake: tokio::sync::Notify,
    /// Peers that said they issued records worth pulling now.
    pub pull_soon: Mutex<HashSet<i64>>,
    /// When each peer's keys were last read again.
    key_refreshes: Mutex<HashMap<i64, Instant>>,
}

impl Default for Federation {
    fn default() -> Self {
        Self {
            nonces: signature::NonceCache::default(),
            http: client::http_client(),
            breakers: outbox::Breakers::default(),
            outbox_wake: tokio::sync::Notify::new(),
            pull_soon: Mutex::default(),
            key_refreshes: Mutex::default(),
        }
    }
}

impl Federation {
    /// Whether peer `peer_id`'s keys may be read again now (and notes that
    /// they are), so unknown keys cannot make this broker call peers often.
    pub fn may_refresh(&self, peer_id: i64) -> bool {
        let mut last = self.key_refreshes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last
            .get(&peer_id)
            .is_some_and(|at| now.duration_since(*at) < KEY_REFRESH_EVERY)
        {
            return false;
        }
        last.insert(peer_id, now);
        true
    }
}

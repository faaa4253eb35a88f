//! What brokers send each other, as JSON: a broker's self-description, the
//! peering request and answer, pages of listings, and errors. Every field a
//! peer sends is checked here before anything else looks at it.

use serde::{Deserialize, Serialize};

use super::identity::PublicKey;
use rpibroker_wire::DeviceName;

/// Path of the document describing this broker.
pub const WELL_KNOWN_PATH: &str = "/.well-known/rpibroker-broker";
/// Where a broker presents an invite to become a peer.
pub const PEERING_PATH: &str = "/federation/v1/peering";
/// Where a peer pulls this broker's listings.
pub const LISTINGS_PATH: &str = "/federation/v1/listings";

/// Most keys a broker may publish at once.
pub const MAX_KEYS: usize = 8;
/// Most listings on one page.
pub const MAX_PAGE: usize = 1000;
/// Largest response body read from a peer (a page of listings).
pub const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;

/// A broker as it describes itself at [`WELL_KNOWN_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerDocument {
    pub name: String,
    /// The base URL its federation endpoints live under.
    pub url: String,
    /// Its keys, each with its validity.
    pub keys: Vec<PublicKey>,
}

impl BrokerDocument {
    /// Checks the name, URL and keys.
    pub fn check(&self) -> Result<(), String> {
        super::settings::check_name(&self.name)?;
        super::url::Origin::parse(&self.url)?;
        if self.keys.is_empty() || self.keys.len() > MAX_KEYS {
            return Err(format!("a broker publishes 1 to {MAX_KEYS} keys"));
        }
        for key in &self.keys {
            if key.keyid.is_empty() || key.keyid.len() > 64 || key.verifying_key().is_none() {
                return Err("a published key is not an ed25519 key with an id".into());
            }
        }
        Ok(())
    }
}

/// `POST /federation/v1/peering`: a broker presents an invite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeeringRequest {
    pub invite: String,
    pub broker: BrokerDocument,
}

/// The answer to a peering request: the inviting broker and the terms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeeringAnswer {
    pub broker: BrokerDocument,
    pub credit_limit: i64,
    pub currency: String,
}

/// A device as a broker offers it to its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedDevice {
    pub name: String,
    pub arch: Option<String>,
    pub cpu_millicores: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub verified: bool,
    pub hourly_rate: Option<i64>,
    pub currency: String,
    pub available: bool,
}

impl ExportedDevice {
    /// Checks what a peer sent.
    pub fn check(&self) -> Result<(), String> {
        DeviceName::parse(&self.name).map_err(|e| format!("device name: {e}"))?;
        if self.arch.as_ref().is_some_and(|a| {
            a.len() > 32 || !a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        }) {
            return Err(format!("device {}: bad architecture", self.name));
        }
        if self
            .hourly_rate
            .is_some_and(|r| !(0..=100_000_000).contains(&r))
        {
            return Err(format!("device {}: hourly rate out of range", self.name));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|c| c.is_ascii_uppercase()) {
            return Err(format!("device {}: bad currency", self.name));
        }
        Ok(())
    }
}

/// One change of a broker's listings: a device as listed now, or its
/// removal (`device` is `None`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingChange {
    pub seq: i64,
    pub name: String,
    pub device: Option<ExportedDevice>,
}

/// `GET /federation/v1/listings?cursor=N`: the changes after `cursor`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingsPage {
    pub changes: Vec<ListingChange>,
    /// Pass this as the next cursor.
    pub cursor: i64,
    /// More changes follow.
    pub more: bool,
}

/// An error between brokers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FederationError {
    pub code: String,
    pub message: String,
}

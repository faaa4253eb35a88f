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

/// Where a peer asks for a lease of one of this broker's devices; a lease
/// is at `{LEASES_PATH}/{id}`, and is ended at `{LEASES_PATH}/{id}/stop`.
pub const LEASES_PATH: &str = "/federation/v1/leases";
/// The usage records of leases the caller holds here (see
/// [`super::usage`]).
pub const USAGE_PATH: &str = "/federation/v1/usage";
/// The caller issued records worth pulling now (a lease ended, a
/// correction, a payment): [`UsageNews`].
pub const USAGE_NEWS_PATH: &str = "/federation/v1/usage/news";
/// This broker's side of its statement with the caller.
pub const STATEMENT_PATH: &str = "/federation/v1/statement";

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
    /// The period the rate is for, in seconds, when it is not an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_secs: Option<i64>,
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
    /// The cursor asked for is older than the removals this broker still
    /// keeps: the changes begin its full listing instead, and the puller
    /// drops every device the pull does not list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
}

/// Checks a lease id: `lse-` and 1 to 60 of a-z 0-9.
pub fn check_lease_id(id: &str) -> Result<(), String> {
    let ok = id.strip_prefix("lse-").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 60
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err("a lease id is lse- and 1 to 60 of a-z 0-9".into())
    }
}

/// `POST /federation/v1/leases`: a peer's renter rents a device of this
/// broker at the rate and in the currency the peer's marketplace showed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub lease: String,
    pub device: String,
    pub hourly_rate: i64,
    pub currency: String,
    /// An OpenSSH public key that may log in besides the password.
    pub ssh_key: Option<String>,
}

impl LeaseRequest {
    pub fn check(&self) -> Result<(), String> {
        check_lease_id(&self.lease)?;
        DeviceName::parse(&self.device).map_err(|e| format!("device name: {e}"))?;
        if !(0..=100_000_000).contains(&self.hourly_rate) {
            return Err("hourly rate out of range".into());
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|c| c.is_ascii_uppercase()) {
            return Err("bad currency".into());
        }
        if self.ssh_key.as_ref().is_some_and(|k| k.len() > 8192) {
            return Err("SSH key too long".into());
        }
        Ok(())
    }
}

/// `POST /federation/v1/usage/news`: the caller issued record `seq`, which
/// the receiver should pull soon rather than at its next pull.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageNews {
    pub seq: i64,
}

/// `POST /federation/v1/leases/{id}/stop`: the peer's renter ended it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseStop {
    /// When the renter stopped it (Unix seconds on the peer): nothing
    /// after it is charged, however late the stop arrives.
    #[serde(default)]
    pub at: Option<i64>,
}

/// A lease as the broker that runs it describes it. The password is only
/// in the answer that started the rental.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseAnswer {
    pub lease: String,
    pub device: String,
    /// `active` or `ended`.
    pub state: String,
    pub hourly_rate: i64,
    pub currency: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ssh_host: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_command: Option<String>,
    pub http_url: Option<String>,
    pub https_url: Option<String>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    /// The period the rate is for, in seconds (an hour unless the lessor
    /// bills otherwise).
    #[serde(default)]
    pub period_secs: Option<i64>,
}

impl LeaseAnswer {
    /// Checks what a peer answered about lease `id` of `device`.
    pub fn check(&self, id: &str, device: &str) -> Result<(), String> {
        if self.lease != id || self.device != device {
            return Err("the answer is about another lease".into());
        }
        if !matches!(self.state.as_str(), "active" | "ended") {
            return Err(format!("unknown lease state {:?}", self.state));
        }
        if self.period_secs.is_some_and(|p| !(1..=86_400).contains(&p)) {
            return Err("the period is not from 1 to 86400 seconds".into());
        }
        let too_long = [
            &self.username,
            &self.password,
            &self.ssh_host,
            &self.ssh_command,
            &self.http_url,
            &self.https_url,
            &self.end_reason,
        ]
        .into_iter()
        .flatten()
        .any(|s| s.len() > 512 || s.chars().any(char::is_control));
        if too_long {
            return Err("a field is too long or has control characters".into());
        }
        Ok(())
    }
}

/// An error between brokers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FederationError {
    pub code: String,
    pub message: String,
}

//! The marketplace listing: every listed device with its state, for anyone,
//! and whether each can be rented now.

use std::sync::Arc;

use rpibroker_wire::DeviceStatus;
use rpibroker_wire::verification::{Figures, Verdict};
use serde::Serialize;

use crate::broker::Shared;
use crate::store::StoreError;

/// The listed devices, by name.
pub async fn listing(shared: &Arc<Shared>) -> Result<Vec<DeviceStatus>, StoreError> {
    super::statuses(shared, |s| s.listed_devices()).await
}

/// Whether a listed device can be rented now, and if not, why.
pub fn availability(d: &DeviceStatus) -> Result<(), &'static str> {
    if !d.online {
        return Err("offline");
    }
    if d.rental.is_some() {
        return Err("rented");
    }
    if d.verification.as_ref().map(|v| v.verdict) != Some(Verdict::Verified) {
        return Err("not verified");
    }
    if d.sandbox.as_ref().map(|s| s.state.as_str()) != Some("ready") {
        return Err("sandbox not ready");
    }
    if d.hourly_rate.is_none() {
        return Err("no price");
    }
    Ok(())
}

/// What a renter gets on a device: the broker's measurement when there is
/// one (`true`), else the agent's claim (`false`).
pub fn offered_figures(d: &DeviceStatus) -> (Figures, bool) {
    match d.verification.as_ref().and_then(|v| v.measured.as_ref()) {
        Some(m) => (m.figures.clone(), true),
        None => (d.claimed.clone().unwrap_or_default(), false),
    }
}

/// A listed device as anyone may see it: no ports, no rental details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    pub name: String,
    /// CPU architecture (`x86_64`, `aarch64`, `arm`).
    pub arch: Option<String>,
    pub board: Option<String>,
    pub cpu_millicores: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub disk_bytes: Option<u64>,
    /// Whether the figures are the broker's measurement (else the claim).
    pub measured: bool,
    pub verified: bool,
    pub hourly_rate_cents: Option<i64>,
    pub available: bool,
    /// Why it cannot be rented now, when it cannot.
    pub unavailable_reason: Option<&'static str>,
}

impl From<&DeviceStatus> for Offer {
    fn from(d: &DeviceStatus) -> Self {
        let (figures, measured) = offered_figures(d);
        let why = availability(d).err();
        Self {
            name: d.name.to_string(),
            arch: d.hardware.as_ref().map(|h| h.arch.clone()),
            board: d.hardware.as_ref().and_then(|h| h.board.clone()),
            cpu_millicores: figures.cpu_millicores,
            memory_bytes: figures.memory_bytes,
            disk_bytes: figures.disk_bytes,
            measured,
            verified: d.verification.as_ref().map(|v| v.verdict) == Some(Verdict::Verified),
            hourly_rate_cents: d.hourly_rate,
            available: why.is_none(),
            unavailable_reason: why,
        }
    }
}

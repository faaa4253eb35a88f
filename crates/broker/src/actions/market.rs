//! The marketplace listing: every listed device with its state, for anyone,
//! and whether each can be rented now.

use std::sync::Arc;

use rpibroker_wire::DeviceStatus;
use rpibroker_wire::verification::Verdict;

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

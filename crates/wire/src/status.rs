//! A device's state as the broker reports it: `rpibroker device list --json`
//! and `GET /api/v1/device`.

use serde::{Deserialize, Serialize};

use crate::control::{RentalId, SandboxStatus};
use crate::verification::{Figures, Verification};
use crate::{DeviceName, HardwareReport, ServicePorts};

/// Path of the device's own status endpoint (authenticated by its token).
pub const STATUS_PATH: &str = "/api/v1/device";

/// One device. Times are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub id: i64,
    pub name: DeviceName,
    /// `<name>.<domain>`.
    pub subdomain: String,
    /// Assigned at the first handshake or login.
    pub ports: Option<ServicePorts>,
    pub online: bool,
    /// When the current session started, while online.
    pub online_since: Option<i64>,
    /// The last time the broker knew the device was connected.
    pub last_seen: Option<i64>,
    pub created_at: i64,
    /// When the agent last called the handshake API.
    pub last_handshake: Option<i64>,
    /// What the agent reported at its last handshake (claimed, not verified).
    pub hardware: Option<HardwareReport>,
    /// Offered on the marketplace.
    #[serde(default)]
    pub listed: bool,
    /// Price per hour, in minor units of the broker's currency.
    #[serde(default)]
    pub hourly_rate: Option<i64>,
    /// What a renter of the sandbox gets according to the claims: the
    /// machine's figures capped by the sandbox's limits.
    #[serde(default)]
    pub claimed: Option<Figures>,
    #[serde(default)]
    pub sandbox: Option<SandboxReport>,
    /// The broker's last measurement of the sandbox.
    #[serde(default)]
    pub verification: Option<Verification>,
    /// The rental that has not ended, if any.
    #[serde(default)]
    pub rental: Option<RentalSummary>,
    /// Share of the last 7 and 30 days the device was connected.
    #[serde(default)]
    pub uptime: Option<Uptime>,
    /// Why the broker's administrators suspended it, while they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<String>,
    /// What its rentals earned; only in its owner's view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earnings: Option<Earnings>,
}

/// What a device's rentals were worth to its owner: rented time at the rate
/// agreed for each rental.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Earnings {
    /// In minor units of the broker's currency.
    pub cents: i64,
    pub rented_secs: i64,
    pub rentals: i64,
}

/// How much of a recent window a device was connected, in tenths of a
/// percent (1000 is always); for a device younger than the window, of its
/// life so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uptime {
    pub week_permille: u16,
    pub month_permille: u16,
}

impl Uptime {
    /// `permille` as a percentage with one decimal, e.g. `99.5 %`.
    pub fn percent(permille: u16) -> String {
        format!("{}.{} %", permille / 10, permille % 10)
    }
}

/// The device's sandbox as its agent last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// `starting`, `ready`, `rented`, `wiping`, `failed`, or `none` when the
    /// agent runs no sandbox.
    pub state: String,
    pub status: Option<SandboxStatus>,
    pub updated_at: i64,
}

/// A rental, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RentalSummary {
    pub id: RentalId,
    /// `provisioning`, `active`, `ending` or `ended`.
    pub state: String,
    pub username: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

//! A device's state as the broker reports it: `rpibroker device list --json`
//! and `GET /api/v1/device`.

use serde::{Deserialize, Serialize};

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
}

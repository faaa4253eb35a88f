//! The `connect` API (seed step 3): the agent posts its token and hardware
//! report to `POST /api/v1/connect`, the broker answers with where and how to
//! open the tunnel.

use serde::{Deserialize, Serialize};

use crate::{DeviceName, HardwareReport, ServicePorts, Token};

/// Path of the handshake endpoint on the broker's API listener.
pub const CONNECT_PATH: &str = "/api/v1/connect";

/// Largest request body the broker reads for a handshake.
pub const MAX_CONNECT_BODY: usize = 16 * 1024;

/// The agent's handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// The device token shown once by `rpibroker device add`.
    pub token: Token,
    pub hardware: HardwareReport,
    /// The agent's SSH public key in OpenSSH format (`ssh-ed25519 AAAA…`). The
    /// broker registers it for this device, so the tunnel logs in with the key
    /// and the token travels only on the handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The agent's version, for the broker's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// The broker's answer to a successful handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectResponse {
    pub device_id: i64,
    pub device: DeviceName,
    /// Full host name visitors use: `<device>.<domain>`.
    pub subdomain: String,
    /// The device's public ports; the same on every handshake while the device exists.
    pub ports: ServicePorts,
    /// Where the SSH tunnel endpoint listens, as `host:port`.
    pub tunnel: String,
    /// The broker's SSH host key, as OpenSSH prints it (`SHA256:…`). The agent
    /// refuses a tunnel endpoint whose key does not match.
    pub host_key_fingerprint: String,
}

/// Machine-readable reason a broker API call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not a valid request (bad JSON, missing or unknown fields).
    MalformedRequest,
    /// The body is larger than the endpoint accepts.
    BodyTooLarge,
    /// No device has this token.
    BadToken,
    /// The token was replaced by `rpibroker device revoke`.
    RevokedToken,
    /// The device this token belonged to was removed.
    DeviceRemoved,
    /// Every port in the broker's device port pool is taken.
    PortPoolExhausted,
    /// The public key in the request is not a valid OpenSSH public key.
    BadPublicKey,
    /// An administrator suspended the device; it may not connect.
    DeviceSuspended,
    /// Something went wrong on the broker; details are in its log.
    Internal,
    /// No API token was sent, or it is not a current one.
    BadApiToken,
    /// The token's account is suspended.
    AccountSuspended,
    /// No such thing, or it is not the caller's.
    NotFound,
    /// A field is out of range or malformed; the message names it.
    InvalidInput,
    /// The device name is taken.
    NameTaken,
    /// The account holds as many of these as it may.
    LimitReached,
    /// The owner changed the device's price after the renter saw it.
    PriceChanged,
    /// The renter's wallet cannot cover the first hour.
    InsufficientFunds,
    /// The device cannot be rented now (offline, unverified, not ready...).
    DeviceUnavailable,
    /// Someone else rents the device (or won the race for it).
    AlreadyRented,
    /// The device has no rental to end.
    NotRented,
    /// The device did not do what the broker asked; try again later.
    DeviceUnreachable,
    /// The payment provider could not be reached or refused; try again later.
    PaymentProviderUnavailable,
}

/// The body of every failed broker API call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    /// A sentence for a person, saying what to do about it.
    pub message: String,
}

//! Wire types shared by the broker (`rpibroker`) and the device agent
//! (`rpibroker-agent`).
//!
//! # Layout
//!
//! - [`device_name`]: the validated device name, which is also the device's subdomain label.
//! - [`service`]: the three services a device exposes (ssh, http, https) and their ports.
//! - [`handshake`]: the `connect` API (seed step 3): request, answer and error codes.
//! - [`hardware`]: the hardware report an agent sends with its handshake.
//! - [`agent_config`]: the JSON file the owner puts on the device (seed step 2).
//! - [`control`]: the control protocol on the agent's SSH connection: the
//!   broker's sandbox commands and the agent's answers.
//! - [`limits`]: the sandbox limits an owner sets from the broker, and their bounds.
//! - [`status`]: a device's state as the broker reports it.
//! - [`verification`]: claimed and measured sandbox figures, and the verdict.
//!
//! This crate does no I/O: it parses and serializes, so both ends agree on the
//! shape of every message and neither re-validates what the other sent.

pub mod agent_config;
pub mod control;
pub mod device_name;
pub mod handshake;
pub mod hardware;
pub mod limits;
pub mod service;
pub mod status;
pub mod verification;

pub use agent_config::{AgentConfig, Cpus, SandboxConfig, Targets, Token};
pub use device_name::{DeviceName, DeviceNameError};
pub use handshake::{ApiError, ConnectRequest, ConnectResponse, ErrorCode};
pub use hardware::HardwareReport;
pub use service::{Service, ServicePorts};
pub use status::DeviceStatus;

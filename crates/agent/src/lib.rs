//! The rpibroker device agent: keeps a device reachable through its broker.
//!
//! # Layout
//!
//! - [`config`]: reading the JSON config file the owner put on the device.
//! - [`handshake`]: the `connect` API call (seed step 3).
//! - [`tunnel`]: the SSH connection to the broker: host key pinning, remote
//!   forwards of the three services, the control channel, and one local
//!   connection per visitor.
//! - [`sandbox`]: the renter's Docker container: create, provision, wipe,
//!   verify, reconcile after a restart.
//! - [`control`]: the broker's commands on the control channel.
//! - [`targets`]: where each service's visitors go (fixed, or the sandbox's ports).
//! - [`supervisor`]: the connect → serve → back off → reconnect loop, and
//!   what the log says about each state.
//! - [`backoff`]: exponential backoff with jitter.
//! - [`hardware`]: reading the machine's CPU, memory, disk, OS and board.
//! - [`device_key`]: the agent's own SSH key, made on first start.
//!
//! The agent links no web server, SQL or template crate, and drives Docker
//! through its Engine API, never the `docker` command: it must stay small
//! enough for a Raspberry Pi and build for aarch64 and armv7.

pub mod backoff;
pub mod config;
pub mod control;
pub mod device_key;
pub mod handshake;
pub mod hardware;
pub mod sandbox;
pub mod supervisor;
pub mod targets;
pub mod tunnel;

//! I/O shared by both ends of the tunnel (the broker and the agent).
//!
//! - [`ReadAhead`]: read buffering for the SSH connection that costs nothing
//!   while the connection is idle.
//! - [`splice`]: copying between a visitor's socket and an SSH channel.

mod read_ahead;
mod splice;

pub use read_ahead::ReadAhead;
pub use splice::splice;

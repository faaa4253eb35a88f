//! Names used on the agent's SSH connection to the broker.

/// The SSH subsystem the agent opens on a session channel for the broker's
/// commands (see DESIGN.md, "Control channel"). The broker refuses every other
/// subsystem, and every shell, exec and pty request.
pub const SUBSYSTEM: &str = "rpibroker-control";

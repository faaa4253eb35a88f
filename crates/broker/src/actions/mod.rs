//! What a person can do on the broker, once for every way of asking: the web
//! pages and the JSON API both call these functions with the acting
//! [`Actor`] and typed input, and render the typed result or error their own
//! way. The marketplace listing itself is [`crate::market`].
//!
//! - [`rentals`]: renting a listed device, the renter's rentals, stopping one.
//! - [`leases`]: renting a device a peer broker manages, the renter's
//!   leases, stopping one.
//! - [`devices`]: an owner's devices: register, list, price and list on the
//!   market, end a rental with a reason, remove.
//! - [`earnings`]: an owner's earnings from the ledger, payouts, and where
//!   they are paid.
//! - [`topups`]: a renter's wallet top-ups through payment providers.
//! - [`admin`]: what only administrators do: see everything, suspend and
//!   reinstate accounts and devices, lift sign-in locks, end any rental.
//!
//! A person reaches only what is theirs: another account's device or rental
//! is reported exactly like one that does not exist.

pub mod admin;
pub mod devices;
pub mod earnings;
pub mod leases;
pub mod rentals;
pub mod topups;

use crate::accounts::Session;
use crate::accounts::api_tokens::TokenHolder;

/// The account an action is done for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub id: i64,
    /// Administrators may end any rental.
    pub is_admin: bool,
    /// A suspended account may look but not act.
    pub suspended: bool,
}

impl From<&Session> for Actor {
    fn from(s: &Session) -> Self {
        // A suspended account has no sessions: suspension ends them.
        Self {
            id: s.user.id,
            is_admin: s.user.is_admin,
            suspended: false,
        }
    }
}

impl From<&TokenHolder> for Actor {
    fn from(h: &TokenHolder) -> Self {
        Self {
            id: h.user.id,
            is_admin: h.user.is_admin,
            suspended: h.suspended,
        }
    }
}

//! Paying owners what their devices earned.
//!
//! - [`settings`]: the `[payouts]` table (off unless turned on; weekly; a
//!   minimum amount).
//! - [`method`]: where an owner is paid: PayPal email or Bitcoin address.
//! - [`crypto`]: the operator's export of what is owed to crypto addresses,
//!   and the import of what was paid.
//!
//! Each payout period that has ended, an owner owed at least the minimum is
//! paid all they are owed, once: the payout's row and its transfer (payable
//! to payouts in flight) are made together and named by owner, period and
//! currency (`store::payouts`), so a retry, a second export or a broker
//! killed half-way never pays anyone twice. A confirmed payout moves to the
//! method's clearing account; a failed or returned one back to payable,
//! where the next period pays it again.

pub mod crypto;
pub mod method;
pub mod settings;

//! Peering brokers on loopback the way operators do, with the `rpibroker
//! peer` commands.

use std::process::Output;

use super::TestBroker;

/// The standard output of a command that must have succeeded.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `inviter` invites with a credit limit of 50.00 in `currency`, `invitee`
/// accepts.
pub fn peer(inviter: &TestBroker, invitee: &TestBroker, currency: &str) {
    let invite = ok(inviter.run(&[
        "peer",
        "invite",
        "--credit-limit",
        "50.00",
        "--currency",
        currency,
    ]));
    let accepted = ok(invitee.run(&["peer", "accept", invite.trim()]));
    assert!(accepted.contains("is now a peer"), "{accepted}");
}

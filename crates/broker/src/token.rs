//! Device tokens (and accounts' API tokens): created here, shown once, stored only as a SHA-256 hash.
//!
//! A token carries 256 random bits, so a fast hash is enough: there is nothing
//! to brute-force that a slow password hash would protect.

use rand::RngExt;
use sha2::{Digest, Sha256};

/// Prefix that makes a token recognisable in a config file or a leak scanner.
const PREFIX: &str = "rpb_";

/// A new random token, e.g. `rpb_3f9a…` (64 hex digits after the prefix).
pub fn generate() -> String {
    generate_with(PREFIX)
}

/// A new random token with its own `prefix`: 256 random bits in hex.
pub fn generate_with(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// The hash stored for `token`.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hashes_stable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }
}

//! Passwords: what the broker accepts, and how it stores them.
//!
//! A password is 8 to 64 characters and not one of the passwords attackers
//! try first: the strength estimator (zxcvbn, with its lists of common
//! passwords, names and words, and the account's own email) must put it
//! beyond a million guesses. It is stored as an Argon2id hash in PHC form,
//! with the parameters OWASP recommends (19 MiB, 2 passes, 1 lane).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngExt;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 64;

/// Why a password is refused, said so the person can pick a better one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is {0} characters long; use at least {MIN_LEN}")]
    TooShort(usize),
    #[error("the password is {0} characters long; use at most {MAX_LEN}")]
    TooLong(usize),
    #[error(
        "this password is among the first that attackers try{0}; pick a longer or less common one"
    )]
    Common(String),
}

/// Checks `password` against the policy for the account with `email`
/// (whose parts are no secret either).
pub fn check(password: &str, email: &str) -> Result<(), PasswordError> {
    let context: Vec<&str> = std::iter::once(email)
        .chain(
            email
                .split(['@', '.', '_', '-', '+'])
                .filter(|w| w.len() > 2),
        )
        .collect();
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(PasswordError::TooShort(len));
    }
    if len > MAX_LEN {
        return Err(PasswordError::TooLong(len));
    }
    let estimate = zxcvbn::zxcvbn(password, &context);
    if u8::from(estimate.score()) < 2 {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return Err(PasswordError::Common(hint));
    }
    Ok(())
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh random salt.
pub fn hash(password: &str) -> String {
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes make a valid salt");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 hashing with valid parameters")
        .to_string()
}

/// Whether `password` matches the stored `hash`. A malformed hash matches
/// nothing.
pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of nothing anyone knows, checked against when the account does not
/// exist, so that a sign-in takes as long either way.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&hex::encode(rand::rng().random::<[u8; 16]>())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_short_and_long_passwords_are_refused() {
        let email = "alice.smith@example.org";
        for common in [
            "password",
            "12345678",
            "qwertyuiop",
            "iloveyou1",
            "Password1",
        ] {
            assert!(
                matches!(check(common, email), Err(PasswordError::Common(_))),
                "{common}"
            );
        }
        assert_eq!(check("Ab1!x", email), Err(PasswordError::TooShort(5)));
        assert_eq!(
            check(&"x".repeat(65), email),
            Err(PasswordError::TooLong(65))
        );
        assert!(
            check("zorblyquandt", "zorbly.quandt@example.org").is_err(),
            "the account's own email is no secret"
        );
        assert!(check("zorblyquandt", email).is_ok());
        assert!(check("correct horse battery staple", email).is_ok());
        assert!(check("vq7-Lmz2-pk9w", email).is_ok());
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("vq7-Lmz2-pk9w");
        let b = hash("vq7-Lmz2-pk9w");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify("vq7-Lmz2-pk9w", &a));
        assert!(!verify("vq7-Lmz2-pk9W", &a));
        assert!(!verify("anything", "not a hash"));
        assert!(!verify("", decoy_hash()));
    }
}

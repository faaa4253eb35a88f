//! Password reset by email: a request makes a random single-use token, to be
//! mailed as a link; the link sets a new password (the same rules as at
//! sign-up), ends every session of the account, and signs in afresh.
//!
//! The token carries 256 random bits and is stored only as its SHA-256. It
//! works for [`VALID_SECS`], once; a newer request spends the older ones. An
//! account gets at most [`MAX_REQUESTS`] links per [`REQUEST_WINDOW_SECS`],
//! so nobody can flood someone's mailbox through the broker. A suspended
//! account gets no link and cannot use one.
//!
//! Whoever asks learns nothing from the answer: the caller shows the same
//! page whatever [`request`] returns, and runs it off the request path.

use rand::RngExt;

use super::{AccountError, NewSession, normalize_email, password, start_session};
use crate::store::{Store, StoreError};
use crate::time::UnixTime;
use crate::token;

/// How long a reset link works.
pub const VALID_SECS: i64 = 3600;
/// Reset links mailed to one account per window, at most.
pub const MAX_REQUESTS: i64 = 3;
pub const REQUEST_WINDOW_SECS: i64 = 3600;
/// Spent and expired tokens are kept this long (to count requests), then purged.
pub const KEEP_SECS: i64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("this link is not valid: it was already used, or a newer one replaced it")]
    Unusable,
    #[error("this link has expired; links work for one hour")]
    Expired,
    #[error("this account is suspended; contact the broker's operator")]
    Suspended,
    #[error(transparent)]
    WeakPassword(#[from] password::PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What became of a reset request. Only the mailer sees the difference.
#[derive(Debug)]
pub enum Requested {
    /// Mail `token` to `email` as a link.
    Link {
        email: String,
        token: String,
    },
    NoAccount,
    Suspended,
    /// The account had its share of links this hour.
    TooMany,
}

/// Makes a reset token for the account of `email`, if there is one that may
/// have one.
pub fn request(store: &Store, email: &str, now: UnixTime) -> Result<Requested, AccountError> {
    let Ok(email) = normalize_email(email) else {
        return Ok(Requested::NoAccount);
    };
    let Some(user) = store.user_by_email(&email)? else {
        return Ok(Requested::NoAccount);
    };
    if user.suspended_at.is_some() {
        return Ok(Requested::Suspended);
    }
    let token = hex::encode(rand::rng().random::<[u8; 32]>());
    let added = store.add_password_reset(
        user.id,
        &token::hash(&token),
        now,
        now.0 + VALID_SECS,
        now.0 - REQUEST_WINDOW_SECS,
        MAX_REQUESTS,
    )?;
    Ok(if added {
        Requested::Link {
            email: user.email,
            token,
        }
    } else {
        Requested::TooMany
    })
}

/// The token's hash, if `token` has the shape of one (anything else is
/// unknown without asking the store).
fn parsed(token: &str) -> Result<String, ResetError> {
    if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(token::hash(&token.to_ascii_lowercase()))
    } else {
        Err(ResetError::Unusable)
    }
}

/// The email address of the account whose password `token` may reset now.
pub fn check(store: &Store, token: &str, now: UnixTime) -> Result<String, ResetError> {
    let hash = parsed(token)?;
    let (reset, user) = store.password_reset(&hash)?.ok_or(ResetError::Unusable)?;
    if reset.spent_at.is_some() {
        return Err(ResetError::Unusable);
    }
    if reset.expires_at <= now.0 {
        return Err(ResetError::Expired);
    }
    if user.suspended_at.is_some() {
        return Err(ResetError::Suspended);
    }
    Ok(user.email)
}

/// Sets `new_password` for the account of `token`, ends all its sessions,
/// spends the token, and signs in afresh.
pub fn complete(
    store: &Store,
    token: &str,
    new_password: &str,
    now: UnixTime,
) -> Result<NewSession, ResetError> {
    let email = check(store, token, now)?;
    password::check(new_password, &email)?;
    let hash = password::hash(new_password);
    if !store.finish_password_reset(&parsed(token)?, &hash, now)? {
        // Used by a concurrent request between the check and now.
        return Err(ResetError::Unusable);
    }
    let user = store.user_by_email(&email)?.ok_or(ResetError::Unusable)?;
    Ok(start_session(store, user, now)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{create, session, sign_in};

    const GOOD: &str = "vq7-Lmz2-pk9w";
    const NEW: &str = "new-Pass-4471";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, store)
    }

    fn link(store: &Store, email: &str, t: i64) -> String {
        match request(store, email, UnixTime(t)).unwrap() {
            Requested::Link { token, .. } => token,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_link_sets_a_new_password_once_and_ends_every_session() {
        let (_dir, store) = store();
        create(&store, "alice@example.org", GOOD, false, UnixTime(0)).unwrap();
        let old = sign_in(&store, "alice@example.org", GOOD, UnixTime(1)).unwrap();
        let token = link(&store, "Alice@Example.org", 10);
        assert_eq!(
            check(&store, &token, UnixTime(11)).unwrap(),
            "alice@example.org"
        );
        assert!(matches!(
            complete(&store, &token, "password1", UnixTime(12)),
            Err(ResetError::WeakPassword(_))
        ));
        let fresh = complete(&store, &token, NEW, UnixTime(12)).unwrap();
        assert!(session(&store, &old.token, UnixTime(13)).unwrap().is_none());
        assert!(
            session(&store, &fresh.token, UnixTime(13))
                .unwrap()
                .is_some()
        );
        assert!(sign_in(&store, "alice@example.org", GOOD, UnixTime(14)).is_err());
        assert!(sign_in(&store, "alice@example.org", NEW, UnixTime(15)).is_ok());
        assert!(matches!(
            complete(&store, &token, "another-Pass-88", UnixTime(16)),
            Err(ResetError::Unusable)
        ));
    }

    #[test]
    fn links_expire_are_replaced_and_are_limited_per_account() {
        let (_dir, store) = store();
        create(&store, "alice@example.org", GOOD, false, UnixTime(0)).unwrap();
        let first = link(&store, "alice@example.org", 100);
        assert!(matches!(
            check(&store, &first, UnixTime(100 + VALID_SECS)),
            Err(ResetError::Expired)
        ));
        let second = link(&store, "alice@example.org", 200);
        assert!(
            matches!(
                check(&store, &first, UnixTime(201)),
                Err(ResetError::Unusable)
            ),
            "a newer link replaces the older one"
        );
        let _third = link(&store, "alice@example.org", 300);
        assert!(matches!(
            check(&store, &second, UnixTime(301)),
            Err(ResetError::Unusable)
        ));
        assert!(matches!(
            request(&store, "alice@example.org", UnixTime(400)).unwrap(),
            Requested::TooMany
        ));
        link(&store, "alice@example.org", 101 + REQUEST_WINDOW_SECS);
        for bad in ["", "zz", &"g".repeat(64), &"0".repeat(64)] {
            assert!(matches!(
                check(&store, bad, UnixTime(500)),
                Err(ResetError::Unusable)
            ));
        }
    }

    #[test]
    fn unknown_and_suspended_accounts_get_no_link() {
        let (_dir, store) = store();
        create(&store, "alice@example.org", GOOD, false, UnixTime(0)).unwrap();
        assert!(matches!(
            request(&store, "nobody@example.org", UnixTime(1)).unwrap(),
            Requested::NoAccount
        ));
        assert!(matches!(
            request(&store, "not an address", UnixTime(1)).unwrap(),
            Requested::NoAccount
        ));
        let token = link(&store, "alice@example.org", 2);
        store.set_suspended("alice@example.org", Some(3)).unwrap();
        assert!(matches!(
            request(&store, "alice@example.org", UnixTime(4)).unwrap(),
            Requested::Suspended
        ));
        assert!(matches!(
            complete(&store, &token, NEW, UnixTime(5)),
            Err(ResetError::Suspended)
        ));
    }
}

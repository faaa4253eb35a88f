//! Accounts and sessions: sign-up, sign-in with throttling, sessions with
//! idle and absolute timeouts, sign-out, password change, API tokens
//! ([`api_tokens`]). One implementation of each action, for the web pages,
//! the JSON API and the command line.
//!
//! A session is a random 256-bit token, handed to the browser in a cookie
//! and stored only as its SHA-256; each session carries its own anti-CSRF
//! token. A new session is made at every sign-in, and a password change ends
//! every other session of the account.
//!
//! Every function here is synchronous (it runs Argon2 and SQLite); async
//! callers go through [`crate::store::Store::blocking`].

pub mod api_tokens;
pub mod password;
pub mod reset;

use rand::RngExt;
use serde::Serialize;

use crate::store::{Store, StoreError, UserRecord};
use crate::time::UnixTime;
use crate::token;

/// A session unused for this long is over.
pub const IDLE_TIMEOUT_SECS: i64 = 2 * 3600;
/// A session is over this long after sign-in, however busy.
pub const ABSOLUTE_TIMEOUT_SECS: i64 = 7 * 24 * 3600;
/// Failed sign-ins tolerated before the address is locked for a while.
pub const FREE_FAILURES: i64 = 5;
/// A day without failures forgets the earlier ones.
pub const FORGET_FAILURES_SECS: i64 = 24 * 3600;
/// First lock; it doubles with each further failure, up to [`MAX_LOCK_SECS`].
pub const FIRST_LOCK_SECS: i64 = 30;
pub const MAX_LOCK_SECS: i64 = 3600;
/// How often expired sessions and old sign-in failures are removed.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Longest email address accepted (RFC 5321).
pub const MAX_EMAIL_LEN: usize = 254;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    BadEmail(String),
    #[error("an account with this email address already exists")]
    EmailTaken,
    #[error(transparent)]
    WeakPassword(#[from] password::PasswordError),
    /// Deliberately vague: does not say whether the account exists.
    #[error("wrong email address or password")]
    BadCredentials,
    #[error("too many failed sign-ins for this address; try again later")]
    Locked,
    #[error("this account is suspended; contact the broker's operator")]
    Suspended,
    #[error("{0}")]
    BadTokenName(String),
    #[error("an account may hold at most {0} API tokens; revoke one first")]
    TooManyTokens(i64),
    #[error("you have no API token by that id")]
    NoSuchToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An account, as the rest of the broker sees it (no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub is_admin: bool,
    pub created_at: i64,
}

impl From<UserRecord> for User {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            email: u.email,
            is_admin: u.is_admin,
            created_at: u.created_at,
        }
    }
}

/// A session just made: the token goes into the cookie, once.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
    pub user: User,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub csrf: String,
}

/// Normalizes and checks an email address: trimmed, lowercased, one `@`
/// with something on both sides and a dot in the domain, no spaces or
/// control characters, at most [`MAX_EMAIL_LEN`] bytes.
pub fn normalize_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim().to_lowercase();
    let bad = |why: &str| AccountError::BadEmail(format!("not a usable email address: {why}"));
    if email.len() > MAX_EMAIL_LEN {
        return Err(bad("too long"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(bad("no @"));
    };
    if local.is_empty() || domain.contains('@') || !domain.contains('.') {
        return Err(bad("expected name@domain.example"));
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Err(bad("the domain is malformed"));
    }
    Ok(email)
}

/// Creates an account.
pub fn create(
    store: &Store,
    email: &str,
    new_password: &str,
    is_admin: bool,
    now: UnixTime,
) -> Result<User, AccountError> {
    let email = normalize_email(email)?;
    password::check(new_password, &email)?;
    let hash = password::hash(new_password);
    match store.add_user(&email, &hash, is_admin, now) {
        Ok(u) => Ok(u.into()),
        Err(StoreError::EmailTaken) => Err(AccountError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

fn random_token() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

/// How long a sign-in lock lasts after `failures` failures, if at all.
fn lock_for(failures: i64) -> Option<i64> {
    (failures > FREE_FAILURES).then(|| {
        let doublings = (failures - FREE_FAILURES - 1).min(20) as u32;
        (FIRST_LOCK_SECS << doublings).min(MAX_LOCK_SECS)
    })
}

/// Checks `given` against the account of `email`, with throttling: failures
/// are counted per address whether or not an account has it, a locked
/// address is refused, and every path takes one Argon2 run, so neither the
/// answer nor its timing tells whether the account exists.
fn check_password(
    store: &Store,
    email: &str,
    given: &str,
    now: UnixTime,
) -> Result<UserRecord, AccountError> {
    if store.login_lock(email, now)?.is_some() {
        password::verify(given, password::decoy_hash());
        return Err(AccountError::Locked);
    }
    let user = store.user_by_email(email)?;
    let hash = user
        .as_ref()
        .map_or(password::decoy_hash(), |u| u.password_hash.as_str());
    let matches = password::verify(given, hash);
    match user {
        Some(user) if matches => {
            store.clear_login_failures(email)?;
            Ok(user)
        }
        _ => {
            let (failures, lock) =
                store.record_login_failure(email, now, FORGET_FAILURES_SECS, lock_for)?;
            tracing::info!(failures, locked = lock.is_some(), "failed sign-in");
            Err(match lock {
                Some(_) => AccountError::Locked,
                None => AccountError::BadCredentials,
            })
        }
    }
}

/// Signs in: checks the password (see [`check_password`]) and makes a new
/// session.
pub fn sign_in(
    store: &Store,
    email: &str,
    given_password: &str,
    now: UnixTime,
) -> Result<NewSession, AccountError> {
    let Ok(email) = normalize_email(email) else {
        password::verify(given_password, password::decoy_hash());
        return Err(AccountError::BadCredentials);
    };
    let user = check_password(store, &email, given_password, now)?;
    if user.suspended_at.is_some() {
        return Err(AccountError::Suspended);
    }
    Ok(start_session(store, user, now)?)
}

/// Makes a new session for `user`, who has just proved who they are.
fn start_session(store: &Store, user: UserRecord, now: UnixTime) -> Result<NewSession, StoreError> {
    let token = random_token();
    let csrf = random_token();
    store.add_session(&token::hash(&token), user.id, &csrf, now)?;
    Ok(NewSession {
        token,
        csrf,
        user: user.into(),
    })
}

/// The live session behind `token`, refreshing its idle timer; `None` when
/// it is unknown, idle or old, or its account is suspended.
/// How stale a session's last-seen time may be before a request refreshes it.
const TOUCH_EVERY_SECS: i64 = 60;

pub fn session(store: &Store, token: &str, now: UnixTime) -> Result<Option<Session>, AccountError> {
    let hash = token::hash(token);
    let Some((record, user)) = store.session(&hash)? else {
        return Ok(None);
    };
    let idle = now.0 - record.last_seen_at > IDLE_TIMEOUT_SECS;
    let old = now.0 - record.created_at > ABSOLUTE_TIMEOUT_SECS;
    if idle || old || user.suspended_at.is_some() {
        store.remove_session(&hash)?;
        return Ok(None);
    }
    // Written at most once a minute: a page view is not worth a write, and
    // every write makes the marketplace read its listing again.
    if now.0 - record.last_seen_at >= TOUCH_EVERY_SECS {
        store.touch_session(&hash, now)?;
    }
    Ok(Some(Session {
        user: user.into(),
        csrf: record.csrf,
    }))
}

/// Ends the session behind `token` (nothing happens if there is none).
pub fn sign_out(store: &Store, token: &str) -> Result<(), AccountError> {
    store.remove_session(&token::hash(token))?;
    Ok(())
}

/// Changes the password after checking the current one; ends every other
/// session of the account.
pub fn change_password(
    store: &Store,
    user_id: i64,
    keep_session: Option<&str>,
    current: &str,
    new_password: &str,
    now: UnixTime,
) -> Result<(), AccountError> {
    let user = store.user(user_id)?.ok_or(AccountError::BadCredentials)?;
    if !password::verify(current, &user.password_hash) {
        return Err(AccountError::BadCredentials);
    }
    password::check(new_password, &user.email)?;
    let keep = keep_session.map(token::hash);
    store.set_password(user_id, &password::hash(new_password), keep.as_deref(), now)?;
    Ok(())
}

/// Removes expired sessions, forgotten sign-in failures and old password
/// reset links every [`PURGE_EVERY`], until shutdown.
pub async fn purge_sessions(store: Store, mut shutdown: crate::shutdown::Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PURGE_EVERY) => {}
            _ = shutdown.wait() => return,
        }
        let now = UnixTime::now().0;
        let purged = store
            .blocking(move |s| {
                s.purge_sessions(
                    now - IDLE_TIMEOUT_SECS,
                    now - ABSOLUTE_TIMEOUT_SECS,
                    now - FORGET_FAILURES_SECS,
                )
            })
            .await;
        match purged {
            Ok(n) if n > 0 => tracing::info!(sessions = n, "expired sessions removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove expired sessions"),
        }
        let before = now - reset::KEEP_SECS;
        if let Err(e) = store
            .blocking(move |s| s.purge_password_resets(before))
            .await
        {
            tracing::warn!(error = %e, "could not remove old password reset links");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "vq7-Lmz2-pk9w";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, store)
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  Alice@Example.ORG ").unwrap(),
            "alice@example.org"
        );
        for bad in [
            "alice",
            "@example.org",
            "alice@example",
            "a b@example.org",
            "a@b@c.org",
            "a@.org",
            "a@x..org",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert!(normalize_email(&format!("{}@example.org", "a".repeat(250))).is_err());
    }

    #[test]
    fn sign_up_then_sign_in_makes_distinct_sessions() {
        let (_dir, store) = store();
        let user = create(&store, "Alice@Example.org", GOOD, false, UnixTime(100)).unwrap();
        assert_eq!(user.email, "alice@example.org");
        assert!(matches!(
            create(&store, "alice@example.org", GOOD, false, UnixTime(101)),
            Err(AccountError::EmailTaken)
        ));
        assert!(matches!(
            create(&store, "bob@example.org", "password1", false, UnixTime(101)),
            Err(AccountError::WeakPassword(_))
        ));
        let a = sign_in(&store, "alice@example.org", GOOD, UnixTime(200)).unwrap();
        let b = sign_in(&store, "ALICE@example.org", GOOD, UnixTime(201)).unwrap();
        assert_ne!(a.token, b.token);
        assert_ne!(a.csrf, b.csrf);
        assert_eq!(a.token.len(), 64);
        let live = session(&store, &a.token, UnixTime(300)).unwrap().unwrap();
        assert_eq!(live.user.id, user.id);
        assert_eq!(live.csrf, a.csrf);
        sign_out(&store, &a.token).unwrap();
        assert!(session(&store, &a.token, UnixTime(301)).unwrap().is_none());
        assert!(session(&store, &b.token, UnixTime(301)).unwrap().is_some());
    }

    #[test]
    fn wrong_passwords_and_unknown_accounts_look_the_same_then_lock() {
        let (_dir, store) = store();
        create(&store, "alice@example.org", GOOD, false, UnixTime(0)).unwrap();
        let alice =
            |password: &str, t: i64| sign_in(&store, "alice@example.org", password, UnixTime(t));
        let nobody = |t: i64| sign_in(&store, "nobody@example.org", "wrong-pass", UnixTime(t));
        for t in 1..=FREE_FAILURES {
            let (a, n) = (alice("wrong-pass", t).unwrap_err(), nobody(t).unwrap_err());
            assert!(matches!(a, AccountError::BadCredentials));
            assert_eq!(
                a.to_string(),
                n.to_string(),
                "same answer for an unknown address"
            );
        }
        // The next failure locks, for an account and an unknown address alike.
        assert!(matches!(alice("wrong-pass", 10), Err(AccountError::Locked)));
        assert!(matches!(nobody(10), Err(AccountError::Locked)));
        assert!(
            matches!(alice(GOOD, 20), Err(AccountError::Locked)),
            "even the right password waits"
        );
        // The lock doubles with each further failure.
        assert!(matches!(alice("wrong-pass", 41), Err(AccountError::Locked)));
        assert!(matches!(alice(GOOD, 90), Err(AccountError::Locked)));
        assert!(alice(GOOD, 102).is_ok(), "the 60 s lock ended");
        // Success forgets the failures.
        assert!(matches!(
            alice("wrong-pass", 103),
            Err(AccountError::BadCredentials)
        ));
        // So does a day without failures.
        for t in 200..200 + FREE_FAILURES {
            let _ = nobody(t);
        }
        assert!(matches!(
            nobody(200 + FORGET_FAILURES_SECS + 10),
            Err(AccountError::BadCredentials)
        ));
    }

    #[test]
    fn purging_removes_only_expired_sessions() {
        let (_dir, store) = store();
        create(&store, "alice@example.org", GOOD, false, UnixTime(0)).unwrap();
        let old = sign_in(&store, "alice@example.org", GOOD, UnixTime(0)).unwrap();
        let fresh = sign_in(&store, "alice@example.org", GOOD, UnixTime(5000)).unwrap();
        let now = 5000 + IDLE_TIMEOUT_SECS - 1;
        let removed = store
            .purge_sessions(now - IDLE_TIMEOUT_SECS, now - ABSOLUTE_TIMEOUT_SECS, 0)
            .unwrap();
        assert_eq!(removed, 1);
        assert!(
            session(&store, &fresh.token, UnixTime(now))
                .unwrap()
                .is_some()
        );
        assert!(store.session(&token::hash(&old.token)).unwrap().is_none());
    }

    #[test]
    fn sessions_end_when_idle_or_old() {
        let (_dir, store) = store();
        create(&store, "alice@example.org", GOOD, false, UnixTime(0)).unwrap();
        let s = sign_in(&store, "alice@example.org", GOOD, UnixTime(0)).unwrap();
        assert!(
            session(&store, &s.token, UnixTime(IDLE_TIMEOUT_SECS + 1))
                .unwrap()
                .is_none()
        );

        let s = sign_in(&store, "alice@example.org", GOOD, UnixTime(0)).unwrap();
        let mut t = 0;
        while t + IDLE_TIMEOUT_SECS / 2 <= ABSOLUTE_TIMEOUT_SECS {
            t += IDLE_TIMEOUT_SECS / 2;
            assert!(
                session(&store, &s.token, UnixTime(t)).unwrap().is_some(),
                "busy at {t}"
            );
        }
        assert!(
            session(&store, &s.token, UnixTime(ABSOLUTE_TIMEOUT_SECS + 1))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn password_change_ends_the_other_sessions() {
        let (_dir, store) = store();
        let user = create(&store, "alice@example.org", GOOD, false, UnixTime(0)).unwrap();
        let here = sign_in(&store, "alice@example.org", GOOD, UnixTime(1)).unwrap();
        let elsewhere = sign_in(&store, "alice@example.org", GOOD, UnixTime(1)).unwrap();
        assert!(matches!(
            change_password(
                &store,
                user.id,
                Some(&here.token),
                "wrong-pass",
                "new-Pass-4471",
                UnixTime(2)
            ),
            Err(AccountError::BadCredentials)
        ));
        change_password(
            &store,
            user.id,
            Some(&here.token),
            GOOD,
            "new-Pass-4471",
            UnixTime(2),
        )
        .unwrap();
        assert!(session(&store, &here.token, UnixTime(3)).unwrap().is_some());
        assert!(
            session(&store, &elsewhere.token, UnixTime(3))
                .unwrap()
                .is_none()
        );
        assert!(sign_in(&store, "alice@example.org", GOOD, UnixTime(4)).is_err());
        assert!(sign_in(&store, "alice@example.org", "new-Pass-4471", UnixTime(4)).is_ok());
    }
}

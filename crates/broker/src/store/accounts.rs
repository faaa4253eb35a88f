//! Accounts and sessions in the store.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::time::UnixTime;

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: i64,
    pub suspended_at: Option<i64>,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user_id: i64,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

pub(super) const USER_COLUMNS: &str =
    "id, email, password_hash, is_admin, created_at, suspended_at";

pub(super) fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    user_row_at(r, 0)
}

/// A user read from [`USER_COLUMNS`] starting at column `offset`.
pub(super) fn user_row_at(r: &rusqlite::Row<'_>, offset: usize) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(offset)?,
        email: r.get(offset + 1)?,
        password_hash: r.get(offset + 2)?,
        is_admin: r.get(offset + 3)?,
        created_at: r.get(offset + 4)?,
        suspended_at: r.get(offset + 5)?,
    })
}

impl Store {
    /// Adds an account; `email` must already be normalized.
    pub fn add_user(
        &self,
        email: &str,
        password_hash: &str,
        is_admin: bool,
        now: UnixTime,
    ) -> Result<UserRecord, StoreError> {
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO users (email, password_hash, is_admin, created_at, password_changed_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![email, password_hash, is_admin, now.0],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::EmailTaken);
            }
            other => other?,
        };
        Ok(conn.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
            [conn.last_insert_rowid()],
            user_row,
        )?)
    }

    pub fn user(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id],
                user_row,
            )
            .optional()?)
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
                [email],
                user_row,
            )
            .optional()?)
    }

    /// When the sign-in lock of `email` ends, if it is locked at `now`.
    pub fn login_lock(&self, email: &str, now: UnixTime) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT locked_until FROM login_failures WHERE email = ?1 AND locked_until > ?2",
                params![email, now.0],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Counts one failed sign-in for `email` (a count older than `forget_after`
    /// seconds starts again) and sets the lock `lock_for(count)` asks for;
    /// returns the count and the lock's end.
    pub fn record_login_failure(
        &self,
        email: &str,
        now: UnixTime,
        forget_after: i64,
        lock_for: impl Fn(i64) -> Option<i64>,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let failures: i64 = tx.query_row(
            "INSERT INTO login_failures (email, failures, last_failure) VALUES (?1, 1, ?2)
             ON CONFLICT (email) DO UPDATE SET
                 failures = CASE WHEN last_failure < ?2 - ?3 THEN 1 ELSE failures + 1 END,
                 last_failure = ?2
             RETURNING failures",
            params![email, now.0, forget_after],
            |r| r.get(0),
        )?;
        let until = lock_for(failures).map(|secs| now.0 + secs);
        if until.is_some() {
            tx.execute(
                "UPDATE login_failures SET locked_until = ?2 WHERE email = ?1",
                params![email, until],
            )?;
        }
        tx.commit()?;
        Ok((failures, until))
    }

    /// Forgets the failed sign-ins of `email` (after a successful one).
    pub fn clear_login_failures(&self, email: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM login_failures WHERE email = ?1", [email])?;
        Ok(())
    }

    pub fn add_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO sessions (id_hash, user_id, csrf, created_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![id_hash, user_id, csrf, now.0],
        )?;
        Ok(())
    }

    /// The session and its account.
    pub fn session(
        &self,
        id_hash: &str,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        let conn = self.conn();
        let session = conn
            .query_row(
                "SELECT user_id, csrf, created_at, last_seen_at FROM sessions WHERE id_hash = ?1",
                [id_hash],
                |r| {
                    Ok(SessionRecord {
                        user_id: r.get(0)?,
                        csrf: r.get(1)?,
                        created_at: r.get(2)?,
                        last_seen_at: r.get(3)?,
                    })
                },
            )
            .optional()?;
        let Some(session) = session else {
            return Ok(None);
        };
        let user = conn.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
            [session.user_id],
            user_row,
        )?;
        Ok(Some((session, user)))
    }

    pub fn touch_session(&self, id_hash: &str, now: UnixTime) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE sessions SET last_seen_at = ?2 WHERE id_hash = ?1",
            params![id_hash, now.0],
        )?;
        Ok(())
    }

    pub fn remove_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?;
        Ok(())
    }

    /// Removes sessions unused since `idle_before` or made before
    /// `created_before`, and sign-in failures older than `failures_before`;
    /// returns how many sessions went.
    pub fn purge_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
        failures_before: i64,
    ) -> Result<usize, StoreError> {
        let conn = self.conn();
        let removed = conn.execute(
            "DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2",
            params![idle_before, created_before],
        )?;
        conn.execute(
            "DELETE FROM login_failures WHERE last_failure < ?1 AND (locked_until IS NULL OR locked_until < ?1)",
            [failures_before],
        )?;
        Ok(removed)
    }

    /// Suspends (with the time) or reinstates (`None`) an account; a
    /// suspension also ends its sessions and unlists its devices. False if there is no such account.
    pub fn set_suspended(&self, email: &str, at: Option<i64>) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE users SET suspended_at = ?2 WHERE email = ?1",
            params![email, at],
        )?;
        if at.is_some() {
            tx.execute(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE email = ?1)",
                [email],
            )?;
            // A suspended owner's devices leave the market; reinstated, the
            // owner lists them again.
            tx.execute(
                "UPDATE devices SET listed = 0 WHERE owner_id = (SELECT id FROM users WHERE email = ?1)",
                [email],
            )?;
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    /// Sets a new password hash and ends every session of the account but
    /// `keep` (the one that made the change), in one transaction.
    pub fn set_password(
        &self,
        user_id: i64,
        password_hash: &str,
        keep: Option<&str>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
            params![user_id, password_hash, now.0],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND id_hash IS NOT ?2",
            params![user_id, keep],
        )?;
        tx.commit()?;
        Ok(())
    }
}

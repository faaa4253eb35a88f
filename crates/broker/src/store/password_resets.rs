//! Password reset tokens in the store, as hashes.

use rusqlite::{OptionalExtension, params};

use super::accounts::{USER_COLUMNS, user_row};
use super::{Store, StoreError, UserRecord};
use crate::time::UnixTime;

/// A reset token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordResetRecord {
    pub user_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub spent_at: Option<i64>,
}

impl Store {
    /// Adds a reset token for `user_id` valid until `expires_at`, spending
    /// the account's earlier ones, unless the account already had `max`
    /// requests since `window_start`; returns whether it was added.
    pub fn add_password_reset(
        &self,
        user_id: i64,
        token_hash: &str,
        now: UnixTime,
        expires_at: i64,
        window_start: i64,
        max: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let recent: i64 = tx.query_row(
            "SELECT COUNT(*) FROM password_resets WHERE user_id = ?1 AND created_at > ?2",
            params![user_id, window_start],
            |r| r.get(0),
        )?;
        if recent >= max {
            return Ok(false);
        }
        tx.execute(
            "UPDATE password_resets SET spent_at = ?2 WHERE user_id = ?1 AND spent_at IS NULL",
            params![user_id, now.0],
        )?;
        tx.execute(
            "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, user_id, now.0, expires_at],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The reset token and its account.
    pub fn password_reset(
        &self,
        token_hash: &str,
    ) -> Result<Option<(PasswordResetRecord, UserRecord)>, StoreError> {
        let conn = self.conn();
        let reset = conn
            .query_row(
                "SELECT user_id, created_at, expires_at, spent_at FROM password_resets
                 WHERE token_hash = ?1",
                [token_hash],
                |r| {
                    Ok(PasswordResetRecord {
                        user_id: r.get(0)?,
                        created_at: r.get(1)?,
                        expires_at: r.get(2)?,
                        spent_at: r.get(3)?,
                    })
                },
            )
            .optional()?;
        let Some(reset) = reset else {
            return Ok(None);
        };
        let user = conn.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
            [reset.user_id],
            user_row,
        )?;
        Ok(Some((reset, user)))
    }

    /// Uses the reset token: spends it (and every other token of the
    /// account), sets the new password hash, ends every session of the
    /// account and forgets its failed sign-ins, in one transaction. False if
    /// the token was spent or expired meanwhile (nothing changes then).
    pub fn finish_password_reset(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let user_id: Option<i64> = tx
            .query_row(
                "UPDATE password_resets SET spent_at = ?2
                 WHERE token_hash = ?1 AND spent_at IS NULL AND expires_at > ?2
                 RETURNING user_id",
                params![token_hash, now.0],
                |r| r.get(0),
            )
            .optional()?;
        let Some(user_id) = user_id else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE password_resets SET spent_at = ?2 WHERE user_id = ?1 AND spent_at IS NULL",
            params![user_id, now.0],
        )?;
        tx.execute(
            "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
            params![user_id, password_hash, now.0],
        )?;
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
        // Whoever took over the account may have made tokens: they go too.
        tx.execute("DELETE FROM api_tokens WHERE user_id = ?1", [user_id])?;
        tx.execute(
            "DELETE FROM login_failures WHERE email = (SELECT email FROM users WHERE id = ?1)",
            [user_id],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Removes reset tokens made before `before`; returns how many went.
    pub fn purge_password_resets(&self, before: i64) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM password_resets WHERE created_at < ?1",
            [before],
        )?)
    }
}

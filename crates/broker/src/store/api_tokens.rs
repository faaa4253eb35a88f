//! API tokens in the store: only their hashes, with their account, name and
//! times.

use rusqlite::{OptionalExtension, params};

use super::accounts::{USER_COLUMNS, user_row_at};
use super::{Store, StoreError, UserRecord};
use crate::time::UnixTime;

/// An API token as stored (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
    })
}

/// A token's last use is written at most this often, so that a busy script
/// does not turn every request into a write.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

impl Store {
    /// Adds a token for `user_id` unless the account already has `max`;
    /// `None` when it has.
    pub fn add_api_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        max: i64,
        now: UnixTime,
    ) -> Result<Option<ApiTokenRecord>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let count: i64 = tx.query_row(
            "SELECT COUNT(*) FROM api_tokens WHERE user_id = ?1",
            [user_id],
            |r| r.get(0),
        )?;
        if count >= max {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![user_id, name, token_hash, now.0],
        )?;
        let record = tx.query_row(
            "SELECT id, user_id, name, created_at, last_used_at FROM api_tokens WHERE id = ?1",
            [tx.last_insert_rowid()],
            token_row,
        )?;
        tx.commit()?;
        Ok(Some(record))
    }

    /// The tokens of account `user_id`, oldest first.
    pub fn api_tokens_of(&self, user_id: i64) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, user_id, name, created_at, last_used_at FROM api_tokens
             WHERE user_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([user_id], token_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes token `id` if it belongs to `user_id`; false if it does not.
    pub fn remove_api_token(&self, user_id: i64, id: i64) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "DELETE FROM api_tokens WHERE id = ?1 AND user_id = ?2",
            params![id, user_id],
        )?;
        Ok(changed == 1)
    }

    /// The token with this hash and its account, noting its use.
    pub fn use_api_token(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
        let conn = self.conn();
        let columns = USER_COLUMNS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let found = conn
            .query_row(
                &format!(
                    "SELECT t.id, t.user_id, t.name, t.created_at, t.last_used_at, {columns}
                     FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1"
                ),
                [token_hash],
                |r| {
                    let token = token_row(r)?;
                    let user = user_row_at(r, 5)?;
                    Ok((token, user))
                },
            )
            .optional()?;
        if let Some((token, _)) = &found {
            conn.execute(
                "UPDATE api_tokens SET last_used_at = ?2
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - ?3)",
                params![token.id, now.0, LAST_USED_GRANULARITY_SECS],
            )?;
        }
        Ok(found)
    }
}

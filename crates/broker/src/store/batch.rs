//! Many of the store's reads and writes in one transaction, on a connection
//! held throughout: a billing pass over thousands of rentals commits once
//! per batch of them instead of once per write, and nothing else runs on
//! the connection in between.

use rusqlite::{Connection, TransactionBehavior};

use super::{Store, StoreError};

/// The store's connection, held (in a transaction, inside
/// [`Store::batch`]).
pub struct Batch<'a> {
    pub(super) conn: &'a Connection,
}

impl Store {
    /// Runs `f` in one immediate transaction, committed if it returns
    /// `Ok`; an error undoes everything `f` wrote.
    pub fn batch<R>(
        &self,
        f: impl FnOnce(&Batch<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&Batch { conn: &tx })?;
        tx.commit()?;
        Ok(out)
    }
}

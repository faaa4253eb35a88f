//! The ledger in the store: posting transfers (each once, in one
//! transaction, refusing to take a wallet or payable below zero), balances,
//! and a check of every invariant.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Batch, Store, StoreError};
use crate::ledger::{Account, Currency, LedgerError, Transfer, TransferId};
use crate::time::UnixTime;

/// What posting a transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    Now,
    /// The same transfer was posted before; nothing changed.
    Already,
}

/// One movement of a person's wallet or payable account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub at: i64,
    pub transfer: String,
    pub memo: String,
    pub currency: Currency,
    pub account: Account,
    pub amount: i64,
}

/// The sum of every account of one currency; always zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyTotal {
    pub currency: Currency,
    pub sum: i64,
    pub accounts: i64,
    pub transfers: i64,
}

fn account_of(kind: &str, holder: &str) -> Option<Account> {
    match kind {
        "wallet" => holder.parse().ok().map(Account::Wallet),
        "held" => holder.parse().ok().map(Account::Held),
        "payable" => holder.parse().ok().map(Account::Payable),
        "revenue" => Some(Account::Revenue),
        "clearing" => Some(Account::Clearing(holder.to_string())),
        "payouts_in_flight" => Some(Account::PayoutsInFlight),
        "receivable" => holder.parse().ok().map(Account::Receivable),
        "peer" => holder.parse().ok().map(Account::Peer),
        _ => None,
    }
}

/// The legs of transfer `id` as posted, by account.
fn posted_legs(tx: &Connection, id: &TransferId) -> Result<Vec<(Account, i64)>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT a.kind, a.holder, e.amount FROM ledger_entries e
         JOIN ledger_accounts a ON a.id = e.account_id WHERE e.transfer_id = ?1",
    )?;
    let rows = stmt.query_map([id.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut legs = Vec::new();
    for row in rows {
        let (kind, holder, amount) = row?;
        if let Some(account) = account_of(&kind, &holder) {
            legs.push((account, amount));
        }
    }
    legs.sort();
    Ok(legs)
}

/// Posts `transfer` inside `conn`'s transaction (see [`Store::post`]), so
/// it commits with whatever else the transaction writes; in a savepoint, so
/// a refused transfer leaves nothing behind and the transaction may go on.
pub(super) fn post_in(
    conn: &Connection,
    transfer: &Transfer,
    now: UnixTime,
) -> Result<Posted, StoreError> {
    conn.execute_batch("SAVEPOINT post")?;
    let result = post_inner(conn, transfer, now);
    let end = match result {
        Ok(Posted::Now) => "RELEASE post",
        _ => "ROLLBACK TO post; RELEASE post",
    };
    conn.execute_batch(end)?;
    result
}

fn post_inner(conn: &Connection, transfer: &Transfer, now: UnixTime) -> Result<Posted, StoreError> {
    let id = transfer.id();
    let earlier: Option<String> = conn
        .prepare_cached("SELECT currency FROM ledger_transfers WHERE id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?;
    if let Some(currency) = earlier {
        let same =
            currency == transfer.currency().as_str() && posted_legs(conn, id)? == transfer.legs();
        return if same {
            Ok(Posted::Already)
        } else {
            Err(LedgerError::Conflict(id.clone()).into())
        };
    }
    let currency = transfer.currency().as_str();
    conn.prepare_cached(
        "INSERT INTO ledger_transfers (id, currency, at, memo) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id.as_str(), currency, now.0, transfer.memo()])?;
    for (account, amount) in transfer.legs() {
        let (kind, holder) = account.key();
        conn.prepare_cached(
            "INSERT OR IGNORE INTO ledger_accounts (kind, holder, currency) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![kind, holder, currency])?;
        let (account_id, balance): (i64, i64) = conn
            .prepare_cached(
                "UPDATE ledger_accounts SET balance = balance + ?4
                 WHERE kind = ?1 AND holder = ?2 AND currency = ?3
                 RETURNING id, balance",
            )?
            .query_row(params![kind, holder, currency, amount], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if account.never_negative() && balance < 0 {
            // Rolling back to the savepoint undoes every leg.
            return Err(LedgerError::InsufficientFunds {
                account: account.clone(),
                balance: balance - amount,
            }
            .into());
        }
        conn.prepare_cached(
            "INSERT INTO ledger_entries (transfer_id, account_id, amount) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id.as_str(), account_id, amount])?;
    }
    Ok(Posted::Now)
}

fn balance_on(
    conn: &Connection,
    account: &Account,
    currency: &Currency,
) -> Result<i64, StoreError> {
    let (kind, holder) = account.key();
    Ok(conn
        .prepare_cached(
            "SELECT balance FROM ledger_accounts WHERE kind = ?1 AND holder = ?2 AND currency = ?3",
        )?
        .query_row(params![kind, holder, currency.as_str()], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn transfer_posted_on(conn: &Connection, id: &TransferId) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM ledger_transfers WHERE id = ?1")?
        .query_row([id.as_str()], |_| Ok(()))
        .optional()?
        .is_some())
}

impl Batch<'_> {
    /// [`Store::post`], in the batch's transaction.
    pub fn post(&self, transfer: &Transfer, now: UnixTime) -> Result<Posted, StoreError> {
        post_in(self.conn, transfer, now)
    }

    pub fn balance(&self, account: &Account, currency: &Currency) -> Result<i64, StoreError> {
        balance_on(self.conn, account, currency)
    }

    pub fn transfer_posted(&self, id: &TransferId) -> Result<bool, StoreError> {
        transfer_posted_on(self.conn, id)
    }
}

impl Store {
    /// Posts `transfer` unless it was posted before: then nothing changes,
    /// and if it was posted with other legs that is a conflict.
    pub fn post(&self, transfer: &Transfer, now: UnixTime) -> Result<Posted, StoreError> {
        let mut conn = self.conn();
        // Immediate: another connection (`rpibroker admin credit`) writing
        // meanwhile makes this one wait, instead of failing it half-way.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let posted = post_in(&tx, transfer, now)?;
        tx.commit()?;
        Ok(posted)
    }

    /// The balance of `account` in `currency` (zero if it never moved).
    pub fn balance(&self, account: &Account, currency: &Currency) -> Result<i64, StoreError> {
        balance_on(&self.conn(), account, currency)
    }

    /// Whether transfer `id` was posted.
    pub fn transfer_posted(&self, id: &TransferId) -> Result<bool, StoreError> {
        transfer_posted_on(&self.conn(), id)
    }

    /// The wallet, held and payable balances of account `user`, by currency.
    pub fn balances_of_user(&self, user: i64) -> Result<Vec<(Account, Currency, i64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT kind, currency, balance FROM ledger_accounts
             WHERE kind IN ('wallet', 'held', 'payable') AND holder = ?1 ORDER BY kind DESC, currency",
        )?;
        let rows = stmt.query_map([user.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, currency, balance) = row?;
            if let Some(account) = account_of(&kind, &user.to_string()) {
                out.push((account, Currency::parse(&currency)?, balance));
            }
        }
        Ok(out)
    }

    /// The latest `limit` movements of account `user`'s wallet and payable,
    /// newest first.
    pub fn movements_of_user(&self, user: i64, limit: i64) -> Result<Vec<Movement>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.at, t.id, t.memo, a.currency, a.kind, e.amount
             FROM ledger_entries e
             JOIN ledger_accounts a ON a.id = e.account_id
             JOIN ledger_transfers t ON t.id = e.transfer_id
             WHERE a.kind IN ('wallet', 'held', 'payable') AND a.holder = ?1
             ORDER BY t.at DESC, e.rowid DESC LIMIT ?2",
        )?;
        let holder = user.to_string();
        let rows = stmt.query_map(params![holder, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at, transfer, memo, currency, kind, amount) = row?;
            if let Some(account) = account_of(&kind, &holder) {
                out.push(Movement {
                    at,
                    transfer,
                    memo,
                    currency: Currency::parse(&currency)?,
                    account,
                    amount,
                });
            }
        }
        Ok(out)
    }

    /// The sum of every account, per currency.
    pub fn ledger_totals(&self) -> Result<Vec<CurrencyTotal>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT a.currency, SUM(a.balance), COUNT(*),
                    (SELECT COUNT(*) FROM ledger_transfers t WHERE t.currency = a.currency)
             FROM ledger_accounts a GROUP BY a.currency ORDER BY a.currency",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        let mut totals = Vec::new();
        for row in rows {
            let (currency, sum, accounts, transfers) = row?;
            totals.push(CurrencyTotal {
                currency: Currency::parse(&currency)?,
                sum,
                accounts,
                transfers,
            });
        }
        Ok(totals)
    }

    /// Every way the ledger could be wrong, in words; empty when it is
    /// right: a currency whose accounts do not sum to zero, a transfer whose
    /// legs do not, an account whose balance is not the sum of its entries,
    /// a wallet or payable below zero.
    pub fn ledger_problems(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut problems = Vec::new();
        let queries: [(&str, &str); 4] = [
            (
                "SELECT currency, SUM(balance) FROM ledger_accounts GROUP BY currency HAVING SUM(balance) != 0",
                "the accounts in {0} sum to {1}",
            ),
            (
                "SELECT transfer_id, SUM(amount) FROM ledger_entries GROUP BY transfer_id HAVING SUM(amount) != 0",
                "transfer {0} sums to {1}",
            ),
            (
                "SELECT a.kind || ' ' || a.holder || ' ' || a.currency, a.balance - COALESCE(SUM(e.amount), 0)
                 FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
                 GROUP BY a.id HAVING a.balance != COALESCE(SUM(e.amount), 0)",
                "account {0} is off its entries by {1}",
            ),
            (
                "SELECT kind || ' ' || holder || ' ' || currency, balance FROM ledger_accounts
                 WHERE kind IN ('wallet', 'held', 'payable') AND balance < 0",
                "account {0} is negative: {1}",
            ),
        ];
        for (sql, words) in queries {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (what, amount) = row?;
                problems.push(
                    words
                        .replace("{0}", &what)
                        .replace("{1}", &amount.to_string()),
                );
            }
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::{RngExt, SeedableRng, rngs::StdRng};

    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn id(text: &str) -> TransferId {
        TransferId::parse(text).unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_transfer_posts_once_and_never_overdraws_a_wallet() {
        let (_dir, store) = store();
        let paypal = Account::Clearing("paypal".into());
        let topup = Transfer::simple(
            id("topup:1"),
            usd(),
            "top-up",
            paypal.clone(),
            Account::Wallet(1),
            500,
        )
        .unwrap();
        assert_eq!(store.post(&topup, UnixTime(1)).unwrap(), Posted::Now);
        assert_eq!(store.post(&topup, UnixTime(2)).unwrap(), Posted::Already);
        assert_eq!(store.balance(&Account::Wallet(1), &usd()).unwrap(), 500);
        let other = Transfer::simple(
            id("topup:1"),
            usd(),
            "top-up",
            paypal,
            Account::Wallet(1),
            600,
        )
        .unwrap();
        assert!(matches!(
            store.post(&other, UnixTime(3)),
            Err(StoreError::Ledger(LedgerError::Conflict(_)))
        ));

        let charge = Transfer::new(
            id("charge:r:1"),
            usd(),
            "an hour",
            vec![
                (Account::Wallet(1), -501),
                (Account::Payable(2), 451),
                (Account::Revenue, 50),
            ],
        )
        .unwrap();
        assert!(matches!(
            store.post(&charge, UnixTime(4)),
            Err(StoreError::Ledger(LedgerError::InsufficientFunds {
                balance: 500,
                ..
            }))
        ));
        assert_eq!(
            store.balance(&Account::Wallet(1), &usd()).unwrap(),
            500,
            "nothing moved"
        );
        assert_eq!(store.balance(&Account::Revenue, &usd()).unwrap(), 0);
        assert!(store.ledger_problems().unwrap().is_empty());
        let totals = store.ledger_totals().unwrap();
        assert_eq!((totals[0].sum, totals[0].transfers), (0, 1));

        // The check sees a balance that drifted from its entries.
        store
            .conn()
            .execute(
                "UPDATE ledger_accounts SET balance = balance - 600 WHERE kind = 'wallet'",
                [],
            )
            .unwrap();
        let problems = store.ledger_problems().unwrap();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("negative")));
    }

    /// Random sequences of top-ups, charges, payouts, retries and
    /// overdrafts, each reproducible from its seed, keep every invariant and
    /// match a model of the balances.
    #[test]
    fn random_sequences_keep_the_ledger_whole() {
        const SEEDS: u64 = 150;
        const STEPS: usize = 50;
        for seed in 0..SEEDS {
            let (_dir, store) = store();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut model: HashMap<Account, i64> = HashMap::new();
            let mut posted: Vec<Transfer> = Vec::new();
            for step in 0..STEPS {
                let user = rng.random_range(1..4i64);
                let amount = rng.random_range(1..1_000i64);
                let legs = match rng.random_range(0..5) {
                    0 => vec![
                        (Account::Clearing("btcpay".into()), -amount),
                        (Account::Wallet(user), amount),
                    ],
                    1 => {
                        let fee = amount / 10;
                        let mut legs = vec![
                            (Account::Wallet(user), -amount),
                            (Account::Payable(user + 10), amount - fee),
                        ];
                        if fee > 0 {
                            legs.push((Account::Revenue, fee));
                        }
                        legs
                    }
                    2 => vec![
                        (Account::Payable(user + 10), -amount),
                        (Account::PayoutsInFlight, amount),
                    ],
                    3 => vec![
                        (Account::PayoutsInFlight, -amount),
                        (Account::Clearing("paypal".into()), amount),
                    ],
                    _ => {
                        // A retry of an earlier transfer changes nothing.
                        if let Some(t) = posted.get(rng.random_range(0..posted.len().max(1))) {
                            assert_eq!(
                                store.post(t, UnixTime(step as i64)).unwrap(),
                                Posted::Already,
                                "seed {seed}"
                            );
                        }
                        continue;
                    }
                };
                let t = Transfer::new(id(&format!("t:{step}")), usd(), "", legs).unwrap();
                let fits = t.legs().iter().all(|(a, amt)| {
                    !a.never_negative() || model.get(a).copied().unwrap_or(0) + amt >= 0
                });
                match store.post(&t, UnixTime(step as i64)) {
                    Ok(Posted::Now) => {
                        assert!(fits, "seed {seed} step {step}: overdraft posted");
                        for (a, amt) in t.legs() {
                            *model.entry(a.clone()).or_default() += amt;
                        }
                        posted.push(t);
                    }
                    Err(StoreError::Ledger(LedgerError::InsufficientFunds { .. })) => {
                        assert!(
                            !fits,
                            "seed {seed} step {step}: refused a transfer that fits"
                        );
                    }
                    other => panic!("seed {seed} step {step}: {other:?}"),
                }
                for (a, balance) in &model {
                    assert_eq!(
                        store.balance(a, &usd()).unwrap(),
                        *balance,
                        "seed {seed} step {step}: {a}"
                    );
                }
            }
            assert_eq!(
                store.ledger_problems().unwrap(),
                Vec::<String>::new(),
                "seed {seed}"
            );
        }
    }
}

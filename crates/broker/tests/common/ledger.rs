//! Reading a test broker's ledger and top-ups straight from its database,
//! as an auditor would.

use super::TestBroker;

/// The broker's database, opened beside it.
pub fn db(broker: &TestBroker) -> rusqlite::Connection {
    rusqlite::Connection::open(broker.data_dir().join("broker.sqlite")).unwrap()
}

/// The summed balances of the accounts of `kind` (of every currency), of
/// `holder` only when given, in minor units.
pub fn balance(broker: &TestBroker, kind: &str, holder: Option<&str>) -> i64 {
    db(broker)
        .query_row(
            "SELECT COALESCE(SUM(balance), 0) FROM ledger_accounts
             WHERE kind = ?1 AND (?2 IS NULL OR holder = ?2)",
            rusqlite::params![kind, holder],
            |r| r.get(0),
        )
        .unwrap()
}

/// The wallet balance of account `email` in minor units of USD.
pub fn wallet(broker: &TestBroker, email: &str) -> i64 {
    db(broker)
        .query_row(
            "SELECT COALESCE((SELECT a.balance FROM ledger_accounts a JOIN users u
                ON a.holder = CAST(u.id AS TEXT) WHERE u.email = ?1 AND a.kind = 'wallet'
                AND a.currency = 'USD'), 0)",
            [email],
            |r| r.get(0),
        )
        .unwrap()
}

/// How many ledger transfers have an id like `pattern` (SQL LIKE).
pub fn transfers(broker: &TestBroker, pattern: &str) -> i64 {
    db(broker)
        .query_row(
            "SELECT COUNT(*) FROM ledger_transfers WHERE id LIKE ?1",
            [pattern],
            |r| r.get(0),
        )
        .unwrap()
}

/// Broken ledger invariants: currencies or transfers not summing to zero,
/// wallets, holds or payables below zero, balances not matching entries.
pub fn problems(broker: &TestBroker) -> i64 {
    db(broker)
        .query_row(
            "SELECT (SELECT COUNT(*) FROM (SELECT currency FROM ledger_accounts GROUP BY currency HAVING SUM(balance) != 0))
                  + (SELECT COUNT(*) FROM (SELECT transfer_id FROM ledger_entries GROUP BY transfer_id HAVING SUM(amount) != 0))
                  + (SELECT COUNT(*) FROM ledger_accounts WHERE kind IN ('wallet', 'held', 'payable') AND balance < 0)
                  + (SELECT COUNT(*) FROM ledger_accounts a WHERE a.balance !=
                       (SELECT COALESCE(SUM(e.amount), 0) FROM ledger_entries e WHERE e.account_id = a.id))",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// The state of top-up `id` as stored.
pub fn topup_state(broker: &TestBroker, id: &str) -> String {
    db(broker)
        .query_row("SELECT state FROM topups WHERE id = ?1", [id], |r| r.get(0))
        .unwrap()
}

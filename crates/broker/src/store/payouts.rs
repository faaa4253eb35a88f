//! Payouts in the store: owners' payout methods, and each payout's row kept
//! in the same transaction as the ledger transfer that moves its money, so
//! the two never disagree, whenever the broker stops.
//!
//! A payout is made once per owner, payout period and currency
//! (`payout:<owner>:<period>:<currency>`: payable to payouts in flight);
//! it then ends paid (`payout-paid:<id>`: in flight to the method's
//! clearing account) or failed (`payout-failed:<id>`: back to payable), and
//! a paid one may later be returned (`payout-returned:<id>`: clearing back
//! to payable).

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::ledger::post_in;
use super::{Store, StoreError};
use crate::ledger::{Account, Currency, Transfer, TransferId};
use crate::payouts::method::PayoutMethod;
use crate::time::UnixTime;

/// Where a payout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayoutState {
    /// Sent (or being sent); the money is in flight.
    Sent,
    Paid,
    /// Not paid; the money is payable again.
    Failed,
    /// Paid, then given back; the money is payable again.
    Returned,
}

impl PayoutState {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutState::Sent => "sent",
            PayoutState::Paid => "paid",
            PayoutState::Failed => "failed",
            PayoutState::Returned => "returned",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "sent" => PayoutState::Sent,
            "paid" => PayoutState::Paid,
            "failed" => PayoutState::Failed,
            "returned" => PayoutState::Returned,
            _ => return None,
        })
    }
}

impl std::fmt::Display for PayoutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payout as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayoutRecord {
    pub id: String,
    pub owner_id: i64,
    pub owner_email: String,
    pub period: i64,
    pub currency: String,
    /// In minor units.
    pub amount: i64,
    pub method: String,
    pub destination: String,
    pub state: PayoutState,
    pub provider_batch_id: Option<String>,
    pub provider_item_id: Option<String>,
    pub reason: Option<String>,
    /// When it was first sent to its provider (before the request went
    /// out), if it was.
    #[serde(skip)]
    pub send_attempted_at: Option<i64>,
    /// Why the operator should look this payout up at its provider (shown
    /// to the operator only).
    #[serde(skip)]
    pub attention: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What starting an owner's payout for a period did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The payout is made and its money is in flight.
    Now(PayoutRecord),
    /// It was made before (whatever became of it); nothing changed.
    Already(PayoutRecord),
    /// The owner is owed less than the minimum; nothing changed.
    BelowMinimum(i64),
}

/// How a provider (or the operator) says a payout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Paid {
        batch: Option<String>,
        item: Option<String>,
    },
    Failed(String),
    Returned(String),
}

/// What recording an outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Now(PayoutState),
    /// The payout was already in that state; nothing changed.
    Already(PayoutState),
    /// The payout is in a state that outcome cannot follow.
    Refused(PayoutState),
    NoSuchPayout,
}

/// The payout id of an owner's period and currency; also PayPal's
/// `sender_batch_id`, so one owner-period can never be sent twice.
pub fn payout_id(owner: i64, period: i64, currency: &Currency) -> String {
    format!("po-{owner}-{period}-{currency}")
}

const COLUMNS: &str = "p.id, p.owner_id, u.email, p.period, p.currency, p.amount, p.method,
    p.destination, p.state, p.provider_batch_id, p.provider_item_id, p.reason, p.created_at,
    p.updated_at, p.send_attempted_at, p.attention";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<PayoutRecord> {
    let state: String = r.get(8)?;
    Ok(PayoutRecord {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        owner_email: r.get(2)?,
        period: r.get(3)?,
        currency: r.get(4)?,
        amount: r.get(5)?,
        method: r.get(6)?,
        destination: r.get(7)?,
        state: PayoutState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                8,
                rusqlite::types::Type::Text,
                format!("payout state {state:?}").into(),
            )
        })?,
        provider_batch_id: r.get(9)?,
        provider_item_id: r.get(10)?,
        reason: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        send_attempted_at: r.get(14)?,
        attention: r.get(15)?,
    })
}

fn payout_in(tx: &Transaction<'_>, id: &str) -> Result<Option<PayoutRecord>, StoreError> {
    Ok(tx
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM payouts p JOIN users u ON u.id = p.owner_id WHERE p.id = ?1"
            ),
            [id],
            record,
        )
        .optional()?)
}

/// Revenue, payables or payouts in flight of one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sum {
    pub currency: String,
    /// In minor units.
    pub amount: i64,
    /// Accounts (or payouts) it is the sum of.
    pub count: i64,
}

/// Money summed over a day or month (`bucket`) and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketSum {
    pub bucket: String,
    pub currency: String,
    pub amount: i64,
}

/// One credit of an owner's payable: what a rental period earned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earning {
    pub at: i64,
    pub transfer: String,
    pub currency: String,
    pub amount: i64,
}

impl Store {
    /// The payout method of account `user`, if they chose one.
    pub fn payout_method(&self, user: i64) -> Result<Option<PayoutMethod>, StoreError> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT kind, destination FROM payout_methods WHERE user_id = ?1",
                [user],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(kind, dest)| PayoutMethod::parse(&kind, &dest).ok()))
    }

    /// Sets (or with `None` removes) account `user`'s payout method.
    pub fn set_payout_method(
        &self,
        user: i64,
        method: Option<&PayoutMethod>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        match method {
            Some(m) => conn.execute(
                "INSERT INTO payout_methods (user_id, kind, destination, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id) DO UPDATE SET kind = ?2, destination = ?3, updated_at = ?4",
                params![user, m.kind(), m.destination(), now.0],
            )?,
            None => conn.execute("DELETE FROM payout_methods WHERE user_id = ?1", [user])?,
        };
        Ok(())
    }

    /// Owners whose payout method is of `kind` and who are owed at least
    /// `minimum` in some currency: (owner, currency).
    pub fn owners_due(&self, kind: &str, minimum: i64) -> Result<Vec<(i64, Currency)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT m.user_id, a.currency FROM payout_methods m
             JOIN ledger_accounts a ON a.kind = 'payable' AND a.holder = CAST(m.user_id AS TEXT)
             WHERE m.kind = ?1 AND a.balance >= ?2 ORDER BY m.user_id, a.currency",
        )?;
        let rows = stmt.query_map(params![kind, minimum], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (owner, currency) = row?;
            out.push((owner, Currency::parse(&currency)?));
        }
        Ok(out)
    }

    /// Makes owner's payout for `period` in `currency` to their current
    /// method, of everything they are owed, if that is at least `minimum`:
    /// the payout's row and its transfer (payable to in flight) in one
    /// transaction. Once made for a period it is never made again.
    pub fn start_payout(
        &self,
        owner: i64,
        period: i64,
        currency: &Currency,
        minimum: i64,
        now: UnixTime,
    ) -> Result<Started, StoreError> {
        let id = payout_id(owner, period, currency);
        let mut conn = self.conn();
        // Immediate: the operator's export may run beside the broker.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(existing) = payout_in(&tx, &id)? {
            return Ok(Started::Already(existing));
        }
        let method: Option<(String, String)> = tx
            .query_row(
                "SELECT kind, destination FROM payout_methods WHERE user_id = ?1",
                [owner],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((kind, destination)) = method else {
            return Ok(Started::BelowMinimum(0));
        };
        let owed: i64 = tx
            .query_row(
                "SELECT balance FROM ledger_accounts WHERE kind = 'payable' AND holder = ?1 AND currency = ?2",
                params![owner.to_string(), currency.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        if owed < minimum || owed <= 0 {
            return Ok(Started::BelowMinimum(owed));
        }
        tx.execute(
            "INSERT INTO payouts (id, owner_id, period, currency, amount, method, destination, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'sent', ?8, ?8)",
            params![id, owner, period, currency.as_str(), owed, kind, destination, now.0],
        )?;
        let transfer = Transfer::simple(
            TransferId::derive(
                "payout",
                &[&owner.to_string(), &period.to_string(), currency.as_str()],
            )?,
            currency.clone(),
            &format!("payout {id} by {kind}"),
            Account::Payable(owner),
            Account::PayoutsInFlight,
            owed,
        )?;
        post_in(&tx, &transfer, now)?;
        let made = payout_in(&tx, &id)?.expect("the row just inserted");
        tx.commit()?;
        Ok(Started::Now(made))
    }

    /// Records how payout `id` ended, posting its transfer in the same
    /// transaction. Recording the same outcome again changes nothing.
    pub fn settle_payout(
        &self,
        id: &str,
        outcome: &Outcome,
        now: UnixTime,
    ) -> Result<Settled, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(p) = payout_in(&tx, id)? else {
            return Ok(Settled::NoSuchPayout);
        };
        let currency = Currency::parse(&p.currency)?;
        let clearing = Account::Clearing(p.method.clone());
        let (to, from, account_to, reason) = match (p.state, outcome) {
            (PayoutState::Sent, Outcome::Paid { .. }) => {
                (PayoutState::Paid, Account::PayoutsInFlight, clearing, None)
            }
            (PayoutState::Sent, Outcome::Failed(why)) => (
                PayoutState::Failed,
                Account::PayoutsInFlight,
                Account::Payable(p.owner_id),
                Some(why),
            ),
            (PayoutState::Sent, Outcome::Returned(why)) => (
                PayoutState::Returned,
                Account::PayoutsInFlight,
                Account::Payable(p.owner_id),
                Some(why),
            ),
            (PayoutState::Paid, Outcome::Returned(why)) => (
                PayoutState::Returned,
                clearing,
                Account::Payable(p.owner_id),
                Some(why),
            ),
            (PayoutState::Paid, Outcome::Paid { .. }) => return Ok(Settled::Already(p.state)),
            (PayoutState::Failed, Outcome::Failed(_))
            | (PayoutState::Returned, Outcome::Returned(_)) => {
                return Ok(Settled::Already(p.state));
            }
            (state, _) => return Ok(Settled::Refused(state)),
        };
        let kind = match to {
            PayoutState::Paid => "payout-paid",
            PayoutState::Failed => "payout-failed",
            _ => "payout-returned",
        };
        let memo = format!("payout {id} {to}");
        let transfer = Transfer::simple(
            TransferId::derive(kind, &[id])?,
            currency,
            &memo,
            from,
            account_to,
            p.amount,
        )?;
        post_in(&tx, &transfer, now)?;
        let (batch, item) = match outcome {
            Outcome::Paid { batch, item } => (batch.clone(), item.clone()),
            _ => (None, None),
        };
        let reason: Option<String> = reason.map(|r| r.chars().take(200).collect());
        tx.execute(
            "UPDATE payouts SET state = ?2, reason = COALESCE(?3, reason),
                provider_batch_id = COALESCE(?4, provider_batch_id),
                provider_item_id = COALESCE(?5, provider_item_id), attention = NULL,
                updated_at = ?6
             WHERE id = ?1",
            params![id, to.as_str(), reason, batch, item, now.0],
        )?;
        tx.commit()?;
        Ok(Settled::Now(to))
    }

    /// Records the provider's ids of payout `id` once it answered.
    pub fn set_payout_provider_ids(
        &self,
        id: &str,
        batch: Option<&str>,
        item: Option<&str>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE payouts SET provider_batch_id = COALESCE(?2, provider_batch_id),
                provider_item_id = COALESCE(?3, provider_item_id), updated_at = ?4 WHERE id = ?1",
            params![id, batch, item, now.0],
        )?;
        Ok(())
    }

    /// Records that payout `id` is about to be sent to its provider; from
    /// then on a refusal cannot prove it was never paid. True when this is
    /// its first send (the first moment is kept).
    pub fn mark_payout_send_attempted(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE payouts SET send_attempted_at = ?2, updated_at = ?2
             WHERE id = ?1 AND send_attempted_at IS NULL",
            params![id, now.0],
        )?;
        Ok(changed == 1)
    }

    /// Flags payout `id` for the operator: `why` they should look it up at
    /// its provider. Its state and money do not change.
    pub fn flag_payout(&self, id: &str, why: &str, now: UnixTime) -> Result<(), StoreError> {
        let why: String = why.chars().take(200).collect();
        self.conn().execute(
            "UPDATE payouts SET attention = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, why, now.0],
        )?;
        Ok(())
    }

    /// Payout `id`.
    pub fn payout(&self, id: &str) -> Result<Option<PayoutRecord>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        payout_in(&tx, id)
    }

    /// Payouts matching `filter` (an SQL condition on `p`), newest first.
    fn payouts_where(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
        limit: i64,
    ) -> Result<Vec<PayoutRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM payouts p JOIN users u ON u.id = p.owner_id
             WHERE {filter} ORDER BY p.created_at DESC, p.id DESC LIMIT {limit}"
        ))?;
        let rows = stmt.query_map(args, record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Owner's latest `limit` payouts, newest first.
    pub fn payouts_of_owner(
        &self,
        owner: i64,
        limit: i64,
    ) -> Result<Vec<PayoutRecord>, StoreError> {
        self.payouts_where("p.owner_id = ?1", [owner], limit)
    }

    /// Payouts by `method` in `state`, newest first.
    pub fn payouts_in_state(
        &self,
        method: &str,
        state: PayoutState,
        limit: i64,
    ) -> Result<Vec<PayoutRecord>, StoreError> {
        self.payouts_where(
            "p.method = ?1 AND p.state = ?2",
            params![method, state.as_str()],
            limit,
        )
    }

    /// The latest `limit` payouts of everyone, newest first.
    pub fn all_payouts(&self, limit: i64) -> Result<Vec<PayoutRecord>, StoreError> {
        self.payouts_where("1", [], limit)
    }

    /// Credits of owner's payable from rental charges since `since`.
    pub fn earnings_of(&self, owner: i64, since: i64) -> Result<Vec<Earning>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.at, t.id, a.currency, e.amount FROM ledger_entries e
             JOIN ledger_accounts a ON a.id = e.account_id
             JOIN ledger_transfers t ON t.id = e.transfer_id
             WHERE a.kind = 'payable' AND a.holder = ?1 AND t.at >= ?2
               AND t.id LIKE 'settle:%' AND e.amount > 0
             ORDER BY t.at DESC",
        )?;
        let rows = stmt.query_map(params![owner.to_string(), since], |r| {
            Ok(Earning {
                at: r.get(0)?,
                transfer: r.get(1)?,
                currency: r.get(2)?,
                amount: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The device of each rental of owner's devices, by rental id.
    pub fn rental_devices_of_owner(
        &self,
        owner: i64,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.id, d.name FROM rentals r JOIN devices d ON d.id = r.device_id
             WHERE d.owner_id = ?1",
        )?;
        let rows = stmt.query_map([owner], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The balances of every account of `kind` (e.g. `payable`), summed per
    /// currency, with how many are not zero.
    pub fn sum_of_accounts(&self, kind: &str) -> Result<Vec<Sum>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT currency, SUM(balance), SUM(balance != 0) FROM ledger_accounts
             WHERE kind = ?1 GROUP BY currency ORDER BY currency",
        )?;
        let rows = stmt.query_map([kind], |r| {
            Ok(Sum {
                currency: r.get(0)?,
                amount: r.get(1)?,
                count: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The broker's fees since `since`, per `format` bucket (an SQLite
    /// `strftime` format such as `%Y-%m-%d`) and currency, newest first.
    pub fn revenue_by(&self, format: &str, since: i64) -> Result<Vec<BucketSum>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT strftime(?1, t.at, 'unixepoch') AS b, a.currency, SUM(e.amount)
             FROM ledger_entries e
             JOIN ledger_accounts a ON a.id = e.account_id
             JOIN ledger_transfers t ON t.id = e.transfer_id
             WHERE a.kind = 'revenue' AND t.at >= ?2
             GROUP BY b, a.currency ORDER BY b DESC, a.currency",
        )?;
        let rows = stmt.query_map(params![format, since], |r| {
            Ok(BucketSum {
                bucket: r.get(0)?,
                currency: r.get(1)?,
                amount: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Payouts summed per state and currency.
    pub fn payout_totals(&self) -> Result<Vec<(PayoutState, Sum)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT state, currency, SUM(amount), COUNT(*) FROM payouts
             GROUP BY state, currency ORDER BY state, currency",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Sum {
                    currency: r.get(1)?,
                    amount: r.get(2)?,
                    count: r.get(3)?,
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (state, sum) = row?;
            if let Some(state) = PayoutState::parse(&state) {
                out.push((state, sum));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, store)
    }

    fn owner(store: &Store, email: &str) -> i64 {
        let id = store.add_user(email, "x", false, UnixTime(1)).unwrap().id;
        let m = PayoutMethod::parse("paypal", email).unwrap();
        store.set_payout_method(id, Some(&m), UnixTime(1)).unwrap();
        id
    }

    /// Charges a renter's wallet: 90 % to the owner, 10 % to the broker.
    fn charge(store: &Store, renter: i64, owner: i64, cents: i64, cause: &str) {
        let fee = cents / 10;
        let t = Transfer::new(
            TransferId::derive("settle", &[cause, "0"]).unwrap(),
            usd(),
            "",
            vec![
                (Account::Wallet(renter), -cents),
                (Account::Payable(owner), cents - fee),
                (Account::Revenue, fee),
            ],
        )
        .unwrap();
        store.post(&t, UnixTime(2)).unwrap();
    }

    fn topup(store: &Store, renter: i64, cents: i64) {
        let t = Transfer::simple(
            TransferId::derive("topup", &[&renter.to_string()]).unwrap(),
            usd(),
            "",
            Account::Clearing("manual".into()),
            Account::Wallet(renter),
            cents,
        )
        .unwrap();
        store.post(&t, UnixTime(1)).unwrap();
    }

    #[test]
    fn a_payout_is_made_once_per_period_and_ends_once() {
        let (_dir, store) = store();
        let (renter, ada) = (7, owner(&store, "ada@example.org"));
        topup(&store, renter, 10_000);
        charge(&store, renter, ada, 1000, "r1");
        assert_eq!(
            store
                .start_payout(ada, 5, &usd(), 2000, UnixTime(3))
                .unwrap(),
            Started::BelowMinimum(900)
        );
        let Started::Now(p) = store
            .start_payout(ada, 5, &usd(), 500, UnixTime(3))
            .unwrap()
        else {
            panic!("a payout");
        };
        assert_eq!(
            (p.amount, p.state, p.destination.as_str()),
            (900, PayoutState::Sent, "ada@example.org")
        );
        charge(&store, renter, ada, 1000, "r2");
        assert!(matches!(
            store.start_payout(ada, 5, &usd(), 500, UnixTime(4)).unwrap(),
            Started::Already(ref again) if again.amount == 900
        ));
        assert_eq!(
            store.balance(&Account::PayoutsInFlight, &usd()).unwrap(),
            900
        );
        assert_eq!(store.balance(&Account::Payable(ada), &usd()).unwrap(), 900);

        let paid = Outcome::Paid {
            batch: Some("B1".into()),
            item: Some("I1".into()),
        };
        assert_eq!(
            store.settle_payout(&p.id, &paid, UnixTime(5)).unwrap(),
            Settled::Now(PayoutState::Paid)
        );
        assert_eq!(
            store.settle_payout(&p.id, &paid, UnixTime(6)).unwrap(),
            Settled::Already(PayoutState::Paid)
        );
        assert_eq!(
            store
                .settle_payout(&p.id, &Outcome::Failed("late".into()), UnixTime(6))
                .unwrap(),
            Settled::Refused(PayoutState::Paid)
        );
        let paypal = Account::Clearing("paypal".into());
        assert_eq!(store.balance(&paypal, &usd()).unwrap(), 900);
        assert_eq!(store.balance(&Account::PayoutsInFlight, &usd()).unwrap(), 0);
        // Returned later: payable again, and paid again next period.
        assert_eq!(
            store
                .settle_payout(&p.id, &Outcome::Returned("RETURNED".into()), UnixTime(7))
                .unwrap(),
            Settled::Now(PayoutState::Returned)
        );
        assert_eq!(store.balance(&paypal, &usd()).unwrap(), 0);
        assert_eq!(store.balance(&Account::Payable(ada), &usd()).unwrap(), 1800);
        let Started::Now(next) = store
            .start_payout(ada, 6, &usd(), 500, UnixTime(8))
            .unwrap()
        else {
            panic!("the next period's payout");
        };
        assert_eq!(next.amount, 1800);
        assert_eq!(
            store
                .settle_payout(&next.id, &Outcome::Failed("FAILED".into()), UnixTime(9))
                .unwrap(),
            Settled::Now(PayoutState::Failed)
        );
        assert_eq!(store.balance(&Account::Payable(ada), &usd()).unwrap(), 1800);
        let listed = store.payouts_of_owner(ada, 10).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].reason.as_deref(), Some("FAILED"));
        assert_eq!(
            store.settle_payout("po-nope", &paid, UnixTime(9)).unwrap(),
            Settled::NoSuchPayout
        );
        assert!(store.ledger_problems().unwrap().is_empty());
    }

    /// Only the first send is reported first; a flag stays until the payout
    /// is settled, and neither moves money.
    #[test]
    fn a_payout_knows_it_was_sent_and_keeps_its_flag_until_settled() {
        let (_dir, store) = store();
        let ada = owner(&store, "ada@example.org");
        let renter = 99;
        topup(&store, renter, 10_000);
        charge(&store, renter, ada, 1000, "r1");
        let Started::Now(p) = store.start_payout(ada, 5, &usd(), 1, UnixTime(3)).unwrap() else {
            panic!("a payout");
        };
        assert_eq!(p.send_attempted_at, None);
        assert!(
            store
                .mark_payout_send_attempted(&p.id, UnixTime(4))
                .unwrap()
        );
        assert!(
            !store
                .mark_payout_send_attempted(&p.id, UnixTime(5))
                .unwrap()
        );
        store.flag_payout(&p.id, "look it up", UnixTime(6)).unwrap();
        let flagged = store.payout(&p.id).unwrap().unwrap();
        assert_eq!(
            (
                flagged.state,
                flagged.send_attempted_at,
                flagged.attention.as_deref()
            ),
            (PayoutState::Sent, Some(4), Some("look it up"))
        );
        assert_eq!(
            store.balance(&Account::PayoutsInFlight, &usd()).unwrap(),
            900
        );
        let paid = Outcome::Paid {
            batch: None,
            item: None,
        };
        store.settle_payout(&p.id, &paid, UnixTime(7)).unwrap();
        assert_eq!(store.payout(&p.id).unwrap().unwrap().attention, None);
    }

    /// Charges post from one thread while payouts are made and settled
    /// from others: no money appears or vanishes, nothing is paid twice.
    #[test]
    fn payouts_beside_charges_conserve_the_total() {
        let (_dir, store) = store();
        let owners: Vec<i64> = (0..4)
            .map(|i| owner(&store, &format!("o{i}@example.org")))
            .collect();
        let renter = 99;
        topup(&store, renter, 1_000_000);
        let charges = {
            let (store, owners) = (store.clone(), owners.clone());
            std::thread::spawn(move || {
                for i in 0..400 {
                    charge(
                        &store,
                        renter,
                        owners[i % owners.len()],
                        100 + i as i64,
                        &format!("c{i}"),
                    );
                }
            })
        };
        let payers: Vec<_> = (0..2)
            .map(|t| {
                let (store, owners) = (store.clone(), owners.clone());
                std::thread::spawn(move || {
                    for period in 0..40 {
                        for &o in &owners {
                            if let Started::Now(p) | Started::Already(p) = store
                                .start_payout(o, period, &usd(), 1, UnixTime(period))
                                .unwrap()
                            {
                                let outcome = if (period + t) % 3 == 0 {
                                    Outcome::Failed("FAILED".into())
                                } else {
                                    Outcome::Paid {
                                        batch: None,
                                        item: None,
                                    }
                                };
                                store
                                    .settle_payout(&p.id, &outcome, UnixTime(period))
                                    .unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        charges.join().unwrap();
        for p in payers {
            p.join().unwrap();
        }
        assert!(store.ledger_problems().unwrap().is_empty());
        let charged: i64 = (0..400).map(|i| 100 + i).sum();
        let fees: i64 = (0..400).map(|i| (100 + i) / 10).sum();
        let payable: i64 = owners
            .iter()
            .map(|o| store.balance(&Account::Payable(*o), &usd()).unwrap())
            .sum();
        let paid = store
            .balance(&Account::Clearing("paypal".into()), &usd())
            .unwrap();
        let in_flight = store.balance(&Account::PayoutsInFlight, &usd()).unwrap();
        assert_eq!(payable + paid + in_flight, charged - fees);
        assert_eq!(store.balance(&Account::Revenue, &usd()).unwrap(), fees);
        let recorded: i64 = store
            .all_payouts(1000)
            .unwrap()
            .iter()
            .filter(|p| p.state == PayoutState::Paid)
            .map(|p| p.amount)
            .sum();
        assert_eq!(
            recorded, paid,
            "every paid payout is in the clearing account once"
        );
    }
}

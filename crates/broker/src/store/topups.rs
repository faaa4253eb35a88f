//! Renters' top-ups as stored: each with its provider's reference and
//! state, crediting one in the same transaction as its ledger transfer, and
//! the webhook deliveries already handled.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::ledger::{Posted, post_in};
use super::{Store, StoreError};
use crate::ledger::{Account, Currency, Transfer, TransferId};
use crate::time::UnixTime;

/// Where a top-up is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopupState {
    /// Waiting for the renter to pay, or for the provider to confirm.
    Pending,
    /// Paid and in the wallet.
    Credited,
    /// The provider refused or lost the payment.
    Failed,
    /// Never paid in time.
    Expired,
    /// Paid, credited, then given back by the provider.
    Refunded,
}

impl TopupState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Credited => "credited",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Refunded => "refunded",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Credited,
            Self::Failed,
            Self::Expired,
            Self::Refunded,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A top-up as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopupRecord {
    pub id: String,
    pub user_id: i64,
    pub provider: String,
    /// The provider's id for the payment, once it made one.
    pub provider_ref: Option<String>,
    pub amount: i64,
    /// How much of it the provider refunded so far.
    pub refunded: i64,
    pub currency: Currency,
    pub state: TopupState,
    pub detail: String,
    pub checkout_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When its provider was last asked about it.
    pub checked_at: i64,
}

impl TopupRecord {
    /// The ledger transfer crediting this top-up, named by the provider's
    /// reference.
    pub fn transfer_id(provider: &str, reference: &str) -> Result<TransferId, StoreError> {
        Ok(TransferId::derive("topup", &[provider, reference])?)
    }
}

const COLUMNS: &str = "id, user_id, provider, provider_ref, amount, currency, state, detail,
                       checkout_url, created_at, updated_at, checked_at, refunded";

fn record(r: &Row<'_>) -> rusqlite::Result<TopupRecord> {
    let bad = |i, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let currency: String = r.get(5)?;
    let state: String = r.get(6)?;
    Ok(TopupRecord {
        id: r.get(0)?,
        user_id: r.get(1)?,
        provider: r.get(2)?,
        provider_ref: r.get(3)?,
        amount: r.get(4)?,
        currency: Currency::parse(&currency).map_err(|e| bad(5, e.to_string()))?,
        state: TopupState::parse(&state).ok_or_else(|| bad(6, state))?,
        detail: r.get(7)?,
        checkout_url: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        checked_at: r.get(11)?,
        refunded: r.get(12)?,
    })
}

/// What crediting a top-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credit {
    /// The wallet got the money now.
    Now(TopupRecord),
    /// It had been credited before; nothing changed.
    Already(TopupRecord),
    /// No top-up has this reference.
    Unknown,
}

/// What recording a provider's refund of a top-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refund {
    /// The refund was booked now: `taken` back out of the wallet, and
    /// `owed` (what the wallet no longer held) to the renter's receivable.
    Now {
        topup: Box<TopupRecord>,
        taken: i64,
        owed: i64,
    },
    /// This refund was booked before; nothing changed.
    Already,
    /// The top-up is not credited, or the refund is more than is left of
    /// it; nothing changed.
    Refused,
}

impl Store {
    /// Records a new pending top-up `id` of `amount` for account `user`,
    /// unless the account started `max_recent` top-ups since `recent`.
    /// Whether it was recorded.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_topup(
        &self,
        id: &str,
        user: i64,
        provider: &str,
        amount: i64,
        currency: &Currency,
        now: UnixTime,
        (max_recent, recent): (i64, UnixTime),
    ) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "INSERT INTO topups (id, user_id, provider, amount, currency, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?6
             WHERE (SELECT COUNT(*) FROM topups WHERE user_id = ?2 AND created_at > ?7) < ?8",
            params![
                id,
                user,
                provider,
                amount,
                currency.as_str(),
                now.0,
                recent.0,
                max_recent
            ],
        )? == 1)
    }

    /// Records the provider's reference and checkout link for top-up `id`.
    /// The same reference again changes nothing.
    pub fn set_topup_checkout(
        &self,
        id: &str,
        reference: &str,
        checkout_url: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE topups SET provider_ref = ?2, checkout_url = ?3, updated_at = ?4
             WHERE id = ?1 AND (provider_ref IS NULL OR provider_ref = ?2)",
            params![id, reference, checkout_url, now.0],
        )?;
        Ok(())
    }

    /// Top-up `id`.
    pub fn topup(&self, id: &str) -> Result<Option<TopupRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM topups WHERE id = ?1"),
                [id],
                record,
            )
            .optional()?)
    }

    /// The top-up `provider` knows as `reference`.
    pub fn topup_by_ref(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<TopupRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM topups WHERE provider = ?1 AND provider_ref = ?2"),
                [provider, reference],
                record,
            )
            .optional()?)
    }

    /// The top-up paid by `provider`'s payment (capture) `payment_id`.
    pub fn topup_by_payment(
        &self,
        provider: &str,
        payment_id: &str,
    ) -> Result<Option<TopupRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM topups WHERE provider = ?1 AND payment_id = ?2"),
                [provider, payment_id],
                record,
            )
            .optional()?)
    }

    /// Account `user`'s latest `limit` top-ups, newest first.
    pub fn topups_of_user(&self, user: i64, limit: i64) -> Result<Vec<TopupRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM topups WHERE user_id = ?1
             ORDER BY created_at DESC, rowid DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![user, limit], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Credits the top-up `provider` knows as `reference`: one transfer from
    /// the provider's clearing account to the renter's wallet, named by the
    /// reference, posted in the same transaction that marks the top-up
    /// credited. Crediting it again changes nothing.
    pub fn credit_topup(
        &self,
        provider: &str,
        reference: &str,
        payment_id: Option<&str>,
        memo: &str,
        now: UnixTime,
    ) -> Result<Credit, StoreError> {
        let mut conn = self.conn();
        // Immediate: the write lock before the first read, so no other
        // connection writes between the read and the transfer.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(topup) = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM topups WHERE provider = ?1 AND provider_ref = ?2"),
                [provider, reference],
                record,
            )
            .optional()?
        else {
            return Ok(Credit::Unknown);
        };
        let transfer = Transfer::simple(
            TopupRecord::transfer_id(provider, reference)?,
            topup.currency.clone(),
            memo,
            Account::Clearing(provider.to_string()),
            Account::Wallet(topup.user_id),
            topup.amount,
        )?;
        let posted = post_in(&tx, &transfer, now)?;
        tx.execute(
            "UPDATE topups SET state = 'credited', detail = '', updated_at = ?2,
                    payment_id = COALESCE(?3, payment_id)
             WHERE id = ?1 AND state != 'refunded'",
            params![topup.id, now.0, payment_id],
        )?;
        let topup = tx.query_row(
            &format!("SELECT {COLUMNS} FROM topups WHERE id = ?1"),
            [&topup.id],
            record,
        )?;
        tx.commit()?;
        Ok(match posted {
            Posted::Now => Credit::Now(topup),
            Posted::Already => Credit::Already(topup),
        })
    }

    /// Ends pending top-up `id` as `state` (failed or expired) for
    /// `detail`. Whether it was pending.
    pub fn close_topup(
        &self,
        id: &str,
        state: TopupState,
        detail: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE topups SET state = ?2, detail = ?3, updated_at = ?4
             WHERE id = ?1 AND state = 'pending'",
            params![id, state.as_str(), detail, now.0],
        )? == 1)
    }

    /// Books `provider`'s refund `refund_id` of `amount` (minor units) of
    /// top-up `id`, once: one transfer named by the refund, giving the
    /// provider's clearing account `amount`, taken out of the renter's
    /// wallet as far as it reaches and the rest owed by the renter; in the
    /// same transaction the refunded total grows, and the top-up is
    /// refunded once that reaches its amount.
    pub fn refund_topup(
        &self,
        id: &str,
        refund_id: &str,
        amount: i64,
        now: UnixTime,
    ) -> Result<Refund, StoreError> {
        let mut conn = self.conn();
        // Immediate: the wallet's balance read here must still hold when
        // the transfer is posted.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(topup) = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM topups WHERE id = ?1"),
                [id],
                record,
            )
            .optional()?
        else {
            return Ok(Refund::Refused);
        };
        let transfer_id = TransferId::derive("refund", &[&topup.provider, refund_id])?;
        let posted: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM ledger_transfers WHERE id = ?1)",
            [transfer_id.as_str()],
            |r| r.get(0),
        )?;
        if posted {
            return Ok(Refund::Already);
        }
        if topup.state != TopupState::Credited
            || amount <= 0
            || amount > topup.amount - topup.refunded
        {
            return Ok(Refund::Refused);
        }
        let wallet = Account::Wallet(topup.user_id);
        let (kind, holder) = wallet.key();
        let balance: i64 = tx
            .query_row(
                "SELECT balance FROM ledger_accounts WHERE kind = ?1 AND holder = ?2 AND currency = ?3",
                params![kind, holder, topup.currency.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let taken = balance.clamp(0, amount);
        let owed = amount - taken;
        let mut legs = vec![(Account::Clearing(topup.provider.clone()), amount)];
        if taken > 0 {
            legs.push((wallet, -taken));
        }
        if owed > 0 {
            legs.push((Account::Receivable(topup.user_id), -owed));
        }
        let transfer = Transfer::new(
            transfer_id,
            topup.currency.clone(),
            "top-up refunded by the payment provider",
            legs,
        )?;
        post_in(&tx, &transfer, now)?;
        tx.execute(
            "UPDATE topups SET refunded = refunded + ?2, updated_at = ?3,
                    state = CASE WHEN refunded + ?2 >= amount THEN 'refunded' ELSE state END
             WHERE id = ?1",
            params![topup.id, amount, now.0],
        )?;
        let topup = tx.query_row(
            &format!("SELECT {COLUMNS} FROM topups WHERE id = ?1"),
            [&topup.id],
            record,
        )?;
        tx.commit()?;
        Ok(Refund::Now {
            topup: Box::new(topup),
            taken,
            owed,
        })
    }

    /// Up to `limit` pending top-ups not checked since `checked_before`,
    /// oldest first.
    pub fn topups_to_check(
        &self,
        checked_before: UnixTime,
        limit: i64,
    ) -> Result<Vec<TopupRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM topups WHERE state = 'pending' AND checked_at < ?1
             ORDER BY created_at, rowid LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![checked_before.0, limit], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that reconciliation asked about top-up `id` at `now`.
    pub fn set_topup_checked(&self, id: &str, now: UnixTime) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE topups SET checked_at = ?2 WHERE id = ?1",
            params![id, now.0],
        )?;
        Ok(())
    }

    /// Whether `provider`'s webhook delivery `delivery` was handled before.
    pub fn delivery_seen(&self, provider: &str, delivery: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM webhook_deliveries WHERE provider = ?1 AND delivery_id = ?2",
                [provider, delivery],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records `provider`'s webhook delivery `delivery` as handled.
    pub fn record_delivery(
        &self,
        provider: &str,
        delivery: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO webhook_deliveries (provider, delivery_id, received_at)
             VALUES (?1, ?2, ?3)",
            params![provider, delivery, now.0],
        )?;
        Ok(())
    }

    /// Forgets webhook deliveries received before `before` (providers stop
    /// repeating them long before).
    pub fn prune_deliveries(&self, before: UnixTime) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM webhook_deliveries WHERE received_at < ?1",
            [before.0],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_topup() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let user = store
            .add_user("r@example.org", "x", false, UnixTime(0))
            .unwrap()
            .id;
        let usd = Currency::parse("USD").unwrap();
        store
            .insert_topup(
                "top-1",
                user,
                "paypal",
                1250,
                &usd,
                UnixTime(1),
                (1, UnixTime(0)),
            )
            .unwrap();
        assert!(
            !store
                .insert_topup(
                    "top-2",
                    user,
                    "paypal",
                    1,
                    &usd,
                    UnixTime(1),
                    (1, UnixTime(0))
                )
                .unwrap(),
            "one a time at most"
        );
        (dir, store, user)
    }

    #[test]
    fn a_top_up_is_credited_once_by_its_reference_and_closes_only_while_pending() {
        let (_dir, store, user) = store_with_topup();
        let usd = Currency::parse("USD").unwrap();
        let wallet = |s: &Store| s.balance(&Account::Wallet(user), &usd).unwrap();
        assert_eq!(
            store
                .credit_topup("paypal", "ORDER-1", None, "m", UnixTime(2))
                .unwrap(),
            Credit::Unknown,
            "no reference yet: nothing to credit"
        );
        store
            .set_topup_checkout("top-1", "ORDER-1", "https://pay/1", UnixTime(2))
            .unwrap();
        store
            .set_topup_checkout("top-1", "ORDER-2", "https://pay/2", UnixTime(2))
            .unwrap();
        assert_eq!(
            store
                .topup("top-1")
                .unwrap()
                .unwrap()
                .provider_ref
                .as_deref(),
            Some("ORDER-1"),
            "a reference never changes"
        );
        let Credit::Now(t) = store
            .credit_topup("paypal", "ORDER-1", Some("CAP-1"), "m", UnixTime(3))
            .unwrap()
        else {
            panic!("credited now");
        };
        assert_eq!(t.state, TopupState::Credited);
        assert!(matches!(
            store
                .credit_topup("paypal", "ORDER-1", Some("CAP-1"), "m", UnixTime(4))
                .unwrap(),
            Credit::Already(_)
        ));
        assert_eq!(wallet(&store), 1250);
        assert!(
            !store
                .close_topup("top-1", TopupState::Failed, "late", UnixTime(5))
                .unwrap(),
            "a credited top-up does not fail"
        );
        assert!(
            store
                .transfer_posted(&TopupRecord::transfer_id("paypal", "ORDER-1").unwrap())
                .unwrap()
        );

        // A refund takes it back once; a late credit changes nothing.
        let t = store.topup_by_payment("paypal", "CAP-1").unwrap().unwrap();
        assert!(matches!(
            store.refund_topup(&t.id, "R-1", 1250, UnixTime(6)).unwrap(),
            Refund::Now {
                taken: 1250,
                owed: 0,
                ..
            }
        ));
        assert_eq!(
            store.refund_topup(&t.id, "R-1", 1250, UnixTime(7)).unwrap(),
            Refund::Already
        );
        store
            .credit_topup("paypal", "ORDER-1", None, "m", UnixTime(8))
            .unwrap();
        assert_eq!(wallet(&store), 0);
        assert_eq!(
            store.topup("top-1").unwrap().unwrap().state,
            TopupState::Refunded
        );
        assert!(store.ledger_problems().unwrap().is_empty());
    }

    #[test]
    fn partial_refunds_take_back_what_they_refund_and_book_what_was_spent() {
        let (_dir, store, user) = store_with_topup();
        let usd = Currency::parse("USD").unwrap();
        let balance = |s: &Store, a: Account| s.balance(&a, &usd).unwrap();
        store
            .set_topup_checkout("top-1", "ORDER-1", "https://pay/1", UnixTime(2))
            .unwrap();
        store
            .credit_topup("paypal", "ORDER-1", Some("CAP-1"), "m", UnixTime(3))
            .unwrap();
        // 3.00 of the 12.50 refunded: exactly that leaves the wallet.
        let Refund::Now { topup, taken, owed } = store
            .refund_topup("top-1", "R-1", 300, UnixTime(4))
            .unwrap()
        else {
            panic!("booked now");
        };
        assert_eq!((taken, owed, topup.refunded), (300, 0, 300));
        assert_eq!(topup.state, TopupState::Credited);
        assert_eq!(balance(&store, Account::Wallet(user)), 950);
        // The renter spends 9.00; a refund of 5.00 takes the 0.50 left and
        // books the 4.50 as owed by the renter.
        store
            .post(
                &Transfer::simple(
                    TransferId::derive("spent", &["1"]).unwrap(),
                    usd.clone(),
                    "rent",
                    Account::Wallet(user),
                    Account::Revenue,
                    900,
                )
                .unwrap(),
                UnixTime(5),
            )
            .unwrap();
        let Refund::Now { topup, taken, owed } = store
            .refund_topup("top-1", "R-2", 500, UnixTime(6))
            .unwrap()
        else {
            panic!("booked now");
        };
        assert_eq!((taken, owed, topup.refunded), (50, 450, 800));
        assert_eq!(topup.state, TopupState::Credited);
        assert_eq!(balance(&store, Account::Wallet(user)), 0);
        assert_eq!(balance(&store, Account::Receivable(user)), -450);
        assert_eq!(balance(&store, Account::Clearing("paypal".into())), -450);
        // More than is left is refused; the rest refunds it in full.
        assert_eq!(
            store
                .refund_topup("top-1", "R-3", 451, UnixTime(7))
                .unwrap(),
            Refund::Refused
        );
        let Refund::Now { topup, owed, .. } = store
            .refund_topup("top-1", "R-3", 450, UnixTime(7))
            .unwrap()
        else {
            panic!("booked now");
        };
        assert_eq!((owed, topup.refunded), (450, 1250));
        assert_eq!(topup.state, TopupState::Refunded);
        assert_eq!(balance(&store, Account::Receivable(user)), -900);
        assert_eq!(
            store
                .refund_topup("top-1", "R-2", 500, UnixTime(8))
                .unwrap(),
            Refund::Already
        );
        assert!(store.ledger_problems().unwrap().is_empty());
    }

    #[test]
    fn deliveries_are_remembered_until_pruned() {
        let (_dir, store, _) = store_with_topup();
        assert!(!store.delivery_seen("btcpay", "D1").unwrap());
        store.record_delivery("btcpay", "D1", UnixTime(10)).unwrap();
        store.record_delivery("btcpay", "D1", UnixTime(11)).unwrap();
        assert!(store.delivery_seen("btcpay", "D1").unwrap());
        assert!(!store.delivery_seen("paypal", "D1").unwrap());
        assert_eq!(store.prune_deliveries(UnixTime(10)).unwrap(), 0);
        assert_eq!(store.prune_deliveries(UnixTime(11)).unwrap(), 1);
        assert!(!store.delivery_seen("btcpay", "D1").unwrap());
    }
}

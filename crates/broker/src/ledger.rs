//! The ledger's words: currencies, accounts, and transfers between them.
//!
//! Money is an integer number of minor units (cents) of one currency. A
//! [`Transfer`] moves money between [`Account`]s of its currency and its
//! legs sum to zero, so the sum of every account of a currency is always
//! zero. A transfer's [`TransferId`] names what caused it (`hold:rnt-…:7`),
//! so posting the same cause again is a no-op, whoever retries it.
//!
//! The store keeps the ledger (`store::ledger`); this module only says what
//! a valid transfer is.

use std::fmt;

/// Legs one transfer may have.
pub const MAX_LEGS: usize = 8;
/// Longest transfer id and memo.
const MAX_ID: usize = 128;
const MAX_MEMO: usize = 200;
/// Largest amount one leg may move: a billion major units.
pub const MAX_AMOUNT: i64 = 100_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("{0:?} is not a currency code (three capital letters, like USD)")]
    BadCurrency(String),
    #[error("{0:?} is not a transfer id (1 to {MAX_ID} printable ASCII characters)")]
    BadId(String),
    #[error("a transfer's memo is at most {MAX_MEMO} printable characters")]
    BadMemo,
    #[error(
        "a transfer has 2 to {MAX_LEGS} legs on different accounts, none zero or above {MAX_AMOUNT}"
    )]
    BadLegs,
    #[error("a transfer's legs must sum to zero; these sum to {0}")]
    Unbalanced(i64),
    #[error("transfer {0} was already posted with other legs")]
    Conflict(TransferId),
    #[error("the {account} account has {balance} and cannot go below zero")]
    InsufficientFunds { account: Account, balance: i64 },
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(String);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, LedgerError> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code.to_string()))
        } else {
            Err(LedgerError::BadCurrency(code.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose money an account holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// What a renter has paid in and not yet spent; never negative.
    Wallet(i64),
    /// A renter's money set aside for the rental hour under way.
    Held(i64),
    /// What the broker owes an owner for their devices' rentals.
    Payable(i64),
    /// The broker's fees.
    Revenue,
    /// Money on its way in through a payment provider (negative: the
    /// provider owes it to the broker).
    Clearing(String),
    /// Payouts sent to owners and not yet confirmed.
    PayoutsInFlight,
    /// What a renter owes the broker (negative): a top-up the provider
    /// refunded after the renter had spent it.
    Receivable(i64),
    /// What this broker and peer broker N owe each other for leases:
    /// positive, this broker owes the peer (its renters used the peer's
    /// devices); negative, the peer owes this broker.
    Peer(i64),
}

impl Account {
    /// The account's kind and holder, as stored.
    pub fn key(&self) -> (&'static str, String) {
        match self {
            Account::Wallet(user) => ("wallet", user.to_string()),
            Account::Held(user) => ("held", user.to_string()),
            Account::Payable(user) => ("payable", user.to_string()),
            Account::Revenue => ("revenue", String::new()),
            Account::Clearing(provider) => ("clearing", provider.clone()),
            Account::PayoutsInFlight => ("payouts_in_flight", String::new()),
            Account::Receivable(user) => ("receivable", user.to_string()),
            Account::Peer(peer) => ("peer", peer.to_string()),
        }
    }

    /// Whether the account may never go below zero.
    pub fn never_negative(&self) -> bool {
        matches!(
            self,
            Account::Wallet(_) | Account::Held(_) | Account::Payable(_)
        )
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Wallet(u) => write!(f, "wallet of account {u}"),
            Account::Held(u) => write!(f, "money held for account {u}'s rentals"),
            Account::Payable(u) => write!(f, "payable to account {u}"),
            Account::Revenue => f.write_str("broker revenue"),
            Account::Clearing(p) => write!(f, "{p} clearing"),
            Account::PayoutsInFlight => f.write_str("payouts in flight"),
            Account::Receivable(u) => write!(f, "owed by account {u}"),
            Account::Peer(p) => write!(f, "balance with peer broker {p}"),
        }
    }
}

/// What caused a transfer; unique across the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransferId(String);

impl TransferId {
    pub fn parse(id: &str) -> Result<Self, LedgerError> {
        let ok = !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(id.to_string()))
        } else {
            Err(LedgerError::BadId(id.to_string()))
        }
    }

    /// The id of a transfer caused by `kind` of `parts`, e.g.
    /// `derive("charge", &["rnt-1f", "7"])` is `charge:rnt-1f:7`.
    pub fn derive(kind: &str, parts: &[&str]) -> Result<Self, LedgerError> {
        let mut id = kind.to_string();
        for p in parts {
            id.push(':');
            id.push_str(p);
        }
        Self::parse(&id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked transfer: 2 to [`MAX_LEGS`] legs on distinct accounts of one
/// currency, none zero, summing to zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    id: TransferId,
    currency: Currency,
    memo: String,
    legs: Vec<(Account, i64)>,
}

impl Transfer {
    pub fn new(
        id: TransferId,
        currency: Currency,
        memo: &str,
        mut legs: Vec<(Account, i64)>,
    ) -> Result<Self, LedgerError> {
        if memo.chars().count() > MAX_MEMO || memo.chars().any(char::is_control) {
            return Err(LedgerError::BadMemo);
        }
        legs.sort();
        let distinct = legs.windows(2).all(|w| w[0].0 != w[1].0);
        let sized = legs
            .iter()
            .all(|(_, a)| *a != 0 && a.unsigned_abs() <= MAX_AMOUNT as u64);
        if !(2..=MAX_LEGS).contains(&legs.len()) || !distinct || !sized {
            return Err(LedgerError::BadLegs);
        }
        // Each leg is bounded, so the sum cannot overflow.
        let sum: i64 = legs.iter().map(|(_, a)| a).sum();
        if sum != 0 {
            return Err(LedgerError::Unbalanced(sum));
        }
        Ok(Self {
            id,
            currency,
            memo: memo.to_string(),
            legs,
        })
    }

    /// Moves `amount` from `from` to `to`.
    pub fn simple(
        id: TransferId,
        currency: Currency,
        memo: &str,
        from: Account,
        to: Account,
        amount: i64,
    ) -> Result<Self, LedgerError> {
        Self::new(
            id,
            currency,
            memo,
            vec![
                (from, amount.checked_neg().ok_or(LedgerError::BadLegs)?),
                (to, amount),
            ],
        )
    }

    pub fn id(&self) -> &TransferId {
        &self.id
    }

    pub fn currency(&self) -> &Currency {
        &self.currency
    }

    pub fn memo(&self) -> &str {
        &self.memo
    }

    /// The legs, in a fixed order (by account).
    pub fn legs(&self) -> &[(Account, i64)] {
        &self.legs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn only_balanced_bounded_transfers_exist() {
        let id = TransferId::derive("topup", &["paypal", "ORDER-1"]).unwrap();
        assert_eq!(id.as_str(), "topup:paypal:ORDER-1");
        let t = Transfer::simple(
            id.clone(),
            usd(),
            "top-up",
            Account::Clearing("paypal".into()),
            Account::Wallet(7),
            500,
        )
        .unwrap();
        assert_eq!(t.legs().iter().map(|(_, a)| a).sum::<i64>(), 0);
        let unbalanced = Transfer::new(
            id.clone(),
            usd(),
            "",
            vec![(Account::Wallet(1), -5), (Account::Revenue, 4)],
        );
        assert_eq!(unbalanced, Err(LedgerError::Unbalanced(-1)));
        for legs in [
            vec![(Account::Revenue, 0), (Account::Wallet(1), 0)],
            vec![(Account::Revenue, 5)],
            vec![(Account::Revenue, 5), (Account::Revenue, -5)],
            vec![
                (Account::Revenue, MAX_AMOUNT + 1),
                (Account::Wallet(1), -MAX_AMOUNT - 1),
            ],
        ] {
            assert_eq!(
                Transfer::new(id.clone(), usd(), "", legs),
                Err(LedgerError::BadLegs)
            );
        }
        assert!(
            Transfer::simple(
                id,
                usd(),
                "",
                Account::Revenue,
                Account::Wallet(1),
                i64::MIN
            )
            .is_err()
        );
        for bad in ["usd", "US", "USDT", "U$D"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "has space", "tab\t", &"x".repeat(129)] {
            assert!(TransferId::parse(bad).is_err(), "{bad:?}");
        }
    }
}

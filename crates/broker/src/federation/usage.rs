//! Usage records: what the broker that runs a lease (the lessor) tells the
//! broker whose renter holds it (the lessee) each lease cost.
//!
//! The lessor issues a record for every period (hour) of every lease it
//! runs, one when the lease ends, and corrections, which are new records
//! (a record is never changed). The records it sends one peer form a chain:
//! each is numbered (`seq`, from 1) and names the SHA-256 of the one before
//! it (`prev`), and each is signed with the lessor's ed25519 key. The
//! lessee accepts record `n + 1` only after record `n`, so a record left
//! out, changed or forged stops the chain instead of moving money, and two
//! brokers whose last records have the same number and hash hold the same
//! records.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::identity::{KeyRing, PublicKey};
use crate::ledger::{Account, Currency};
use crate::store::{Direction, Store, StoreError};
use crate::time::UnixTime;

/// Longest record body accepted, in bytes.
pub const MAX_BODY: usize = 4096;
/// Records in one page of the chain.
pub const PAGE: usize = 500;
/// Largest amount one record may carry, in minor units.
const MAX_AMOUNT: i64 = 100_000_000;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// One period of a lease: the seconds its device was reachable, and
    /// what they cost at the lease's rate.
    Usage,
    /// The lease ended; no usage record follows for it.
    End,
    /// An amount added to (or, negative, taken off) what a lease cost.
    Correction,
    /// The lessor received a payment from the lessee outside the brokers
    /// (a negative amount: the lessee owes that much less). No lease.
    Payment,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Usage => "usage",
            RecordKind::End => "end",
            RecordKind::Correction => "correction",
            RecordKind::Payment => "payment",
        }
    }
}

/// A usage record as the lessor signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    /// The lessor's broker name.
    pub issuer: String,
    /// The lessee's broker name.
    pub recipient: String,
    pub seq: i64,
    /// The hash of record `seq - 1` (empty for the first).
    pub prev: String,
    /// The lease; empty for a payment.
    pub lease: String,
    pub kind: RecordKind,
    /// Usage: the period's number, from 0. End: how many periods the lease
    /// had. Correction: the period it corrects.
    pub period: i64,
    /// Usage: the stretch of the period the renter had access to, in the
    /// lessor's Unix seconds.
    pub from: i64,
    pub to: i64,
    /// Usage: seconds of it the device was reachable.
    pub reachable_secs: i64,
    pub period_secs: i64,
    /// The lease's rate, per period.
    pub rate: i64,
    /// What the lessee owes for this record, in minor units.
    pub amount: i64,
    pub currency: String,
    /// End: why the lease ended. Correction: why. Payment: its reference.
    pub note: String,
    pub issued_at: i64,
}

/// A record on the wire and in the store: the body exactly as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRecord {
    /// The record, JSON.
    pub body: String,
    /// SHA-256 of `body`, hex.
    pub hash: String,
    pub keyid: String,
    /// ed25519 over [`signed_message`], base64.
    pub signature: String,
}

/// The last record of a chain, and what its records add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
    /// The sum of the records' amounts.
    pub total: i64,
}

/// `GET /federation/v1/usage?after=N`: the records after `N` the caller
/// holds leases under, and the chain's head.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsagePage {
    pub records: Vec<SignedRecord>,
    pub head: ChainHead,
}

/// `GET /federation/v1/statement`: the two chains between the caller and
/// this broker, and the balance of their ledger account here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The broker that made the statement.
    pub broker: String,
    pub currency: String,
    /// Records this broker issued to the caller (leases it runs for it).
    pub issued: ChainHead,
    /// Records it received from the caller, as far as it has them.
    pub received: ChainHead,
    /// Its ledger account of the caller now: positive, it owes the caller.
    pub balance: i64,
    pub at: i64,
    /// The month (`2026-11`, UTC) whose records the chains cover, by the
    /// time their issuer issued them; every record when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
}

/// The issue times `[from, until)` of month `2026-11` (UTC).
pub fn month_span(month: &str) -> Result<(i64, i64), String> {
    let bad = || format!("{month:?} is not a month like 2026-11");
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let year: i64 = y.parse().map_err(|_| bad())?;
    let m: i64 = m.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&m) || !(1970..=9999).contains(&year) {
        return Err(bad());
    }
    let (next_year, next) = if m == 12 {
        (year + 1, 1)
    } else {
        (year, m + 1)
    };
    Ok((
        UnixTime::from_date(year, m, 1).0,
        UnixTime::from_date(next_year, next, 1).0,
    ))
}

impl Statement {
    /// This broker's (`broker`'s) side of its statement with peer `peer_id`,
    /// of `month` or of every record.
    pub fn of(
        store: &Store,
        broker: &str,
        peer_id: i64,
        currency: &Currency,
        month: Option<&str>,
        now: UnixTime,
    ) -> Result<Result<Self, String>, StoreError> {
        let span = match month.map(month_span).transpose() {
            Ok(span) => span,
            Err(why) => return Ok(Err(why)),
        };
        Ok(Ok(Self {
            broker: broker.to_string(),
            currency: currency.to_string(),
            issued: store.chain_head_in(Direction::Issued, peer_id, span)?,
            received: store.chain_head_in(Direction::Received, peer_id, span)?,
            balance: store.balance(&Account::Peer(peer_id), currency)?,
            at: now.0,
            month: month.map(str::to_string),
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a usage record is over {MAX_BODY} bytes")]
    TooLong,
    #[error("a usage record's hash does not match its body")]
    BadHash,
    #[error("a usage record is signed with key {0:?}, which the peer does not publish now")]
    UnknownKey(String),
    #[error("a usage record's signature does not verify")]
    BadSignature,
    #[error("a usage record is malformed: {0}")]
    Malformed(String),
}

fn digest(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// What the key signs: the record's hash, labelled.
pub fn signed_message(hash: &str) -> String {
    format!("rpibroker usage record\n{hash}")
}

impl RecordBody {
    /// Serializes and signs the record with the ring's current key.
    pub fn seal(&self, ring: &KeyRing) -> SignedRecord {
        let body = serde_json::to_string(self).expect("a record serializes");
        let hash = digest(&body);
        let (keyid, signature) = ring.sign(signed_message(&hash).as_bytes());
        SignedRecord {
            body,
            hash,
            keyid,
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }

    /// The bounds every record keeps, whatever its chain.
    fn check(&self) -> Result<(), RecordError> {
        let bad = |why: &str| Err(RecordError::Malformed(why.into()));
        if self.kind == RecordKind::Payment {
            if !self.lease.is_empty() || self.amount >= 0 {
                return bad("a payment names no lease and lowers what is owed");
            }
        } else {
            super::wire::check_lease_id(&self.lease).map_err(RecordError::Malformed)?;
        }
        if self.seq < 1 {
            return bad("seq starts at 1");
        }
        if !(0..=MAX_AMOUNT).contains(&self.rate)
            || !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&self.amount)
            || !(1..=86_400).contains(&self.period_secs)
            || !(0..=1_000_000).contains(&self.period)
        {
            return bad("a figure is out of range");
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|c| c.is_ascii_uppercase()) {
            return bad("bad currency");
        }
        if self.note.len() > 512 || self.note.chars().any(char::is_control) {
            return bad("the note is too long or has control characters");
        }
        match self.kind {
            RecordKind::Usage => {
                let length = self.to - self.from;
                let fits = (0..=self.period_secs).contains(&length)
                    && (0..=length).contains(&self.reachable_secs)
                    && (0..=self.rate).contains(&self.amount)
                    && self.amount
                        == crate::billing::meter::charge(
                            self.rate,
                            self.reachable_secs,
                            self.period_secs,
                        );
                if !fits {
                    return bad("its amount is not the reachable seconds at the rate");
                }
            }
            RecordKind::End if self.amount != 0 => return bad("an end record has no amount"),
            RecordKind::End | RecordKind::Correction | RecordKind::Payment => {}
        }
        Ok(())
    }
}

impl SignedRecord {
    /// The record signed again with the ring's current key, if another
    /// signed it: the signature is not part of the chain, so a record
    /// issued before a key rotation still verifies after the old key
    /// expired.
    pub fn signed_now(self, ring: &KeyRing) -> SignedRecord {
        if self.keyid == ring.current().0 {
            return self;
        }
        let (keyid, signature) = ring.sign(signed_message(&self.hash).as_bytes());
        SignedRecord {
            keyid,
            signature: STANDARD.encode(signature.to_bytes()),
            ..self
        }
    }

    /// Checks the record's hash, and its signature against `keys` (a peer's
    /// published keys, valid at `now`), and reads it.
    pub fn open(&self, keys: &[PublicKey], now: UnixTime) -> Result<RecordBody, RecordError> {
        if self.body.len() > MAX_BODY {
            return Err(RecordError::TooLong);
        }
        if digest(&self.body) != self.hash {
            return Err(RecordError::BadHash);
        }
        let key = keys
            .iter()
            .find(|k| k.keyid == self.keyid && k.valid_at(now))
            .and_then(PublicKey::verifying_key)
            .ok_or_else(|| RecordError::UnknownKey(self.keyid.clone()))?;
        let signature = STANDARD
            .decode(&self.signature)
            .ok()
            .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
            .ok_or(RecordError::BadSignature)?;
        ed25519_dalek::Verifier::verify(&key, signed_message(&self.hash).as_bytes(), &signature)
            .map_err(|_| RecordError::BadSignature)?;
        let body: RecordBody =
            serde_json::from_str(&self.body).map_err(|e| RecordError::Malformed(e.to_string()))?;
        body.check()?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64, prev: &str) -> RecordBody {
        RecordBody {
            issuer: "b.example".into(),
            recipient: "a.example".into(),
            seq,
            prev: prev.into(),
            lease: "lse-0123456789abcdef".into(),
            kind: RecordKind::Usage,
            period: 0,
            from: 1000,
            to: 4600,
            reachable_secs: 2400,
            period_secs: 3600,
            rate: 600,
            amount: 400,
            currency: "USD".into(),
            note: String::new(),
            issued_at: 4601,
        }
    }

    #[test]
    fn a_sealed_record_opens_with_the_issuers_keys_only() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_create(dir.path(), UnixTime(10)).unwrap();
        let keys = ring.published(UnixTime(10));
        let first = record(1, "").seal(&ring);
        assert_eq!(first.open(&keys, UnixTime(20)).unwrap(), record(1, ""));
        let second = record(2, &first.hash).seal(&ring);
        assert_eq!(
            second.open(&keys, UnixTime(20)).unwrap().prev,
            first.hash,
            "the second names the first"
        );

        let other = tempfile::tempdir().unwrap();
        let stranger = KeyRing::load_or_create(other.path(), UnixTime(10)).unwrap();
        let forged = record(1, "").seal(&stranger);
        assert!(matches!(
            forged.open(&keys, UnixTime(20)),
            Err(RecordError::UnknownKey(_))
        ));
        let mut borrowed = forged.clone();
        borrowed.keyid = first.keyid.clone();
        assert_eq!(
            borrowed.open(&keys, UnixTime(20)),
            Err(RecordError::BadSignature)
        );

        let mut tampered = first.clone();
        tampered.body = tampered.body.replace("\"amount\":400", "\"amount\":500");
        assert_eq!(
            tampered.open(&keys, UnixTime(20)),
            Err(RecordError::BadHash)
        );
        tampered.hash = digest(&tampered.body);
        assert_eq!(
            tampered.open(&keys, UnixTime(20)),
            Err(RecordError::BadSignature),
            "a new hash needs a new signature"
        );
    }

    #[test]
    fn a_month_is_its_utc_calendar_month() {
        let (from, until) = month_span("2026-11").unwrap();
        assert_eq!(UnixTime(from).date_time(), "2026-11-01 00:00");
        assert_eq!(UnixTime(until).date_time(), "2026-12-01 00:00");
        let (_, until) = month_span("2026-12").unwrap();
        assert_eq!(UnixTime(until).date(), "2027-01-01");
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-00"] {
            assert!(month_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_must_be_the_reachable_seconds_at_the_rate() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_create(dir.path(), UnixTime(10)).unwrap();
        let keys = ring.published(UnixTime(10));
        let mut over = record(1, "");
        over.amount = 401;
        assert!(matches!(
            over.seal(&ring).open(&keys, UnixTime(20)),
            Err(RecordError::Malformed(_))
        ));
        let mut long = record(1, "");
        long.reachable_secs = 4000;
        long.amount = 600;
        assert!(
            long.seal(&ring).open(&keys, UnixTime(20)).is_err(),
            "more reachable seconds than the stretch"
        );
        let mut end = record(1, "");
        end.kind = RecordKind::End;
        assert!(end.seal(&ring).open(&keys, UnixTime(20)).is_err());
        end.amount = 0;
        assert!(end.seal(&ring).open(&keys, UnixTime(20)).is_ok());
        let mut credit = record(1, "");
        credit.kind = RecordKind::Correction;
        credit.amount = -250;
        assert!(credit.seal(&ring).open(&keys, UnixTime(20)).is_ok());
    }
}

//! Crypto payouts, made by the operator outside the broker: an export lists
//! what is owed to owners who chose a Bitcoin address (making those payouts,
//! once per period, so the money is in flight), and an import of the same
//! CSV with `status` (`paid` or `failed`) and `transaction_id` filled in
//! records what happened. Both are idempotent: exporting again in the same
//! period lists the same payouts, importing again changes nothing.

use crate::csv::field;
use crate::price::show_price;
use crate::store::{Outcome, PayoutRecord, PayoutState, Settled, Started, Store, StoreError};
use crate::time::UnixTime;

use super::settings::PayoutSettings;

/// The method name of crypto payouts (and their clearing account).
pub const METHOD: &str = "crypto";
/// The export's columns.
pub const HEADER: &str =
    "payout,owner,address,currency,amount,amount_minor_units,period_start,status,transaction_id";
/// Payouts one export lists at most.
const MAX_EXPORT: i64 = 100_000;
/// Lines one import reads at most.
pub const MAX_IMPORT_LINES: usize = 100_000;
/// Longest transaction id accepted.
const MAX_TXID: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("payouts are off; set enabled = true in the [payouts] table of the config file")]
    Off,
    #[error("{}", .0.join("\n"))]
    Malformed(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes this period's crypto payouts (owners owed at least the minimum)
/// and returns every crypto payout still in flight, as CSV, with how many
/// were made now.
pub fn export(
    store: &Store,
    settings: &PayoutSettings,
    now: UnixTime,
) -> Result<(String, usize), CryptoError> {
    if !settings.enabled {
        return Err(CryptoError::Off);
    }
    let mut made = 0;
    if let Some(period) = settings.last_ended_period(now.0) {
        for (owner, currency) in store.owners_due(METHOD, settings.minimum)? {
            if let Started::Now(p) =
                store.start_payout(owner, period, &currency, settings.minimum, now)?
            {
                tracing::info!(payout = %p.id, amount = p.amount, "crypto payout exported");
                made += 1;
            }
        }
    }
    let mut csv = format!("{HEADER}\n");
    for p in store.payouts_in_state(METHOD, PayoutState::Sent, MAX_EXPORT)? {
        let (start, _) = settings.bounds(p.period);
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},,\n",
            field(&p.id),
            field(&p.owner_email),
            field(&p.destination),
            field(&p.currency),
            show_price(p.amount),
            p.amount,
            UnixTime(start).date(),
        ));
    }
    Ok((csv, made))
}

/// What one line of an import asks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    number: usize,
    payout: String,
    outcome: Outcome,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub paid: usize,
    pub failed: usize,
    /// Lines already recorded the same way before.
    pub unchanged: usize,
    /// Lines with no status yet.
    pub pending: usize,
    /// Lines that contradict what was recorded, in words.
    pub refused: Vec<String>,
}

fn column(header: &[String], name: &str) -> Option<usize> {
    header.iter().position(|h| h.eq_ignore_ascii_case(name))
}

/// Reads an import: the header names the columns (`payout`, `status`,
/// `transaction_id`, optionally `amount_minor_units`); every problem is
/// reported with its line number.
fn parse(text: &str, store: &Store) -> Result<(Vec<Line>, usize), CryptoError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let mut problems = Vec::new();
    let header = loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((n, l)) => match crate::csv::parse_line(l.trim_start_matches('\u{feff}')) {
                Some(h) => break (n, h),
                None => return Err(CryptoError::Malformed(vec![format!("line {n}: not CSV")])),
            },
            None => {
                return Err(CryptoError::Malformed(vec![
                    "the file is empty; expected the header line of an export".into(),
                ]));
            }
        }
    };
    let (header_line, header) = header;
    let (Some(id_col), Some(status_col), Some(txid_col)) = (
        column(&header, "payout"),
        column(&header, "status"),
        column(&header, "transaction_id"),
    ) else {
        return Err(CryptoError::Malformed(vec![format!(
            "line {header_line}: the header must name the columns payout, status and transaction_id (as an export does)"
        )]));
    };
    let amount_col = column(&header, "amount_minor_units");
    let mut parsed = Vec::new();
    let mut pending = 0;
    for (n, text) in lines {
        if n > MAX_IMPORT_LINES {
            return Err(CryptoError::Malformed(vec![format!(
                "more than {MAX_IMPORT_LINES} lines; import the file in parts"
            )]));
        }
        if text.trim().is_empty() {
            continue;
        }
        let Some(fields) = crate::csv::parse_line(text) else {
            problems.push(format!(
                "line {n}: not CSV (a quote is not closed or is misplaced)"
            ));
            continue;
        };
        let get = |i: usize| fields.get(i).map(String::as_str).unwrap_or("");
        let (id, status, txid) = (get(id_col), get(status_col), get(txid_col));
        let outcome = match status.to_ascii_lowercase().as_str() {
            "" => {
                pending += 1;
                continue;
            }
            "paid" => {
                let ok = !txid.is_empty()
                    && txid.len() <= MAX_TXID
                    && txid.bytes().all(|b| b.is_ascii_graphic());
                if !ok {
                    problems.push(format!(
                        "line {n}: a paid payout needs its transaction_id (1 to {MAX_TXID} printable characters, no spaces)"
                    ));
                    continue;
                }
                Outcome::Paid {
                    batch: None,
                    item: Some(txid.to_string()),
                }
            }
            "failed" => Outcome::Failed("the operator marked it failed".into()),
            other => {
                let shown: String = other.chars().take(20).collect();
                problems.push(format!(
                    "line {n}: status {shown:?} is neither paid nor failed (or empty for not yet)"
                ));
                continue;
            }
        };
        let record: Option<PayoutRecord> = if id.len() <= 64 {
            store.payout(id)?
        } else {
            None
        };
        let Some(record) = record.filter(|p| p.method == METHOD) else {
            let shown: String = id.chars().take(64).collect();
            problems.push(format!("line {n}: no crypto payout {shown:?}"));
            continue;
        };
        if let Some(col) = amount_col
            && get(col) != record.amount.to_string()
        {
            problems.push(format!(
                "line {n}: payout {} is {} minor units, not {:?}",
                record.id,
                record.amount,
                get(col)
            ));
            continue;
        }
        parsed.push(Line {
            number: n,
            payout: record.id,
            outcome,
        });
    }
    if problems.is_empty() {
        Ok((parsed, pending))
    } else {
        Err(CryptoError::Malformed(problems))
    }
}

/// Records an import; nothing is recorded if any line is malformed.
pub fn import(store: &Store, text: &str, now: UnixTime) -> Result<Imported, CryptoError> {
    let (lines, pending) = parse(text, store)?;
    let mut done = Imported {
        pending,
        ..Imported::default()
    };
    for line in lines {
        match store.settle_payout(&line.payout, &line.outcome, now)? {
            Settled::Now(PayoutState::Paid) => done.paid += 1,
            Settled::Now(_) => done.failed += 1,
            Settled::Already(_) => done.unchanged += 1,
            Settled::Refused(state) => done.refused.push(format!(
                "line {}: payout {} is already {state}; left as it is",
                line.number, line.payout
            )),
            Settled::NoSuchPayout => done.refused.push(format!(
                "line {}: payout {} is gone",
                line.number, line.payout
            )),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Account, Currency, Transfer, TransferId};
    use crate::payouts::method::PayoutMethod;
    use crate::payouts::settings::{FilePayouts, resolve};

    const ADDRESS: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";

    fn owed(store: &Store, owner: i64, cents: i64, cause: &str) {
        let t = Transfer::simple(
            TransferId::derive("settle", &[cause]).unwrap(),
            Currency::parse("USD").unwrap(),
            "",
            Account::Revenue,
            Account::Payable(owner),
            cents,
        )
        .unwrap();
        store.post(&t, UnixTime(1)).unwrap();
    }

    fn user(store: &Store, email: &str) -> i64 {
        store.add_user(email, "x", false, UnixTime(1)).unwrap().id
    }

    #[test]
    fn an_export_pays_each_owner_once_per_period_and_an_import_settles_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let settings = resolve(FilePayouts {
            enabled: Some(true),
            period_secs: Some(100),
            minimum: Some("5".into()),
            paypal: None,
        })
        .unwrap();
        let (alice, bob) = (user(&store, "a@example.org"), user(&store, "b@example.org"));
        for (u, cents) in [(alice, 1234), (bob, 300)] {
            let m = PayoutMethod::parse("crypto", ADDRESS).unwrap();
            store.set_payout_method(u, Some(&m), UnixTime(1)).unwrap();
            owed(&store, u, cents, &format!("r{u}"));
        }
        let (csv, made) = export(&store, &settings, UnixTime(250)).unwrap();
        assert_eq!(made, 1, "bob is owed less than the minimum");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(
            lines[1],
            format!("po-{alice}-1-USD,a@example.org,{ADDRESS},USD,12.34,1234,1970-01-01,,")
        );
        // More earnings in the same period are not paid twice.
        owed(&store, alice, 100, "r-late");
        let (again, made) = export(&store, &settings, UnixTime(299)).unwrap();
        assert_eq!((again.clone(), made), (csv.clone(), 0));
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(
            store.balance(&Account::PayoutsInFlight, &usd).unwrap(),
            1234
        );

        let bad =
            format!("{HEADER}\npo-{alice}-1-USD,,,,,1234,,paid,\nnope,,,,,1,,paid,tx\n\"open");
        match import(&store, &bad, UnixTime(300)) {
            Err(CryptoError::Malformed(p)) => {
                assert_eq!(p.len(), 3, "{p:?}");
                assert!(p[0].starts_with("line 2: a paid payout needs"), "{p:?}");
                assert!(p[1].starts_with("line 3: no crypto payout"), "{p:?}");
                assert!(p[2].starts_with("line 4: not CSV"), "{p:?}");
            }
            other => panic!("{other:?}"),
        }
        let filled = csv.replace(",1970-01-01,,", ",1970-01-01,paid,txid-1");
        let done = import(&store, &filled, UnixTime(300)).unwrap();
        assert_eq!((done.paid, done.unchanged), (1, 0));
        let done = import(&store, &filled, UnixTime(301)).unwrap();
        assert_eq!(
            (done.paid, done.unchanged),
            (0, 1),
            "importing twice is harmless"
        );
        let failed = csv.replace(",1970-01-01,,", ",1970-01-01,failed,");
        let done = import(&store, &failed, UnixTime(302)).unwrap();
        assert_eq!(done.refused.len(), 1, "a paid payout cannot fail");
        assert_eq!(store.balance(&Account::PayoutsInFlight, &usd).unwrap(), 0);
        assert_eq!(
            store
                .balance(&Account::Clearing(METHOD.into()), &usd)
                .unwrap(),
            1234
        );
        assert_eq!(store.balance(&Account::Payable(alice), &usd).unwrap(), 100);

        // The next period pays the rest; failing it puts it back.
        owed(&store, alice, 1000, "r-next");
        let (csv, made) = export(&store, &settings, UnixTime(350)).unwrap();
        assert_eq!(made, 1);
        assert!(csv.contains(&format!("po-{alice}-2-USD")), "{csv}");
        let failed = csv.replace(",1970-01-01,,", ",1970-01-01,failed,");
        assert_eq!(import(&store, &failed, UnixTime(360)).unwrap().failed, 1);
        assert_eq!(store.balance(&Account::Payable(alice), &usd).unwrap(), 1100);
        assert_eq!(
            store
                .payout(&format!("po-{alice}-2-USD"))
                .unwrap()
                .unwrap()
                .state,
            PayoutState::Failed
        );
        assert!(store.ledger_problems().unwrap().is_empty());
    }
}

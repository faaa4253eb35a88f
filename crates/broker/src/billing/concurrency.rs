//! Concurrency test of billing: threads running billing passes, top-ups and
//! charges at the same time against one database, some through their own
//! connections (as `rpibroker admin credit` does from another process),
//! some sharing one. The total is conserved, every transfer posts once
//! however many threads post it, no period is settled twice or warned about
//! twice, and once all is settled nothing is left held.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;

use super::pass::bill_once_at;
use super::settings::BillingSettings;
use crate::ledger::{Account, Currency, LedgerError, Transfer, TransferId};
use crate::store::{Posted, RenterTerms, Store, StoreError};
use crate::time::UnixTime;

const PERIOD: i64 = 60;
const RENTERS: i64 = 4;
const RATE: i64 = 90;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn settings() -> BillingSettings {
    BillingSettings {
        enabled: true,
        currency: usd(),
        fee_percent: 15,
        period: Duration::from_secs(PERIOD as u64),
    }
}

/// Posts `transfer`; true if this call posted it, false if it was posted
/// before or the wallet could not cover it.
fn post(store: &Store, transfer: &Transfer, now: i64) -> bool {
    match store.post(transfer, UnixTime(now)) {
        Ok(Posted::Now) => true,
        Ok(Posted::Already) => false,
        Err(StoreError::Ledger(LedgerError::InsufficientFunds { .. })) => false,
        Err(e) => panic!("posting {}: {e}", transfer.id()),
    }
}

#[test]
fn billing_top_ups_and_charges_at_once_conserve_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let store = Store::open(&path).unwrap();
    let t0 = 1_000_000;
    let owner = store
        .add_user("owner@example.org", "h", false, UnixTime(0))
        .unwrap()
        .id;
    let mut renters = Vec::new();
    let mut rentals = Vec::new();
    for r in 0..RENTERS {
        let renter = store
            .add_user(&format!("r{r}@example.org"), "h", false, UnixTime(0))
            .unwrap()
            .id;
        renters.push(renter);
        for d in 0..2 {
            let name = DeviceName::parse(&format!("pi{r}x{d}")).unwrap();
            let device = store
                .add_owned_device(&name, &format!("h{r}x{d}"), owner, i64::MAX, UnixTime(0))
                .unwrap()
                .id;
            store.set_listing(device, true, Some(RATE)).unwrap();
            store.set_online(device, UnixTime(t0)).unwrap();
            let id = RentalId::parse(&format!("rnt-{r}x{d}")).unwrap();
            let terms = RenterTerms {
                renter_id: renter,
                hourly_rate: Some(RATE),
                max_open: 10,
                billed: true,
            };
            store
                .begin_rental(device, &id, &[], Some(terms), UnixTime(t0))
                .unwrap();
            store.set_rental_active(&id, "renter").unwrap();
            rentals.push(id);
        }
        let first = Transfer::simple(
            TransferId::derive("topup", &["first", &r.to_string()]).unwrap(),
            usd(),
            "",
            Account::Clearing("test".into()),
            Account::Wallet(renter),
            5 * RATE,
        )
        .unwrap();
        assert!(post(&store, &first, t0));
    }

    let clock = Arc::new(AtomicI64::new(t0));
    let warned = Arc::new(Mutex::new(HashSet::new()));
    let posted_now = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut threads = Vec::new();
    // Billing passes: two sharing the first connection, one on its own.
    for own in [false, false, true] {
        let store = if own {
            Store::open(&path).unwrap()
        } else {
            store.clone()
        };
        let (clock, warned) = (clock.clone(), warned.clone());
        threads.push(thread::spawn(move || {
            for _ in 0..150 {
                let now = clock.load(Ordering::SeqCst);
                let outcome = bill_once_at(&store, &settings(), UnixTime(now)).unwrap();
                for low in outcome.low_balance {
                    assert!(
                        warned.lock().unwrap().insert((low.rental, low.period)),
                        "warned twice for one period"
                    );
                }
                // Nothing stops the rentals here: passes keep naming them.
                thread::yield_now();
            }
        }));
    }
    // Top-ups and charges from two connections each, every transfer id
    // posted by both.
    for side in 0..2 {
        let store = Store::open(&path).unwrap();
        let (clock, posted_now, renters) = (clock.clone(), posted_now.clone(), renters.clone());
        threads.push(thread::spawn(move || {
            for i in 0..200i64 {
                let now = clock.load(Ordering::SeqCst);
                let renter = renters[(i as usize) % renters.len()];
                let topup = Transfer::simple(
                    TransferId::derive("topup", &["test", &i.to_string()]).unwrap(),
                    usd(),
                    "",
                    Account::Clearing("test".into()),
                    Account::Wallet(renter),
                    if i % 3 == 0 { RATE } else { 7 },
                )
                .unwrap();
                let charge = Transfer::new(
                    TransferId::derive("charge", &["test", &i.to_string()]).unwrap(),
                    usd(),
                    "",
                    vec![
                        (Account::Wallet(renter), -50),
                        (Account::Payable(owner), 45),
                        (Account::Revenue, 5),
                    ],
                )
                .unwrap();
                let (first, second) = if side == 0 {
                    (&topup, &charge)
                } else {
                    (&charge, &topup)
                };
                for t in [first, second] {
                    if post(&store, t, now) {
                        posted_now.lock().unwrap().push(t.id().to_string());
                    }
                }
            }
        }));
    }
    // The clock: about three passes per period.
    {
        let clock = clock.clone();
        threads.push(thread::spawn(move || {
            for _ in 0..300 {
                clock.fetch_add(PERIOD / 20, Ordering::SeqCst);
                thread::sleep(Duration::from_micros(200));
            }
        }));
    }
    for t in threads {
        t.join().expect("a thread failed");
    }

    let posted = posted_now.lock().unwrap();
    let distinct: HashSet<&String> = posted.iter().collect();
    assert_eq!(distinct.len(), posted.len(), "a transfer posted twice");

    // Stop everything and settle.
    let now = clock.load(Ordering::SeqCst);
    for id in &rentals {
        store.set_rental_ending(id, None, UnixTime(now)).unwrap();
        store.end_rental(id, UnixTime(now)).unwrap();
    }
    bill_once_at(&store, &settings(), UnixTime(now)).unwrap();
    bill_once_at(&store, &settings(), UnixTime(now + 2 * PERIOD)).unwrap();

    assert_eq!(store.ledger_problems().unwrap(), Vec::<String>::new());
    let balance = |a: Account| store.balance(&a, &usd()).unwrap();
    let mut wallets = 0;
    for &renter in &renters {
        assert_eq!(balance(Account::Held(renter)), 0, "nothing left held");
        wallets += balance(Account::Wallet(renter));
    }
    let spent = balance(Account::Payable(owner)) + balance(Account::Revenue);
    assert_eq!(-balance(Account::Clearing("test".into())), wallets + spent);
    let periods = (now - t0 + PERIOD - 1) / PERIOD;
    for id in &rentals {
        let billing = store.rental_billing(id.as_str()).unwrap().unwrap();
        assert!(billing.closed);
        let legs = store.rental_legs(id).unwrap();
        for k in 0..periods {
            let charged: i64 = legs
                .iter()
                .filter(|l| l.kind == "settle" && l.period == k)
                .filter(|l| l.account != "wallet" && l.account != "held")
                .map(|l| l.amount)
                .sum();
            assert!(charged <= RATE, "{id} period {k}: {charged}");
        }
        let settles: HashSet<i64> = legs
            .iter()
            .filter(|l| l.kind == "settle")
            .map(|l| l.period)
            .collect();
        assert!(settles.iter().all(|&k| k < periods), "{id}: {settles:?}");
    }
}

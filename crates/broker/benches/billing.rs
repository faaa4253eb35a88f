//! Billing throughput: one billing pass over 10,000 active rentals, when
//! every rental's first hour is due to be held, when nothing is due, and
//! when every rental's first hour is due to be settled (and the second
//! held), against a baseline measured in the same run on the same store: a
//! plain read of the same rentals (what every pass starts with).
//!
//! Run with `cargo bench -p rpibroker --bench billing`; `BILLING_BENCH_N`
//! sets the number of rentals (default 10000).

use std::time::{Duration, Instant};

use rpibroker::billing::pass::bill_once_at;
use rpibroker::billing::settings::BillingSettings;
use rpibroker::ledger::{Account, Currency, Transfer, TransferId};
use rpibroker::store::{RenterTerms, Store};
use rpibroker::time::UnixTime;
use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;

const PERIOD: i64 = 3600;
const PER_RENTER: usize = 100;

fn main() {
    let n: usize = std::env::var("BILLING_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(&dir.path().join("bench.sqlite")).expect("a store");
    let usd = Currency::parse("USD").unwrap();
    let settings = BillingSettings {
        enabled: true,
        currency: usd.clone(),
        fee_percent: 10,
        period: Duration::from_secs(PERIOD as u64),
    };
    let t0 = 1_000_000;
    let owner = store
        .add_user("owner@example.org", "h", false, UnixTime(0))
        .expect("an owner")
        .id;
    let mut renter = 0;
    for i in 0..n {
        if i % PER_RENTER == 0 {
            renter = store
                .add_user(&format!("r{i}@example.org"), "h", false, UnixTime(0))
                .expect("a renter")
                .id;
            let credit = Transfer::simple(
                TransferId::derive("credit", &[&renter.to_string()]).unwrap(),
                usd.clone(),
                "",
                Account::Clearing("bench".into()),
                Account::Wallet(renter),
                1_000_000_000,
            )
            .unwrap();
            store.post(&credit, UnixTime(0)).expect("a credit");
        }
        let name = DeviceName::parse(&format!("pi-{i}")).unwrap();
        let device = store
            .add_owned_device(&name, &format!("h{i}"), owner, i64::MAX, UnixTime(0))
            .expect("a device")
            .id;
        store.set_listing(device, true, Some(120)).unwrap();
        store.set_online(device, UnixTime(t0)).unwrap();
        let id = RentalId::parse(&format!("rnt-{i}")).unwrap();
        let terms = RenterTerms {
            renter_id: renter,
            hourly_rate: Some(120),
            max_open: PER_RENTER as i64,
            billed: true,
        };
        store
            .begin_rental(device, &id, &[], Some(terms), UnixTime(t0))
            .expect("a rental");
        store.set_rental_active(&id, "renter").unwrap();
        if i % 10 == 0 {
            // A tenth of the sandboxes fail for ten minutes of the hour.
            store
                .set_sandbox(device, "failed", None, UnixTime(t0 + 600))
                .unwrap();
            store
                .set_sandbox(device, "rented", None, UnixTime(t0 + 1200))
                .unwrap();
        }
    }

    let started = Instant::now();
    let read = store.rentals_to_bill().expect("the rentals");
    let baseline = started.elapsed();
    assert_eq!(read.len(), n);

    let mut rows = Vec::new();
    for (what, at) in [
        ("every first hour held", t0 + 1),
        ("nothing due", t0 + 2),
        ("every first hour settled, second held", t0 + PERIOD + 1),
    ] {
        let started = Instant::now();
        let outcome = bill_once_at(&store, &settings, UnixTime(at)).expect("a pass");
        rows.push((what, started.elapsed()));
        assert!(outcome.to_end.is_empty());
    }
    assert!(store.ledger_problems().unwrap().is_empty());

    let per_sec = |d: Duration| n as f64 / d.as_secs_f64();
    println!("| one pass over {n} active rentals | time | rentals/s | vs baseline |");
    println!("|---|---:|---:|---:|");
    println!(
        "| baseline: read the rentals | {:.1} ms | {:.0} | 1.00× |",
        baseline.as_secs_f64() * 1e3,
        per_sec(baseline)
    );
    for (what, took) in rows {
        println!(
            "| {what} | {:.1} ms | {:.0} | {:.1}× |",
            took.as_secs_f64() * 1e3,
            per_sec(took),
            took.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}

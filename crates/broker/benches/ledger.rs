//! Ledger write throughput: transfers posted per second (a three-leg
//! charge, each in its own transaction, as the billing job posts them),
//! against a baseline measured in the same run on the same store: the
//! cheapest write the store makes (one row updated per transaction).
//!
//! Run with `cargo bench -p rpibroker --bench ledger`; `LEDGER_BENCH_N`
//! sets the number of writes per row (default 20000).

use std::time::Instant;

use rpibroker::ledger::{Account, Currency, Transfer, TransferId};
use rpibroker::store::Store;
use rpibroker::time::UnixTime;
use rpibroker_wire::DeviceName;

fn main() {
    let n: usize = std::env::var("LEDGER_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(&dir.path().join("bench.sqlite")).expect("a store");
    let device = store
        .add_device(&DeviceName::parse("bench").unwrap(), "h", None, UnixTime(0))
        .expect("a device")
        .id;
    let usd = Currency::parse("USD").unwrap();
    let credit = Transfer::simple(
        TransferId::parse("credit:bench").unwrap(),
        usd.clone(),
        "",
        Account::Clearing("bench".into()),
        Account::Wallet(1),
        i64::try_from(n).unwrap() * 100,
    )
    .unwrap();
    store.post(&credit, UnixTime(0)).unwrap();

    let started = Instant::now();
    for i in 0..n {
        store
            .set_listing(device, i % 2 == 0, Some(i as i64))
            .expect("an update");
    }
    let baseline = n as f64 / started.elapsed().as_secs_f64();

    let transfers: Vec<Transfer> = (0..n)
        .map(|i| {
            Transfer::new(
                TransferId::derive("settle", &["rnt-bench", &i.to_string()]).unwrap(),
                usd.clone(),
                "an hour",
                vec![
                    (Account::Wallet(1), -100),
                    (Account::Payable(2), 90),
                    (Account::Revenue, 10),
                ],
            )
            .unwrap()
        })
        .collect();
    let started = Instant::now();
    for t in &transfers {
        store.post(t, UnixTime(1)).expect("a transfer");
    }
    let posted = n as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    for t in &transfers {
        store.post(t, UnixTime(2)).expect("a repeat");
    }
    let repeated = n as f64 / started.elapsed().as_secs_f64();
    assert!(store.ledger_problems().unwrap().is_empty());

    println!("| write ({n} each, one transaction each) | per second | vs baseline |");
    println!("|---|---:|---:|");
    println!("| baseline: one row updated | {baseline:.0} | 1.00× |");
    println!(
        "| transfer posted (3 legs) | {posted:.0} | {:.2}× |",
        posted / baseline
    );
    println!(
        "| transfer repeated (a no-op) | {repeated:.0} | {:.2}× |",
        repeated / baseline
    );
}

//! Crediting top-ups: per second, a top-up credited (its row read, its
//! ledger transfer posted and the row marked, in one transaction), the
//! same credit repeated (a provider's repeated webhook: a no-op), and a
//! BTCPay webhook signature checked over a 2 KiB body, against a baseline
//! measured in the same run on the same store: a plain two-leg transfer
//! posted (what `rpibroker admin credit` does).
//!
//! Run with `cargo bench -p rpibroker --bench topups`; `TOPUP_BENCH_N` sets
//! the number of operations per row (default 20000).

use std::time::Instant;

use rpibroker::ledger::{Account, Currency, Transfer, TransferId};
use rpibroker::payments::signature::{constant_time_eq, hmac_sha256};
use rpibroker::store::{Credit, Store};
use rpibroker::time::UnixTime;

fn per_second(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("TOPUP_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(&dir.path().join("bench.sqlite")).expect("a store");
    let user = store
        .add_user("bench@example.org", "x", false, UnixTime(0))
        .expect("a user")
        .id;
    let usd = Currency::parse("USD").unwrap();

    let started = Instant::now();
    for i in 0..n {
        let t = Transfer::simple(
            TransferId::derive("credit", &["manual", &i.to_string()]).unwrap(),
            usd.clone(),
            "a credit",
            Account::Clearing("manual".into()),
            Account::Wallet(user),
            100,
        )
        .unwrap();
        store.post(&t, UnixTime(1)).expect("a transfer");
    }
    let baseline = per_second(n, started);

    for i in 0..n {
        let id = format!("top-{i}");
        store
            .insert_topup(&id, user, "btcpay", 100, &usd, UnixTime(2))
            .unwrap();
        store
            .set_topup_checkout(
                &id,
                &format!("Inv{i}"),
                "https://pay.invalid/i",
                UnixTime(2),
            )
            .unwrap();
    }
    let credit = |i: usize| {
        store
            .credit_topup("btcpay", &format!("Inv{i}"), None, "a top-up", UnixTime(3))
            .expect("a credit")
    };
    let started = Instant::now();
    for i in 0..n {
        assert!(matches!(credit(i), Credit::Now(_)));
    }
    let credited = per_second(n, started);
    let started = Instant::now();
    for i in 0..n {
        assert!(matches!(credit(i), Credit::Already(_)));
    }
    let repeated = per_second(n, started);
    assert!(store.ledger_problems().unwrap().is_empty());
    assert_eq!(
        store.balance(&Account::Wallet(user), &usd).unwrap(),
        2 * 100 * i64::try_from(n).unwrap()
    );

    let body = vec![b'x'; 2048];
    let signature = hmac_sha256(b"webhook-secret", &body);
    let started = Instant::now();
    for _ in 0..n {
        assert!(constant_time_eq(
            &hmac_sha256(b"webhook-secret", std::hint::black_box(&body)),
            &signature
        ));
    }
    let signed = per_second(n, started);

    println!("| operation ({n} each) | per second | vs baseline |");
    println!("|---|---:|---:|");
    println!("| baseline: two-leg transfer posted | {baseline:.0} | 1.00× |");
    for (what, rate) in [
        (
            "top-up credited (row + transfer, one transaction)",
            credited,
        ),
        ("top-up credit repeated (a no-op)", repeated),
        ("BTCPay signature checked (2 KiB body)", signed),
    ] {
        println!("| {what} | {rate:.0} | {:.2}× |", rate / baseline);
    }
}

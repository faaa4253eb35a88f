//! Usage records of leases between brokers: what issuing, checking and
//! booking them costs, on file-backed stores, against baselines measured
//! in the same run on the same stores.
//!
//! - Lessor: one metering pass over 2,000 open leases whose first hour just
//!   ended (2,000 records numbered, chained and signed, each with its
//!   ledger transfer, one transaction per lease), and one with nothing due,
//!   against the billing pass over 2,000 local rentals at the same moment
//!   (each rental's first hour settled and its second held, 500 rentals per
//!   transaction), and its pass with nothing due.
//! - Lessee: checking the 2,000 records (hash and ed25519 signature), and
//!   booking them one transaction each (chain, lease and rate checked, the
//!   renter charged from the hold, the peer owed), against a plain
//!   three-leg ledger transfer per transaction.
//!
//! All the leases are with one peer, so each pass adds its records to one
//! chain, which starts empty.
//!
//! Run with `cargo bench -p rpibroker --bench lease_usage`;
//! `LEASE_USAGE_BENCH_N` sets the number of leases, and of local rentals
//! (default 2000).

use std::time::{Duration, Instant};

use rpibroker::billing::pass::bill_once_at;
use rpibroker::billing::settings::BillingSettings;
use rpibroker::federation::identity::{KeyRing, PublicKey};
use rpibroker::federation::leases::stop_message;
use rpibroker::federation::metering::{Issuer, meter_at};
use rpibroker::federation::settlement::{book, hold_due_at};
use rpibroker::federation::usage::RecordBody;
use rpibroker::ledger::{Account, Currency, Transfer, TransferId};
use rpibroker::store::{
    Direction, LeaseLogin, NewLease, NewPeer, Opened, PeerRecord, RenterTerms, Store,
};
use rpibroker::time::UnixTime;
use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;

const HOUR: i64 = 3600;
const T0: i64 = 1_000_000;
const RATE: i64 = 600;
const PER_RENTER: usize = 100;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

/// Adds peer `name` to `store`; its record there.
fn peer_on(store: &Store, name: &str, keys: Vec<PublicKey>) -> PeerRecord {
    let new = NewPeer {
        name: name.into(),
        base_url: format!("https://{name}"),
        keys,
        credit_limit: i64::MAX,
        currency: "USD".into(),
    };
    store.add_peer(&new, UnixTime(1)).expect("a peer");
    store
        .peers()
        .unwrap()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap()
}

/// A user of `store` with `amount` in their wallet.
fn funded_user(store: &Store, email: &str, amount: i64) -> i64 {
    let id = store
        .add_user(email, "h", false, UnixTime(0))
        .expect("a user")
        .id;
    let credit = Transfer::simple(
        TransferId::derive("credit", &[email]).unwrap(),
        usd(),
        "",
        Account::Clearing("bench".into()),
        Account::Wallet(id),
        amount,
    )
    .unwrap();
    store.post(&credit, UnixTime(0)).expect("a credit");
    id
}

/// A listed device of `owner`, online from `T0`; every tenth is down for
/// ten minutes of the first hour.
fn device(store: &Store, name: &str, owner: i64, i: usize) -> i64 {
    let id = store
        .add_owned_device(
            &DeviceName::parse(name).unwrap(),
            &format!("h-{name}"),
            owner,
            i64::MAX,
            UnixTime(0),
        )
        .expect("a device")
        .id;
    store.set_listing(id, true, Some(RATE)).unwrap();
    store.set_online(id, UnixTime(T0)).unwrap();
    if i.is_multiple_of(10) {
        store.set_offline(id, UnixTime(T0 + 600)).unwrap();
        store.set_online(id, UnixTime(T0 + 1200)).unwrap();
    }
    id
}

fn lease(peer_id: i64, i: usize, renter_id: i64) -> NewLease {
    NewLease {
        peer_id,
        id: format!("lse-{i}"),
        device: format!("lease-{i}"),
        hourly_rate: RATE,
        currency: "USD".into(),
        renter_id,
        idempotency_key: Some(format!("k{i}")),
        period_secs: HOUR,
    }
}

fn main() {
    let n: usize = std::env::var("LEASE_USAGE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let ring_dir = dir.path().join("lessor");
    std::fs::create_dir_all(&ring_dir).unwrap();
    let ring = KeyRing::load_or_create(&ring_dir, UnixTime(1)).expect("a key ring");
    let lessor = Store::open(&dir.path().join("lessor.sqlite")).expect("a store");
    let lessee = Store::open(&dir.path().join("lessee.sqlite")).expect("a store");
    let at_lessor = peer_on(&lessor, "a.example", Vec::new());
    let at_lessee = peer_on(&lessee, "b.example", ring.published(UnixTime(1)));

    // The lessor: N devices leased to the peer's renters, and N rented by
    // its own renters.
    let owner = lessor
        .add_user("owner@b.example", "h", false, UnixTime(0))
        .expect("an owner")
        .id;
    let peer_renter = lessor.peer_renter("a.example", UnixTime(0)).unwrap();
    let mut renter = 0;
    for i in 0..n {
        let leased = device(&lessor, &format!("lease-{i}"), owner, i);
        let Opened::Lease(_) = lessor
            .open_lessor_lease(&lease(at_lessor.id, i, peer_renter), i64::MAX, UnixTime(T0))
            .expect("a lease")
        else {
            panic!("lease {i} did not open");
        };
        let rental = RentalId::parse(&format!("rnt-lse-{i}")).unwrap();
        let terms = RenterTerms {
            renter_id: peer_renter,
            hourly_rate: Some(RATE),
            max_open: n as i64,
            billed: false,
        };
        lessor
            .begin_rental(leased, &rental, &[], Some(terms), UnixTime(T0))
            .expect("a leased rental");
        lessor.set_rental_active(&rental, "renter").unwrap();
        lessor
            .set_lessor_rental(
                at_lessor.id,
                &format!("lse-{i}"),
                rental.as_str(),
                &LeaseLogin::default(),
            )
            .unwrap();

        if i.is_multiple_of(PER_RENTER) {
            renter = funded_user(&lessor, &format!("r{i}@b.example"), 1_000_000_000);
        }
        let local = device(&lessor, &format!("pi-{i}"), owner, i);
        let rental = RentalId::parse(&format!("rnt-{i}")).unwrap();
        let terms = RenterTerms {
            renter_id: renter,
            hourly_rate: Some(RATE),
            max_open: PER_RENTER as i64,
            billed: true,
        };
        lessor
            .begin_rental(local, &rental, &[], Some(terms), UnixTime(T0))
            .expect("a local rental");
        lessor.set_rental_active(&rental, "renter").unwrap();
    }
    let settings = BillingSettings {
        enabled: true,
        currency: usd(),
        fee_percent: 10,
        period: Duration::from_secs(HOUR as u64),
    };
    bill_once_at(&lessor, &settings, UnixTime(T0 + 1)).expect("the first holds");
    let issuer = Issuer {
        name: "b.example",
        ring: &ring,
        fee_percent: 10,
    };

    // The lessee: the same N leases held by its renters, first hours held.
    for i in 0..n {
        if i.is_multiple_of(PER_RENTER) {
            renter = funded_user(&lessee, &format!("r{i}@a.example"), 1_000_000_000);
        }
        let new = lease(at_lessee.id, i, renter);
        let (path, body, key) = stop_message(&new.id, UnixTime(T0));
        lessee
            .add_lessee_lease(&new, (&path, &body, &key), UnixTime(T0 + 180), UnixTime(T0))
            .expect("a lessee lease");
        let login = LeaseLogin {
            username: "renter".into(),
            ..LeaseLogin::default()
        };
        lessee
            .set_lessee_login(at_lessee.id, &new.id, &login, HOUR, &key)
            .expect("its login");
    }
    assert!(hold_due_at(&lessee, UnixTime(T0)).unwrap().ended.is_empty());

    // Lessor: the first hour of every rental and lease ended a second ago.
    let due = UnixTime(T0 + HOUR + 1);
    let started = Instant::now();
    let billed = bill_once_at(&lessor, &settings, due).expect("a billing pass");
    let bill_due = started.elapsed();
    assert!(billed.to_end.is_empty());
    let started = Instant::now();
    let metered = meter_at(&lessor, &issuer, due).expect("a metering pass");
    let meter_due = started.elapsed();
    assert_eq!(metered.records, n);
    let idle = UnixTime(T0 + HOUR + 2);
    let started = Instant::now();
    bill_once_at(&lessor, &settings, idle).expect("a billing pass");
    let bill_idle = started.elapsed();
    let started = Instant::now();
    let metered = meter_at(&lessor, &issuer, idle).expect("a metering pass");
    let meter_idle = started.elapsed();
    assert_eq!(metered.records, 0);
    assert!(lessor.ledger_problems().unwrap().is_empty());

    // Lessee: the records as a pull brings them.
    let records = lessor
        .records_after(Direction::Issued, at_lessor.id, 0, n)
        .unwrap();
    assert_eq!(records.len(), n);
    let now = UnixTime(T0 + HOUR + 10);
    let started = Instant::now();
    let bodies: Vec<RecordBody> = records
        .iter()
        .map(|r| r.open(&at_lessee.keys, now).expect("a valid record"))
        .collect();
    let opened = started.elapsed();

    let payer = funded_user(&lessee, "baseline@a.example", 1_000_000_000);
    let transfers: Vec<Transfer> = (0..n)
        .map(|i| {
            Transfer::new(
                TransferId::derive("settle", &["rnt-bench", &i.to_string()]).unwrap(),
                usd(),
                "an hour",
                vec![
                    (Account::Wallet(payer), -100),
                    (Account::Payable(payer), 90),
                    (Account::Revenue, 10),
                ],
            )
            .unwrap()
        })
        .collect();
    let started = Instant::now();
    for t in &transfers {
        lessee.post(t, now).expect("a transfer");
    }
    let posted = started.elapsed();

    let started = Instant::now();
    for (signed, body) in records.iter().zip(&bodies) {
        lessee
            .batch(|b| book(b, "a.example", &at_lessee, body, signed, now))
            .expect("a booking")
            .expect("an accepted record");
    }
    let booked = started.elapsed();
    assert!(lessee.ledger_problems().unwrap().is_empty());
    assert_eq!(
        lessee
            .chain_head(Direction::Received, at_lessee.id)
            .unwrap(),
        lessor.chain_head(Direction::Issued, at_lessor.id).unwrap()
    );
    assert_eq!(
        lessee
            .balance(&Account::Peer(at_lessee.id), &usd())
            .unwrap(),
        -lessor
            .balance(&Account::Peer(at_lessor.id), &usd())
            .unwrap(),
        "both ledgers agree on what the lessee owes"
    );

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per_sec = |d: Duration| n as f64 / d.as_secs_f64();
    println!("| lessor, {n} leases and {n} local rentals | time | per second | time vs baseline |");
    println!("|---|---:|---:|---:|");
    println!(
        "| baseline: billing pass, every first hour settled, second held | {:.1} ms | {:.0} rentals | 1.00× |",
        ms(bill_due),
        per_sec(bill_due)
    );
    for (what, took, unit) in [
        ("metering pass, one record per lease", meter_due, "records"),
        ("billing pass, nothing due", bill_idle, "rentals"),
        ("metering pass, nothing due", meter_idle, "leases"),
    ] {
        println!(
            "| {what} | {:.1} ms | {:.0} {unit} | {:.2}× |",
            ms(took),
            per_sec(took),
            took.as_secs_f64() / bill_due.as_secs_f64()
        );
    }
    println!();
    println!("| lessee, {n} records | per second | rate vs baseline |");
    println!("|---|---:|---:|");
    println!(
        "| baseline: transfer posted (3 legs, one transaction each) | {:.0} | 1.00× |",
        per_sec(posted)
    );
    for (what, took) in [
        ("record checked (hash, signature)", opened),
        ("record booked (one transaction each)", booked),
    ] {
        println!(
            "| {what} | {:.0} | {:.2}× |",
            per_sec(took),
            posted.as_secs_f64() / took.as_secs_f64()
        );
    }
}

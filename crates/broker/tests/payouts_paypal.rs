//! Owners paid through PayPal Payouts, against a fake PayPal written to its
//! published API, with a real agent and sandbox earning the money (billing
//! and payout periods shortened to 2 s). Each owner-period is one batch
//! whose `sender_batch_id` names owner and period: a lost answer is
//! recovered by PayPal's refusal of the duplicate, a 500 by trying again; a FAILED item, and a
//! paid item RETURNED later, put the money back in the owner's payable to
//! be paid in a later period. The broker is also killed at random moments
//! while it pays out (`PAYOUT_CRASH_SEED` picks them): afterwards every
//! owner-period is paid once, all the owner earned reached them, and the
//! ledger sums to zero.

mod common;

use common::fake_paypal_payouts::FakePayouts;
use common::ledger::{balance, db};
use common::sandbox::{Cleanup, register_and_start};
use common::web::{PASSWORD, WebClient, csrf_of, list_at, sign_in, sign_up};
use common::{DEADLINE, TestBroker, ledger, wait_for};

const CONFIG: &str = "[billing]\nenabled = true\nperiod_secs = 2\nfee_percent = 10\n\
                      [payouts]\nenabled = true\nperiod_secs = 2\nminimum = \"0.01\"\npaypal = true\n";

async fn broker_with(fake: &FakePayouts) -> TestBroker {
    let dir = tempfile::tempdir().unwrap().keep();
    let config = format!("{CONFIG}{}", fake.config(&dir.join("paypal-secret")));
    let broker = TestBroker::start_with(1, &config).await;
    fake.set_broker(broker.api);
    broker
}

/// Everything the owners earned from rentals.
fn earned(broker: &TestBroker) -> i64 {
    db(broker)
        .query_row(
            "SELECT COALESCE(SUM(e.amount), 0) FROM ledger_entries e
             JOIN ledger_accounts a ON a.id = e.account_id
             WHERE a.kind = 'payable' AND e.transfer_id LIKE 'settle:%'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Payouts by id: (state, amount).
fn payouts(broker: &TestBroker) -> Vec<(String, String, i64)> {
    let db = db(broker);
    let mut stmt = db
        .prepare("SELECT id, state, amount FROM payouts ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// An owner with a listed device and a PayPal payout method, and a renter
/// with 100.00 renting it at 1.00 per period.
async fn earning(broker: &TestBroker, name: &str) -> (WebClient, WebClient, common::TestAgent) {
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let mut renter = sign_up(broker.api, "renter@example.org").await;
    let (_device, agent) = register_and_start(broker, &mut owner, name).await;
    assert_eq!(list_at(&mut owner, name, true, "1").await.status, 200);
    let page = owner.get("/earnings").await;
    assert!(page.body.contains("value=\"paypal\""), "{}", page.body);
    let saved = owner
        .post(
            "/earnings/method",
            &[
                ("csrf", &csrf_of(&page.body)),
                ("kind", "paypal"),
                ("destination", "Owner.Paid@example.org"),
            ],
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let out = broker.run(&[
        "admin",
        "credit",
        "renter@example.org",
        "100",
        "--reference",
        "b-1",
    ]);
    assert!(out.status.success());
    let home = renter.get("/").await;
    let r = renter
        .post("/rent", &[("csrf", &csrf_of(&home.body)), ("name", name)])
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (owner, renter, agent)
}

async fn stop_and_settle(broker: &TestBroker, name: &str) {
    let mut renter = sign_in(broker.api, "renter@example.org", PASSWORD).await.0;
    let page = renter.get("/rentals").await;
    let stop = renter
        .post(
            "/rentals/stop",
            &[("csrf", &csrf_of(&page.body)), ("name", name)],
        )
        .await;
    assert_eq!(stop.status, 200, "{}", stop.body);
    wait_for("billing to finish the rental", DEADLINE, || async {
        let closed: bool = db(broker)
            .query_row(
                "SELECT billing_closed FROM rentals WHERE renter_id IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        closed.then_some(())
    })
    .await;
}

/// Waits until everything owed was paid out and confirmed.
async fn all_paid(broker: &TestBroker, owner: &str) {
    let start = std::time::Instant::now();
    loop {
        let left =
            balance(broker, "payable", Some(owner)) + balance(broker, "payouts_in_flight", None);
        if left == 0 {
            return;
        }
        if start.elapsed() > DEADLINE * 2 {
            let log: Vec<String> = broker
                .log()
                .lines()
                .filter(|l| l.contains("payout") || l.contains("PayPal"))
                .map(str::to_string)
                .collect();
            panic!(
                "{left} still owed or in flight; payouts {:?}; log:\n{}",
                payouts(broker),
                log.join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn owner_id(broker: &TestBroker) -> String {
    db(broker)
        .query_row(
            "SELECT id FROM users WHERE email = 'owner@example.org'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        .to_string()
}

/// What PayPal holds for the owner matches the ledger, each owner-period
/// was one batch, and the ledger is whole.
fn paid_once(broker: &TestBroker, fake: &FakePayouts) {
    assert_eq!(fake.problems(), Vec::<String>::new(), "request shapes");
    let batches = fake.batches();
    let stored = payouts(broker);
    assert_eq!(
        batches.len(),
        stored.len(),
        "one batch per payout: {stored:?}"
    );
    for (b, (id, _, amount)) in batches.iter().zip(&stored) {
        assert_eq!((&b.sender_batch_id, b.cents), (id, *amount));
        assert_eq!(b.receiver, "owner.paid@example.org");
    }
    let earned = earned(broker);
    assert!(earned > 0);
    assert_eq!(
        fake.paid(),
        earned,
        "the owner got all they earned, once: {stored:?}"
    );
    assert_eq!(balance(broker, "clearing", Some("paypal")), earned);
    assert_eq!(ledger::problems(broker), 0, "the ledger is whole");
}

#[tokio::test(flavor = "multi_thread")]
async fn paypal_pays_each_owner_period_once_and_takes_back_what_fails() {
    let name = "payout-pi";
    let _cleanup = Cleanup::new(name);
    let fake = FakePayouts::start().await;
    let broker = broker_with(&fake).await;
    // PayPal answers 500 twice; the first batch's answer is lost; the
    // second's item fails; the third's stays unclaimed until it is returned.
    fake.fail_next(2);
    fake.lose_next_answer(1);
    fake.next_outcomes(&["SUCCESS", "FAILED", "UNCLAIMED"]);
    let (mut owner, _renter, _agent) = earning(&broker, name).await;
    let batches = wait_for("three payouts", DEADLINE * 2, || async {
        let b = fake.batches();
        (b.len() >= 3).then_some(b)
    })
    .await;
    // The unclaimed item is returned, and a paid one is returned later.
    let with = |status: &str| {
        batches
            .iter()
            .find(|b| b.status == status)
            .unwrap_or_else(|| panic!("a {status} batch in {batches:?}"))
            .sender_batch_id
            .clone()
    };
    let (paid, failed, unclaimed) = (&with("SUCCESS"), &with("FAILED"), &with("UNCLAIMED"));
    wait_for("the payout to be followed up", DEADLINE, || async {
        payouts(&broker)
            .iter()
            .any(|(id, _, _)| id == unclaimed)
            .then_some(())
    })
    .await;
    assert_eq!(fake.change(unclaimed, "RETURNED", "RETURNED").await, 200);
    wait_for("the first payout to be paid", DEADLINE, || async {
        payouts(&broker)
            .iter()
            .any(|(id, state, _)| id == paid && state == "paid")
            .then_some(())
    })
    .await;
    assert_eq!(fake.change(paid, "RETURNED", "RETURNED").await, 200);
    let states = wait_for("the returns to be recorded", DEADLINE, || async {
        let p = payouts(&broker);
        let state = |id: &str| p.iter().find(|(i, _, _)| i == id).unwrap().1.clone();
        (state(unclaimed) == "returned" && state(paid) == "returned").then_some(p)
    })
    .await;
    assert!(
        states
            .iter()
            .any(|(id, state, _)| id == failed && state == "failed"),
        "{states:?}"
    );

    stop_and_settle(&broker, name).await;
    all_paid(&broker, &owner_id(&broker)).await;
    paid_once(&broker, &fake);
    assert_eq!(
        fake.creates().1,
        1,
        "the lost answer's repeat was refused as a duplicate"
    );

    // The owner sees each payout and what became of it.
    let page = owner.get("/earnings").await;
    for state in ["paid", "failed", "returned"] {
        assert!(
            page.body.contains(&format!("{state}<br>"))
                || page.body.contains(&format!("<td>{state}")),
            "{state}: {}",
            page.body
        );
    }
    assert!(page.body.contains("PayPal: FAILED"), "{}", page.body);
}

/// The first send's answer is lost, and PayPal then refuses the repeats
/// 422 without naming the batch it made: the payout may have been paid,
/// so it is neither failed nor paid again; it stays in flight, flagged for
/// the operator, until a repeat's refusal links the batch.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_repeat_of_a_payout_paypal_may_have_paid_is_never_paid_again() {
    let name = "payout-unlinked-pi";
    let _cleanup = Cleanup::new(name);
    let fake = FakePayouts::start().await;
    let broker = broker_with(&fake).await;
    fake.lose_next_answer(1);
    fake.refuse_repeats_unlinked(3);
    let (_owner, _renter, _agent) = earning(&broker, name).await;
    let first = wait_for("the first payout's batch", DEADLINE * 2, || async {
        fake.batches().first().map(|b| b.sender_batch_id.clone())
    })
    .await;
    let (state, attention) = wait_for("the payout to be flagged", DEADLINE, || async {
        db(&broker)
            .query_row(
                "SELECT state, attention FROM payouts WHERE id = ?1 AND attention IS NOT NULL",
                [&first],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .ok()
    })
    .await;
    assert_eq!(state, "sent", "kept in flight: {attention}");
    assert!(
        attention.contains("USER_BUSINESS_ERROR") && attention.contains(&first),
        "{attention}"
    );
    wait_for("the first payout to be paid", DEADLINE * 2, || async {
        payouts(&broker)
            .iter()
            .any(|(id, state, _)| id == &first && state == "paid")
            .then_some(())
    })
    .await;

    stop_and_settle(&broker, name).await;
    all_paid(&broker, &owner_id(&broker)).await;
    paid_once(&broker, &fake);
    assert_eq!(
        fake.creates().1,
        4,
        "three repeats refused without a link, the fourth with it"
    );
    let flagged: i64 = db(&broker)
        .query_row(
            "SELECT COUNT(*) FROM payouts WHERE attention IS NOT NULL OR state != 'paid'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(flagged, 0, "once paid, nothing is left for the operator");
}

/// The broker is killed at random moments (from a seed) while it pays out,
/// with some of PayPal's answers lost as well.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_while_paying_out_pays_each_owner_period_once() {
    use rand::{RngExt, SeedableRng};
    let seed: u64 = std::env::var("PAYOUT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let name = "payout-crash-pi";
    let _cleanup = Cleanup::new(name);
    let fake = FakePayouts::start().await;
    let mut broker = broker_with(&fake).await;
    fake.lose_next_answer(2);
    fake.next_outcomes(&["SUCCESS", "FAILED"]);
    let (_owner, _renter, agent) = earning(&broker, name).await;
    for crash in 1..=3 {
        let wait = rng.random_range(300..3000u64);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        broker.crash_and_restart().await;
        agent.wait_up(1 + crash).await;
    }
    stop_and_settle(&broker, name).await;
    all_paid(&broker, &owner_id(&broker)).await;
    assert!(
        fake.batches().len() >= 2,
        "seed {seed}: {:?}",
        payouts(&broker)
    );
    paid_once(&broker, &fake);
}

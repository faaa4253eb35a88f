//! Billing with a real agent and sandbox, with the billing period shortened
//! to 4 s: a renter with an empty wallet cannot rent; credited, they rent,
//! each period is held and then charged for the seconds the device was
//! reachable, split between the owner and the broker; a wallet running low
//! gets a mail, and one that cannot cover the next period ends the rental
//! without charging for it. The renter (and only they, and administrators)
//! sees what each period cost on the rental's page and through the API.
//! The ledger sums to zero throughout, also when the broker is killed at
//! random moments while it bills (`BILLING_CRASH_SEED` picks them).

mod common;

use common::api::{call, create_token};
use common::sandbox::{Cleanup, register_and_start};
use common::web::{WebClient, csrf_of, list_at, sign_in_admin, sign_up, testid};
use common::{DEADLINE, TestBroker, wait_for};

const BILLING: &str = "[billing]\nenabled = true\nperiod_secs = 4\nfee_percent = 10\n";

async fn rent(c: &mut WebClient, name: &str) -> common::http::Response {
    let home = c.get("/").await;
    c.post("/rent", &[("csrf", &csrf_of(&home.body)), ("name", name)])
        .await
}

/// Balances by account kind, from the broker's database.
fn balances(broker: &TestBroker) -> Vec<(String, i64)> {
    let db = rusqlite::Connection::open(broker.data_dir().join("broker.sqlite")).unwrap();
    let mut stmt = db
        .prepare("SELECT kind, SUM(balance) FROM ledger_accounts GROUP BY kind ORDER BY kind")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn transfers(broker: &TestBroker, like: &str) -> i64 {
    let db = rusqlite::Connection::open(broker.data_dir().join("broker.sqlite")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM ledger_transfers WHERE id LIKE ?1",
        [like],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rentals_are_held_charged_per_period_and_end_when_the_wallet_runs_out() {
    let name = "bill-pi";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start_with(1, BILLING).await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let mut renter = sign_up(broker.api, "renter@example.org").await;
    let (_device, _agent) = register_and_start(&broker, &mut owner, name).await;
    assert_eq!(list_at(&mut owner, name, true, "1").await.status, 200);

    let r = rent(&mut renter, name).await;
    assert_eq!(r.status, 402, "{}", r.body);
    assert!(r.body.contains("your wallet holds 0.00"), "{}", r.body);

    let out = broker.run(&[
        "admin",
        "credit",
        "renter@example.org",
        "2.50",
        "--reference",
        "bank-7",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = rent(&mut renter, name).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // 2.50 covers two periods at 1.00 and then not a third: the rental
    // ends, and the third period is free.
    let ended = wait_for("the wallet to end the rental", DEADLINE * 3, || {
        let mut renter = WebClient {
            addr: renter.addr,
            cookies: renter.cookies.clone(),
        };
        async move {
            let page = renter.get("/rentals").await;
            page.body
                .contains("Ended: your wallet could not cover the next hour.")
                .then_some(page.body)
        }
    })
    .await;
    assert!(ended.contains(name));
    // The last period's settlement follows the stop; then billing is done.
    wait_for("billing to finish the rental", DEADLINE, || async {
        let db = rusqlite::Connection::open(broker.data_dir().join("broker.sqlite")).unwrap();
        let closed: bool = db
            .query_row(
                "SELECT billing_closed FROM rentals WHERE renter_id IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        closed.then_some(())
    })
    .await;
    let settled = balances(&broker);
    let get = |kind: &str| {
        settled
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, v)| *v)
    };
    let (wallet, payable, revenue) = (get("wallet"), get("payable"), get("revenue"));
    let charged = payable + revenue;
    assert_eq!(get("clearing"), -250, "{settled:?}");
    assert_eq!(wallet + charged, 250, "{settled:?}");
    assert_eq!(
        charged, 200,
        "two full periods, nothing for the third: {settled:?}"
    );
    assert_eq!(revenue, 20, "the fee is 10 % of each period: {settled:?}");
    assert_eq!(
        transfers(&broker, "hold:%"),
        2,
        "a hold per period the wallet covered"
    );
    assert_eq!(transfers(&broker, "settle:%"), 2, "the third is free");

    // The renter was warned before the money ran out.
    let outbox = broker.data_dir().join("outbox");
    let warned = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .any(|m| m.contains("Your wallet is running low") && m.contains("renter@example.org"));
    assert!(warned, "a low-balance mail in the outbox");

    // Everyone sees their side; the ledger is whole.
    let theirs = renter.get("/wallet").await;
    assert!(
        theirs.body.contains("hold for hour 1 of rental"),
        "{}",
        theirs.body
    );
    let mine = owner.get("/wallet").await;
    assert!(mine.body.contains("Owed to you"), "{}", mine.body);
    let mut admin = sign_in_admin(&broker, "root@example.org").await;
    let overview = admin.get("/admin").await;
    assert!(testid(&overview.body, "ledger-state").contains("The ledger is whole"));

    // What each period cost, as the renter sees it through the API...
    let renter_token = create_token(&mut renter, "renter").await;
    let mine = call(
        broker.api,
        "GET",
        "/api/v1/rentals",
        Some(&renter_token),
        None,
    )
    .await;
    let id = mine.json["rentals"][0]["id"].as_str().unwrap().to_string();
    let usage_path = format!("/api/v1/rentals/{id}/usage");
    let usage = call(broker.api, "GET", &usage_path, Some(&renter_token), None).await;
    assert_eq!(usage.status, 200, "{}", usage.raw.body);
    let u = &usage.json;
    assert_eq!(
        (u["rate_cents"].as_i64(), u["period_secs"].as_i64()),
        (Some(100), Some(4))
    );
    assert_eq!(u["charged_cents"], 200);
    let periods = u["periods"].as_array().unwrap();
    let charged: Vec<_> = periods.iter().filter(|p| p["state"] == "charged").collect();
    assert_eq!(charged.len(), 2, "{u}");
    for p in &charged {
        assert_eq!(
            (
                p["charged_cents"].as_i64(),
                p["released_cents"].as_i64(),
                p["reachable_secs"].as_i64()
            ),
            (Some(100), Some(0), Some(4)),
            "a full period reachable: {u}"
        );
    }
    for p in periods.iter().filter(|p| p["state"] != "charged") {
        assert_eq!(
            (p["state"].as_str(), p["charged_cents"].as_i64()),
            (Some("unpaid"), Some(0)),
            "{u}"
        );
    }
    assert_eq!(periods.last().unwrap()["period"], 1, "newest first");
    // ... and on the rental's page, linked from My rentals.
    let list = renter.get("/rentals").await;
    assert!(
        list.body.contains(&format!("href=\"/rentals/{id}\"")),
        "{}",
        list.body
    );
    let page = renter.get(&format!("/rentals/{id}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(testid(&page.body, "charged-1"), "1.00");
    assert_eq!(testid(&page.body, "state-2"), "charged");
    assert_eq!(
        testid(&page.body, "reachable-1"),
        "0 min",
        "4 s of a 4 s period"
    );
    // The owner is not the renter: no such rental for them; an
    // administrator sees it.
    let owner_token = create_token(&mut owner, "owner").await;
    let theirs = call(broker.api, "GET", &usage_path, Some(&owner_token), None).await;
    assert_eq!(theirs.status, 404, "{}", theirs.raw.body);
    assert_eq!(owner.get(&format!("/rentals/{id}")).await.status, 404);
    let unknown = call(
        broker.api,
        "GET",
        "/api/v1/rentals/rnt-nope/usage",
        Some(&renter_token),
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    let admin_token = create_token(&mut admin, "admin").await;
    let seen = call(broker.api, "GET", &usage_path, Some(&admin_token), None).await;
    assert_eq!(seen.json["charged_cents"], 200);
}

/// The broker is killed at random moments (from a seed) while it bills a
/// rental, and started again each time. Afterwards every period of the
/// rental is settled once, no hold is left behind, and the ledger is whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_while_billing_charges_each_period_once() {
    use rand::{RngExt, SeedableRng};
    let seed: u64 = std::env::var("BILLING_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let name = "crash-pi";
    let _cleanup = Cleanup::new(name);
    let mut broker =
        TestBroker::start_with(1, "[billing]\nenabled = true\nperiod_secs = 2\n").await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let mut renter = sign_up(broker.api, "renter@example.org").await;
    let (_device, agent) = register_and_start(&broker, &mut owner, name).await;
    assert_eq!(list_at(&mut owner, name, true, "1").await.status, 200);
    let out = broker.run(&[
        "admin",
        "credit",
        "renter@example.org",
        "100",
        "--reference",
        "c-1",
    ]);
    assert!(out.status.success());
    let r = rent(&mut renter, name).await;
    assert_eq!(r.status, 201, "{}", r.body);

    for crash in 1..=3 {
        let wait = rng.random_range(200..2500u64);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        broker.crash_and_restart().await;
        agent.wait_up(1 + crash).await;
    }
    // The renter stops; billing settles the rest.
    let mut renter = common::web::sign_in(broker.api, "renter@example.org", common::web::PASSWORD)
        .await
        .0;
    let page = renter.get("/rentals").await;
    let stop = renter
        .post(
            "/rentals/stop",
            &[("csrf", &csrf_of(&page.body)), ("name", name)],
        )
        .await;
    assert_eq!(stop.status, 200, "seed {seed}: {}", stop.body);
    let db_path = broker.data_dir().join("broker.sqlite");
    let (started, ended) = wait_for("billing to finish the rental", DEADLINE, || {
        let db_path = db_path.clone();
        async move {
            let db = rusqlite::Connection::open(db_path).unwrap();
            let (started, ended, closed) = db
                .query_row(
                    "SELECT started_at, ending_at, billing_closed FROM rentals WHERE renter_id IS NOT NULL",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, bool>(2)?)),
                )
                .unwrap();
            closed.then_some((started, ended))
        }
    })
    .await;
    let periods = (ended - started + 1) / 2;
    let settled = transfers(&broker, "settle:%");
    let held = transfers(&broker, "hold:%");
    assert!(
        settled <= periods && held <= settled,
        "seed {seed}: {settled} settlements and {held} holds for {periods} periods"
    );
    let b = balances(&broker);
    let get = |kind: &str| b.iter().find(|(k, _)| k == kind).map_or(0, |(_, v)| *v);
    assert_eq!(get("held"), 0, "seed {seed}: no hold left: {b:?}");
    assert_eq!(get("clearing"), -10_000, "seed {seed}: {b:?}");
    let charged = get("payable") + get("revenue");
    assert!(
        charged <= periods * 100,
        "seed {seed}: at most the rate for each period: {b:?}"
    );
    let db = rusqlite::Connection::open(&db_path).unwrap();
    let problems: i64 = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM (SELECT currency FROM ledger_accounts GROUP BY currency HAVING SUM(balance) != 0))
                  + (SELECT COUNT(*) FROM (SELECT transfer_id FROM ledger_entries GROUP BY transfer_id HAVING SUM(amount) != 0))
                  + (SELECT COUNT(*) FROM ledger_accounts WHERE kind IN ('wallet', 'held', 'payable') AND balance < 0)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(problems, 0, "seed {seed}: the ledger is whole");
}

//! Remote rentals (leases) between peered brokers, as real `rpibroker`
//! processes on loopback: a renter on alpha rents a priced device beta
//! manages (a real agent and Docker sandbox), logs in with a stock OpenSSH
//! client through beta's edge, and stops from alpha (while beta is down),
//! which ends it on beta and wipes the sandbox once beta is back; an end on
//! beta is learned by alpha; alpha charges its renter what beta's usage
//! records say, and both brokers' ledgers and statements agree to the cent;
//! a lease request that is forged, tampered with, replayed, or for a
//! listing that changed since it was shown is refused and leaves nothing
//! behind.

mod common;

use common::peering::{ok, peer};

use axum::http::HeaderMap;
use common::sandbox::{self, Cleanup, RenterLogin, assert_ran, register_and_start};
use common::smtp::SmtpServer;
use common::web::{list_at, sign_up};
use common::{DEADLINE, TestBroker, wait_for};
use rpibroker::federation::identity::KeyRing;
use rpibroker::federation::signature::{self, RequestTarget};
use rpibroker::time::UnixTime;
use serde_json::{Value, json};

/// A broker called `name` that pulls its peers' listings and usage records
/// every second.
async fn broker(name: &str) -> TestBroker {
    broker_with(name, "").await
}

/// [`broker`], with more of the config file.
async fn broker_with(name: &str, extra: &str) -> TestBroker {
    broker_polling(name, extra, 1).await
}

/// [`broker_with`], pulling peers' usage records every `lease_poll` seconds
/// (unless a peer says it has news).
async fn broker_polling(name: &str, extra: &str, lease_poll: u64) -> TestBroker {
    TestBroker::start_with(
        1,
        &format!(
            "{extra}\n[federation]\nname = \"{name}\"\npull_interval_secs = 1\nlease_poll_secs = {lease_poll}\n"
        ),
    )
    .await
}

/// Waits until `b`'s marketplace shows `device` of peer `from` as
/// `available`.
async fn wait_offer(b: &TestBroker, from: &str, device: &str, available: bool) -> Value {
    wait_for(
        "the peer device on the marketplace",
        DEADLINE,
        || async move {
            let market = common::api::call(b.api, "GET", "/api/v1/market", None, None)
                .await
                .json;
            market["peer_devices"]
                .as_array()?
                .iter()
                .find(|d| d["broker"] == from && d["name"] == device && d["available"] == available)
                .cloned()
        },
    )
    .await
}

/// Beta's owner registers `b1` (never connected, so unavailable) and lists
/// it at 0.25 an hour; alpha's marketplace shows it. The owner's session.
async fn offline_offer(alpha: &TestBroker, beta: &TestBroker) -> common::web::WebClient {
    let mut owner = sign_up(beta.api, "owner@example.org").await;
    let page = owner.get("/devices").await;
    let r = owner
        .post(
            "/devices",
            &[("csrf", &common::web::csrf_of(&page.body)), ("name", "b1")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(list_at(&mut owner, "b1", true, "0.25").await.status, 200);
    wait_offer(alpha, "beta", "b1", false).await;
    owner
}

/// Alpha's renter (API token `token`) asks to lease beta's `b1` at 0.25.
async fn lease_b1(alpha: &TestBroker, token: &str) -> common::api::Answer {
    common::api::call(
        alpha.api,
        "POST",
        "/api/v1/leases",
        Some(token),
        Some(&json!({"broker": "beta", "device": "b1", "hourly_rate_cents": 25})),
    )
    .await
}

fn db(b: &TestBroker) -> rusqlite::Connection {
    rusqlite::Connection::open(b.data_dir().join("broker.sqlite")).unwrap()
}

fn count(b: &TestBroker, sql: &str) -> i64 {
    db(b).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Billing on, in periods of 5 s.
const BILLING: &str = "[billing]\nenabled = true\nperiod_secs = 5\n";

/// The balance of ledger account `kind`/`holder` in USD.
fn balance(b: &TestBroker, kind: &str, holder: &str) -> i64 {
    db(b)
        .query_row(
            "SELECT COALESCE(SUM(balance), 0) FROM ledger_accounts
             WHERE kind = ?1 AND holder = ?2 AND currency = 'USD'",
            [kind, holder],
            |r| r.get(0),
        )
        .unwrap()
}

fn user_id(b: &TestBroker, email: &str) -> String {
    db(b)
        .query_row("SELECT id FROM users WHERE email = ?1", [email], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
        .to_string()
}

fn peer_id(b: &TestBroker, name: &str) -> String {
    db(b)
        .query_row("SELECT id FROM peers WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
        .to_string()
}

/// Waits until beta has metered a whole period of `lease` that cost
/// something: the renter used the device for a while.
async fn wait_charged(beta: &TestBroker, lease: &str) {
    wait_for("beta meters a paid period of the lease", DEADLINE, || async move {
        (count(
            beta,
            &format!(
                "SELECT COUNT(*) FROM lease_usage WHERE lease = '{lease}' AND kind = 'usage' AND amount > 0"
            ),
        ) > 0)
            .then_some(())
    })
    .await;
}

/// Waits until alpha has every usage record of its `leases` leases, then
/// checks the two ledgers agree to the cent: what alpha's renter paid is
/// what alpha owes beta, which is what beta is owed and shared between the
/// device's owner and its fee; `rpibroker peer statement` says so on both.
/// The total charged.
async fn assert_settled(alpha: &TestBroker, beta: &TestBroker, leases: i64, credited: i64) -> i64 {
    wait_for("alpha has every usage record", DEADLINE, || async move {
        (count(
            alpha,
            "SELECT COUNT(*) FROM leases WHERE role = 'lessee' AND usage_closed = 1",
        ) == leases)
            .then_some(())
    })
    .await;
    let renter = user_id(alpha, "renter@example.org");
    let owed = balance(alpha, "peer", &peer_id(alpha, "beta"));
    assert!(owed > 0, "the leases cost something");
    assert_eq!(balance(alpha, "held", &renter), 0, "nothing is left held");
    assert_eq!(balance(alpha, "wallet", &renter), credited - owed);
    assert_eq!(balance(beta, "peer", &peer_id(beta, "alpha")), -owed);
    let owner = user_id(beta, "owner@example.org");
    let (earned, fee) = (
        balance(beta, "payable", &owner),
        balance(beta, "revenue", ""),
    );
    assert_eq!(earned + fee, owed);
    assert_eq!(fee, owed - earned);
    // The statement of this month covers the same records on both sides.
    let month = &UnixTime::now().date()[..7];
    for (b, other) in [(alpha, "beta"), (beta, "alpha")] {
        for args in [vec![], vec!["--month", month]] {
            let out = ok(b.run(&[&["peer", "statement", other, "--json"][..], &args].concat()));
            let statement: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(statement["agrees"], true, "{statement}");
            assert_eq!(statement["pending"], json!([]), "{statement}");
        }
    }
    let out = alpha.run(&["peer", "statement", "beta", "--month", "2026-13"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a month like 2026-11"),
        "{out:?}"
    );
    let text = ok(alpha.run(&["peer", "statement", "beta"]));
    assert!(
        text.contains(&format!(
            "this broker owes beta {}.{:02} USD",
            owed / 100,
            owed % 100
        )),
        "{text}"
    );
    assert!(text.contains("beta's statement agrees."), "{text}");
    owed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renter_leases_a_peer_device_logs_in_and_stops_from_home() {
    let name = "lease-pi";
    let _cleanup = Cleanup::new(name);
    let smtp = SmtpServer::start().await;
    // Alpha pulls beta's usage records only when beta says a lease ended
    // (or after an hour): every end below reaches it that way.
    let alpha = broker_polling(
        "alpha",
        &format!("{}\n{BILLING}", smtp.broker_config()),
        3600,
    )
    .await;
    let mut beta = broker_with("beta", BILLING).await;
    peer(&alpha, &beta, "USD");
    let mut owner = sign_up(beta.api, "owner@example.org").await;
    let (_device, _agent) = register_and_start(&beta, &mut owner, name).await;
    assert_eq!(list_at(&mut owner, name, true, "0.25").await.status, 200);
    wait_offer(&alpha, "beta", name, true).await;

    let mut renter = sign_up(alpha.api, "renter@example.org").await;
    let credited = 10_000;
    ok(alpha.run(&[
        "admin",
        "credit",
        "renter@example.org",
        "100.00",
        "--reference",
        "bank-1",
    ]));
    let token = common::api::create_token(&mut renter, "cli").await;
    let rent = |rate: i64| {
        let token = token.clone();
        async move {
            common::api::call(
                alpha.api,
                "POST",
                "/api/v1/leases",
                Some(&token),
                Some(&json!({"broker": "beta", "device": name, "hourly_rate_cents": rate})),
            )
            .await
        }
    };
    // The rate shown must be the listing's.
    let r = rent(30).await;
    assert_eq!(r.status, 409, "{}", r.raw.body);
    assert_eq!(r.json["code"], "price_changed");
    assert_eq!(count(&beta, "SELECT COUNT(*) FROM leases"), 0);

    let r = rent(25).await;
    assert_eq!(r.status, 201, "{}", r.raw.body);
    let lease = r.json["lease"].as_str().unwrap().to_string();
    let user = r.json["username"].as_str().unwrap().to_string();
    let password = r.json["password"].as_str().unwrap().to_string();
    assert_eq!(r.json["broker"], "beta");
    assert_eq!(
        r.json["ssh_port"].as_u64().unwrap() as u16,
        beta.port(name, "ssh").port(),
        "the login is on beta's edge"
    );
    assert_eq!(
        r.json["ssh_command"],
        format!(
            "ssh -p {} {user}@{}",
            beta.port(name, "ssh").port(),
            r.json["ssh_host"].as_str().unwrap()
        )
    );
    assert!(
        !alpha.log().contains(&password) && !beta.log().contains(&password),
        "the password is in no log"
    );
    let shown = sandbox::show(&beta, name);
    assert_eq!(shown["rental"]["state"], "active", "{shown}");
    // Alpha mails its renter the login, as for a local rental.
    assert_eq!(r.json["mail"], "sent");
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.rcpt_to, ["renter@example.org"]);
    assert_eq!(mail.headers["subject"], format!("Your login on {name}"));
    for shown in [
        format!("Username: {user}\n"),
        format!("Password: {password}\n"),
    ] {
        assert!(mail.text.contains(&shown), "{shown}: {}", mail.text);
    }

    // The renter logs in through beta's edge with a stock OpenSSH client.
    let out = sandbox::renter_ssh(
        &beta,
        name,
        &user,
        RenterLogin::Password(&password),
        "id -un; echo kept > ~/note",
    );
    assert_eq!(assert_ran(&out, "password login").trim(), user);

    // Alpha lists the lease; it is the renter's only.
    let mine = common::api::call(alpha.api, "GET", "/api/v1/leases", Some(&token), None).await;
    assert_eq!(mine.json["leases"][0]["id"], lease);
    assert_eq!(mine.json["leases"][0]["state"], "active");
    assert_eq!(mine.json["leases"][0]["hourly_rate_cents"], 25);
    let mut other = sign_up(alpha.api, "other@example.org").await;
    let other_token = common::api::create_token(&mut other, "cli").await;
    let stop_path = format!("/api/v1/leases/{lease}/stop");
    let r = common::api::call(alpha.api, "POST", &stop_path, Some(&other_token), None).await;
    assert_eq!(r.status, 404, "another renter's lease is not theirs");

    wait_charged(&beta, &lease).await;

    // Stopped from alpha while beta is down: ended on alpha at once, and
    // on beta (the sandbox wiped) once the queued stop gets through.
    beta.stop().await;
    let r = common::api::call(alpha.api, "POST", &stop_path, Some(&token), None).await;
    assert_eq!(r.status, 200, "{}", r.raw.body);
    assert_eq!(r.json["state"], "ended");
    wait_for("a failed delivery of the stop", DEADLINE, || async {
        (count(
            &alpha,
            "SELECT COUNT(*) FROM peer_outbox WHERE delivered_at IS NULL AND attempts > 0",
        ) == 1)
            .then_some(())
    })
    .await;
    beta.restart().await;
    sandbox::wait_show(&beta, name, "the lease ended on beta", |v| {
        v["rental"].is_null()
    })
    .await;
    assert_eq!(
        count(&beta, "SELECT COUNT(*) FROM leases WHERE state = 'ended'"),
        1
    );
    // Beta acts on the stop before alpha records beta's answer.
    wait_for("alpha to record the stop delivered", DEADLINE, || async {
        (count(
            &alpha,
            "SELECT COUNT(*) FROM peer_outbox WHERE delivered_at IS NULL",
        ) == 0)
            .then_some(())
    })
    .await;
    let out = sandbox::renter_ssh(
        &beta,
        name,
        &user,
        RenterLogin::Password(&password),
        "cat ~/note",
    );
    assert!(!out.status.success(), "the old login no longer works");
    let r = common::api::call(alpha.api, "POST", &stop_path, Some(&token), None).await;
    assert_eq!(r.status, 404, "an ended lease cannot be stopped again");
    let first = assert_settled(&alpha, &beta, 1, credited).await;
    // The renter sees what the lease cost, and that nothing more will be
    // charged for it.
    let mine = common::api::call(alpha.api, "GET", "/api/v1/leases", Some(&token), None).await;
    assert_eq!(
        mine.json["leases"][0]["charged_cents"], first,
        "{}",
        mine.json
    );
    assert_eq!(mine.json["leases"][0]["settled"], true);
    assert_eq!(mine.json["leases"][0]["period_secs"], 5);
    let page = renter.get("/leases").await;
    assert_eq!(
        common::web::testid(&page.body, &format!("charged-{lease}")),
        format!("{}.{:02} USD", first / 100, first % 100)
    );
    // Hour by hour, as beta reported it; no one else's.
    let usage_path = format!("/api/v1/leases/{lease}/usage");
    let usage = common::api::call(alpha.api, "GET", &usage_path, Some(&token), None).await;
    assert_eq!(usage.status, 200, "{}", usage.raw.body);
    let charges = usage.json["charges"].as_array().unwrap();
    assert_eq!(charges[0]["kind"], "end", "newest first: {}", usage.json);
    let summed: i64 = charges
        .iter()
        .map(|c| c["amount_cents"].as_i64().unwrap())
        .sum();
    assert_eq!(summed, first);
    assert!(
        charges
            .iter()
            .any(|c| c["kind"] == "usage" && c["reachable_secs"].as_i64() > Some(0))
    );
    let other_usage =
        common::api::call(alpha.api, "GET", &usage_path, Some(&other_token), None).await;
    assert_eq!(other_usage.status, 404);
    let page = renter.get(&format!("/leases/{lease}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        common::web::testid(&page.body, "lease-total"),
        format!("{}.{:02} USD", first / 100, first % 100)
    );
    // Beta's operator credits a cent of it: a correction record, which
    // alpha books at once (it was told), passing the credit to the renter.
    let out = ok(beta.run(&[
        "peer",
        "correct",
        "alpha",
        &lease,
        "--amount",
        "-0.01",
        "--reason",
        "a slow start",
    ]));
    assert!(out.contains("is credited 0.01 USD"), "{out}");
    let first = first - 1;
    wait_for("alpha books the correction", DEADLINE, || async {
        (balance(&alpha, "peer", &peer_id(&alpha, "beta")) == first).then_some(())
    })
    .await;
    // Alpha's administrator sees the same on the peer's statement page.
    let mut ops = common::web::sign_in_admin(&alpha, "ops@example.org").await;
    let page = ops.get("/admin/peers/beta").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        common::web::testid(&page.body, &format!("amount-{lease}")),
        format!("{}.{:02}", first / 100, first % 100)
    );
    assert!(
        page.body.contains(&format!(
            "This broker owes beta {}.{:02} USD.",
            first / 100,
            first % 100
        )),
        "{}",
        page.body
    );
    assert_eq!(
        renter.get("/admin/peers/beta").await.status,
        404,
        "administrators only"
    );
    let usage = common::api::call(alpha.api, "GET", &usage_path, Some(&token), None).await;
    assert_eq!(usage.json["charges"][0]["kind"], "correction");
    assert_eq!(usage.json["charges"][0]["amount_cents"], -1);
    assert_eq!(usage.json["charges"][0]["note"], "a slow start");
    assert_eq!(usage.json["charged_cents"], first);

    // Leased again, and this time ended by the owner on beta: alpha learns
    // of it on its next look.
    sandbox::wait_verified_idle(&beta, name).await;
    wait_offer(&alpha, "beta", name, true).await;
    // This time on the web: the Rent button of the peer device.
    let market = renter.get("/").await;
    let row = market
        .body
        .split("data-testid=\"peer-device-beta-lease-pi\"")
        .nth(1)
        .expect("the peer device's row");
    assert!(
        row.contains("aria-label=\"Rent lease-pi on beta\""),
        "{row}"
    );
    let csrf = common::web::csrf_of(&market.body);
    let page = renter
        .post(
            "/leases",
            &[
                ("csrf", &csrf),
                ("broker", "beta"),
                ("name", name),
                ("rate", "25"),
            ],
        )
        .await;
    assert_eq!(page.status, 201, "{}", page.body);
    let user2 = common::web::testid(&page.body, "username");
    let password2 = common::web::testid(&page.body, "password");
    let mine = common::api::call(alpha.api, "GET", "/api/v1/leases", Some(&token), None).await;
    let second = mine.json["leases"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(mine.json["leases"][0]["state"], "active");
    let out = sandbox::renter_ssh(
        &beta,
        name,
        &user2,
        RenterLogin::Password(&password2),
        "test ! -e ~/note && echo fresh",
    );
    assert_eq!(assert_ran(&out, "second login").trim(), "fresh");
    wait_charged(&beta, &second).await;
    sandbox::rental_stop(&beta, name).expect("rental stop on beta");
    let ended = wait_for("alpha learns the lease ended", DEADLINE, || {
        let token = token.clone();
        let second = second.clone();
        async move {
            let mine =
                common::api::call(alpha.api, "GET", "/api/v1/leases", Some(&token), None).await;
            mine.json["leases"]
                .as_array()?
                .iter()
                .find(|l| l["id"] == second.as_str() && l["state"] == "ended")
                .cloned()
        }
    })
    .await;
    assert!(ended["ended_at"].is_i64(), "{ended}");
    let out = sandbox::renter_ssh(
        &beta,
        name,
        &user2,
        RenterLogin::Password(&password2),
        "true",
    );
    // Between rentals the device's port admits no one.
    sandbox::assert_port_refuses(&out);
    let both = assert_settled(&alpha, &beta, 2, credited).await;
    assert!(both > first, "the second lease cost something too");
}

/// Signs a POST of `body` to `path` on `to` with `ring`.
fn signed_post(ring: &KeyRing, to: &TestBroker, path: &str, body: &[u8], key: &str) -> HeaderMap {
    let target_uri = format!("http://{}{path}", to.api);
    let authority = to.api.to_string();
    let target = RequestTarget {
        method: "POST",
        target_uri: &target_uri,
        authority: &authority,
    };
    signature::sign_request(ring, target, body, Some(key), UnixTime::now())
        .into_iter()
        .collect()
}

async fn send(
    to: &TestBroker,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> common::api::Answer {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        to.api,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    let mut request = format!("{head}\r\n").into_bytes();
    request.extend_from_slice(body);
    common::api::send_raw(to.api, &request).await
}

#[tokio::test]
async fn forged_replayed_and_outdated_lease_requests_are_refused() {
    let alpha = broker("alpha").await;
    let beta = broker("beta").await;
    peer(&alpha, &beta, "USD");
    let mut owner = offline_offer(&alpha, &beta).await;

    // Through alpha: a device that is offline cannot be leased, and alpha
    // does not ask beta.
    let mut renter = sign_up(alpha.api, "renter@example.org").await;
    let token = common::api::create_token(&mut renter, "cli").await;
    let r = lease_b1(&alpha, &token).await;
    assert_eq!(r.status, 409, "{}", r.raw.body);
    assert_eq!(r.json["code"], "device_unavailable");
    for (broker, device) in [("gamma", "b1"), ("beta", "b2")] {
        let r = common::api::call(
            alpha.api,
            "POST",
            "/api/v1/leases",
            Some(&token),
            Some(&json!({"broker": broker, "device": device, "hourly_rate_cents": 25})),
        )
        .await;
        assert_eq!(r.status, 404, "{}", r.raw.body);
    }

    // Straight to beta, signed with alpha's own key.
    let alpha_keys = KeyRing::load_or_create(&alpha.data_dir(), UnixTime::now()).unwrap();
    let path = "/federation/v1/leases";
    let request = |rate: i64| {
        serde_json::to_vec(&json!({
            "lease": "lse-00000000000000aa",
            "device": "b1",
            "hourly_rate": rate,
            "currency": "USD",
            "ssh_key": null
        }))
        .unwrap()
    };
    let refused = |a: &common::api::Answer, status: u16, needle: &str| {
        assert_eq!(a.status, status, "{}", a.raw.body);
        let message = a.json["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message}");
    };

    // The listing changed since alpha showed it: the owner raised the price.
    assert_eq!(list_at(&mut owner, "b1", true, "0.50").await.status, 200);
    let body = request(25);
    let headers = signed_post(&alpha_keys, &beta, path, &body, "k1");
    let answer = send(&beta, path, &headers, &body).await;
    refused(&answer, 409, "rate of b1 changed");
    assert_eq!(answer.json["code"], "listing_changed");
    // Replayed: the same signed request again.
    refused(
        &send(&beta, path, &headers, &body).await,
        401,
        "seen before",
    );
    // Tampered: signed for one rate, sent with another.
    let headers = signed_post(&alpha_keys, &beta, path, &request(25), "k2");
    refused(&send(&beta, path, &headers, &request(50)).await, 401, "");
    // Forged: a key beta never saw.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = KeyRing::load_or_create(stranger_dir.path(), UnixTime::now()).unwrap();
    let body = request(50);
    let headers = signed_post(&stranger, &beta, path, &body, "k3");
    refused(
        &send(&beta, path, &headers, &body).await,
        401,
        "no valid key",
    );
    // Unsigned.
    refused(
        &send(&beta, path, &HeaderMap::new(), &body).await,
        401,
        "missing",
    );
    // At the current rate, but the device is offline.
    let headers = signed_post(&alpha_keys, &beta, path, &body, "k4");
    let answer = send(&beta, path, &headers, &body).await;
    refused(&answer, 409, "cannot be rented now");
    // Malformed.
    let bad = br#"{"lease":"x","device":"b1"}"#;
    let headers = signed_post(&alpha_keys, &beta, path, bad, "k5");
    refused(&send(&beta, path, &headers, bad).await, 400, "");

    // Nothing was leased, rented or charged on either side.
    for b in [&alpha, &beta] {
        assert_eq!(count(b, "SELECT COUNT(*) FROM leases"), 0);
        assert_eq!(count(b, "SELECT COUNT(*) FROM rentals"), 0);
        assert_eq!(count(b, "SELECT COUNT(*) FROM ledger_transfers"), 0);
    }
    // Someone else's lease id is not found.
    let headers = signed_post(
        &alpha_keys,
        &beta,
        "/federation/v1/leases/lse-1/stop",
        b"{}",
        "k6",
    );
    refused(
        &send(&beta, "/federation/v1/leases/lse-1/stop", &headers, b"{}").await,
        404,
        "no such lease",
    );
}

#[tokio::test]
async fn a_broker_that_does_not_bill_leases_only_free_peer_devices() {
    // Alpha does not bill its renters, so it could not charge them what it
    // would owe beta.
    let alpha = broker("alpha").await;
    let beta = broker_with("beta", BILLING).await;
    peer(&alpha, &beta, "USD");
    offline_offer(&alpha, &beta).await;

    // Alpha's renter is told why, and beta is not asked.
    let mut renter = sign_up(alpha.api, "renter@example.org").await;
    let token = common::api::create_token(&mut renter, "cli").await;
    let r = lease_b1(&alpha, &token).await;
    assert_eq!(r.status, 409, "{}", r.raw.body);
    let message = r.json["message"].as_str().unwrap_or_default();
    assert!(message.contains("does not bill its renters"), "{message}");
    for b in [&alpha, &beta] {
        assert_eq!(count(b, "SELECT COUNT(*) FROM leases"), 0);
        assert_eq!(count(b, "SELECT COUNT(*) FROM rentals"), 0);
    }
}

//! Two peered brokers, each a real process in its own container on a private
//! Docker network, and one of them cut off from the other by disconnecting
//! it from that network: the other keeps serving its own marketplace and
//! hides (does not delete) the lost peer's devices; the lost broker keeps
//! serving its own users through its edge; when the network heals, listings
//! catch up, including a device taken off the market meanwhile.
//!
//! A priced lease across the partition: a renter on alpha rents a device
//! beta manages (a real agent and Docker sandbox on this machine, reached
//! through beta's edge) and keeps using it while beta is cut off; beta keeps
//! metering it, alpha refuses new leases of beta's devices; the renter's
//! stop on alpha waits in its outbox and, once the network heals, ends the
//! rental on beta, which charges nothing after the stop. Alpha then has
//! every usage record beta issued, and both ledgers agree to the cent.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::{Cluster, ContainerBroker};
use common::sandbox::{self, Cleanup, RenterLogin, assert_ran, register_and_start};
use common::web::{PASSWORD, WebClient, csrf_of, list_at, sign_in, sign_up};
use common::{DEADLINE, wait_for};
use serde_json::{Value, json};

/// Long enough for a pull to an unreachable peer to time out twice.
const PARTITION_DEADLINE: Duration = Duration::from_secs(90);

fn federation(name: &str) -> String {
    format!(
        "[federation]\nname = \"{name}\"\npull_interval_secs = 1\nhide_after_missed_pulls = 2\n"
    )
}

/// `inviter` invites (settling in USD, up to 50.00), `invitee` accepts,
/// over the peering network.
fn peer(inviter: &ContainerBroker, invitee: &ContainerBroker) {
    let invite = inviter.run_ok(&[
        "peer",
        "invite",
        "--credit-limit",
        "50.00",
        "--currency",
        "USD",
    ]);
    let accepted = invitee.run_ok(&["peer", "accept", invite.trim()]);
    assert!(accepted.contains("is now a peer"), "{accepted}");
}

/// An owner on the broker at `api` who lists devices called `names`.
async fn owner_listing(api: SocketAddr, email: &str, names: &[&str]) {
    let mut owner = sign_up(api, email).await;
    for name in names {
        let page = owner.get("/devices").await;
        let r = owner
            .post(
                "/devices",
                &[("csrf", &csrf_of(&page.body)), ("name", name)],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = list_at(&mut owner, name, true, "0.40").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

async fn market(api: SocketAddr) -> Value {
    common::api::call(api, "GET", "/api/v1/market", None, None)
        .await
        .json
}

fn names(list: &Value, broker: bool) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|d| match broker {
            true => format!(
                "{}/{}",
                d["broker"].as_str().unwrap(),
                d["name"].as_str().unwrap()
            ),
            false => d["name"].as_str().unwrap().to_string(),
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn wait_for_peer_devices(api: SocketAddr, want: BTreeSet<String>) {
    wait_for(
        &format!("the peer devices on {api} to be {want:?}"),
        PARTITION_DEADLINE,
        || {
            let want = want.clone();
            async move { (names(&market(api).await["peer_devices"], true) == want).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn a_peer_cut_off_is_hidden_not_deleted_and_catches_up_when_the_network_heals() {
    let mut cluster = Cluster::new();
    let alpha = cluster.broker("alpha", &federation("alpha")).await;
    let beta = cluster.broker("beta", &federation("beta")).await;
    peer(&alpha, &beta);
    owner_listing(alpha.api(), "ann@example.org", &["home"]).await;
    owner_listing(beta.api(), "bob@example.org", &["far", "gone"]).await;
    wait_for_peer_devices(alpha.api(), set(&["beta/far", "beta/gone"])).await;
    wait_for_peer_devices(beta.api(), set(&["alpha/home"])).await;

    beta.cut_off();
    // Alpha hides beta's devices once its pulls fail, and keeps serving its
    // own market.
    wait_for_peer_devices(alpha.api(), set(&[])).await;
    let own = market(alpha.api()).await;
    assert_eq!(names(&own["devices"], false), set(&["home"]), "{own}");
    let alpha_peers: Value =
        serde_json::from_str(&alpha.run_ok(&["peer", "list", "--json"])).unwrap();
    assert_eq!(
        alpha_peers[0]["name"], "beta",
        "still a peer: {alpha_peers}"
    );
    assert_eq!(alpha_peers[0]["state"], "active", "{alpha_peers}");

    // Beta's own users still reach it through its edge; its owner takes a
    // device off the market while its peer cannot see.
    let beta_market = market(beta.edge_api()).await;
    assert_eq!(names(&beta_market["devices"], false), set(&["far", "gone"]));
    let (mut bob, r) = sign_in(beta.edge_api(), "bob@example.org", PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = list_at(&mut bob, "gone", false, "0.40").await;
    assert_eq!(r.status, 200, "{}", r.body);

    beta.rejoin();
    // The hidden device comes back, and the one unlisted meanwhile is gone.
    wait_for_peer_devices(alpha.api(), set(&["beta/far"])).await;
    wait_for_peer_devices(beta.api(), set(&["alpha/home"])).await;
    let page = WebClient::new(alpha.api()).get("/").await;
    assert!(
        page.body.contains("data-testid=\"peer-device-beta-far\""),
        "{}",
        page.body
    );
}

/// [`federation`], looking at leases every second, and billing in periods
/// of 5 s.
fn billed(name: &str) -> String {
    format!(
        "{}lease_poll_secs = 1\n[billing]\nenabled = true\nperiod_secs = 5\n",
        federation(name)
    )
}

fn db(b: &ContainerBroker) -> rusqlite::Connection {
    rusqlite::Connection::open(b.data_file("broker.sqlite")).unwrap()
}

fn count(b: &ContainerBroker, sql: &str) -> i64 {
    db(b).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The id of the row of `table` whose `column` is `value`.
fn id_of(b: &ContainerBroker, table: &str, column: &str, value: &str) -> String {
    db(b)
        .query_row(
            &format!("SELECT id FROM {table} WHERE {column} = ?1"),
            [value],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        .to_string()
}

/// The balance of ledger account `kind`/`holder` in USD.
fn balance(b: &ContainerBroker, kind: &str, holder: &str) -> i64 {
    db(b)
        .query_row(
            "SELECT COALESCE(SUM(balance), 0) FROM ledger_accounts
             WHERE kind = ?1 AND holder = ?2 AND currency = 'USD'",
            [kind, holder],
            |r| r.get(0),
        )
        .unwrap()
}

/// The last record of a usage chain (`issued` or `received`): its number
/// and hash.
fn chain_head(b: &ContainerBroker, direction: &str) -> (i64, String) {
    db(b)
        .query_row(
            "SELECT COALESCE(MAX(seq), 0), COALESCE((SELECT hash FROM lease_usage
               WHERE direction = ?1 ORDER BY seq DESC LIMIT 1), '')
             FROM lease_usage WHERE direction = ?1",
            [direction],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// The usage records beta issued for periods of the lease that cost
/// something.
fn paid_periods(beta: &ContainerBroker) -> i64 {
    count(
        beta,
        "SELECT COUNT(*) FROM lease_usage WHERE direction = 'issued' AND kind = 'usage' AND amount > 0",
    )
}

/// The bodies of the usage records beta issued, as signed.
fn usage_bodies(beta: &ContainerBroker) -> Vec<Value> {
    let db = db(beta);
    let mut q = db
        .prepare("SELECT body FROM lease_usage WHERE direction = 'issued' AND kind = 'usage'")
        .unwrap();
    q.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect()
}

/// Waits until `b`'s marketplace shows `device` of peer `from` online.
async fn wait_available(b: &ContainerBroker, from: &str, device: &str) {
    wait_for(
        "the peer device online on the marketplace",
        PARTITION_DEADLINE,
        || async move {
            market(b.api()).await["peer_devices"]
                .as_array()?
                .iter()
                .any(|d| d["broker"] == from && d["name"] == device && d["available"] == true)
                .then_some(())
        },
    )
    .await;
}

fn statement(b: &ContainerBroker, other: &str) -> Value {
    serde_json::from_str(&b.run_ok(&["peer", "statement", other, "--json"])).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_outlives_a_partition_and_both_ledgers_agree_once_it_heals() {
    let name = "part-pi";
    let _cleanup = Cleanup::new(name);
    let mut cluster = Cluster::new();
    let alpha = cluster.broker("alpha", &billed("alpha")).await;
    let beta = cluster.broker("beta", &billed("beta")).await;
    peer(&alpha, &beta);
    owner_listing(alpha.api(), "ann@example.org", &["home"]).await;
    let mut owner = sign_up(beta.edge_api(), "owner@example.org").await;
    let (_device, _agent) = register_and_start(&beta, &mut owner, name).await;
    assert_eq!(list_at(&mut owner, name, true, "0.25").await.status, 200);
    wait_available(&alpha, "beta", name).await;

    let mut renter = sign_up(alpha.api(), "renter@example.org").await;
    let credited = 10_000;
    alpha.run_ok(&[
        "admin",
        "credit",
        "renter@example.org",
        "100.00",
        "--reference",
        "bank-1",
    ]);
    let token = common::api::create_token(&mut renter, "cli").await;
    let api = alpha.api();
    let rent = || {
        let token = token.clone();
        async move {
            common::api::call(
                api,
                "POST",
                "/api/v1/leases",
                Some(&token),
                Some(&json!({"broker": "beta", "device": name, "hourly_rate_cents": 25})),
            )
            .await
        }
    };
    let r = rent().await;
    assert_eq!(r.status, 201, "{}", r.raw.body);
    let lease = r.json["lease"].as_str().unwrap().to_string();
    let user = r.json["username"].as_str().unwrap().to_string();
    let password = r.json["password"].as_str().unwrap().to_string();
    assert_eq!(
        r.json["ssh_port"].as_u64().unwrap() as u16,
        sandbox::SandboxBroker::device_addr(&beta, name, "ssh").port(),
        "the login is on beta's edge"
    );
    let login = |command: &str| {
        sandbox::renter_ssh(
            &beta,
            name,
            &user,
            RenterLogin::Password(&password),
            command,
        )
    };
    let out = login("id -un; echo kept > ~/note");
    assert_eq!(assert_ran(&out, "login before the partition").trim(), user);

    wait_for(
        "beta meters a paid period of the lease",
        DEADLINE,
        || async { (paid_periods(&beta) > 0).then_some(()) },
    )
    .await;

    beta.cut_off();
    let metered = paid_periods(&beta);
    // Alpha hides beta's devices, will not lease them, and keeps serving
    // its own market.
    wait_for_peer_devices(alpha.api(), set(&[])).await;
    let r = rent().await;
    assert_eq!(r.status, 404, "{}", r.raw.body);
    let message = r.json["message"].as_str().unwrap_or_default();
    assert!(message.contains("lists no device part-pi"), "{message}");
    let own = market(alpha.api()).await;
    assert_eq!(names(&own["devices"], false), set(&["home"]), "{own}");
    // The rental keeps working through beta's edge, and beta keeps metering
    // it while alpha hears nothing of it.
    let out = login("cat ~/note");
    assert_eq!(assert_ran(&out, "login while cut off").trim(), "kept");
    wait_for(
        "beta meters the lease while cut off",
        PARTITION_DEADLINE,
        || async { (paid_periods(&beta) > metered).then_some(()) },
    )
    .await;
    let (issued, _) = chain_head(&beta, "issued");
    let (received, _) = chain_head(&alpha, "received");
    assert!(
        received < issued,
        "alpha has {received} of beta's {issued} records"
    );

    // Alpha gives up calling beta for a while once its pulls of beta's
    // records failed several times in a row.
    wait_for(
        "alpha to give up on beta for now",
        PARTITION_DEADLINE,
        || async {
            (alpha
                .logs()
                .matches("pulling usage records failed peer=beta")
                .count()
                >= 3)
                .then_some(())
        },
    )
    .await;

    // Stopped on alpha while cut off: ended there at once, and the stop
    // waits in the outbox, not even tried.
    let stop_path = format!("/api/v1/leases/{lease}/stop");
    let r = common::api::call(alpha.api(), "POST", &stop_path, Some(&token), None).await;
    assert_eq!(r.status, 200, "{}", r.raw.body);
    assert_eq!(r.json["state"], "ended");
    let mine = common::api::call(alpha.api(), "GET", "/api/v1/leases", Some(&token), None).await;
    let stopped_at = mine.json["leases"][0]["ended_at"]
        .as_i64()
        .expect("ended_at");
    assert_eq!(
        count(
            &alpha,
            "SELECT COUNT(*) FROM peer_outbox WHERE delivered_at IS NULL AND attempts = 0"
        ),
        1
    );

    beta.rejoin();
    // The stop gets through as soon as alpha hears from beta again: beta
    // ends the rental and wipes the sandbox.
    sandbox::wait_show(&beta, name, "the lease ended on beta", |v| {
        v["rental"].is_null()
    })
    .await;
    assert_eq!(
        count(&beta, "SELECT COUNT(*) FROM leases WHERE state = 'ended'"),
        1
    );
    let out = login("cat ~/note");
    assert!(!out.status.success(), "the login no longer works");
    // Alpha gets every record, the end one last.
    wait_for(
        "alpha has every usage record",
        PARTITION_DEADLINE,
        || async {
            (count(
                &alpha,
                "SELECT COUNT(*) FROM leases WHERE role = 'lessee' AND usage_closed = 1",
            ) == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(chain_head(&alpha, "received"), chain_head(&beta, "issued"));
    // Beta charged nothing for time after the stop, give or take the
    // moments the stop took to arrive once the network healed.
    for body in usage_bodies(&beta) {
        let from = body["from"].as_i64().unwrap();
        assert!(
            from < stopped_at + 5,
            "charged for a period after the stop at {stopped_at}: {body}"
        );
    }

    // Both ledgers agree to the cent.
    let owed = balance(&alpha, "peer", &id_of(&alpha, "peers", "name", "beta"));
    assert!(owed > 0, "the lease cost something");
    let renter_id = id_of(&alpha, "users", "email", "renter@example.org");
    assert_eq!(balance(&alpha, "wallet", &renter_id), credited - owed);
    assert_eq!(
        balance(&alpha, "held", &renter_id),
        0,
        "nothing is left held"
    );
    assert_eq!(
        balance(&beta, "peer", &id_of(&beta, "peers", "name", "alpha")),
        -owed
    );
    let owner_id = id_of(&beta, "users", "email", "owner@example.org");
    assert_eq!(
        balance(&beta, "payable", &owner_id) + balance(&beta, "revenue", ""),
        owed
    );
    for (b, other) in [(&alpha, "beta"), (&beta, "alpha")] {
        let s = statement(b, other);
        assert_eq!(s["agrees"], true, "{s}");
        assert_eq!(s["pending"], json!([]), "{s}");
    }
}

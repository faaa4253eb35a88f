//! Brokers federating, as real `rpibroker` processes on loopback, each with
//! its own data directory and ports: operators peer them by invite and
//! accept on the command line; each marketplace then shows the others' own
//! devices marked with the broker that manages them; a device taken off the
//! market disappears from the peers (a tombstone), even from a peer that
//! was away until the tombstone was pruned; the marketplace's filters and
//! sort order apply to peers' devices as to its own; requests that are
//! forged, tampered with, replayed, expired or from a removed peer are
//! refused; three brokers in a triangle show each other's devices and none
//! re-exports another's.

mod common;

use common::peering::{ok, peer};
use std::collections::BTreeSet;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use common::web::{WebClient, list_at, sign_up};
use common::{DEADLINE, TestBroker, wait_for};
use rpibroker::federation::identity::KeyRing;
use rpibroker::federation::signature::{self, RequestTarget};
use rpibroker::time::UnixTime;
use serde_json::{Value, json};

/// A broker called `name` that pulls its peers every second and hides a
/// peer's devices after two missed pulls.
async fn broker(name: &str) -> TestBroker {
    broker_with(name, "").await
}

/// [`broker`], with `extra` lines in its `[federation]` table.
async fn broker_with(name: &str, extra: &str) -> TestBroker {
    TestBroker::start_with(
        1,
        &format!(
            "[federation]\nname = \"{name}\"\npull_interval_secs = 1\nhide_after_missed_pulls = 2\n{extra}"
        ),
    )
    .await
}

fn peers(b: &TestBroker) -> Vec<Value> {
    serde_json::from_str(&ok(b.run(&["peer", "list", "--json"]))).unwrap()
}

/// An owner on `b` who lists devices called `names`.
async fn owner_listing(b: &TestBroker, email: &str, names: &[&str]) -> WebClient {
    let mut owner = sign_up(b.api, email).await;
    for name in names {
        let page = owner.get("/devices").await;
        let r = owner
            .post(
                "/devices",
                &[("csrf", &common::web::csrf_of(&page.body)), ("name", name)],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = list_at(&mut owner, name, true, "0.25").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    owner
}

async fn market(b: &TestBroker) -> Value {
    common::api::call(b.api, "GET", "/api/v1/market", None, None)
        .await
        .json
}

/// The (broker, device) pairs `b`'s marketplace shows from peers.
async fn peer_devices(b: &TestBroker) -> BTreeSet<(String, String)> {
    market(b).await["peer_devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["broker"].as_str().unwrap().to_string(),
                d["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(b, d)| (b.to_string(), d.to_string()))
        .collect()
}

async fn wait_for_peer_devices(b: &TestBroker, want: BTreeSet<(String, String)>) {
    wait_for("the peer devices on the marketplace", DEADLINE, || {
        let want = want.clone();
        async move { (peer_devices(b).await == want).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn peers_by_invite_see_each_others_devices_and_removals() {
    let alpha = broker("alpha").await;
    let beta = broker("beta").await;
    let mut alice = owner_listing(&alpha, "alice@example.org", &["a1", "a2"]).await;
    owner_listing(&beta, "bob@example.org", &["b1"]).await;

    let doc = common::api::call(
        alpha.api,
        "GET",
        "/.well-known/rpibroker-broker",
        None,
        None,
    )
    .await
    .json;
    assert_eq!(doc["name"], "alpha");
    assert_eq!(doc["url"], format!("http://{}", alpha.api));
    assert_eq!(doc["keys"][0]["alg"], "ed25519");
    assert!(doc["keys"][0]["valid_until"].is_null());

    peer(&alpha, &beta, "EUR");
    for (b, other) in [(&alpha, "beta"), (&beta, "alpha")] {
        let list = peers(b);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["name"], other);
        assert_eq!(list[0]["state"], "active");
        assert_eq!(
            (
                list[0]["credit_limit"].as_i64(),
                list[0]["currency"].as_str()
            ),
            (Some(5000), Some("EUR"))
        );
    }
    // Peering again renews it; a retry of the same acceptance gets the same
    // answer; another broker cannot use the invite after that.
    let invite = ok(alpha.run(&["peer", "invite"]));
    ok(beta.run(&["peer", "remove", "alpha"]));
    ok(beta.run(&["peer", "accept", invite.trim()]));
    ok(beta.run(&["peer", "accept", invite.trim()]));
    let stranger = tempfile::tempdir().unwrap();
    std::fs::write(
        stranger.path().join("rpibroker.toml"),
        "[federation]\nname = \"gamma\"\n",
    )
    .unwrap();
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_rpibroker"))
        .env("RPIBROKER_DATA_DIR", stranger.path())
        .env_remove("RPIBROKER_CONFIG")
        .args(["peer", "accept", invite.trim()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already used"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(peers(&alpha).len(), 1, "gamma did not become a peer");

    wait_for_peer_devices(&beta, set(&[("alpha", "a1"), ("alpha", "a2")])).await;
    wait_for_peer_devices(&alpha, set(&[("beta", "b1")])).await;
    let page = WebClient::new(beta.api).get("/").await;
    assert!(
        page.body.contains("data-testid=\"peer-device-alpha-a1\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("On peer brokers"));
    let offer = &market(&beta).await["peer_devices"][0];
    assert_eq!(offer["broker_url"], format!("http://{}", alpha.api));
    assert_eq!(offer["hourly_rate_cents"], 25);
    assert_eq!(offer["currency"], "USD");

    // Taken off alpha's market, a2 leaves beta's.
    let r = list_at(&mut alice, "a2", false, "0.25").await;
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for_peer_devices(&beta, set(&[("alpha", "a1")])).await;
}

#[tokio::test]
async fn a_peer_behind_pruned_removals_gets_the_full_listing_again() {
    // Alpha keeps the tombstones of its removed listings for a second.
    let alpha = broker_with(
        "alpha",
        "tombstone_retention_secs = 1\ntombstone_prune_secs = 1\n",
    )
    .await;
    let mut beta = broker("beta").await;
    let gamma = broker("gamma").await;
    let mut alice = owner_listing(&alpha, "alice@example.org", &["a1", "a2", "a3"]).await;
    peer(&alpha, &beta, "EUR");
    peer(&alpha, &gamma, "EUR");
    let all = set(&[("alpha", "a1"), ("alpha", "a2"), ("alpha", "a3")]);
    wait_for_peer_devices(&beta, all.clone()).await;
    wait_for_peer_devices(&gamma, all).await;

    // Beta is down while a2 leaves alpha's market, gamma learns of it, and
    // alpha forgets the removal.
    beta.stop().await;
    let r = list_at(&mut alice, "a2", false, "0.25").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rest = set(&[("alpha", "a1"), ("alpha", "a3")]);
    wait_for_peer_devices(&gamma, rest.clone()).await;
    wait_for("alpha to prune the removal", DEADLINE, || {
        let log = alpha.log();
        async move {
            log.contains("pruned the tombstones of devices no longer listed")
                .then_some(())
        }
    })
    .await;

    // Back, beta pulls from its old cursor and is sent everything again.
    beta.restart().await;
    wait_for_peer_devices(&beta, rest.clone()).await;
    assert!(
        beta.log().contains("pulling its full listing"),
        "{}",
        beta.log()
    );
    assert_eq!(peer_devices(&gamma).await, rest);
}

/// The names of `key`'s devices in a marketplace answer, in its order.
fn names(market: &Value, key: &str) -> Vec<String> {
    market[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn marketplace_filters_and_sorting_apply_to_peer_devices() {
    let alpha = broker("alpha").await;
    let beta = broker("beta").await;
    let mut alice = owner_listing(&alpha, "alice@example.org", &["cheap", "dear"]).await;
    let r = list_at(&mut alice, "dear", true, "2.00").await;
    assert_eq!(r.status, 200, "{}", r.body);
    owner_listing(&beta, "bob@example.org", &["b1"]).await;
    peer(&alpha, &beta, "EUR");
    wait_for_peer_devices(&beta, set(&[("alpha", "cheap"), ("alpha", "dear")])).await;

    let cases: [(&str, &[&str], &[&str]); 8] = [
        ("", &["b1"], &["cheap", "dear"]),
        ("max_price=1", &["b1"], &["cheap"]),
        ("min_price=1", &[], &["dear"]),
        ("sort=price&order=desc", &["b1"], &["dear", "cheap"]),
        ("broker=alpha", &[], &["cheap", "dear"]),
        ("broker=beta", &["b1"], &[]),
        ("broker=gamma", &[], &[]),
        // No figures were reported for any of them.
        ("min_memory=1", &[], &[]),
    ];
    for (query, own, peers) in cases {
        let answer = common::api::call(
            beta.api,
            "GET",
            &format!("/api/v1/market?{query}"),
            None,
            None,
        )
        .await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.raw.body);
        let market = answer.json;
        assert_eq!(names(&market, "devices"), own, "{query}");
        assert_eq!(names(&market, "peer_devices"), peers, "{query}");
        assert_eq!(market["peer_devices_total"], peers.len(), "{query}");
    }
    let refused =
        common::api::call(beta.api, "GET", "/api/v1/market?broker=Alpha!", None, None).await;
    assert_eq!(refused.status, 422, "{}", refused.raw.body);

    // The page filters the same way, and offers each broker to filter by.
    let page = WebClient::new(beta.api).get("/?max_price=1").await;
    assert!(
        page.body
            .contains("data-testid=\"peer-device-alpha-cheap\""),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("data-testid=\"peer-device-alpha-dear\""),
        "{}",
        page.body
    );
    let page = WebClient::new(beta.api).get("/?broker=alpha").await;
    assert!(
        page.body
            .contains("<option value=\"beta\">this broker (beta)</option>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<option value=\"alpha\" selected>alpha</option>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("data-testid=\"peer-device-alpha-dear\""),
        "{}",
        page.body
    );
}

/// Signs a GET of `path` on `to` with `ring`, at `now`.
fn signed_get(ring: &KeyRing, to: &TestBroker, path: &str, now: UnixTime) -> HeaderMap {
    let target_uri = format!("http://{}{path}", to.api);
    let authority = to.api.to_string();
    let target = RequestTarget {
        method: "GET",
        target_uri: &target_uri,
        authority: &authority,
    };
    signature::sign_request(ring, target, b"", None, now)
        .into_iter()
        .collect()
}

async fn send(to: &TestBroker, path: &str, headers: &HeaderMap) -> common::api::Answer {
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        to.api
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    common::api::send_raw(to.api, format!("{head}\r\n").as_bytes()).await
}

#[tokio::test]
async fn forged_tampered_replayed_expired_and_removed_requests_are_refused() {
    let alpha = broker("alpha").await;
    let beta = broker("beta").await;
    owner_listing(&alpha, "alice@example.org", &["a1"]).await;
    peer(&alpha, &beta, "EUR");
    // Beta's own key, read from its data directory, signs as beta would.
    let beta_keys = KeyRing::load_or_create(&beta.data_dir(), UnixTime::now()).unwrap();
    let path = "/federation/v1/listings?cursor=0";

    let headers = signed_get(&beta_keys, &alpha, path, UnixTime::now());
    let answer = send(&alpha, path, &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.raw.body);
    assert_eq!(answer.json["changes"][0]["name"], "a1");
    // The answer is signed by alpha and bound to this request.
    let alpha_doc = common::api::call(
        alpha.api,
        "GET",
        "/.well-known/rpibroker-broker",
        None,
        None,
    )
    .await
    .json;
    let alpha_key: rpibroker::federation::identity::PublicKey =
        serde_json::from_value(alpha_doc["keys"][0].clone()).unwrap();
    let answer_headers: HeaderMap = answer
        .raw
        .headers
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::try_from(k.as_str()).unwrap(),
                HeaderValue::try_from(v.as_str()).unwrap(),
            )
        })
        .collect();
    let request_signature = headers[signature::SIGNATURE]
        .to_str()
        .unwrap()
        .strip_prefix("sig1=")
        .unwrap()
        .to_string();
    signature::verify_response(
        &answer_headers,
        200,
        answer.raw.body.as_bytes(),
        &request_signature,
        UnixTime::now(),
        &|id: &str| (id == alpha_key.keyid).then(|| alpha_key.clone()),
    )
    .unwrap();

    let refused = |a: &common::api::Answer, status: u16, needle: &str| {
        assert_eq!(a.status, status, "{}", a.raw.body);
        let message = a.json["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message}");
    };
    // Replayed: the same signed request again.
    refused(&send(&alpha, path, &headers).await, 401, "seen before");
    // Tampered: signed for one cursor, sent with another.
    let headers = signed_get(&beta_keys, &alpha, path, UnixTime::now());
    refused(
        &send(&alpha, "/federation/v1/listings?cursor=5", &headers).await,
        401,
        "does not verify",
    );
    // Signed for another broker.
    let headers = signed_get(&beta_keys, &beta, path, UnixTime::now());
    refused(&send(&alpha, path, &headers).await, 401, "does not verify");
    // Expired and future-dated.
    let headers = signed_get(&beta_keys, &alpha, path, UnixTime(UnixTime::now().0 - 600));
    refused(&send(&alpha, path, &headers).await, 401, "expired");
    let headers = signed_get(&beta_keys, &alpha, path, UnixTime(UnixTime::now().0 + 600));
    refused(&send(&alpha, path, &headers).await, 401, "future");
    // Forged: a key alpha never saw.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = KeyRing::load_or_create(stranger_dir.path(), UnixTime::now()).unwrap();
    let headers = signed_get(&stranger, &alpha, path, UnixTime::now());
    refused(&send(&alpha, path, &headers).await, 401, "no valid key");
    // Unsigned.
    refused(&send(&alpha, path, &HeaderMap::new()).await, 401, "missing");
    // Malformed and oversized headers.
    let mut headers = signed_get(&beta_keys, &alpha, path, UnixTime::now());
    headers.insert(
        signature::SIGNATURE_INPUT,
        HeaderValue::from_static("sig1=(\"@method"),
    );
    refused(&send(&alpha, path, &headers).await, 401, "malformed");
    let mut headers = signed_get(&beta_keys, &alpha, path, UnixTime::now());
    headers.insert(
        signature::SIGNATURE,
        HeaderValue::try_from(format!("sig1=:{}:", "A".repeat(4000))).unwrap(),
    );
    refused(&send(&alpha, path, &headers).await, 401, "longer than");

    // The usage records and the statement are answered only to a peer, of
    // its own chains.
    let usage = "/federation/v1/usage?after=0";
    let headers = signed_get(&beta_keys, &alpha, usage, UnixTime::now());
    let answer = send(&alpha, usage, &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.raw.body);
    assert_eq!(answer.json["records"], json!([]));
    assert_eq!(answer.json["head"]["seq"], 0);
    let statement = "/federation/v1/statement";
    let headers = signed_get(&beta_keys, &alpha, statement, UnixTime::now());
    let answer = send(&alpha, statement, &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.raw.body);
    assert_eq!(answer.json["broker"], "alpha");
    assert_eq!(answer.json["balance"], 0);
    for bad in [
        "/federation/v1/usage?after=-1",
        "/federation/v1/usage?from=3",
    ] {
        let headers = signed_get(&beta_keys, &alpha, bad, UnixTime::now());
        refused(&send(&alpha, bad, &headers).await, 400, "");
    }
    let headers = signed_get(&stranger, &alpha, usage, UnixTime::now());
    refused(&send(&alpha, usage, &headers).await, 401, "no valid key");
    refused(
        &send(&alpha, usage, &HeaderMap::new()).await,
        401,
        "missing",
    );

    // Removed: alpha stops peering with beta; beta's requests are refused,
    // and beta hides alpha's devices once its pulls keep failing.
    // Alpha's administrator removes beta on the administrators' page.
    wait_for_peer_devices(&beta, set(&[("alpha", "a1")])).await;
    let mut admin = common::web::sign_in_admin(&alpha, "ops@example.org").await;
    let page = admin.get("/admin").await;
    assert!(
        page.body.contains("data-testid=\"peer-beta\""),
        "{}",
        page.body
    );
    assert_eq!(
        common::web::testid(&page.body, "peer-balance-beta"),
        "settled"
    );
    let removed = admin
        .post(
            "/admin/peers/remove",
            &[
                ("csrf", &common::web::csrf_of(&page.body)),
                ("name", "beta"),
            ],
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(
        removed.body.contains("beta is no longer a peer"),
        "{}",
        removed.body
    );
    // Someone else's session cannot (the page does not exist for them).
    let mut visitor = sign_up(alpha.api, "eve@example.org").await;
    let r = visitor.get("/admin").await;
    assert_eq!(r.status, 404);
    let headers = signed_get(&beta_keys, &alpha, path, UnixTime::now());
    refused(&send(&alpha, path, &headers).await, 403, "no longer a peer");
    let headers = signed_get(&beta_keys, &alpha, usage, UnixTime::now());
    refused(
        &send(&alpha, usage, &headers).await,
        403,
        "no longer a peer",
    );
    wait_for_peer_devices(&beta, BTreeSet::new()).await;
    let list = peers(&beta);
    assert!(list[0]["missed_pulls"].as_i64().unwrap() >= 2, "{list:?}");
    let list = peers(&alpha);
    assert_eq!(list[0]["state"], "removed");
    assert!(alpha.log().contains("a broker accepted an invite"));
}

#[tokio::test]
async fn three_brokers_in_a_triangle_show_the_other_two_and_none_re_exports() {
    let alpha = broker("alpha").await;
    let beta = broker("beta").await;
    let gamma = broker("gamma").await;
    owner_listing(&alpha, "a@example.org", &["a1"]).await;
    owner_listing(&beta, "b@example.org", &["b1"]).await;
    owner_listing(&gamma, "c@example.org", &["c1"]).await;
    peer(&alpha, &beta, "EUR");
    peer(&beta, &gamma, "EUR");
    peer(&gamma, &alpha, "EUR");
    wait_for_peer_devices(&alpha, set(&[("beta", "b1"), ("gamma", "c1")])).await;
    wait_for_peer_devices(&beta, set(&[("alpha", "a1"), ("gamma", "c1")])).await;
    wait_for_peer_devices(&gamma, set(&[("alpha", "a1"), ("beta", "b1")])).await;
    // After further pulls in every direction, still only each broker's own.
    for b in [&alpha, &beta, &gamma] {
        let before: Vec<i64> = peers(b)
            .iter()
            .map(|p| p["last_pull_ok_at"].as_i64().unwrap_or(0))
            .collect();
        wait_for("two more pulls of every peer", DEADLINE, || {
            let before = before.clone();
            async move {
                let now: Vec<i64> = peers(b)
                    .iter()
                    .map(|p| p["last_pull_ok_at"].as_i64().unwrap_or(0))
                    .collect();
                now.iter()
                    .zip(&before)
                    .all(|(n, b)| *n >= b + 2)
                    .then_some(())
            }
        })
        .await;
    }
    assert_eq!(
        peer_devices(&alpha).await,
        set(&[("beta", "b1"), ("gamma", "c1")])
    );
    assert_eq!(
        peer_devices(&beta).await,
        set(&[("alpha", "a1"), ("gamma", "c1")])
    );
    assert_eq!(
        peer_devices(&gamma).await,
        set(&[("alpha", "a1"), ("beta", "b1")])
    );
}

#[tokio::test]
async fn peers_learn_a_rotated_key_from_the_old_one() {
    let alpha = broker("alpha").await;
    let beta = broker("beta").await;
    let mut alice = owner_listing(&alpha, "alice@example.org", &["a1", "a2"]).await;
    peer(&alpha, &beta, "EUR");
    wait_for_peer_devices(&beta, set(&[("alpha", "a1"), ("alpha", "a2")])).await;

    // Alpha's answers are now signed with a key beta was never given.
    let rotated = ok(alpha.run(&["peer", "rotate-key", "--keep-old-hours", "1"]));
    assert!(rotated.contains("stays published"), "{rotated}");
    let doc = common::api::call(
        alpha.api,
        "GET",
        "/.well-known/rpibroker-broker",
        None,
        None,
    )
    .await
    .json;
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0]["valid_until"].is_i64() && keys[1]["valid_until"].is_null());
    assert_eq!(keys[1]["endorsed_by"], keys[0]["keyid"]);
    let r = list_at(&mut alice, "a2", false, "0.25").await;
    assert_eq!(r.status, 200);
    wait_for_peer_devices(&beta, set(&[("alpha", "a1")])).await;

    // Beta's requests are now signed with a key alpha was never given.
    ok(beta.run(&["peer", "rotate-key"]));
    let r = list_at(&mut alice, "a2", true, "0.25").await;
    assert_eq!(r.status, 200);
    wait_for_peer_devices(&beta, set(&[("alpha", "a1"), ("alpha", "a2")])).await;
    assert!(alpha.log().contains("learned a peer's new federation key"));
    assert!(beta.log().contains("learned a peer's new federation key"));
}

//! Two peered brokers, each a real process in its own container on a private
//! Docker network, and one of them cut off from the other by disconnecting
//! it from that network: the other keeps serving its own marketplace and
//! hides (does not delete) the lost peer's devices; the lost broker keeps
//! serving its own users through its edge; when the network heals, listings
//! catch up, including a device taken off the market meanwhile.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::{Cluster, ContainerBroker};
use common::wait_for;
use common::web::{PASSWORD, WebClient, csrf_of, list_at, sign_in, sign_up};
use serde_json::Value;

/// Long enough for a pull to an unreachable peer to time out twice.
const PARTITION_DEADLINE: Duration = Duration::from_secs(90);

fn federation(name: &str) -> String {
    format!(
        "[federation]\nname = \"{name}\"\npull_interval_secs = 1\nhide_after_missed_pulls = 2\n"
    )
}

/// `inviter` invites, `invitee` accepts, over the peering network.
fn peer(inviter: &ContainerBroker, invitee: &ContainerBroker) {
    let invite = inviter.run_ok(&["peer", "invite"]);
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

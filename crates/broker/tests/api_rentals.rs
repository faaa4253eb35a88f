//! A rental through the JSON API, with a real agent and sandbox: an owner
//! registers and lists a device with the API; two renters race to rent it
//! and exactly one wins; the winner logs in with the credentials the API
//! answered, nobody else can stop the rental, and the renter stops it.

mod common;

use common::TestBroker;
use common::api::{call, create_token};
use common::sandbox::{self, Cleanup, RenterLogin, assert_port_refuses, assert_ran, renter_ssh};
use common::web::sign_up;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn renters_rent_and_stop_through_the_api() {
    let name = "api-rent";
    let _cleanup = Cleanup::new(name);
    let broker = TestBroker::start(1).await;
    let mut owner = sign_up(broker.api, "owner@example.org").await;
    let mut ann = sign_up(broker.api, "ann@example.org").await;
    let mut bob = sign_up(broker.api, "bob@example.org").await;
    let owner_t = create_token(&mut owner, "owner").await;
    let (ann_t, bob_t) = (
        create_token(&mut ann, "ann").await,
        create_token(&mut bob, "bob").await,
    );
    let (o, a, b) = (
        Some(owner_t.as_str()),
        Some(ann_t.as_str()),
        Some(bob_t.as_str()),
    );

    let r = call(
        broker.api,
        "POST",
        "/api/v1/devices",
        o,
        Some(&json!({"name": name})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.raw.body);
    let (_device, _agent) =
        sandbox::start_configured(&broker, name, r.json["agent_config"].clone()).await;
    let listing = json!({"listed": true, "hourly_rate_cents": 30});
    let r = call(
        broker.api,
        "PUT",
        &format!("/api/v1/devices/{name}/listing"),
        o,
        Some(&listing),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw.body);
    let market = call(broker.api, "GET", "/api/v1/market", None, None).await;
    assert_eq!(
        market.json["devices"][0]["available"], true,
        "{}",
        market.raw.body
    );
    assert_eq!(market.json["devices"][0]["verified"], true);

    // Two renters at the same moment: exactly one rental.
    let body = json!({"device": name});
    let (ra, rb) = tokio::join!(
        call(broker.api, "POST", "/api/v1/rentals", a, Some(&body)),
        call(broker.api, "POST", "/api/v1/rentals", b, Some(&body)),
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{} / {}", ra.raw.body, rb.raw.body);
    let (won, lost, winner, loser) = if ra.status == 201 {
        (ra, rb, a, b)
    } else {
        (rb, ra, b, a)
    };
    assert!(lost.json.get("password").is_none());
    assert!(
        ["already_rented", "device_unavailable"].contains(&lost.json["code"].as_str().unwrap()),
        "{}",
        lost.raw.body
    );
    let started = won.json;
    let (user, password) = (
        started["username"].as_str().unwrap().to_string(),
        started["password"].as_str().unwrap().to_string(),
    );
    assert_eq!(started["device"], name);
    assert_eq!(started["ssh_port"], broker.port(name, "ssh").port());
    let out = renter_ssh(
        &broker,
        name,
        &user,
        RenterLogin::Password(&password),
        "id -un",
    );
    assert_eq!(assert_ran(&out, "renter login").trim(), user);

    // Rented twice: refused; the market says why.
    let again = call(broker.api, "POST", "/api/v1/rentals", winner, Some(&body)).await;
    assert_eq!(again.status, 409, "{}", again.raw.body);
    let market = call(broker.api, "GET", "/api/v1/market", None, None).await;
    assert_eq!(market.json["devices"][0]["unavailable_reason"], "rented");

    // The renter sees it (without the password); the loser sees nothing and
    // cannot stop it by its id.
    let mine = call(broker.api, "GET", "/api/v1/rentals", winner, None).await;
    let rental = &mine.json["rentals"][0];
    assert_eq!(rental["id"], started["rental"]);
    assert_eq!(rental["state"], "active");
    assert!(!mine.raw.body.contains(&password));
    let theirs = call(broker.api, "GET", "/api/v1/rentals", loser, None).await;
    assert_eq!(theirs.json["rentals"], json!([]));
    let stop = format!(
        "/api/v1/rentals/{}/stop",
        started["rental"].as_str().unwrap()
    );
    let r = call(broker.api, "POST", &stop, loser, None).await;
    assert_eq!(r.status, 404, "{}", r.raw.body);
    assert_eq!(sandbox::show(&broker, name)["rental"]["state"], "active");

    let r = call(broker.api, "POST", &stop, winner, None).await;
    assert_eq!(r.status, 200, "{}", r.raw.body);
    assert_eq!(r.json["wiped"], true);
    // Between rentals a listed device's port admits no one.
    assert_port_refuses(&renter_ssh(
        &broker,
        name,
        &user,
        RenterLogin::Password(&password),
        "true",
    ));
    let mine = call(broker.api, "GET", "/api/v1/rentals", winner, None).await;
    assert_eq!(mine.json["rentals"][0]["state"], "ended");
    let r = call(broker.api, "POST", &stop, winner, None).await;
    assert_eq!(r.status, 404, "an ended rental cannot be stopped again");
}

//! The administrators' JSON API over real HTTP against the broker binary:
//! to anyone but an administrator it does not exist; administrators list
//! accounts, devices and rentals, suspend and reinstate accounts (whose
//! tokens stop and start working) and devices (which go offline and come
//! back), and lift sign-in locks.

mod common;

use std::time::Duration;

use common::api::{Answer, call, create_token};
use common::web::{sign_in_admin, sign_up};
use common::{Targets, TestAgent, TestBroker, wait_for};
use serde_json::{Value, json};

fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.raw.body);
    assert_eq!(a.json["code"], code, "{}", a.raw.body);
    assert!(
        a.json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        a.raw.body
    );
}

/// Every administrators' endpoint, with a body it accepts.
fn endpoints() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/api/v1/admin/users", None),
        ("GET", "/api/v1/admin/devices", None),
        ("GET", "/api/v1/admin/rentals", None),
        (
            "PUT",
            "/api/v1/admin/users/root@example.org/suspension",
            Some(json!({"suspended": true})),
        ),
        ("POST", "/api/v1/admin/users/root@example.org/unlock", None),
        (
            "PUT",
            "/api/v1/admin/devices/api-adm-pi/suspension",
            Some(json!({"suspended": true, "reason": "spam"})),
        ),
        (
            "POST",
            "/api/v1/admin/rentals/rnt-1/end",
            Some(json!({"reason": "spam"})),
        ),
    ]
}

fn user<'a>(users: &'a Answer, email: &str) -> &'a Value {
    users.json["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .unwrap_or_else(|| panic!("{email} is listed: {}", users.raw.body))
}

#[tokio::test(flavor = "multi_thread")]
async fn only_administrators_reach_the_admin_endpoints_and_they_suspend_accounts() {
    let broker = TestBroker::start(1).await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let alice_token = create_token(&mut alice, "script").await;
    let mut root = sign_in_admin(&broker, "root@example.org").await;
    let admin = create_token(&mut root, "admin script").await;

    for (method, path, body) in endpoints() {
        let a = call(broker.api, method, path, Some(&alice_token), body.as_ref()).await;
        assert_error(&a, 404, "not_found");
        let a = call(broker.api, method, path, None, body.as_ref()).await;
        assert_error(&a, 401, "bad_api_token");
    }
    let me = call(broker.api, "GET", "/api/v1/me", Some(&admin), None).await;
    assert_eq!(me.status, 200, "a non-administrator changed nothing");

    let users = call(broker.api, "GET", "/api/v1/admin/users", Some(&admin), None).await;
    assert_eq!(users.status, 200, "{}", users.raw.body);
    assert_eq!(user(&users, "root@example.org")["is_admin"], true);
    assert_eq!(user(&users, "alice@example.org")["is_admin"], false);
    assert_eq!(
        user(&users, "alice@example.org")["suspended_at"],
        Value::Null
    );

    let suspension = "/api/v1/admin/users/alice@example.org/suspension";
    let r = call(
        broker.api,
        "PUT",
        suspension,
        Some(&admin),
        Some(&json!({"suspended": true})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw.body);
    assert_eq!(r.json["suspended"], true);
    let a = call(broker.api, "GET", "/api/v1/me", Some(&alice_token), None).await;
    assert_error(&a, 403, "account_suspended");
    let users = call(broker.api, "GET", "/api/v1/admin/users", Some(&admin), None).await;
    assert!(user(&users, "alice@example.org")["suspended_at"].is_i64());

    let r = call(
        broker.api,
        "PUT",
        suspension,
        Some(&admin),
        Some(&json!({"suspended": false})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw.body);
    assert_eq!(r.json["suspended"], false);
    let a = call(broker.api, "GET", "/api/v1/me", Some(&alice_token), None).await;
    assert_eq!(a.status, 200, "{}", a.raw.body);
    assert_eq!(a.json["email"], "alice@example.org");

    // Not oneself; not an unknown account; strict bodies.
    let r = call(
        broker.api,
        "PUT",
        "/api/v1/admin/users/root@example.org/suspension",
        Some(&admin),
        Some(&json!({"suspended": true})),
    )
    .await;
    assert_error(&r, 422, "invalid_input");
    let r = call(
        broker.api,
        "PUT",
        "/api/v1/admin/users/nobody@example.org/suspension",
        Some(&admin),
        Some(&json!({"suspended": true})),
    )
    .await;
    assert_error(&r, 404, "not_found");
    let r = call(
        broker.api,
        "PUT",
        suspension,
        Some(&admin),
        Some(&json!({"suspended": true, "why": "x"})),
    )
    .await;
    assert_error(&r, 400, "malformed_request");
    let r = call(
        broker.api,
        "PUT",
        suspension,
        Some(&admin),
        Some(&json!({"suspended": "yes"})),
    )
    .await;
    assert_error(&r, 400, "malformed_request");

    let r = call(
        broker.api,
        "POST",
        "/api/v1/admin/users/alice@example.org/unlock",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.raw.body);
    let r = call(
        broker.api,
        "POST",
        "/api/v1/admin/users/nobody@example.org/unlock",
        Some(&admin),
        None,
    )
    .await;
    assert_error(&r, 404, "not_found");

    let rentals = call(
        broker.api,
        "GET",
        "/api/v1/admin/rentals",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(rentals.status, 200, "{}", rentals.raw.body);
    assert_eq!(rentals.json["rentals"], json!([]));
    let r = call(
        broker.api,
        "POST",
        "/api/v1/admin/rentals/rnt-1/end",
        Some(&admin),
        Some(&json!({"reason": "hardware check"})),
    )
    .await;
    assert_error(&r, 404, "not_found");
    let r = call(
        broker.api,
        "POST",
        "/api/v1/admin/rentals/rnt-1/end",
        Some(&admin),
        Some(&json!({"reason": " "})),
    )
    .await;
    assert_error(&r, 422, "invalid_input");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_suspends_and_reinstates_a_device() {
    let broker = TestBroker::start(1).await;
    let mut root = sign_in_admin(&broker, "root@example.org").await;
    let admin = create_token(&mut root, "admin script").await;
    let device = broker.add_device("api-adm-pi");
    let agent = TestAgent::start(&device, &Targets::serving("api-adm-pi").await);
    agent.wait_up(1).await;

    let seen = |online: bool, suspended: bool| {
        let (broker, admin) = (&broker, &admin);
        async move {
            wait_for(
                "the device's state in the administrators' listing",
                Duration::from_secs(30),
                || async {
                    let a = call(
                        broker.api,
                        "GET",
                        "/api/v1/admin/devices",
                        Some(admin),
                        None,
                    )
                    .await;
                    assert_eq!(a.status, 200, "{}", a.raw.body);
                    let d = a.json["devices"]
                        .as_array()?
                        .iter()
                        .find(|d| d["name"] == "api-adm-pi")?
                        .clone();
                    (d["online"] == online && d["suspension"].is_object() == suspended).then_some(d)
                },
            )
            .await
        }
    };
    let d = seen(true, false).await;
    assert_eq!(d["owner_email"], Value::Null, "registered by the operator");
    assert_eq!(d["listed"], false);

    let path = "/api/v1/admin/devices/api-adm-pi/suspension";
    for body in [
        json!({"suspended": true}),
        json!({"suspended": true, "reason": ""}),
        json!({"suspended": true, "reason": "x".repeat(201)}),
    ] {
        let r = call(broker.api, "PUT", path, Some(&admin), Some(&body)).await;
        assert_error(&r, 422, "invalid_input");
    }
    let r = call(
        broker.api,
        "PUT",
        path,
        Some(&admin),
        Some(&json!({"suspended": true, "reason": "abuse report"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw.body);
    assert_eq!(r.json["device"], "api-adm-pi");
    assert_eq!(r.json["suspension"]["reason"], "abuse report");
    let d = seen(false, true).await;
    assert_eq!(d["suspension"]["reason"], "abuse report");
    agent.wait_for_log("suspended", 1).await;

    let r = call(
        broker.api,
        "PUT",
        path,
        Some(&admin),
        Some(&json!({"suspended": false})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.raw.body);
    assert_eq!(r.json["suspension"], Value::Null);
    seen(true, false).await;

    let r = call(
        broker.api,
        "PUT",
        "/api/v1/admin/devices/no-such/suspension",
        Some(&admin),
        Some(&json!({"suspended": false})),
    )
    .await;
    assert_error(&r, 404, "not_found");
}

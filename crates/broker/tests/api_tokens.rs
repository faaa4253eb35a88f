//! The JSON API over real HTTP against the broker binary: API tokens made on
//! the account page, used, revoked; refusals without one; an owner's devices
//! through the API; the market listing; nobody reaching another account's
//! device or rental; the OpenAPI document matching what is served.

mod common;

use common::TestBroker;
use common::api::{call, create_token, send_raw};
use common::web::{csrf_of, sign_up};
use serde_json::{Value, json};

fn assert_error(a: &common::api::Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.raw.body);
    assert_eq!(a.json["code"], code, "{}", a.raw.body);
    assert!(
        a.json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        a.raw.body
    );
}

#[tokio::test]
async fn a_token_made_on_the_account_page_works_until_revoked() {
    let broker = TestBroker::start(1).await;
    let mut ada = sign_up(broker.api, "ada@example.org").await;
    let token = create_token(&mut ada, "backup script").await;
    assert!(
        token.starts_with("rpb_api_") && token.len() == 8 + 64,
        "{token}"
    );

    let me = call(broker.api, "GET", "/api/v1/me", Some(&token), None).await;
    assert_eq!(me.status, 200, "{}", me.raw.body);
    assert_eq!(me.json["email"], "ada@example.org");
    assert_eq!(
        common::web::header(&me.raw, "cache-control"),
        Some("no-store")
    );

    // The account page lists it, by name, used, and never shows it again.
    let page = ada.get("/account").await;
    assert!(page.body.contains("backup script"), "{}", page.body);
    assert!(!page.body.contains(&token));
    assert!(!page.body.contains(">never<"), "its use is recorded");
    assert!(
        !broker.log().contains(&token),
        "the token never reaches the log"
    );

    // Revoke it on the page: it stops working.
    let marker = "name=\"id\" value=\"";
    let start = page.body.find(marker).unwrap() + marker.len();
    let id = &page.body[start..start + page.body[start..].find('"').unwrap()];
    let r = ada
        .post(
            "/account/tokens/revoke",
            &[("csrf", &csrf_of(&page.body)), ("id", id)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let me = call(broker.api, "GET", "/api/v1/me", Some(&token), None).await;
    assert_error(&me, 401, "bad_api_token");

    // Another account cannot revoke someone's token, even by its id.
    let kept = create_token(&mut ada, "kept").await;
    let tokens = call(broker.api, "GET", "/api/v1/tokens", Some(&kept), None).await;
    let kept_id = tokens.json["tokens"][0]["id"].as_i64().unwrap();
    let mut eve = sign_up(broker.api, "eve@example.org").await;
    let eves = create_token(&mut eve, "eve").await;
    let r = call(
        broker.api,
        "DELETE",
        &format!("/api/v1/tokens/{kept_id}"),
        Some(&eves),
        None,
    )
    .await;
    assert_error(&r, 404, "not_found");
    let page = eve.get("/account").await;
    let r = eve
        .post(
            "/account/tokens/revoke",
            &[("csrf", &csrf_of(&page.body)), ("id", &kept_id.to_string())],
        )
        .await;
    assert_eq!(r.status, 404);
    let me = call(broker.api, "GET", "/api/v1/me", Some(&kept), None).await;
    assert_eq!(me.status, 200);

    // A token form without the session's CSRF token is refused.
    let r = ada
        .post("/account/tokens", &[("csrf", "forged"), ("name", "x")])
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn calls_without_a_current_token_are_refused() {
    let broker = TestBroker::start(1).await;
    for path in ["/api/v1/me", "/api/v1/devices", "/api/v1/rentals"] {
        let none = call(broker.api, "GET", path, None, None).await;
        assert_error(&none, 401, "bad_api_token");
        let bad = call(broker.api, "GET", path, Some("rpb_api_0000"), None).await;
        assert_error(&bad, 401, "bad_api_token");
    }
    // A browser's session cookie is not an API credential.
    let mut ada = sign_up(broker.api, "ada@example.org").await;
    let cookie = ada.cookies["rpb_session"].clone();
    let r = send_raw(
        broker.api,
        format!(
            "GET /api/v1/me HTTP/1.1\r\nHost: x\r\nCookie: rpb_session={cookie}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_error(&r, 401, "bad_api_token");

    // A suspended account's tokens stop working; reinstated, they work again.
    let token = create_token(&mut ada, "t").await;
    let out = broker.run(&["admin", "suspend", "ada@example.org"]);
    assert!(out.status.success());
    let me = call(broker.api, "GET", "/api/v1/me", Some(&token), None).await;
    assert_error(&me, 403, "account_suspended");
    let out = broker.run(&["admin", "unsuspend", "ada@example.org"]);
    assert!(out.status.success());
    let me = call(broker.api, "GET", "/api/v1/me", Some(&token), None).await;
    assert_eq!(me.status, 200);
}

#[tokio::test]
async fn bodies_are_bounded_and_parsed_strictly() {
    let broker = TestBroker::start(1).await;
    let mut ada = sign_up(broker.api, "ada@example.org").await;
    let token = create_token(&mut ada, "t").await;
    let devices = "/api/v1/devices";

    let unknown = json!({"name": "pi-one", "owner": 1});
    let r = call(broker.api, "POST", devices, Some(&token), Some(&unknown)).await;
    assert_error(&r, 400, "malformed_request");
    let missing = json!({});
    let r = call(broker.api, "POST", devices, Some(&token), Some(&missing)).await;
    assert_error(&r, 400, "malformed_request");
    let bad_name = json!({"name": "Not A Name!"});
    let r = call(broker.api, "POST", devices, Some(&token), Some(&bad_name)).await;
    assert_error(&r, 422, "invalid_input");

    let big = json!({"name": "x".repeat(20_000)});
    let r = call(broker.api, "POST", devices, Some(&token), Some(&big)).await;
    assert_error(&r, 413, "body_too_large");

    let body = r#"{"name":"pi-one"}"#;
    let r = send_raw(
        broker.api,
        format!(
            "POST {devices} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    assert_error(&r, 415, "malformed_request");
    let mine = call(broker.api, "GET", devices, Some(&token), None).await;
    assert_eq!(mine.json["devices"], json!([]), "nothing was registered");
}

#[tokio::test]
async fn an_owner_manages_devices_through_the_api_and_nobody_else_can() {
    let broker = TestBroker::start(2).await;
    let mut ada = sign_up(broker.api, "ada@example.org").await;
    let mut eve = sign_up(broker.api, "eve@example.org").await;
    let (ada_t, eve_t) = (
        create_token(&mut ada, "ada").await,
        create_token(&mut eve, "eve").await,
    );
    let a = Some(ada_t.as_str());
    let e = Some(eve_t.as_str());

    let r = call(
        broker.api,
        "POST",
        "/api/v1/devices",
        a,
        Some(&json!({"name": "pi-api"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.raw.body);
    assert_eq!(r.json["name"], "pi-api");
    let device_token = r.json["token"].as_str().unwrap().to_string();
    assert_eq!(r.json["agent_config"]["token"], device_token.as_str());
    assert_eq!(r.json["agent_config"]["device"], "pi-api");
    assert!(
        r.json["openssh_command"]
            .as_str()
            .unwrap()
            .contains("pi-api@")
    );
    // The device token works on the device's own endpoint.
    let own = call(
        broker.api,
        "GET",
        "/api/v1/device",
        Some(&device_token),
        None,
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.raw.body);
    assert_eq!(own.json["name"], "pi-api");

    let taken = call(
        broker.api,
        "POST",
        "/api/v1/devices",
        e,
        Some(&json!({"name": "pi-api"})),
    )
    .await;
    assert_error(&taken, 409, "name_taken");

    // The web page shows what the API registered.
    assert!(ada.get("/devices").await.body.contains("pi-api"));
    let mine = call(broker.api, "GET", "/api/v1/devices", a, None).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.json["devices"][0]["name"], "pi-api");
    assert_eq!(mine.json["devices"][0]["listed"], false);
    let theirs = call(broker.api, "GET", "/api/v1/devices", e, None).await;
    assert_eq!(theirs.json["devices"], json!([]));

    // Listing: the owner's only; prices are whole minor units in range.
    let listing = "/api/v1/devices/pi-api/listing";
    let body = json!({"listed": true, "hourly_rate_cents": 125});
    let r = call(broker.api, "PUT", listing, e, Some(&body)).await;
    assert_error(&r, 404, "not_found");
    for bad in [json!(-1), json!(100_000_000), json!(1.5), json!("1.25")] {
        let b = json!({"listed": true, "hourly_rate_cents": bad});
        let r = call(broker.api, "PUT", listing, a, Some(&b)).await;
        assert!(r.status == 422 || r.status == 400, "{bad}: {}", r.raw.body);
    }
    let r = call(broker.api, "PUT", listing, a, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.raw.body);
    assert_eq!(r.json, body);
    let mine = call(broker.api, "GET", "/api/v1/devices", a, None).await;
    assert_eq!(mine.json["devices"][0]["listed"], true);
    assert_eq!(mine.json["devices"][0]["hourly_rate"], 125);

    // The market lists it for anyone, without a token, not rentable while
    // it has never connected.
    let market = call(broker.api, "GET", "/api/v1/market", None, None).await;
    assert_eq!(market.status, 200, "{}", market.raw.body);
    let offer = &market.json["devices"][0];
    assert_eq!(offer["name"], "pi-api");
    assert_eq!(offer["hourly_rate_cents"], 125);
    assert_eq!(offer["available"], false);
    assert_eq!(offer["unavailable_reason"], "offline");
    assert!(offer.get("ports").is_none() && offer.get("rental").is_none());
    // The page's filters apply; a value the page would ignore is refused.
    let cheap = call(
        broker.api,
        "GET",
        "/api/v1/market?max_price=1.00",
        None,
        None,
    )
    .await;
    assert_eq!(cheap.json["devices"], json!([]), "{}", cheap.raw.body);
    assert_eq!(cheap.json["matching"], 0);
    let bad = call(broker.api, "GET", "/api/v1/market?sort=colour", None, None).await;
    assert_error(&bad, 422, "invalid_input");
    // The web marketplace shows the same device.
    assert!(eve.get("/").await.body.contains("pi-api"));

    // Another account cannot end a rental of it or remove it.
    let end = "/api/v1/devices/pi-api/end-rental";
    let reason = json!({"reason": "mine now"});
    assert_error(
        &call(broker.api, "POST", end, e, Some(&reason)).await,
        404,
        "not_found",
    );
    assert_error(
        &call(broker.api, "DELETE", "/api/v1/devices/pi-api", e, None).await,
        404,
        "not_found",
    );
    // The owner: no rental to end; an empty reason is refused.
    assert_error(
        &call(broker.api, "POST", end, a, Some(&json!({"reason": " "}))).await,
        422,
        "invalid_input",
    );
    assert_error(
        &call(broker.api, "POST", end, a, Some(&reason)).await,
        409,
        "not_rented",
    );
    // Nobody can stop a rental they do not have.
    assert_error(
        &call(
            broker.api,
            "POST",
            "/api/v1/rentals/rnt-0000000000000000/stop",
            e,
            None,
        )
        .await,
        404,
        "not_found",
    );
    // Renting an unlisted or unknown device is "not found"; this one is
    // listed but offline.
    let r = call(
        broker.api,
        "POST",
        "/api/v1/rentals",
        e,
        Some(&json!({"device": "pi-none"})),
    )
    .await;
    assert_error(&r, 404, "not_found");
    let r = call(
        broker.api,
        "POST",
        "/api/v1/rentals",
        e,
        Some(&json!({"device": "pi-api"})),
    )
    .await;
    assert_error(&r, 409, "device_unavailable");
    let rentals = call(broker.api, "GET", "/api/v1/rentals", e, None).await;
    assert_eq!(rentals.json["rentals"], json!([]));

    // Removal: the device token stops working.
    let r = call(broker.api, "DELETE", "/api/v1/devices/pi-api", a, None).await;
    assert_eq!(r.status, 204, "{}", r.raw.body);
    let own = call(
        broker.api,
        "GET",
        "/api/v1/device",
        Some(&device_token),
        None,
    )
    .await;
    assert_eq!(own.status, 410, "{}", own.raw.body);
    let mine = call(broker.api, "GET", "/api/v1/devices", a, None).await;
    assert_eq!(mine.json["devices"], json!([]));
    let market = call(broker.api, "GET", "/api/v1/market", None, None).await;
    assert_eq!(market.json["devices"], json!([]));
}

/// Whether `actual` has the shape of `example`: the same keys in objects
/// (recursively), the first element of arrays alike, and the same JSON
/// type wherever the example is not null.
fn same_shape(example: &Value, actual: &Value) -> Result<(), String> {
    match (example, actual) {
        (Value::Null, _) | (_, Value::Null) => Ok(()),
        (Value::Object(e), Value::Object(a)) => {
            let (ek, ak): (Vec<_>, Vec<_>) = (e.keys().collect(), a.keys().collect());
            if ek != ak {
                return Err(format!("keys {ek:?} in the example, {ak:?} served"));
            }
            e.iter().try_for_each(|(k, v)| same_shape(v, &a[k]))
        }
        (Value::Array(e), Value::Array(a)) => match (e.first(), a.first()) {
            (Some(e), Some(a)) => same_shape(e, a),
            _ => Ok(()),
        },
        (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => Ok(()),
        (e, a) => Err(format!("{e} in the example, {a} served")),
    }
}

#[tokio::test]
async fn the_openapi_document_describes_what_is_served() {
    let broker = TestBroker::start(1).await;
    let doc = call(broker.api, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json["openapi"], "3.1.0");
    let doc = doc.json;
    assert_eq!(
        doc["components"]["securitySchemes"]["apiToken"]["scheme"],
        "bearer"
    );

    // Every documented operation is served: it answers with something
    // other than the router's bare 404 or 405.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{name}", "pi-none").replace("{id}", "1");
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let r = call(broker.api, &method, &concrete, None, None).await;
            assert!(
                r.status != 405 && !(r.status == 404 && r.raw.body.is_empty()),
                "{method} {path} is documented but not served: {}",
                r.status
            );
            if r.status >= 400 {
                let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
                    .as_array()
                    .unwrap();
                assert!(
                    codes.contains(&r.json["code"]),
                    "{method} {path}: {} is not a documented error code",
                    r.json["code"]
                );
            }
        }
    }

    // Examples have the shape of real answers.
    let mut ada = sign_up(broker.api, "ada@example.org").await;
    let token = create_token(&mut ada, "t").await;
    let t = Some(token.as_str());
    let example = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["example"]
            .clone()
    };
    let me = call(broker.api, "GET", "/api/v1/me", t, None).await;
    same_shape(&example("/api/v1/me", "get", "200"), &me.json).unwrap();
    let tokens = call(broker.api, "GET", "/api/v1/tokens", t, None).await;
    same_shape(&example("/api/v1/tokens", "get", "200"), &tokens.json).unwrap();
    // Tokens are made on the account page only: a token cannot mint more.
    let made = call(
        broker.api,
        "POST",
        "/api/v1/tokens",
        t,
        Some(&json!({"name": "second"})),
    )
    .await;
    assert_eq!(made.status, 405);

    let r = call(
        broker.api,
        "POST",
        "/api/v1/devices",
        t,
        Some(&json!({"name": "pi-doc"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let listing = json!({"listed": true, "hourly_rate_cents": 50});
    let r = call(
        broker.api,
        "PUT",
        "/api/v1/devices/pi-doc/listing",
        t,
        Some(&listing),
    )
    .await;
    same_shape(
        &example("/api/v1/devices/{name}/listing", "put", "200"),
        &r.json,
    )
    .unwrap();
    let market = call(broker.api, "GET", "/api/v1/market", None, None).await;
    same_shape(&example("/api/v1/market", "get", "200"), &market.json).unwrap();
    let not_found = call(broker.api, "DELETE", "/api/v1/devices/pi-none", t, None).await;
    same_shape(
        &doc["components"]["schemas"]["ApiError"]["example"],
        &not_found.json,
    )
    .unwrap();
}

//! The administrators' pages: only administrators see them; they suspend
//! and reinstate accounts and devices. (Ending a rental as an administrator
//! is in `web_rentals`, which has a real sandbox to rent.)

mod common;

use common::web::{WebClient, csrf_of, list_at, sign_in_admin, sign_up};
use common::{Targets, TestAgent, TestBroker, wait_for};
use std::time::Duration;

async fn post_form(
    c: &mut WebClient,
    page: &str,
    to: &str,
    fields: &[(&str, &str)],
) -> common::http::Response {
    let csrf = csrf_of(&c.get(page).await.body);
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    c.post(to, &all).await
}

#[tokio::test(flavor = "multi_thread")]
async fn only_administrators_see_the_admin_pages() {
    let broker = TestBroker::start(1).await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    assert_eq!(alice.get("/admin").await.status, 404);
    assert!(!alice.get("/").await.body.contains("href=\"/admin\""));
    let r = post_form(
        &mut alice,
        "/devices",
        "/admin/users",
        &[("email", "alice@example.org"), ("action", "suspend")],
    )
    .await;
    assert_eq!(r.status, 404, "a non-administrator's form does nothing");
    assert_eq!(alice.get("/devices").await.status, 200, "still signed in");
    assert_eq!(WebClient::new(broker.api).get("/admin").await.status, 303);

    let mut admin = sign_in_admin(&broker, "root@example.org").await;
    let page = admin.get("/admin").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("href=\"/admin\""),
        "the navigation links it"
    );
    assert!(page.body.contains("alice@example.org"));
    // A forged form (no token) is refused.
    let r = admin
        .post(
            "/admin/users",
            &[("email", "alice@example.org"), ("action", "suspend")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(alice.get("/devices").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_suspend_and_reinstate_accounts_and_devices() {
    let broker = TestBroker::start(1).await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let mut admin = sign_in_admin(&broker, "root@example.org").await;
    let r = post_form(&mut alice, "/devices", "/devices", &[("name", "alices-pi")]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        list_at(&mut alice, "alices-pi", true, "1").await.status,
        200
    );
    assert!(
        WebClient::new(broker.api)
            .get("/")
            .await
            .body
            .contains("alices-pi")
    );

    let r = post_form(
        &mut admin,
        "/admin",
        "/admin/users",
        &[("email", "alice@example.org"), ("action", "suspend")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("alice@example.org is suspended"));
    assert_eq!(alice.get("/devices").await.status, 303, "signed out");
    assert!(
        !WebClient::new(broker.api)
            .get("/")
            .await
            .body
            .contains("alices-pi"),
        "a suspended owner's devices leave the market"
    );
    let r = post_form(
        &mut admin,
        "/admin",
        "/admin/users",
        &[("email", "root@example.org"), ("action", "suspend")],
    )
    .await;
    assert_eq!(r.status, 422, "not oneself");
    let r = post_form(
        &mut admin,
        "/admin",
        "/admin/users",
        &[("email", "alice@example.org"), ("action", "unsuspend")],
    )
    .await;
    assert!(
        r.body.contains("alice@example.org is reinstated"),
        "{}",
        r.body
    );

    // A suspended device cannot be listed or removed by its owner.
    let mut alice = common::web::sign_in(broker.api, "alice@example.org", common::web::PASSWORD)
        .await
        .0;
    let r = post_form(
        &mut admin,
        "/admin",
        "/admin/devices",
        &[
            ("name", "alices-pi"),
            ("action", "suspend"),
            ("reason", "stolen hardware"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = list_at(&mut alice, "alices-pi", true, "1").await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("stolen hardware"), "{}", r.body);
    let r = post_form(
        &mut alice,
        "/devices",
        "/devices/remove",
        &[("name", "alices-pi")],
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(alice.get("/devices").await.body.contains("suspended"));

    // A device: suspended, its session is cut and it cannot connect again.
    let device = broker.add_device("adm-pi");
    let agent = TestAgent::start(&device, &Targets::serving("adm-pi").await);
    agent.wait_up(1).await;
    let online = |want: bool| {
        let broker = &broker;
        async move {
            wait_for(
                "the device's online state",
                Duration::from_secs(30),
                || async {
                    let d = broker.list().into_iter().find(|d| d["name"] == "adm-pi")?;
                    (d["online"] == want).then_some(())
                },
            )
            .await
        }
    };
    let r = post_form(
        &mut admin,
        "/admin",
        "/admin/devices",
        &[
            ("name", "adm-pi"),
            ("action", "suspend"),
            ("reason", "<b>abuse</b> report"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("adm-pi is suspended"));
    assert!(
        r.body.contains("&lt;b&gt;abuse&lt;/b&gt; report"),
        "escaped"
    );
    online(false).await;
    agent.wait_for_log("suspended", 1).await;
    let page = admin.get("/admin").await;
    assert!(!page.body.contains("<b>abuse"));

    let r = post_form(
        &mut admin,
        "/admin",
        "/admin/devices",
        &[("name", "adm-pi"), ("action", "unsuspend")],
    )
    .await;
    assert!(r.body.contains("adm-pi is reinstated"), "{}", r.body);
    online(true).await;

    let r = post_form(
        &mut admin,
        "/admin",
        "/admin/devices",
        &[("name", "adm-pi"), ("action", "suspend"), ("reason", "")],
    )
    .await;
    assert_eq!(r.status, 422, "a reason is required");
    let r = post_form(
        &mut admin,
        "/admin",
        "/admin/devices",
        &[("name", "no-such"), ("action", "unsuspend")],
    )
    .await;
    assert_eq!(r.status, 404);
}

//! Topping up a wallet through PayPal, against a fake PayPal written to its
//! published API: the renter is sent to PayPal's approval link, comes back,
//! and the broker captures and credits; webhooks are believed only when
//! PayPal vouches for them; every repeat credits once; a declined capture
//! credits nothing; a lost webhook is made good by reconciliation.

mod common;

use common::api::{call, create_token};
use common::fake_paypal::FakePaypal;
use common::web::{WebClient, checkout_link, csrf_of, sign_up};
use common::{DEADLINE, TestBroker, ledger, wait_for};
use serde_json::json;

const BILLING: &str = "[billing]\nenabled = true\n";

/// A broker using `fake`, and the directory holding its client secret.
async fn broker_with(fake: &FakePaypal, payments: &str) -> (TestBroker, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let config = format!(
        "{BILLING}[payments]\n{payments}{}",
        fake.config(&secrets.path().join("paypal-secret"))
    );
    let broker = TestBroker::start_with(1, &config).await;
    fake.set_broker(broker.api);
    (broker, secrets)
}

/// Starts a top-up of `amount` from the wallet page; the checkout link the
/// broker sent the renter to.
async fn top_up(c: &mut WebClient, amount: &str) -> String {
    let wallet = c.get("/wallet").await;
    assert!(wallet.body.contains("value=\"paypal\""), "{}", wallet.body);
    let r = c
        .post(
            "/wallet/topups",
            &[
                ("csrf", &csrf_of(&wallet.body)),
                ("amount", amount),
                ("provider", "paypal"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let link = checkout_link(&r.body);
    assert!(link.contains("/checkoutnow?token="), "{link}");
    link
}

/// The top-up ids of the signed-in renter, newest first, from the API.
async fn topups(broker: &TestBroker, token: &str) -> Vec<serde_json::Value> {
    let r = call(broker.api, "GET", "/api/v1/topups", Some(token), None).await;
    assert_eq!(r.status, 200);
    r.json["topups"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renter_tops_up_through_paypal_and_is_credited_once() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let token = create_token(&mut alice, "script").await;

    // The renter comes back from PayPal before any webhook arrives: the
    // return page captures the order and credits the wallet.
    fake.drop_webhooks(true);
    let link = top_up(&mut alice, "12.50").await;
    let order = FakePaypal::order_of_link(&link);
    let listed = topups(&broker, &token).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["state"].as_str(), listed[0]["amount"].as_str()),
        (Some("pending"), Some("12.50"))
    );
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let pending = alice.get("/wallet").await;
    assert!(
        pending.body.contains("data-testid=\"pending-topups\"")
            && pending.body.contains("12.50 USD"),
        "{}",
        pending.body
    );
    assert_eq!(
        ledger::wallet(&broker, "alice@example.org"),
        0,
        "nothing before approval"
    );

    fake.approve(&order).await;
    let back = alice
        .get(&format!("/wallet/topups/{id}?token={order}&PayerID=PAYER1"))
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert!(
        back.body.contains("12.50 USD is in your wallet"),
        "{}",
        back.body
    );
    assert_eq!(
        fake.order_state(&order),
        ("COMPLETED".into(), Some("COMPLETED".into()))
    );
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 1250);
    let wallet = alice.get("/wallet").await;
    assert!(
        wallet.body.contains("top-up through PayPal"),
        "{}",
        wallet.body
    );
    assert!(
        wallet.body.contains(&format!("topup:paypal:{order}")),
        "{}",
        wallet.body
    );

    // Every webhook PayPal made, delivered late and more than once, and the
    // renter reloading the return page, change nothing.
    fake.drop_webhooks(false);
    for d in fake.deliveries() {
        for _ in 0..3 {
            assert_eq!(fake.deliver(&d).await, 200, "{}", d.event_type);
        }
    }
    alice.get(&format!("/wallet/topups/{id}")).await;
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 1250);
    assert_eq!(ledger::transfers(&broker, "topup:%"), 1);
    assert_eq!(fake.count("capture"), 1);
    assert_eq!(ledger::problems(&broker), 0);

    // Through the API too, with webhooks: approval alone is enough, the
    // broker captures on PayPal's CHECKOUT.ORDER.APPROVED.
    let r = call(
        broker.api,
        "POST",
        "/api/v1/topups",
        Some(&token),
        Some(&json!({"provider": "paypal", "amount": "5"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.raw.body);
    assert_eq!(r.json["amount_cents"], 500);
    let order = FakePaypal::order_of_link(r.json["checkout_url"].as_str().unwrap());
    fake.approve(&order).await;
    wait_for("the approved order to be credited", DEADLINE, || async {
        (ledger::wallet(&broker, "alice@example.org") == 1750).then_some(())
    })
    .await;
    let one = call(
        broker.api,
        "GET",
        &format!("/api/v1/topups/{}", r.json["id"].as_str().unwrap()),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(one.json["state"], "credited");

    // Nobody else sees the top-ups; a bad request is refused.
    let mut bob = sign_up(broker.api, "bob@example.org").await;
    let bob_token = create_token(&mut bob, "b").await;
    assert!(topups(&broker, &bob_token).await.is_empty());
    assert_eq!(bob.get(&format!("/wallet/topups/{id}")).await.status, 404);
    let theirs = call(
        broker.api,
        "GET",
        &format!("/api/v1/topups/{id}"),
        Some(&bob_token),
        None,
    )
    .await;
    assert_eq!(theirs.status, 404);
    for (provider, amount) in [
        ("paypal", "0.50"),
        ("paypal", "1.234"),
        ("btcpay", "10"),
        ("cash", "10"),
    ] {
        let r = call(
            broker.api,
            "POST",
            "/api/v1/topups",
            Some(&bob_token),
            Some(&json!({"provider": provider, "amount": amount})),
        )
        .await;
        assert_eq!(r.status, 422, "{provider} {amount}: {}", r.raw.body);
    }
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
    assert!(
        !broker.log().contains(common::fake_paypal::CLIENT_SECRET),
        "the secret is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_tampered_deliveries_are_refused_and_credit_nothing() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    fake.drop_webhooks(true);
    let order = FakePaypal::order_of_link(&top_up(&mut alice, "20").await);
    fake.approve(&order).await;
    let approved = fake.deliveries().pop().unwrap();

    // A made-up capture event for this order, signed by no one.
    let forged = common::fake_paypal::Delivery {
        event_type: "PAYMENT.CAPTURE.COMPLETED".into(),
        headers: approved.headers.clone(),
        body: serde_json::to_vec(&json!({
            "id": "WH-FORGED-1",
            "event_type": "PAYMENT.CAPTURE.COMPLETED",
            "resource": {
                "id": "CAPTURE-FORGED", "status": "COMPLETED",
                "amount": { "currency_code": "USD", "value": "20.00" },
                "supplementary_data": { "related_ids": { "order_id": order } },
            },
        }))
        .unwrap(),
    };
    assert_eq!(fake.deliver(&forged).await, 400);
    // A genuine delivery with its body changed.
    let mut tampered = approved.clone();
    tampered.body = String::from_utf8(approved.body.clone())
        .unwrap()
        .replace("APPROVED", "COMPLETED")
        .into_bytes();
    assert_eq!(fake.deliver(&tampered).await, 400);
    // Without signature headers, not JSON, too large.
    let mut bare = approved.clone();
    bare.headers.clear();
    assert_eq!(fake.deliver(&bare).await, 400);
    let mut garbage = approved.clone();
    garbage.body = b"{not json".to_vec();
    assert_eq!(fake.deliver(&garbage).await, 400);
    let mut huge = approved.clone();
    huge.body = format!(
        "{{\"id\":\"WH-1\",\"event_type\":\"X\",\"pad\":\"{}\"}}",
        "a".repeat(100 * 1024)
    )
    .into_bytes();
    assert_eq!(fake.deliver(&huge).await, 413);

    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    assert_eq!(
        fake.count("capture"),
        0,
        "nothing was captured on a forged word"
    );
    assert!(
        broker.log().contains("PayPal did not vouch"),
        "{}",
        broker.log()
    );
    // The broker is still up and the genuine delivery still works.
    assert_eq!(fake.deliver(&approved).await, 200);
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 2000);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_and_reordered_deliveries_credit_each_top_up_once() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let mut expected = 0;
    fake.drop_webhooks(true);
    for (i, amount) in ["3", "4.25", "10"].iter().enumerate() {
        let order = FakePaypal::order_of_link(&top_up(&mut alice, amount).await);
        fake.approve(&order).await;
        // The first one is captured by the renter's return, the others by
        // the approval webhook delivered below.
        if i == 0 {
            let token = create_token(&mut alice, "t").await;
            let id = topups(&broker, &token).await[0]["id"]
                .as_str()
                .unwrap()
                .to_string();
            alice.get(&format!("/wallet/topups/{id}")).await;
        }
        expected += common_amount(amount);
    }
    let mut deliveries = fake.deliveries();
    // Reorder deterministically, repeat each 1 to 5 times.
    deliveries.reverse();
    deliveries.rotate_left(1);
    fake.drop_webhooks(false);
    for (i, d) in deliveries.iter().enumerate() {
        for _ in 0..(1 + i % 5) {
            assert_eq!(fake.deliver(d).await, 200, "{}", d.event_type);
        }
    }
    wait_for("every top-up to be credited", DEADLINE, || async {
        (ledger::wallet(&broker, "alice@example.org") == expected).then_some(())
    })
    .await;
    // Captures made by the broker on the approvals send their own
    // completion webhooks; deliver those repeatedly too.
    for d in fake
        .deliveries()
        .iter()
        .filter(|d| d.event_type == "PAYMENT.CAPTURE.COMPLETED")
    {
        for _ in 0..2 {
            assert_eq!(fake.deliver(d).await, 200);
        }
    }
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), expected);
    assert_eq!(ledger::transfers(&broker, "topup:paypal:%"), 3);
    assert_eq!(fake.count("capture"), 3, "each order captured once");
    assert_eq!(ledger::problems(&broker), 0);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

fn common_amount(text: &str) -> i64 {
    let (w, f) = text.split_once('.').unwrap_or((text, "0"));
    w.parse::<i64>().unwrap() * 100 + format!("{f:0<2}").parse::<i64>().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_order_whose_capture_was_declined_credits_nothing() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let token = create_token(&mut alice, "t").await;
    fake.decline_captures(true);
    let order = FakePaypal::order_of_link(&top_up(&mut alice, "15").await);
    fake.drop_webhooks(true);
    fake.approve(&order).await;
    let id = topups(&broker, &token).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let back = alice.get(&format!("/wallet/topups/{id}")).await;
    assert_eq!(
        fake.order_state(&order),
        ("COMPLETED".into(), Some("DECLINED".into()))
    );
    assert!(
        back.body
            .contains("was not paid: PayPal declined the payment"),
        "{}",
        back.body
    );
    assert_eq!(ledger::topup_state(&broker, &id), "failed");
    // PayPal's DENIED webhook and every other delivery change nothing.
    fake.drop_webhooks(false);
    for d in fake.deliveries() {
        assert_eq!(fake.deliver(&d).await, 200);
    }
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    assert_eq!(ledger::transfers(&broker, "topup:%"), 0);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_webhook_is_credited_by_reconciliation_once() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "reconcile_every_secs = 1\n").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let token = create_token(&mut alice, "t").await;
    // Every webhook is lost and the renter never comes back from PayPal.
    fake.drop_webhooks(true);
    let order = FakePaypal::order_of_link(&top_up(&mut alice, "7.77").await);
    fake.approve(&order).await;
    wait_for("reconciliation to capture and credit", DEADLINE, || async {
        (ledger::wallet(&broker, "alice@example.org") == 777).then_some(())
    })
    .await;
    // Reconciliation goes on (a second, unpaid top-up is asked about
    // again and again) without crediting the first one twice.
    let _ = top_up(&mut alice, "2").await;
    let gets = fake.count("get");
    wait_for("two more reconciliation passes", DEADLINE, || async {
        (fake.count("get") >= gets + 2).then_some(())
    })
    .await;
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 777);
    assert_eq!(fake.count("capture"), 1);
    let list = topups(&broker, &token).await;
    assert_eq!(list[1]["state"], "credited");
    assert_eq!(list[0]["state"], "pending");
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test(flavor = "multi_thread")]
async fn paypal_failing_or_slow_charges_nothing_and_the_broker_stays_up() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let token = create_token(&mut alice, "t").await;
    for misbehave in ["500", "slow"] {
        match misbehave {
            "500" => fake.fail_next(10),
            _ => fake.slow(Some(std::time::Duration::from_secs(4))),
        }
        let wallet = alice.get("/wallet").await;
        let r = alice
            .post(
                "/wallet/topups",
                &[
                    ("csrf", &csrf_of(&wallet.body)),
                    ("amount", "10"),
                    ("provider", "paypal"),
                ],
            )
            .await;
        assert_eq!(r.status, 502, "{misbehave}: {}", r.body);
        assert!(
            r.body.contains("PayPal could not start the payment"),
            "{}",
            r.body
        );
        let api = call(
            broker.api,
            "POST",
            "/api/v1/topups",
            Some(&token),
            Some(&json!({"provider": "paypal", "amount": "10"})),
        )
        .await;
        assert_eq!(
            (api.status, api.json["code"].as_str()),
            (502, Some("payment_provider_unavailable"))
        );
        fake.fail_next(0);
        fake.slow(None);
    }
    let list = topups(&broker, &token).await;
    assert_eq!(list.len(), 4);
    assert!(list.iter().all(|t| t["state"] == "failed"), "{list:?}");
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    // Once PayPal is back, topping up works.
    let order = FakePaypal::order_of_link(&top_up(&mut alice, "10").await);
    fake.approve(&order).await;
    wait_for("the top-up to be credited", DEADLINE, || async {
        (ledger::wallet(&broker, "alice@example.org") == 1000).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_top_ups_conserve_the_ledger() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut tokens = Vec::new();
    for who in ["a", "b", "c"] {
        let mut c = sign_up(broker.api, &format!("{who}@example.org")).await;
        tokens.push((
            format!("{who}@example.org"),
            create_token(&mut c, "t").await,
        ));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (email, token) in tokens.clone() {
        for n in 1..=4 {
            let (fake, api, token, email) =
                (fake.clone(), broker.api, token.clone(), email.clone());
            tasks.spawn(async move {
                let amount = format!("{n}.{n}{n}");
                let r = call(
                    api,
                    "POST",
                    "/api/v1/topups",
                    Some(&token),
                    Some(&json!({"provider": "paypal", "amount": amount})),
                )
                .await;
                assert_eq!(r.status, 201, "{}", r.raw.body);
                let order = FakePaypal::order_of_link(r.json["checkout_url"].as_str().unwrap());
                fake.approve(&order).await;
                let id = r.json["id"].as_str().unwrap().to_string();
                // The renter checks back at the same time as the webhooks.
                let back = call(
                    api,
                    "GET",
                    &format!("/api/v1/topups/{id}"),
                    Some(&token),
                    None,
                )
                .await;
                assert_eq!(back.status, 200);
                (email.clone(), n * 111)
            });
        }
    }
    let mut expected = std::collections::HashMap::new();
    while let Some(done) = tasks.join_next().await {
        let (email, cents) = done.unwrap();
        *expected.entry(email).or_insert(0) += cents;
    }
    for (email, cents) in &expected {
        wait_for("every top-up to be credited", DEADLINE, || async {
            (ledger::wallet(&broker, email) == *cents).then_some(())
        })
        .await;
    }
    assert_eq!(ledger::transfers(&broker, "topup:paypal:%"), 12);
    assert_eq!(ledger::problems(&broker), 0);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refund_takes_the_top_up_back_from_the_wallet() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let token = create_token(&mut alice, "t").await;
    let order = FakePaypal::order_of_link(&top_up(&mut alice, "8").await);
    fake.approve(&order).await;
    wait_for("the top-up to be credited", DEADLINE, || async {
        (ledger::wallet(&broker, "alice@example.org") == 800).then_some(())
    })
    .await;
    for _ in 0..2 {
        assert_eq!(fake.refund(&order).await, Some(200));
    }
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    assert_eq!(topups(&broker, &token).await[0]["state"], "refunded");
    // Every delivery again: the refunded top-up is not credited anew.
    for d in fake.deliveries() {
        assert_eq!(fake.deliver(&d).await, 200);
    }
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    assert_eq!(ledger::problems(&broker), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_refunds_take_back_exactly_what_they_refund() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let token = create_token(&mut alice, "t").await;
    let order = FakePaypal::order_of_link(&top_up(&mut alice, "8").await);
    fake.approve(&order).await;
    wait_for("the top-up to be credited", DEADLINE, || async {
        (ledger::wallet(&broker, "alice@example.org") == 800).then_some(())
    })
    .await;
    assert_eq!(fake.refund_part(&order, "3.00").await, Some(200));
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 500);
    assert_eq!(topups(&broker, &token).await[0]["state"], "credited");
    // Every delivery again changes nothing.
    for d in fake.deliveries() {
        assert_eq!(fake.deliver(&d).await, 200);
    }
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 500);
    // The rest, in a second refund, refunds the top-up.
    assert_eq!(fake.refund_part(&order, "5.00").await, Some(200));
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    assert_eq!(topups(&broker, &token).await[0]["state"], "refunded");
    assert_eq!(ledger::transfers(&broker, "refund:%"), 2);
    assert_eq!(ledger::problems(&broker), 0);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_webhook_deliveries_is_verified_a_few_at_a_time() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    fake.drop_webhooks(true);
    let order = FakePaypal::order_of_link(&top_up(&mut alice, "3").await);
    fake.approve(&order).await;
    let delivery = fake.deliveries().pop().unwrap();
    fake.slow(Some(std::time::Duration::from_secs(2)));
    let answers = futures_util::future::join_all((0..12).map(|_| fake.deliver(&delivery))).await;
    fake.slow(None);
    assert!(
        answers.iter().all(|s| [200, 503].contains(s)),
        "{answers:?}"
    );
    assert!(answers.contains(&503), "{answers:?}");
    assert!(fake.count("verify") <= 4, "{}", fake.count("verify"));
    // The broker is up, and a repeat once the flood is over is handled.
    assert_eq!(fake.deliver(&delivery).await, 200);
    wait_for("the top-up to be credited", DEADLINE, || async {
        (ledger::wallet(&broker, "alice@example.org") == 300).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpaid_top_up_expires() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) =
        broker_with(&fake, "reconcile_every_secs = 1\nexpire_after_secs = 2\n").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let token = create_token(&mut alice, "t").await;
    let _never_paid = top_up(&mut alice, "6").await;
    wait_for("the unpaid top-up to expire", DEADLINE, || async {
        (topups(&broker, &token).await[0]["state"] == "expired").then_some(())
    })
    .await;
    let wallet = alice.get("/wallet").await;
    assert!(!wallet.body.contains("pending-topups"), "{}", wallet.body);
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_top_up_does_not_expire_while_paypal_fails() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) =
        broker_with(&fake, "reconcile_every_secs = 1\nexpire_after_secs = 2\n").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let token = create_token(&mut alice, "t").await;
    // The renter pays, the webhook is lost, and PayPal answers nothing but
    // errors until well past the expiry.
    fake.drop_webhooks(true);
    let order = FakePaypal::order_of_link(&top_up(&mut alice, "5.55").await);
    fake.fail_next(1_000_000);
    fake.approve(&order).await;
    let asked = fake.count("token") + fake.count("get");
    wait_for(
        "four reconciliation passes past the expiry",
        DEADLINE,
        || async { (fake.count("token") + fake.count("get") >= asked + 4).then_some(()) },
    )
    .await;
    assert_eq!(topups(&broker, &token).await[0]["state"], "pending");
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    // PayPal answers again: the payment is captured and credited, once.
    fake.fail_next(0);
    wait_for("reconciliation to capture and credit", DEADLINE, || async {
        (ledger::wallet(&broker, "alice@example.org") == 555).then_some(())
    })
    .await;
    assert_eq!(topups(&broker, &token).await[0]["state"], "credited");
    assert_eq!(fake.count("capture"), 1);
    assert_eq!(ledger::problems(&broker), 0);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_before_the_webhook_credits_once_after_restart() {
    let fake = FakePaypal::start().await;
    let (mut broker, _secrets) = broker_with(&fake, "reconcile_every_secs = 1\n").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    fake.drop_webhooks(true);
    let order = FakePaypal::order_of_link(&top_up(&mut alice, "4.44").await);
    broker.crash_and_restart().await;
    fake.approve(&order).await;
    wait_for(
        "the restarted broker to capture and credit",
        DEADLINE,
        || async { (ledger::wallet(&broker, "alice@example.org") == 444).then_some(()) },
    )
    .await;
    broker.crash_and_restart().await;
    fake.drop_webhooks(false);
    for d in fake.deliveries() {
        assert_eq!(fake.deliver(&d).await, 200);
    }
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 444);
    assert_eq!(fake.count("capture"), 1);
    assert_eq!(ledger::problems(&broker), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renter_tops_up_through_paypal_in_a_browser() {
    let fake = FakePaypal::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let base = format!("http://{}", broker.api);
    let mut b = common::browser::Browser::start("topup-paypal").await;
    b.goto(&format!("{base}/signup")).await;
    b.fill("email", "renter@example.org").await;
    b.fill("password", common::web::PASSWORD).await;
    b.fill("password_again", common::web::PASSWORD).await;
    b.click("Create account").await;
    b.wait_text("Sign out").await;

    b.goto(&format!("{base}/wallet")).await;
    b.wait_text("Top up").await;
    b.shot("wallet-with-top-up-form").await;
    b.fill("amount", "12.50").await;
    b.click("Top up").await;
    b.wait_text("Pay 12.50 USD to the broker").await;
    b.shot("paypal-checkout").await;
    b.click("Pay Now").await;
    b.wait_text("12.50 USD is in your wallet").await;
    b.shot("returned-credited").await;
    assert_eq!(ledger::wallet(&broker, "renter@example.org"), 1250);

    // A renter who cancels at PayPal is told nothing was charged.
    b.goto(&format!("{base}/wallet")).await;
    b.fill("amount", "3").await;
    b.click("Top up").await;
    b.wait_text("Pay 3.00 USD to the broker").await;
    b.click("Cancel and return").await;
    b.wait_text("You cancelled the payment at PayPal; nothing was charged")
        .await;
    b.shot("returned-cancelled").await;
    b.goto(&format!("{base}/wallet")).await;
    let text = b.wait_text("Pending top-ups").await;
    assert!(text.contains("3.00 USD"), "{text}");
    assert_eq!(ledger::wallet(&broker, "renter@example.org"), 1250);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

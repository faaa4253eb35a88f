//! Topping up a wallet through BTCPay Server, against a fake Greenfield API:
//! the renter pays an invoice at its checkout link; only a correctly signed
//! `InvoiceSettled` credits, once however often and in whatever order the
//! deliveries come; expired and invalid invoices credit nothing; a lost
//! webhook is made good by reconciliation.

mod common;

use common::api::{call, create_token};
use common::fake_btcpay::{FakeBtcpay, STORE_ID, WEBHOOK_SECRET, sign};
use common::fake_paypal::FakePaypal;
use common::web::{WebClient, checkout_link, csrf_of, sign_up};
use common::{DEADLINE, TestBroker, ledger, wait_for};
use serde_json::json;

async fn broker_with(fake: &FakeBtcpay, payments: &str) -> (TestBroker, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let config = format!(
        "[billing]\nenabled = true\n[payments]\n{payments}{}",
        fake.config(secrets.path())
    );
    let broker = TestBroker::start_with(1, &config).await;
    fake.set_broker(broker.api);
    (broker, secrets)
}

/// Starts a top-up of `amount` from the wallet page; the invoice the
/// renter was sent to pay.
async fn top_up(c: &mut WebClient, amount: &str) -> String {
    let wallet = c.get("/wallet").await;
    let r = c
        .post(
            "/wallet/topups",
            &[
                ("csrf", &csrf_of(&wallet.body)),
                ("amount", amount),
                ("provider", "btcpay"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    FakeBtcpay::invoice_of_link(&checkout_link(&r.body))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renter_tops_up_through_btcpay_and_is_credited_once() {
    let fake = FakeBtcpay::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let wallet = alice.get("/wallet").await;
    assert!(
        wallet.body.contains("Bitcoin (BTCPay Server)")
            && !wallet.body.contains("value=\"paypal\""),
        "only the configured provider is offered: {}",
        wallet.body
    );
    let invoice = top_up(&mut alice, "25.10").await;
    let topup = fake.metadata(&invoice)["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    let back = alice.get(&format!("/wallet/topups/{topup}")).await;
    assert!(
        back.body
            .contains("has not confirmed the payment of 25.10 USD yet"),
        "{}",
        back.body
    );

    // Payment seen, then settled: only the settlement credits.
    assert_eq!(
        fake.send("InvoiceReceivedPayment", &invoice).await,
        Some(200)
    );
    assert_eq!(
        fake.set_status(&invoice, "Processing", "InvoiceProcessing")
            .await,
        Some(200)
    );
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    assert_eq!(
        fake.set_status(&invoice, "Settled", "InvoiceSettled").await,
        Some(200)
    );
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 2510);
    let back = alice.get(&format!("/wallet/topups/{topup}")).await;
    assert!(
        back.body.contains("25.10 USD is in your wallet"),
        "{}",
        back.body
    );

    // Every delivery again, 1 to 5 times, in reverse order.
    let deliveries = fake.deliveries();
    for (i, d) in deliveries.iter().rev().enumerate() {
        for _ in 0..(1 + i % 5) {
            assert_eq!(fake.deliver(d).await, 200, "{}", d.kind);
        }
    }
    // A redelivery BTCPay makes has a new delivery id: still once.
    assert_eq!(fake.send("InvoiceSettled", &invoice).await, Some(200));
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 2510);
    assert_eq!(
        ledger::transfers(&broker, &format!("topup:btcpay:{invoice}")),
        1
    );
    assert_eq!(ledger::problems(&broker), 0);

    // Through the API as well.
    let token = create_token(&mut alice, "t").await;
    let r = call(
        broker.api,
        "POST",
        "/api/v1/topups",
        Some(&token),
        Some(&json!({"provider": "btcpay", "amount": "3"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.raw.body);
    let invoice = FakeBtcpay::invoice_of_link(r.json["checkout_url"].as_str().unwrap());
    fake.set_status(&invoice, "Settled", "InvoiceSettled").await;
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 2810);
    let list = call(broker.api, "GET", "/api/v1/topups", Some(&token), None).await;
    let states: Vec<_> = list.json["topups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["credited", "credited"]);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
    let log = broker.log();
    assert!(
        !log.contains(WEBHOOK_SECRET) && !log.contains(common::fake_btcpay::API_KEY),
        "secrets are never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_tampered_signatures_are_refused_and_credit_nothing() {
    let fake = FakeBtcpay::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let invoice = top_up(&mut alice, "50").await;
    fake.drop_webhooks(true);
    fake.set_status(&invoice, "Settled", "InvoiceSettled").await;
    let genuine = fake.deliveries().pop().unwrap();

    let mut wrong_key = genuine.clone();
    wrong_key.signature = sign("not-the-secret", &genuine.body);
    let mut tampered = genuine.clone();
    tampered.body = String::from_utf8(genuine.body.clone())
        .unwrap()
        .replace("Delivery", "Dolivery")
        .into_bytes();
    let mut unsigned = genuine.clone();
    unsigned.signature = String::new();
    let mut not_hex = genuine.clone();
    not_hex.signature = "sha256=zz".into();
    let mut bare_hex = genuine.clone();
    bare_hex.signature = genuine.signature.trim_start_matches("sha256=").to_string();
    let mut other_store = genuine.clone();
    other_store.body = String::from_utf8(genuine.body.clone())
        .unwrap()
        .replace(STORE_ID, "OtherStore1")
        .into_bytes();
    other_store.signature = sign(WEBHOOK_SECRET, &other_store.body);
    let mut not_json = genuine.clone();
    not_json.body = b"settled!".to_vec();
    not_json.signature = sign(WEBHOOK_SECRET, &not_json.body);
    for (what, d) in [
        ("wrong key", &wrong_key),
        ("tampered", &tampered),
        ("unsigned", &unsigned),
        ("not hex", &not_hex),
        ("no sha256= prefix", &bare_hex),
        ("another store", &other_store),
        ("not JSON", &not_json),
    ] {
        assert_eq!(fake.deliver(d).await, 400, "{what}");
    }
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    assert!(
        broker
            .log()
            .contains("BTCPay-Sig signature is missing or wrong")
    );
    assert_eq!(fake.deliver(&genuine).await, 200);
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 5000);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invoice_settled_for_another_amount_or_paid_late_credits_nothing() {
    let fake = FakeBtcpay::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let order = |invoice: &str| {
        fake.metadata(invoice)["orderId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (small, other, late) = (
        top_up(&mut alice, "10").await,
        top_up(&mut alice, "10").await,
        top_up(&mut alice, "10").await,
    );
    fake.tamper(&small, "1.00", "USD", "None");
    fake.tamper(&other, "10.00", "EUR", "None");
    fake.tamper(&late, "10.00", "USD", "PaidLate");
    for invoice in [&small, &other] {
        assert_eq!(
            fake.set_status(invoice, "Settled", "InvoiceSettled").await,
            Some(200)
        );
        assert_eq!(ledger::topup_state(&broker, &order(invoice)), "failed");
    }
    assert_eq!(
        fake.set_status(&late, "Expired", "InvoiceExpired").await,
        Some(200)
    );
    assert_eq!(ledger::topup_state(&broker, &order(&late)), "failed");
    let page = alice.get(&format!("/wallet/topups/{}", order(&late))).await;
    assert!(page.body.contains("ask the operator"), "{}", page.body);
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    assert_eq!(ledger::transfers(&broker, "topup:%"), 0);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_invalid_invoices_credit_nothing() {
    let fake = FakeBtcpay::start().await;
    let (broker, _secrets) = broker_with(&fake, "").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    let expired = top_up(&mut alice, "10").await;
    let invalid = top_up(&mut alice, "20").await;
    assert_eq!(
        fake.set_status(&expired, "Expired", "InvoiceExpired").await,
        Some(200)
    );
    assert_eq!(fake.send("InvoiceExpired", &expired).await, Some(200));
    assert_eq!(
        fake.set_status(&invalid, "Invalid", "InvoiceInvalid").await,
        Some(200)
    );
    let expired_id = fake.metadata(&expired)["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    let invalid_id = fake.metadata(&invalid)["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ledger::topup_state(&broker, &expired_id), "expired");
    assert_eq!(ledger::topup_state(&broker, &invalid_id), "failed");
    let page = alice.get(&format!("/wallet/topups/{invalid_id}")).await;
    assert!(
        page.body
            .contains("was not paid: BTCPay Server marked the payment invalid"),
        "{}",
        page.body
    );
    let page = alice.get(&format!("/wallet/topups/{expired_id}")).await;
    assert!(
        page.body.contains("was not paid: not paid in time"),
        "{}",
        page.body
    );
    let wallet = alice.get("/wallet").await;
    assert!(
        !wallet.body.contains("data-testid=\"pending-topups\""),
        "{}",
        wallet.body
    );
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 0);
    assert_eq!(ledger::transfers(&broker, "topup:%"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_webhook_is_credited_by_reconciliation_once() {
    let fake = FakeBtcpay::start().await;
    let (broker, _secrets) = broker_with(&fake, "reconcile_every_secs = 1\n").await;
    let mut alice = sign_up(broker.api, "alice@example.org").await;
    fake.drop_webhooks(true);
    let invoice = top_up(&mut alice, "9.99").await;
    fake.set_status(&invoice, "Settled", "InvoiceSettled").await;
    wait_for(
        "reconciliation to credit the settled invoice",
        DEADLINE,
        || async { (ledger::wallet(&broker, "alice@example.org") == 999).then_some(()) },
    )
    .await;
    let _unpaid = top_up(&mut alice, "1").await;
    let gets = fake.count("get");
    wait_for("two more reconciliation passes", DEADLINE, || async {
        (fake.count("get") >= gets + 2).then_some(())
    })
    .await;
    // The lost delivery arriving at last changes nothing either.
    fake.drop_webhooks(false);
    let lost = fake.deliveries().pop().unwrap();
    assert_eq!(fake.deliver(&lost).await, 200);
    assert_eq!(ledger::wallet(&broker, "alice@example.org"), 999);
    assert_eq!(ledger::transfers(&broker, "topup:btcpay:%"), 1);
    assert_eq!(ledger::problems(&broker), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wallet_offers_exactly_the_configured_providers() {
    let none = TestBroker::start(1).await;
    let mut alice = sign_up(none.api, "alice@example.org").await;
    let wallet = alice.get("/wallet").await;
    assert!(!wallet.body.contains("topup-form"), "{}", wallet.body);
    let token = create_token(&mut alice, "t").await;
    let r = call(
        none.api,
        "POST",
        "/api/v1/topups",
        Some(&token),
        Some(&json!({"provider": "paypal", "amount": "5"})),
    )
    .await;
    assert_eq!(r.status, 422);
    let webhook = common::http::post(none.api, "/webhooks/btcpay", b"{}")
        .await
        .unwrap();
    assert_eq!(webhook.status, 404, "no webhook without the provider");

    let paypal = FakePaypal::start().await;
    let btcpay = FakeBtcpay::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let both = TestBroker::start_with(
        1,
        &format!(
            "{}{}",
            paypal.config(&secrets.path().join("pp")),
            btcpay.config(secrets.path())
        ),
    )
    .await;
    let mut bob = sign_up(both.api, "bob@example.org").await;
    let wallet = bob.get("/wallet").await;
    assert!(
        wallet.body.contains("value=\"paypal\"") && wallet.body.contains("value=\"btcpay\""),
        "{}",
        wallet.body
    );
}

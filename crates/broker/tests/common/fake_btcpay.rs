//! A fake BTCPay Server (Greenfield API), in process on 127.0.0.1:0:
//! creating and reading a store's invoices (`Authorization: token <key>`),
//! and webhooks signed like BTCPay's (`BTCPay-Sig: sha256=<hex HMAC-SHA256
//! of the body>` under the webhook's secret), computed here with the `hmac`
//! crate rather than the broker's own code.
//!
//! Request shapes are checked; what is wrong is answered 400 and recorded
//! in [`FakeBtcpay::problems`]. On command it drops webhooks, answers 500
//! or answers slowly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

pub const STORE_ID: &str = "9CiNzKoANXxmk5ayZngSXrHTiVvvgCrwrpFQd4m2K776";
pub const API_KEY: &str = "fake-greenfield-api-key-0123456789";
pub const WEBHOOK_SECRET: &str = "fake-webhook-secret-abcdef";

/// One webhook delivery as sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub kind: String,
    pub signature: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Invoice {
    id: String,
    status: String,
    amount: String,
    currency: String,
    additional_status: String,
    metadata: Value,
}

#[derive(Default)]
struct Inner {
    webhook_url: Option<String>,
    invoices: HashMap<String, Invoice>,
    deliveries: Vec<Delivery>,
    problems: Vec<String>,
    counts: HashMap<&'static str, usize>,
    drop_webhooks: bool,
    fail_next: usize,
    slow: Option<Duration>,
    next: u64,
}

#[derive(Clone)]
pub struct FakeBtcpay {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

/// BTCPay's signature of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2_next::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn invoice_json(base: &str, i: &Invoice) -> Value {
    json!({
        "id": i.id,
        "storeId": STORE_ID,
        "amount": i.amount,
        "currency": i.currency,
        "type": "Standard",
        "checkoutLink": format!("{base}/i/{}", i.id),
        "status": i.status,
        "additionalStatus": i.additional_status,
        "createdTime": 1767225600,
        "expirationTime": 1767226500,
        "monitoringExpiration": 1767312900,
        "metadata": i.metadata,
        "archived": false,
    })
}

type Shared = State<Arc<Mutex<Inner>>>;

fn problem(inner: &Mutex<Inner>, what: String) -> Response {
    inner.lock().unwrap().problems.push(what.clone());
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "code": "generic-error", "message": what })),
    )
        .into_response()
}

impl FakeBtcpay {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/api/v1/stores/{store}/invoices", post(create))
            .route("/api/v1/stores/{store}/invoices/{id}", get(read))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            inner,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `[payments.btcpay]` table for a broker using this fake, with its
    /// secrets in files in `dir`.
    pub fn config(&self, dir: &std::path::Path) -> String {
        let key = dir.join("btcpay-api-key");
        let secret = dir.join("btcpay-webhook-secret");
        std::fs::write(&key, API_KEY).unwrap();
        std::fs::write(&secret, format!("{WEBHOOK_SECRET}\n")).unwrap();
        format!(
            "[payments.btcpay]\nbase_url = \"{}\"\nstore_id = \"{STORE_ID}\"\napi_key_file = \"{}\"\nwebhook_secret_file = \"{}\"\ntimeout_secs = 2\n",
            self.url(),
            key.display(),
            secret.display()
        )
    }

    pub fn set_broker(&self, api: SocketAddr) {
        self.inner.lock().unwrap().webhook_url = Some(format!("http://{api}/webhooks/btcpay"));
    }

    pub fn drop_webhooks(&self, on: bool) {
        self.inner.lock().unwrap().drop_webhooks = on;
    }

    pub fn fail_next(&self, n: usize) {
        self.inner.lock().unwrap().fail_next = n;
    }

    pub fn slow(&self, delay: Option<Duration>) {
        self.inner.lock().unwrap().slow = delay;
    }

    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }

    /// How often `what` (create, get) was called.
    pub fn count(&self, what: &'static str) -> usize {
        *self.inner.lock().unwrap().counts.get(what).unwrap_or(&0)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap().deliveries.clone()
    }

    /// The invoice a checkout link is for.
    pub fn invoice_of_link(link: &str) -> String {
        link.rsplit('/').next().unwrap().to_string()
    }

    /// The metadata the broker gave invoice `id`.
    pub fn metadata(&self, id: &str) -> Value {
        self.inner.lock().unwrap().invoices[id].metadata.clone()
    }

    /// Invoice `id` is changed at the server (as an invoice edited or
    /// forged there would be): its amount, currency and additional status.
    pub fn tamper(&self, id: &str, amount: &str, currency: &str, additional_status: &str) {
        let mut inner = self.inner.lock().unwrap();
        let i = inner.invoices.get_mut(id).expect("an invoice");
        i.amount = amount.into();
        i.currency = currency.into();
        i.additional_status = additional_status.into();
    }

    /// Invoice `id` moves to `status` (Settled, Expired, Invalid…) and
    /// BTCPay sends the webhook of that move, `kind`.
    pub async fn set_status(&self, id: &str, status: &str, kind: &str) -> Option<u16> {
        self.inner
            .lock()
            .unwrap()
            .invoices
            .get_mut(id)
            .expect("an invoice")
            .status = status.into();
        self.send(kind, id).await
    }

    /// Makes, signs and sends a webhook delivery of `kind` about invoice
    /// `id`; the broker's answer status, or `None` if dropped.
    pub async fn send(&self, kind: &str, id: &str) -> Option<u16> {
        let delivery = {
            let mut inner = self.inner.lock().unwrap();
            inner.next += 1;
            let delivery_id = format!("Delivery{:08}", inner.next);
            let metadata = inner.invoices[id].metadata.clone();
            let body = json!({
                "deliveryId": delivery_id,
                "webhookId": "Wh1234567890",
                "originalDeliveryId": delivery_id,
                "isRedelivery": false,
                "type": kind,
                "timestamp": 1767225700,
                "storeId": STORE_ID,
                "invoiceId": id,
                "metadata": metadata,
                "manuallyMarked": false,
                "overPaid": false,
            });
            let body = serde_json::to_vec(&body).unwrap();
            let d = Delivery {
                kind: kind.into(),
                signature: sign(WEBHOOK_SECRET, &body),
                body,
            };
            inner.deliveries.push(d.clone());
            if inner.drop_webhooks {
                return None;
            }
            d
        };
        Some(self.deliver(&delivery).await)
    }

    /// Sends `delivery` (again) to the broker; its answer's status.
    pub async fn deliver(&self, delivery: &Delivery) -> u16 {
        let url = self
            .inner
            .lock()
            .unwrap()
            .webhook_url
            .clone()
            .expect("set_broker first");
        self.http
            .post(url)
            .header("content-type", "application/json")
            .header("btcpay-sig", &delivery.signature)
            .body(delivery.body.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn misbehave(inner: &Mutex<Inner>) -> Option<Response> {
        let (slow, fail) = {
            let mut i = inner.lock().unwrap();
            let fail = i.fail_next > 0;
            if fail {
                i.fail_next -= 1;
            }
            (i.slow, fail)
        };
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        fail.then(|| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "code": "server-error", "message": "boom" })),
            )
                .into_response()
        })
    }
}

fn checked(inner: &Mutex<Inner>, headers: &HeaderMap, store: &str) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("token {API_KEY}")) {
        inner
            .lock()
            .unwrap()
            .problems
            .push(format!("a call with authorization {auth:?}"));
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({ "code": "unauthenticated", "message": "Authentication is required for accessing this endpoint" })),
            )
                .into_response(),
        );
    }
    if store != STORE_ID {
        return Some(problem(inner, format!("a call for store {store}")));
    }
    None
}

async fn create(
    State(inner): Shared,
    headers: HeaderMap,
    Path(store): Path<String>,
    body: Bytes,
) -> Response {
    *inner.lock().unwrap().counts.entry("create").or_default() += 1;
    if let Some(r) = FakeBtcpay::misbehave(&inner).await {
        return r;
    }
    if let Some(r) = checked(&inner, &headers, &store) {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return problem(&inner, "the invoice request is not JSON".into());
    };
    // Greenfield takes the amount as a decimal string.
    let amount = body["amount"].as_str().unwrap_or("");
    let amount_ok = amount.split_once('.').is_some_and(|(w, f)| {
        !w.is_empty()
            && w.bytes().all(|b| b.is_ascii_digit())
            && f.len() == 2
            && f.bytes().all(|b| b.is_ascii_digit())
    });
    let currency = body["currency"].as_str().unwrap_or("");
    if !amount_ok || currency.len() != 3 {
        return problem(
            &inner,
            format!("invoice amount {} {}", body["amount"], body["currency"]),
        );
    }
    if !body["metadata"]["orderId"].is_string() {
        return problem(&inner, "an invoice without metadata.orderId".into());
    }
    if !body["checkout"]["redirectURL"]
        .as_str()
        .is_some_and(|u| u.starts_with("http"))
    {
        return problem(&inner, "an invoice without checkout.redirectURL".into());
    }
    let mut i = inner.lock().unwrap();
    i.next += 1;
    let id = format!("Inv{:019}", i.next * 104_729);
    let invoice = Invoice {
        id: id.clone(),
        status: "New".into(),
        amount: amount.into(),
        currency: currency.into(),
        additional_status: "None".into(),
        metadata: body["metadata"].clone(),
    };
    let base = format!(
        "http://{}",
        headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("btcpay.invalid")
    );
    let answer = invoice_json(&base, &invoice);
    i.invoices.insert(id, invoice);
    axum::Json(answer).into_response()
}

async fn read(
    State(inner): Shared,
    headers: HeaderMap,
    Path((store, id)): Path<(String, String)>,
) -> Response {
    *inner.lock().unwrap().counts.entry("get").or_default() += 1;
    if let Some(r) = FakeBtcpay::misbehave(&inner).await {
        return r;
    }
    if let Some(r) = checked(&inner, &headers, &store) {
        return r;
    }
    let i = inner.lock().unwrap();
    match i.invoices.get(&id) {
        Some(inv) => axum::Json(invoice_json("http://btcpay.invalid", inv)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({ "code": "invoice-not-found", "message": "The invoice was not found" }),
            ),
        )
            .into_response(),
    }
}

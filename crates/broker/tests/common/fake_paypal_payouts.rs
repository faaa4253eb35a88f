//! A fake PayPal Payouts API, in process on 127.0.0.1:0, written to
//! PayPal's published API: OAuth2 client credentials (`/v1/oauth2/token`),
//! create batch payout (`POST /v1/payments/payouts`), show batch payout
//! details (`GET /v1/payments/payouts/{payout_batch_id}`), and webhook
//! signature verification for the `PAYMENT.PAYOUTS-ITEM.*` events it sends.
//!
//! Like PayPal it pays a `sender_batch_id` once: a repeat is refused 400
//! with a link to the batch made first (it does not replay answers by
//! `PayPal-Request-Id`, so the broker's lookup of that batch is what is
//! exercised). Every request's shape is checked (bearer token,
//! `sender_batch_id` derived from owner and period, one EMAIL item whose
//! amount is a decimal string with two decimals) and what is wrong is
//! recorded in [`FakePayouts::problems`]. On command it misbehaves:
//! answers 500, makes a batch and then answers 500 as if the answer was
//! lost, refuses a repeat 422 without the link, ends items FAILED, or
//! returns a paid item later.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "fake-payouts-client";
pub const CLIENT_SECRET: &str = "fake-payouts-secret-9876543210";
pub const WEBHOOK_ID: &str = "WH-PAYOUTS-0123456789";

/// One batch as made: its one item.
#[derive(Debug, Clone)]
pub struct Batch {
    pub batch_id: String,
    pub sender_batch_id: String,
    pub item_id: String,
    pub receiver: String,
    pub currency: String,
    /// In minor units, parsed from the decimal string sent.
    pub cents: i64,
    pub status: String,
}

#[derive(Default)]
struct Inner {
    webhook_url: Option<String>,
    tokens: Vec<String>,
    /// By payout_batch_id.
    batches: HashMap<String, Batch>,
    /// sender_batch_id -> payout_batch_id.
    by_sender: HashMap<String, String>,
    /// Statuses the next batches' items end in (SUCCESS when empty).
    outcomes: VecDeque<String>,
    /// Transmission id -> signature and event of each webhook sent.
    sent: HashMap<String, (String, Value)>,
    problems: Vec<String>,
    creates: usize,
    duplicates: usize,
    fail_next: usize,
    lose_next_answer: usize,
    unlinked_repeats: usize,
    next: u64,
}

impl Inner {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{:010}", self.next * 7919)
    }
}

#[derive(Clone)]
pub struct FakePayouts {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

fn error(status: StatusCode, name: &str, issue: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "name": name,
            "message": issue,
            "debug_id": "d00dfeed",
            "details": [{ "issue": issue }],
        })),
    )
        .into_response()
}

type Shared = State<Arc<Mutex<Inner>>>;

fn problem(inner: &Mutex<Inner>, what: String) -> Response {
    inner.lock().unwrap().problems.push(what.clone());
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &what)
}

/// Two-decimal amount strings, like PayPal's; `None` if malformed.
fn cents(value: &str) -> Option<i64> {
    let (whole, frac) = value.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && digits(frac) && frac.len() == 2)
        .then(|| {
            whole
                .parse::<i64>()
                .ok()
                .map(|w| w * 100 + frac.parse::<i64>().unwrap())
        })
        .flatten()
}

fn batch_json(b: &Batch) -> Value {
    let batch_status = match b.status.as_str() {
        "PENDING" | "UNCLAIMED" | "ONHOLD" => "PROCESSING",
        _ => "SUCCESS",
    };
    let value = format!("{}.{:02}", b.cents / 100, b.cents % 100);
    json!({
        "batch_header": {
            "payout_batch_id": b.batch_id,
            "batch_status": batch_status,
            "sender_batch_header": { "sender_batch_id": b.sender_batch_id, "recipient_type": "EMAIL" },
            "amount": { "currency": b.currency, "value": value },
        },
        "items": [item_json(b)],
        "links": [{ "href": format!("https://api-m.sandbox.paypal.com/v1/payments/payouts/{}", b.batch_id), "rel": "self", "method": "GET" }],
    })
}

fn item_json(b: &Batch) -> Value {
    let value = format!("{}.{:02}", b.cents / 100, b.cents % 100);
    json!({
        "payout_item_id": b.item_id,
        "transaction_id": format!("TX{}", b.item_id),
        "transaction_status": b.status,
        "payout_batch_id": b.batch_id,
        "payout_item": {
            "recipient_type": "EMAIL",
            "amount": { "currency": b.currency, "value": value },
            "receiver": b.receiver,
            "sender_item_id": b.sender_batch_id,
        },
    })
}

impl FakePayouts {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/oauth2/token", post(token))
            .route("/v1/payments/payouts", post(create))
            .route("/v1/payments/payouts/{id}", get(show))
            .route("/v1/notifications/verify-webhook-signature", post(verify))
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

    /// The `[payments.paypal]` table for a broker using this fake.
    pub fn config(&self, secret_file: &std::path::Path) -> String {
        std::fs::write(secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
        format!(
            "[payments.paypal]\nbase_url = \"http://{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\nwebhook_id = \"{WEBHOOK_ID}\"\ntimeout_secs = 2\n",
            self.addr,
            secret_file.display()
        )
    }

    /// Where this fake sends webhooks: the broker at `api`.
    pub fn set_broker(&self, api: SocketAddr) {
        self.inner.lock().unwrap().webhook_url = Some(format!("http://{api}/webhooks/paypal"));
    }

    /// The next `n` calls answer 500 without doing anything.
    pub fn fail_next(&self, n: usize) {
        self.inner.lock().unwrap().fail_next = n;
    }

    /// The next `n` batches are made, and then answered 500 (the answer
    /// was lost on its way).
    pub fn lose_next_answer(&self, n: usize) {
        self.inner.lock().unwrap().lose_next_answer = n;
    }

    /// The next `n` repeats of a `sender_batch_id` are refused 422
    /// `USER_BUSINESS_ERROR` without a link to the batch made first.
    pub fn refuse_repeats_unlinked(&self, n: usize) {
        self.inner.lock().unwrap().unlinked_repeats = n;
    }

    /// The next batches' items end in these statuses, in order.
    pub fn next_outcomes(&self, statuses: &[&str]) {
        let mut i = self.inner.lock().unwrap();
        i.outcomes.extend(statuses.iter().map(|s| s.to_string()));
    }

    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }

    /// Create calls, and how many of them were refused as duplicates.
    pub fn creates(&self) -> (usize, usize) {
        let i = self.inner.lock().unwrap();
        (i.creates, i.duplicates)
    }

    /// Every batch made, by sender_batch_id.
    pub fn batches(&self) -> Vec<Batch> {
        let i = self.inner.lock().unwrap();
        let mut all: Vec<Batch> = i.batches.values().cloned().collect();
        all.sort_by(|a, b| a.sender_batch_id.cmp(&b.sender_batch_id));
        all
    }

    /// What reached receivers and stayed there: items in SUCCESS, in cents.
    pub fn paid(&self) -> i64 {
        let i = self.inner.lock().unwrap();
        i.batches
            .values()
            .filter(|b| b.status == "SUCCESS")
            .map(|b| b.cents)
            .sum()
    }

    /// Sets the item of `sender_batch_id` to `status` (a paid item returned,
    /// say) and sends its `PAYMENT.PAYOUTS-ITEM.<event>` webhook; the
    /// broker's answer.
    pub async fn change(&self, sender_batch_id: &str, status: &str, event: &str) -> u16 {
        let resource = {
            let mut i = self.inner.lock().unwrap();
            let id = i.by_sender[sender_batch_id].clone();
            let b = i.batches.get_mut(&id).unwrap();
            b.status = status.to_string();
            item_json(b)
        };
        self.send(&format!("PAYMENT.PAYOUTS-ITEM.{event}"), resource)
            .await
    }

    async fn send(&self, event_type: &str, resource: Value) -> u16 {
        let (url, headers, body) = {
            let mut i = self.inner.lock().unwrap();
            let event_id = i.id("WH-");
            let transmission = i.id("tx-");
            let sig = base64::engine::general_purpose::STANDARD
                .encode(format!("sig-of-{transmission}-{event_id}"));
            let event = json!({
                "id": event_id,
                "event_version": "1.0",
                "create_time": "2026-01-01T00:00:00.000Z",
                "resource_type": "payouts_item",
                "event_type": event_type,
                "summary": "fake payout item event",
                "resource": resource,
            });
            i.sent
                .insert(transmission.clone(), (sig.clone(), event.clone()));
            let headers = vec![
                ("paypal-auth-algo", "SHA256withRSA".to_string()),
                (
                    "paypal-cert-url",
                    "https://api.paypal.com/v1/notifications/certs/CERT-1".into(),
                ),
                ("paypal-transmission-id", transmission),
                ("paypal-transmission-sig", sig),
                ("paypal-transmission-time", "2026-01-01T00:00:01Z".into()),
            ];
            (
                i.webhook_url.clone().expect("set_broker first"),
                headers,
                serde_json::to_vec(&event).unwrap(),
            )
        };
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        request.send().await.unwrap().status().as_u16()
    }
}

fn misbehave(inner: &Mutex<Inner>) -> Option<Response> {
    let mut i = inner.lock().unwrap();
    (i.fail_next > 0).then(|| {
        i.fail_next -= 1;
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "INTERNAL_SERVICE_ERROR",
        )
    })
}

fn authorized(inner: &Mutex<Inner>, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut i = inner.lock().unwrap();
    match token {
        Some(t) if i.tokens.iter().any(|k| k == t) => None,
        _ => {
            i.problems
                .push("a call without a valid bearer token".into());
            Some(error(
                StatusCode::UNAUTHORIZED,
                "AUTHENTICATION_FAILURE",
                "INVALID_TOKEN",
            ))
        }
    }
}

async fn token(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = misbehave(&inner) {
        return r;
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&expected)
        || body.as_ref() != b"grant_type=client_credentials"
    {
        return problem(
            &inner,
            "a token request without the app's credentials".into(),
        );
    }
    let mut i = inner.lock().unwrap();
    let token = format!("A21AA{}", i.id("tok"));
    i.tokens.push(token.clone());
    axum::Json(json!({
        "scope": "https://uri.paypal.com/services/payments/payouts",
        "access_token": token,
        "token_type": "Bearer",
        "app_id": "APP-80W284485P519543T",
        "expires_in": 32400,
    }))
    .into_response()
}

/// `po-<owner>-<period>-<currency>`.
fn derived_from_owner_and_period(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 4
        && parts[0] == "po"
        && parts[1..3]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[3].len() == 3
}

async fn create(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    inner.lock().unwrap().creates += 1;
    if let Some(r) = misbehave(&inner) {
        return r;
    }
    if let Some(r) = authorized(&inner, &headers) {
        return r;
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return problem(&inner, "a payout body that is not JSON".into());
    };
    if !ct.starts_with("application/json") {
        return problem(&inner, format!("content-type {ct:?}"));
    }
    let header = &body["sender_batch_header"];
    let Some(sender) = header["sender_batch_id"].as_str().map(str::to_string) else {
        return problem(&inner, "no sender_batch_header.sender_batch_id".into());
    };
    if !derived_from_owner_and_period(&sender) {
        return problem(
            &inner,
            format!("sender_batch_id {sender:?} is not po-<owner>-<period>-<currency>"),
        );
    }
    let items = body["items"].as_array().cloned().unwrap_or_default();
    if items.len() != 1 {
        return problem(
            &inner,
            format!("{} items in one owner's batch", items.len()),
        );
    }
    let item = &items[0];
    let value = item["amount"]["value"].as_str().unwrap_or("");
    let currency = item["amount"]["currency"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let receiver = item["receiver"].as_str().unwrap_or("").to_string();
    let recipient_type = item["recipient_type"]
        .as_str()
        .or(header["recipient_type"].as_str());
    let Some(cents) = cents(value) else {
        return problem(
            &inner,
            format!("amount value {value:?} is not a two-decimal string"),
        );
    };
    if currency.len() != 3 || !receiver.contains('@') || recipient_type != Some("EMAIL") {
        return problem(&inner, format!("item {item}"));
    }
    if item["sender_item_id"].as_str() != Some(sender.as_str()) {
        return problem(&inner, format!("sender_item_id {}", item["sender_item_id"]));
    }
    let mut i = inner.lock().unwrap();
    if let Some(existing) = i.by_sender.get(&sender).cloned() {
        i.duplicates += 1;
        if i.unlinked_repeats > 0 {
            i.unlinked_repeats -= 1;
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "USER_BUSINESS_ERROR",
                "Batch with given sender_batch_id already exists",
            );
        }
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "name": "USER_BUSINESS_ERROR",
                "message": "User business error.",
                "debug_id": "d00dfeed",
                "details": [{
                    "field": "SENDER_BATCH_ID",
                    "location": "body",
                    "issue": "Batch with given sender_batch_id already exists",
                    "link": [{
                        "href": format!("https://api-m.sandbox.paypal.com/v1/payments/payouts/{existing}"),
                        "rel": "self",
                        "method": "GET",
                        "encType": "application/json",
                    }],
                }],
            })),
        )
            .into_response();
    }
    let batch_id = i.id("PB");
    let item_id = i.id("PI");
    let status = i.outcomes.pop_front().unwrap_or_else(|| "SUCCESS".into());
    let batch = Batch {
        batch_id: batch_id.clone(),
        sender_batch_id: sender.clone(),
        item_id,
        receiver,
        currency,
        cents,
        status,
    };
    i.by_sender.insert(sender, batch_id.clone());
    i.batches.insert(batch_id.clone(), batch.clone());
    if i.lose_next_answer > 0 {
        i.lose_next_answer -= 1;
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "INTERNAL_SERVICE_ERROR",
        );
    }
    let mut answer = batch_json(&batch);
    answer["batch_header"]["batch_status"] = "PENDING".into();
    answer.as_object_mut().unwrap().remove("items");
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn show(State(inner): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = misbehave(&inner) {
        return r;
    }
    if let Some(r) = authorized(&inner, &headers) {
        return r;
    }
    let i = inner.lock().unwrap();
    match i.batches.get(&id) {
        Some(b) => axum::Json(batch_json(b)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "INVALID_RESOURCE_ID",
            "INVALID_RESOURCE_ID",
        ),
    }
}

async fn verify(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = authorized(&inner, &headers) {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return problem(&inner, "a verify body that is not JSON".into());
    };
    let i = inner.lock().unwrap();
    let genuine = body["webhook_id"] == WEBHOOK_ID
        && body["transmission_id"]
            .as_str()
            .and_then(|t| i.sent.get(t))
            .is_some_and(|(sig, event)| {
                body["transmission_sig"] == sig.as_str() && &body["webhook_event"] == event
            });
    axum::Json(json!({ "verification_status": if genuine { "SUCCESS" } else { "FAILURE" } }))
        .into_response()
}

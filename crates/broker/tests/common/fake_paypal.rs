//! A fake PayPal REST API, in process on 127.0.0.1:0, written to PayPal's
//! published API: OAuth2 client credentials (`/v1/oauth2/token`), Orders v2
//! (create, get, capture; `PayPal-Request-Id` makes a repeat return the
//! first answer) and webhook signature verification
//! (`/v1/notifications/verify-webhook-signature`, SUCCESS only for a
//! delivery this fake really sent, unchanged).
//!
//! Every request's shape is checked (auth headers, request ids, JSON
//! fields); what is wrong is answered 400 like PayPal and recorded in
//! [`FakePaypal::problems`]. On command it misbehaves: declines captures,
//! drops webhooks, answers 500, answers slowly.

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
use base64::Engine;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "fake-client-id";
pub const CLIENT_SECRET: &str = "fake-client-secret-0123456789";
pub const WEBHOOK_ID: &str = "WH-FAKE-0123456789";

/// One webhook delivery as sent: its headers and raw body.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Order {
    /// Where the fake serves its checkout page.
    base: String,
    return_url: String,
    cancel_url: String,
    id: String,
    custom_id: String,
    currency: String,
    value: String,
    status: String,
    capture: Option<(String, String)>,
    capture_request: Option<String>,
}

#[derive(Default)]
struct Inner {
    webhook_url: Option<String>,
    tokens: Vec<String>,
    orders: HashMap<String, Order>,
    /// PayPal-Request-Id of order creations, and the order each made.
    created: HashMap<String, String>,
    /// Transmission id -> signature and event of each delivery sent.
    sent: HashMap<String, (String, Value)>,
    deliveries: Vec<Delivery>,
    problems: Vec<String>,
    counts: HashMap<&'static str, usize>,
    decline_captures: bool,
    drop_webhooks: bool,
    fail_next: usize,
    slow: Option<Duration>,
    next: u64,
}

impl Inner {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{:013}", self.next * 7919)
    }
}

#[derive(Clone)]
pub struct FakePaypal {
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
            "debug_id": "f00dfeed",
            "details": [{ "issue": issue }],
        })),
    )
        .into_response()
}

impl FakePaypal {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/oauth2/token", post(token))
            .route("/checkoutnow", get(checkout_page))
            .route("/checkoutnow/approve", post(checkout_approve))
            .route("/v2/checkout/orders", post(create_order))
            .route("/v2/checkout/orders/{id}", get(get_order))
            .route("/v2/checkout/orders/{id}/capture", post(capture))
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

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `[payments.paypal]` table for a broker using this fake, with
    /// the client secret in `secret_file`.
    pub fn config(&self, secret_file: &std::path::Path) -> String {
        std::fs::write(secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
        format!(
            "[payments.paypal]\nbase_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\nwebhook_id = \"{WEBHOOK_ID}\"\ntimeout_secs = 2\n",
            self.url(),
            secret_file.display()
        )
    }

    /// Where this fake sends webhooks: the broker at `api`.
    pub fn set_broker(&self, api: SocketAddr) {
        self.inner.lock().unwrap().webhook_url = Some(format!("http://{api}/webhooks/paypal"));
    }

    pub fn decline_captures(&self, on: bool) {
        self.inner.lock().unwrap().decline_captures = on;
    }

    pub fn drop_webhooks(&self, on: bool) {
        self.inner.lock().unwrap().drop_webhooks = on;
    }

    /// The next `n` API calls answer 500.
    pub fn fail_next(&self, n: usize) {
        self.inner.lock().unwrap().fail_next = n;
    }

    /// Every answer comes after `delay`.
    pub fn slow(&self, delay: Option<Duration>) {
        self.inner.lock().unwrap().slow = delay;
    }

    /// Request shapes that were wrong.
    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }

    /// How often `what` (token, create, get, capture, verify) was called.
    pub fn count(&self, what: &'static str) -> usize {
        *self.inner.lock().unwrap().counts.get(what).unwrap_or(&0)
    }

    /// Every webhook delivery made so far (sent or dropped).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap().deliveries.clone()
    }

    /// The order a checkout link is for.
    pub fn order_of_link(link: &str) -> String {
        link.split("token=")
            .nth(1)
            .expect("a checkout link")
            .to_string()
    }

    /// The order's status and its capture's status.
    pub fn order_state(&self, id: &str) -> (String, Option<String>) {
        let inner = self.inner.lock().unwrap();
        let o = &inner.orders[id];
        (o.status.clone(), o.capture.as_ref().map(|c| c.1.clone()))
    }

    /// The merchant refunds order `id`'s capture in full.
    pub async fn refund(&self, id: &str) -> Option<u16> {
        let value = self.inner.lock().unwrap().orders[id].value.clone();
        self.refund_part(id, &value).await
    }

    /// The merchant refunds `value` of order `id`'s capture; PayPal sends
    /// PAYMENT.CAPTURE.REFUNDED about the refund (full or partial), which
    /// links "up" to the capture.
    pub async fn refund_part(&self, id: &str, value: &str) -> Option<u16> {
        let resource = {
            let mut inner = self.inner.lock().unwrap();
            let refund = inner.id("1JU0");
            let o = &inner.orders[id];
            let capture = &o.capture.as_ref().expect("a capture").0;
            json!({
                "id": refund,
                "status": "COMPLETED",
                "amount": { "currency_code": o.currency, "value": value },
                "links": [
                    { "href": format!("https://api-m.sandbox.paypal.com/v2/payments/refunds/{refund}"), "rel": "self", "method": "GET" },
                    { "href": format!("https://api-m.sandbox.paypal.com/v2/payments/captures/{capture}"), "rel": "up", "method": "GET" },
                ],
            })
        };
        self.send("PAYMENT.CAPTURE.REFUNDED", resource).await
    }

    fn with(inner: Arc<Mutex<Inner>>) -> Self {
        Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            inner,
            http: reqwest::Client::new(),
        }
    }

    /// The renter approves order `id` at PayPal; PayPal sends
    /// CHECKOUT.ORDER.APPROVED.
    pub async fn approve(&self, id: &str) {
        let event = {
            let mut inner = self.inner.lock().unwrap();
            let order = inner.orders.get_mut(id).expect("an order");
            assert!(
                ["PAYER_ACTION_REQUIRED", "CREATED"].contains(&order.status.as_str()),
                "approving an order in {}",
                order.status
            );
            order.status = "APPROVED".into();
            order_json(order)
        };
        self.send("CHECKOUT.ORDER.APPROVED", event).await;
    }

    /// Makes, signs and sends a webhook delivery of `event_type` about
    /// `resource`; the broker's answer status, or `None` if dropped.
    pub async fn send(&self, event_type: &str, resource: Value) -> Option<u16> {
        let delivery = {
            let mut inner = self.inner.lock().unwrap();
            let event_id = inner.id("WH-");
            let transmission = inner.id("tx-");
            let sig = base64::engine::general_purpose::STANDARD
                .encode(format!("sig-of-{transmission}-{event_id}"));
            let event = json!({
                "id": event_id,
                "event_version": "1.0",
                "create_time": "2026-01-01T00:00:00.000Z",
                "resource_type": if event_type.starts_with("CHECKOUT") { "checkout-order" } else { "capture" },
                "event_type": event_type,
                "summary": "fake event",
                "resource": resource,
            });
            inner
                .sent
                .insert(transmission.clone(), (sig.clone(), event.clone()));
            let headers = vec![
                ("paypal-auth-algo".into(), "SHA256withRSA".into()),
                (
                    "paypal-cert-url".into(),
                    "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
                        .into(),
                ),
                ("paypal-transmission-id".into(), transmission),
                ("paypal-transmission-sig".into(), sig),
                (
                    "paypal-transmission-time".into(),
                    "2026-01-01T00:00:01Z".into(),
                ),
            ];
            let d = Delivery {
                event_type: event_type.into(),
                headers,
                body: serde_json::to_vec(&event).unwrap(),
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
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(delivery.body.clone());
        for (k, v) in &delivery.headers {
            request = request.header(k, v);
        }
        request.send().await.unwrap().status().as_u16()
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
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "INTERNAL_SERVICE_ERROR",
            )
        })
    }
}

fn order_json(o: &Order) -> Value {
    let mut unit = json!({
        "reference_id": o.custom_id,
        "custom_id": o.custom_id,
        "amount": { "currency_code": o.currency, "value": o.value },
    });
    if let Some((id, status)) = &o.capture {
        unit["payments"] = json!({ "captures": [capture_json(o, id, status)] });
    }
    json!({
        "id": o.id,
        "intent": "CAPTURE",
        "status": o.status,
        "purchase_units": [unit],
        "links": [
            { "href": format!("{}/checkoutnow?token={}", o.base, o.id), "rel": "payer-action", "method": "GET" },
            { "href": format!("https://api-m.sandbox.paypal.com/v2/checkout/orders/{}", o.id), "rel": "self", "method": "GET" },
        ],
    })
}

fn capture_json(o: &Order, id: &str, status: &str) -> Value {
    json!({
        "id": id,
        "status": status,
        "amount": { "currency_code": o.currency, "value": o.value },
        "custom_id": o.custom_id,
        "final_capture": true,
        "supplementary_data": { "related_ids": { "order_id": o.id } },
        "links": [
            { "href": format!("https://api-m.sandbox.paypal.com/v2/payments/captures/{id}"), "rel": "self", "method": "GET" },
        ],
    })
}

type Shared = State<Arc<Mutex<Inner>>>;

fn problem(inner: &Mutex<Inner>, what: String) -> Response {
    inner.lock().unwrap().problems.push(what.clone());
    error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &what)
}

fn count(inner: &Mutex<Inner>, what: &'static str) {
    *inner.lock().unwrap().counts.entry(what).or_default() += 1;
}

/// Checks the bearer token; `Some(response)` to refuse.
fn authorized(inner: &Mutex<Inner>, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) if inner.lock().unwrap().tokens.iter().any(|k| k == t) => None,
        _ => {
            inner
                .lock()
                .unwrap()
                .problems
                .push("a call without a valid bearer token".into());
            Some(error(
                StatusCode::UNAUTHORIZED,
                "AUTHENTICATION_FAILURE",
                "INVALID_TOKEN",
            ))
        }
    }
}

/// The JSON body of a request, or what is wrong with it.
fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(format!("content-type {ct:?} is not JSON"));
    }
    serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))
}

async fn token(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    count(&inner, "token");
    if let Some(r) = FakePaypal::misbehave(&inner).await {
        return r;
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&expected) {
        inner
            .lock()
            .unwrap()
            .problems
            .push("token request without the app's basic auth".into());
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "Client Authentication failed"})),
        )
            .into_response();
    }
    if body.as_ref() != b"grant_type=client_credentials" {
        return problem(
            &inner,
            format!("token body {:?}", String::from_utf8_lossy(&body)),
        );
    }
    let mut i = inner.lock().unwrap();
    let token = format!("A21AA{}", i.id("tok"));
    i.tokens.push(token.clone());
    axum::Json(json!({
        "scope": "https://uri.paypal.com/services/payments/payment",
        "access_token": token,
        "token_type": "Bearer",
        "app_id": "APP-80W284485P519543T",
        "expires_in": 32400,
        "nonce": "2026-01-01T00:00:00Zabc",
    }))
    .into_response()
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("paypal-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 108)
        .map(str::to_string)
}

async fn create_order(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    count(&inner, "create");
    if let Some(r) = FakePaypal::misbehave(&inner).await {
        return r;
    }
    if let Some(r) = authorized(&inner, &headers) {
        return r;
    }
    let Some(rid) = request_id(&headers) else {
        return problem(&inner, "order created without PayPal-Request-Id".into());
    };
    let body = match json_body(&headers, &body) {
        Ok(b) => b,
        Err(why) => return problem(&inner, why),
    };
    if body["intent"] != "CAPTURE" {
        return problem(&inner, format!("intent {}", body["intent"]));
    }
    let unit = &body["purchase_units"][0];
    let value = unit["amount"]["value"].as_str().unwrap_or("");
    let currency = unit["amount"]["currency_code"].as_str().unwrap_or("");
    let value_ok = value.split_once('.').is_some_and(|(w, f)| {
        !w.is_empty()
            && w.bytes().all(|b| b.is_ascii_digit())
            && f.len() == 2
            && f.bytes().all(|b| b.is_ascii_digit())
    });
    if !value_ok || currency.len() != 3 {
        return problem(&inner, format!("amount {}", unit["amount"]));
    }
    let ctx = &body["payment_source"]["paypal"]["experience_context"];
    if !ctx["return_url"]
        .as_str()
        .is_some_and(|u| u.starts_with("http"))
        || !ctx["cancel_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http"))
    {
        return problem(&inner, format!("experience_context {ctx}"));
    }
    let mut i = inner.lock().unwrap();
    if let Some(existing) = i.created.get(&rid) {
        let o = &i.orders[existing];
        return (StatusCode::OK, axum::Json(order_json(o))).into_response();
    }
    let id = i.id("5O19");
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("paypal.invalid");
    let order = Order {
        base: format!("http://{host}"),
        return_url: ctx["return_url"].as_str().unwrap().to_string(),
        cancel_url: ctx["cancel_url"].as_str().unwrap().to_string(),
        id: id.clone(),
        custom_id: unit["custom_id"].as_str().unwrap_or("").to_string(),
        currency: currency.into(),
        value: value.into(),
        status: "PAYER_ACTION_REQUIRED".into(),
        capture: None,
        capture_request: None,
    };
    let answer = order_json(&order);
    i.orders.insert(id.clone(), order);
    i.created.insert(rid, id);
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn get_order(State(inner): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    count(&inner, "get");
    if let Some(r) = FakePaypal::misbehave(&inner).await {
        return r;
    }
    if let Some(r) = authorized(&inner, &headers) {
        return r;
    }
    let i = inner.lock().unwrap();
    match i.orders.get(&id) {
        Some(o) => axum::Json(order_json(o)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            "INVALID_RESOURCE_ID",
        ),
    }
}

async fn capture(
    State(inner): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    count(&inner, "capture");
    if let Some(r) = FakePaypal::misbehave(&inner).await {
        return r;
    }
    if let Some(r) = authorized(&inner, &headers) {
        return r;
    }
    let Some(rid) = request_id(&headers) else {
        return problem(&inner, "capture without PayPal-Request-Id".into());
    };
    if !body.is_empty()
        && let Err(why) = json_body(&headers, &body)
    {
        return problem(&inner, why);
    }
    let (answer, event) = {
        let mut i = inner.lock().unwrap();
        let decline = i.decline_captures;
        let capture_id = i.id("3C67");
        let Some(order) = i.orders.get_mut(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_FOUND",
                "INVALID_RESOURCE_ID",
            );
        };
        if order.capture.is_some() {
            return if order.capture_request.as_deref() == Some(&rid) {
                (StatusCode::CREATED, axum::Json(order_json(order))).into_response()
            } else {
                error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "UNPROCESSABLE_ENTITY",
                    "ORDER_ALREADY_CAPTURED",
                )
            };
        }
        if order.status != "APPROVED" {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNPROCESSABLE_ENTITY",
                "ORDER_NOT_APPROVED",
            );
        }
        let status = if decline { "DECLINED" } else { "COMPLETED" };
        // PayPal completes the order even when its capture is declined.
        order.status = "COMPLETED".into();
        order.capture = Some((capture_id.clone(), status.into()));
        order.capture_request = Some(rid);
        let event = (
            if decline {
                "PAYMENT.CAPTURE.DENIED"
            } else {
                "PAYMENT.CAPTURE.COMPLETED"
            },
            capture_json(order, &capture_id, status),
        );
        (order_json(order), event)
    };
    let me = FakePaypal::with(inner.clone());
    tokio::spawn(async move {
        me.send(event.0, event.1).await;
    });
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn verify(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    count(&inner, "verify");
    if let Some(r) = FakePaypal::misbehave(&inner).await {
        return r;
    }
    if let Some(r) = authorized(&inner, &headers) {
        return r;
    }
    let body = match json_body(&headers, &body) {
        Ok(b) => b,
        Err(why) => return problem(&inner, why),
    };
    for field in [
        "auth_algo",
        "cert_url",
        "transmission_id",
        "transmission_sig",
        "transmission_time",
        "webhook_id",
    ] {
        if !body[field].is_string() {
            return problem(&inner, format!("verify call without {field}"));
        }
    }
    if !body["webhook_event"].is_object() {
        return problem(&inner, "verify call without webhook_event".into());
    }
    let i = inner.lock().unwrap();
    let genuine = body["webhook_id"] == WEBHOOK_ID
        && i.sent
            .get(body["transmission_id"].as_str().unwrap())
            .is_some_and(|(sig, event)| {
                body["transmission_sig"] == sig.as_str() && &body["webhook_event"] == event
            });
    axum::Json(json!({ "verification_status": if genuine { "SUCCESS" } else { "FAILURE" } }))
        .into_response()
}

#[derive(serde::Deserialize)]
struct Checkout {
    token: String,
}

/// PayPal's checkout page, where the renter approves the payment.
async fn checkout_page(
    State(inner): Shared,
    axum::extract::Query(q): axum::extract::Query<Checkout>,
) -> Response {
    let i = inner.lock().unwrap();
    let Some(o) = i.orders.get(&q.token) else {
        return (StatusCode::NOT_FOUND, "no such order").into_response();
    };
    axum::response::Html(format!(
        "<!doctype html><title>PayPal</title><h1>Pay with PayPal</h1><p>Pay {} {} to the broker</p>\
         <form method=post action=\"/checkoutnow/approve?token={}\"><button>Pay Now</button></form>\
         <p><a href=\"{}\">Cancel and return</a></p>",
        o.value, o.currency, o.id, o.cancel_url
    ))
    .into_response()
}

/// The renter approved: PayPal sends them back to the broker's return URL.
async fn checkout_approve(
    State(inner): Shared,
    axum::extract::Query(q): axum::extract::Query<Checkout>,
) -> Response {
    let back = {
        let i = inner.lock().unwrap();
        match i.orders.get(&q.token) {
            Some(o) => o.return_url.clone(),
            None => return (StatusCode::NOT_FOUND, "no such order").into_response(),
        }
    };
    FakePaypal::with(inner).approve(&q.token).await;
    (
        StatusCode::SEE_OTHER,
        [(
            "location",
            format!("{back}?token={}&PayerID=FAKEPAYER42", q.token),
        )],
    )
        .into_response()
}

//! PayPal's REST API as the broker calls it: an OAuth2 access token from the
//! app's client credentials (cached until shortly before it expires), JSON
//! calls authorized with it, and verification of webhook deliveries by
//! asking PayPal (`/v1/notifications/verify-webhook-signature`).
//!
//! Nothing here knows about orders or payouts; those are built on
//! [`PaypalClient::get`] and [`PaypalClient::post`].

use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use super::settings::PaypalSettings;
use crate::payments::http::{HttpError, client, read_body};

/// A token is renewed this long before PayPal says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Longest token lifetime believed, whatever PayPal says.
const TOKEN_MAX_LIFE: Duration = Duration::from_secs(12 * 3600);

/// The webhook headers PayPal signs a delivery with, by the verify call's
/// field names.
const SIGNATURE_HEADERS: [(&str, &str); 5] = [
    ("auth_algo", "paypal-auth-algo"),
    ("cert_url", "paypal-cert-url"),
    ("transmission_id", "paypal-transmission-id"),
    ("transmission_sig", "paypal-transmission-sig"),
    ("transmission_time", "paypal-transmission-time"),
];
/// Longest signature header accepted.
const MAX_HEADER: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum PaypalError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// PayPal answered with an error; `name` and `issue` are PayPal's
    /// (e.g. `UNPROCESSABLE_ENTITY`, `ORDER_ALREADY_CAPTURED`).
    #[error("PayPal answered {status} {name}{}", issue.as_deref().map(|i| format!(" ({i})")).unwrap_or_default())]
    Refused {
        status: u16,
        name: String,
        issue: Option<String>,
        /// The links PayPal's error points to (e.g. the payout batch a
        /// duplicate `sender_batch_id` already made), at most a few.
        links: Vec<String>,
    },
    #[error("PayPal's answer could not be read: {0}")]
    BadAnswer(String),
    #[error("the webhook delivery lacks the {0} header or it is malformed")]
    MissingHeader(&'static str),
}

impl From<reqwest::Error> for PaypalError {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(HttpError::Transport(e))
    }
}

impl PaypalError {
    /// Whether PayPal said `issue` (e.g. `ORDER_ALREADY_CAPTURED`).
    pub fn is_issue(&self, wanted: &str) -> bool {
        matches!(self, Self::Refused { issue: Some(i), .. } if i == wanted)
    }
}

struct Token {
    value: String,
    renew_at: Instant,
}

/// A PayPal REST client for one app.
pub struct PaypalClient {
    http: reqwest::Client,
    settings: PaypalSettings,
    token: Mutex<Option<Token>>,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(serde::Deserialize, Default)]
struct ErrorAnswer {
    #[serde(default)]
    name: String,
    #[serde(default)]
    details: Vec<ErrorDetail>,
    #[serde(default)]
    error: String,
    #[serde(default)]
    links: Vec<ErrorLink>,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    issue: String,
    #[serde(default)]
    link: Vec<ErrorLink>,
}

#[derive(serde::Deserialize)]
struct ErrorLink {
    #[serde(default)]
    href: String,
}

/// Links kept from one error answer, and the longest kept.
const MAX_LINKS: usize = 4;
const MAX_LINK: usize = 512;

#[derive(serde::Deserialize)]
struct VerifyAnswer {
    verification_status: String,
}

impl PaypalClient {
    pub fn new(settings: PaypalSettings) -> Result<Self, PaypalError> {
        Ok(Self {
            http: client(settings.timeout)?,
            settings,
            token: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &PaypalSettings {
        &self.settings
    }

    /// A valid access token, asking PayPal for a new one when the cached
    /// one is about to expire.
    async fn access_token(&self) -> Result<String, PaypalError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.value.clone());
        }
        let response = self
            .http
            .post(format!("{}/v1/oauth2/token", self.settings.base_url))
            .basic_auth(
                &self.settings.client_id,
                Some(self.settings.client_secret.expose()),
            )
            .header("accept", "application/json")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?;
        let answer: TokenAnswer = parse(response).await?;
        let life = Duration::from_secs(answer.expires_in).min(TOKEN_MAX_LIFE);
        let token = Token {
            value: answer.access_token,
            renew_at: Instant::now() + life.saturating_sub(TOKEN_MARGIN.min(life / 2)),
        };
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// GETs `path` (with its query) as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PaypalError> {
        self.call(Method::GET, path, None, None).await
    }

    /// POSTs `body` to `path` as JSON. With a `request_id` (sent as
    /// `PayPal-Request-Id`), PayPal does what the first call with that id
    /// did, however often the call is repeated.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        request_id: Option<&str>,
    ) -> Result<T, PaypalError> {
        let body = serde_json::to_vec(body).map_err(|e| PaypalError::BadAnswer(e.to_string()))?;
        self.call(Method::POST, path, Some(body), request_id).await
    }

    /// One authorized JSON call; an expired token is renewed and the call
    /// made once more.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        request_id: Option<&str>,
    ) -> Result<T, PaypalError> {
        for attempt in 0..2 {
            let token = self.access_token().await?;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.settings.base_url))
                .bearer_auth(&token)
                .header("accept", "application/json")
                .header("prefer", "return=representation");
            if let Some(id) = request_id {
                request = request.header("paypal-request-id", id);
            }
            if let Some(body) = &body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.clone());
            }
            let response = request.send().await?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                self.token.lock().await.take();
                continue;
            }
            return parse(response).await;
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Whether PayPal vouches that it sent this webhook delivery (headers
    /// and raw body) to this broker's webhook.
    pub async fn verify_webhook(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<bool, PaypalError> {
        let mut fields = serde_json::Map::new();
        for (field, header) in SIGNATURE_HEADERS {
            let value = headers
                .get(header)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= MAX_HEADER)
                .ok_or(PaypalError::MissingHeader(header))?;
            fields.insert(field.into(), value.into());
        }
        fields.insert("webhook_id".into(), self.settings.webhook_id.clone().into());
        // The event goes back to PayPal byte for byte as it came: PayPal
        // checks its signature over exactly those bytes.
        let event = std::str::from_utf8(body)
            .ok()
            .filter(|b| serde_json::from_str::<serde_json::Map<_, _>>(b).is_ok())
            .ok_or_else(|| PaypalError::BadAnswer("the delivery is not a JSON object".into()))?;
        let mut request =
            serde_json::to_string(&fields).map_err(|e| PaypalError::BadAnswer(e.to_string()))?;
        request.pop();
        request.push_str(",\"webhook_event\":");
        request.push_str(event);
        request.push('}');
        let answer: VerifyAnswer = self
            .call(
                Method::POST,
                "/v1/notifications/verify-webhook-signature",
                Some(request.into_bytes()),
                None,
            )
            .await?;
        Ok(answer.verification_status == "SUCCESS")
    }
}

/// A 2xx answer's JSON, or PayPal's error.
async fn parse<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, PaypalError> {
    let status = response.status();
    let body = read_body(response).await?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| PaypalError::BadAnswer(e.to_string()));
    }
    let error: ErrorAnswer = serde_json::from_slice(&body).unwrap_or_default();
    let name = if !error.name.is_empty() {
        error.name
    } else if !error.error.is_empty() {
        error.error
    } else {
        status.canonical_reason().unwrap_or("error").to_string()
    };
    let links = error
        .details
        .iter()
        .flat_map(|d| &d.link)
        .chain(&error.links)
        .map(|l| l.href.clone())
        .filter(|h| !h.is_empty() && h.len() <= MAX_LINK)
        .take(MAX_LINKS)
        .collect();
    Err(PaypalError::Refused {
        status: status.as_u16(),
        name: name.chars().take(100).collect(),
        links,
        issue: error
            .details
            .into_iter()
            .map(|d| d.issue)
            .find(|i| !i.is_empty())
            .map(|i| i.chars().take(100).collect()),
    })
}

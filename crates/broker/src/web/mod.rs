//! The web interface: server-rendered pages for people, on the broker's
//! HTTP listener beside the API.
//!
//! - [`layout`]: the page frame and stylesheet.
//! - [`auth`]: sign-up, sign-in, sign-out, the account page and its API tokens.
//! - [`market`]: the marketplace page, device pages, renting and my rentals.
//! - [`devices`]: the owner's devices and device registration.
//! - [`admin`]: the administrators' overview and actions.
//! - [`wallet`]: a person's balances and their movements.
//! - [`earnings`]: an owner's earnings, payouts and payout method.
//! - [`topups`]: topping up a wallet through a payment provider.
//! - [`limit`]: per-address rate limits.
//! - [`limits`]: the owner's sandbox limits (CPU, memory, disk) on My devices.
//! - [`reset`]: password reset by email.
//! - [`usage`]: a rental's page: what each hour cost its renter, and why.
//!
//! Every form carries an anti-CSRF token: the session's own once signed in,
//! otherwise a random one that must match a `SameSite=Strict` cookie. A POST
//! whose `Origin` names another site is refused as well. The session cookie
//! is `HttpOnly`, `SameSite=Lax`, and `Secure` when the broker's public URL
//! is https.

pub mod admin;
pub mod auth;
pub mod devices;
pub mod earnings;
pub mod layout;
pub mod leases;
pub mod limit;
pub mod limits;
pub mod market;
pub mod reset;
pub mod topups;
pub mod usage;
pub mod wallet;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use rand::RngExt;

use crate::accounts::{self, ABSOLUTE_TIMEOUT_SECS, Session};
use crate::broker::Shared;
use crate::time::UnixTime;
use limit::RateLimit;

/// Name of the session cookie over http; over https it gets the `__Host-`
/// prefix, so that a page on a device's subdomain cannot set or shadow it.
pub const SESSION_COOKIE: &str = "rpb_session";
/// Name of the cookie that pairs with the CSRF field of signed-out forms
/// (with the same prefix over https).
pub const CSRF_COOKIE: &str = "rpb_csrf";
/// What a page says when password hashing is saturated.
pub const BUSY: &str = "The broker is busy; try again in a moment.";
/// Longest wait for a password hashing slot.
const HASHING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A slot to hash a password in, or `None` if none freed up in time.
pub async fn hashing_slot(shared: &Shared) -> Option<tokio::sync::SemaphorePermit<'_>> {
    tokio::time::timeout(HASHING_WAIT, shared.web_limits.hashing.acquire())
        .await
        .ok()?
        .ok()
}

fn https(shared: &Shared) -> bool {
    shared.settings.public_url.starts_with("https://")
}

/// The cookie's name as this broker sets it.
pub fn cookie_name(shared: &Shared, base: &'static str) -> String {
    if https(shared) {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// Rate limits per address, and a cap on password hashing at once (each
/// Argon2 run takes 19 MiB and a core for tens of milliseconds).
pub struct Limits {
    pub sign_in: RateLimit,
    pub sign_up: RateLimit,
    pub password_reset: RateLimit,
    pub hashing: tokio::sync::Semaphore,
}

/// Password hashes computed at once, at most.
const MAX_HASHING: usize = 8;
/// Largest form body accepted.
const MAX_FORM: usize = 16 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Per account, sign-ins are throttled too (see `accounts`).
            sign_in: RateLimit::new("sign-in", 20, 300),
            sign_up: RateLimit::new("sign-up", 10, 3600),
            // Per account, reset links are limited too (see `accounts::reset`).
            password_reset: RateLimit::new("password reset", 10, 3600),
            hashing: tokio::sync::Semaphore::new(MAX_HASHING),
        }
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(market::home))
        .route(LIVE_JS_PATH, get(live_js))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/signin", get(auth::signin_page).post(auth::signin))
        .route("/signout", post(auth::signout))
        .route("/account", get(auth::account_page))
        .route("/account/password", post(auth::change_password))
        .route("/account/tokens", post(auth::create_token))
        .route("/account/tokens/revoke", post(auth::revoke_token))
        .route(
            "/password/forgot",
            get(reset::forgot_page).post(reset::forgot),
        )
        .route("/password/reset", post(reset::reset))
        .route("/password/reset/{token}", get(reset::reset_page))
        .route("/devices", get(devices::list).post(devices::register))
        .route("/devices/listing", post(devices::set_listing))
        .route("/devices/end-rental", post(devices::end_rental))
        .route("/devices/remove", post(devices::remove))
        .route("/devices/limits", post(limits::set_limits))
        .route("/market/{name}", get(market::device))
        .route("/rent", post(market::rent))
        .route("/rentals", get(market::rentals))
        .route("/leases", get(leases::list).post(leases::rent))
        .route("/leases/stop", post(leases::stop))
        .route("/leases/{id}", get(leases::usage_page))
        .route("/rentals/stop", post(market::stop))
        .route("/rentals/{id}", get(usage::usage_page))
        .route("/wallet", get(wallet::wallet_page))
        .route("/wallet.csv", get(wallet::wallet_csv))
        .route("/earnings", get(earnings::earnings_page))
        .route("/earnings/method", post(earnings::set_method))
        .route("/wallet/topups", post(topups::start))
        .route("/wallet/topups/{id}", get(topups::returned))
        .route("/admin", get(admin::overview_page))
        .route("/admin/users", post(admin::user_action))
        .route("/admin/devices", post(admin::device_action))
        .route("/admin/rentals/end", post(admin::end_rental))
        .route("/admin/peers/remove", post(admin::remove_peer))
        .route("/admin/peers/{name}", get(admin::peer_page))
        .route("/admin/revenue", get(admin::revenue_page))
        .route("/admin/payouts/export", post(admin::export_payouts))
        .route("/admin/payouts/import", post(admin::import_payouts))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
}

/// Where pages load [`LIVE_JS`] from.
pub const LIVE_JS_PATH: &str = "/static/live.js";
/// The one script the pages use: it refreshes the elements marked
/// `data-live` (device and rental state) without a reload.
const LIVE_JS: &str = include_str!("static/live.js");

async fn live_js() -> Response {
    let mut response = LIVE_JS.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The value of cookie `name` in the request; `None` when it is missing, or
/// sent more than once (another site planted one: trust neither).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string());
    let value = found.next()?;
    if found.next().is_some() {
        return None;
    }
    Some(value).filter(|v| !v.is_empty() && v.len() <= 128)
}

fn secure(shared: &Shared) -> &'static str {
    if https(shared) { "; Secure" } else { "" }
}

/// The `Set-Cookie` value that gives the browser its session.
pub fn session_cookie(shared: &Shared, token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ABSOLUTE_TIMEOUT_SECS}{}",
        cookie_name(shared, SESSION_COOKIE),
        secure(shared)
    ))
    .expect("a valid cookie")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie(shared: &Shared) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        cookie_name(shared, SESSION_COOKIE),
        secure(shared)
    ))
    .expect("a valid cookie")
}

/// The CSRF token of a signed-out form: the one the browser already has, or
/// a new one with the cookie that sets it.
pub fn anonymous_csrf(shared: &Shared, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    let name = cookie_name(shared, CSRF_COOKIE);
    if let Some(existing) = cookie(headers, &name) {
        return (existing, None);
    }
    let token = hex::encode(rand::rng().random::<[u8; 16]>());
    let cookie = HeaderValue::from_str(&format!(
        "{name}={token}; Path=/; HttpOnly; SameSite=Strict{}",
        secure(shared)
    ))
    .expect("a valid cookie");
    (token, Some(cookie))
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a POST comes from a page of this site: its `Origin`, when sent,
/// names the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

/// A form refused for its anti-CSRF token or origin.
#[derive(Debug)]
pub struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        csrf_refused()
    }
}

/// Checks a signed-out form's CSRF field against its cookie.
pub fn check_anonymous_csrf(
    shared: &Shared,
    headers: &HeaderMap,
    field: &str,
) -> Result<(), CsrfRefused> {
    let ok = same_origin(headers)
        && cookie(headers, &cookie_name(shared, CSRF_COOKIE))
            .is_some_and(|c| same_secret(&c, field));
    if ok { Ok(()) } else { Err(CsrfRefused) }
}

/// Checks a signed-in form's CSRF field against the session's token.
pub fn check_session_csrf(
    headers: &HeaderMap,
    session: &Session,
    field: &str,
) -> Result<(), CsrfRefused> {
    if same_origin(headers) && same_secret(&session.csrf, field) {
        Ok(())
    } else {
        Err(CsrfRefused)
    }
}

fn csrf_refused() -> Response {
    tracing::info!("form refused: missing or wrong anti-CSRF token, or another site's origin");
    html_response(
        StatusCode::FORBIDDEN,
        layout::page(
            "Refused",
            None,
            Some(layout::Flash::Error(
                "This form was not sent from this site's page, or the page is too old. Go back, reload the page and try again.".into(),
            )),
            maud::html! {},
        ),
    )
}

/// The signed-in session of this request, with its token.
pub async fn current_session(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
) -> Option<(Session, String)> {
    let token = cookie(headers, &cookie_name(shared, SESSION_COOKIE))?;
    let lookup = token.clone();
    let session = shared
        .store
        .blocking(move |s| accounts::session(s, &lookup, UnixTime::now()))
        .await;
    match session {
        Ok(Some(s)) => Some((s, token)),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            None
        }
    }
}

/// The session behind a signed-in form whose CSRF field is `csrf`, with its
/// token; otherwise the response to send (sign in first, or refused).
pub async fn signed_in_form(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(Session, String), Response> {
    let Some((session, token)) = current_session(shared, headers).await else {
        return Err(see_other("/signin"));
    };
    check_session_csrf(headers, &session, csrf).map_err(IntoResponse::into_response)?;
    Ok((session, token))
}

/// An HTML response that is never cached and never framed.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A redirect after a successful form (303, so a reload does not resend it).
/// A page that says what went wrong (`message`) and links `back`
/// (address and words).
pub fn error_page(
    session: &crate::accounts::Session,
    status: StatusCode,
    title: &str,
    message: String,
    back: (&str, &str),
) -> Response {
    html_response(
        status,
        layout::page(
            title,
            Some(session),
            Some(layout::Flash::Error(message)),
            maud::html! { p { a href=(back.0) { (back.1) } } },
        ),
    )
}

pub fn see_other(to: &'static str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies_and_compares_secrets() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; rpb_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }

    #[test]
    fn origin_must_match_the_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        assert!(
            same_origin(&h),
            "no Origin: a same-site form in older browsers"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8000"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
    }
}

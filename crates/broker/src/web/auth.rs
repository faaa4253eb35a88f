//! Sign-up, sign-in, sign-out and the account page (password change, API
//! tokens).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Flash, page};
use super::{
    BUSY, anonymous_csrf, check_anonymous_csrf, check_session_csrf, clear_session_cookie,
    current_session, hashing_slot, html_response, see_other, session_cookie, signed_in_form,
};
use crate::accounts::api_tokens::{self, ApiToken};
use crate::accounts::{self, AccountError, password};
use crate::broker::Shared;
use crate::time::UnixTime;

#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct NewTokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
pub struct RevokeTokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

fn signup_form(csrf: &str, email: &str) -> Markup {
    html! {
        h1 { "Create an account" }
        p { "One account rents devices and registers your own." }
        form.stack method="post" action="/signup" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Email address"
                input type="email" name="email" value=(email) required autocomplete="email" maxlength="254";
            }
            label { "Password"
                span.hint { (password::MIN_LEN) " to " (password::MAX_LEN) " characters; common passwords are refused." }
                input type="password" name="password" required autocomplete="new-password"
                    minlength=(password::MIN_LEN) maxlength=(password::MAX_LEN);
            }
            label { "Password again"
                input type="password" name="password_again" required autocomplete="new-password"
                    minlength=(password::MIN_LEN) maxlength=(password::MAX_LEN);
            }
            button type="submit" { "Create account" }
        }
        p { "Already have an account? " a href="/signin" { "Sign in" } "." }
    }
}

fn signin_form(csrf: &str, email: &str) -> Markup {
    html! {
        h1 { "Sign in" }
        form.stack method="post" action="/signin" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Email address"
                input type="email" name="email" value=(email) required autocomplete="username" maxlength="254";
            }
            label { "Password"
                input type="password" name="password" required autocomplete="current-password" maxlength=(password::MAX_LEN);
            }
            button type="submit" { "Sign in" }
        }
        p { a href="/password/forgot" { "Forgot your password?" } }
        p { "No account yet? " a href="/signup" { "Create one" } "." }
    }
}

/// A signed-out form page, with the CSRF cookie set if the browser lacks it.
pub(super) fn anonymous_page(
    shared: &Shared,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    flash: Option<Flash>,
    form: impl FnOnce(&str) -> Markup,
) -> Response {
    let (csrf, set_cookie) = anonymous_csrf(shared, headers);
    let mut response = html_response(status, page(title, None, flash, form(&csrf)));
    if let Some(c) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

pub async fn signup_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if current_session(&shared, &headers).await.is_some() {
        return see_other("/account");
    }
    anonymous_page(&shared, &headers, StatusCode::OK, "Sign up", None, |c| {
        signup_form(c, "")
    })
}

pub async fn signin_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if current_session(&shared, &headers).await.is_some() {
        return see_other("/account");
    }
    anonymous_page(&shared, &headers, StatusCode::OK, "Sign in", None, |c| {
        signin_form(c, "")
    })
}

fn signed_in(shared: &Shared, token: &str, to: &'static str) -> Response {
    let mut response = see_other(to);
    response
        .headers_mut()
        .append(header::SET_COOKIE, session_cookie(shared, token));
    response
}

pub async fn signup(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignUpForm>,
) -> Response {
    if let Err(refused) = check_anonymous_csrf(&shared, &headers, &form.csrf) {
        return refused.into_response();
    }
    let again = |status, message: String| {
        anonymous_page(
            &shared,
            &headers,
            status,
            "Sign up",
            Some(Flash::Error(message)),
            |c| signup_form(c, &form.email),
        )
    };
    if let Err(wait) = shared.web_limits.sign_up.check(peer.ip(), UnixTime::now()) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many accounts created from your address; try again in {wait} s."),
        );
    }
    if form.password != form.password_again {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The two passwords differ.".into(),
        );
    }
    let (email, pass) = (form.email.clone(), form.password.clone());
    let Some(_hashing) = hashing_slot(&shared).await else {
        return again(StatusCode::SERVICE_UNAVAILABLE, BUSY.into());
    };
    let result = shared
        .store
        .blocking(move |s| {
            let now = UnixTime::now();
            accounts::create(s, &email, &pass, false, now)?;
            accounts::sign_in(s, &email, &pass, now)
        })
        .await;
    match result {
        Ok(session) => {
            tracing::info!(user = session.user.id, "account created");
            signed_in(&shared, &session.token, "/")
        }
        Err(
            e @ (AccountError::BadEmail(_)
            | AccountError::EmailTaken
            | AccountError::WeakPassword(_)),
        ) => again(StatusCode::UNPROCESSABLE_ENTITY, sentence(&e)),
        Err(e) => {
            tracing::error!(error = %e, "sign-up failed");
            again(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The broker could not create the account; try again later.".into(),
            )
        }
    }
}

/// An error as a sentence for the page.
pub(super) fn sentence(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => text,
    }
}

pub async fn signin(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if let Err(refused) = check_anonymous_csrf(&shared, &headers, &form.csrf) {
        return refused.into_response();
    }
    let again = |status, message: String| {
        anonymous_page(
            &shared,
            &headers,
            status,
            "Sign in",
            Some(Flash::Error(message)),
            |c| signin_form(c, &form.email),
        )
    };
    if let Err(wait) = shared.web_limits.sign_in.check(peer.ip(), UnixTime::now()) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many sign-in attempts from your address; try again in {wait} s."),
        );
    }
    let (email, pass) = (form.email.clone(), form.password.clone());
    let Some(_hashing) = hashing_slot(&shared).await else {
        return again(StatusCode::SERVICE_UNAVAILABLE, BUSY.into());
    };
    let result = shared
        .store
        .blocking(move |s| accounts::sign_in(s, &email, &pass, UnixTime::now()))
        .await;
    match result {
        Ok(session) => signed_in(&shared, &session.token, "/"),
        Err(e @ AccountError::Locked) => again(StatusCode::TOO_MANY_REQUESTS, sentence(&e)),
        Err(e @ (AccountError::BadCredentials | AccountError::Suspended)) => {
            again(StatusCode::UNAUTHORIZED, sentence(&e))
        }
        Err(e) => {
            tracing::error!(error = %e, "sign-in failed");
            again(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The broker could not sign you in; try again later.".into(),
            )
        }
    }
}

pub async fn signout(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some((session, token)) = current_session(&shared, &headers).await {
        if let Err(refused) = check_session_csrf(&headers, &session, &form.csrf) {
            return refused.into_response();
        }
        if let Err(e) = shared
            .store
            .blocking(move |s| accounts::sign_out(s, &token))
            .await
        {
            tracing::error!(error = %e, "sign-out failed");
        }
    }
    let mut response = see_other("/");
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_session_cookie(&shared));
    response
}

fn tokens_section(session: &crate::accounts::Session, tokens: &[ApiToken]) -> Markup {
    let now = UnixTime::now();
    let ago = |t: i64| UnixTime(t).ago(now);
    html! {
        h2 { "API tokens" }
        p { "Scripts call the " a href="/api/v1/openapi.json" { "JSON API" }
            " with " code { "Authorization: Bearer <token>" } ". A token acts as you; revoke one you no longer use." }
        @if tokens.is_empty() {
            div.empty { p { "No API tokens yet." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Name" } th { "Created" } th { "Last used" } th { "" } } }
                tbody {
                    @for t in tokens {
                        tr {
                            td { (t.name) }
                            td { (ago(t.created_at)) }
                            td { (t.last_used_at.map_or("never".to_string(), ago)) }
                            td {
                                form method="post" action="/account/tokens/revoke" {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="id" value=(t.id);
                                    button.link type="submit" aria-label={ "Revoke token " (t.name) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            } }
        }
        form.stack method="post" action="/account/tokens" {
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Token name"
                span.hint { "What the token is for, e.g. \"backup script\"; at most " (api_tokens::MAX_NAME_LEN) " characters." }
                input type="text" name="name" required maxlength=(api_tokens::MAX_NAME_LEN) autocomplete="off";
            }
            button type="submit" { "Create token" }
        }
    }
}

fn account_content(
    session: &crate::accounts::Session,
    tokens: &[ApiToken],
    new_token: Option<&str>,
) -> Markup {
    html! {
        @if let Some(secret) = new_token {
            section {
                h2 { "Your new API token" }
                p { strong { "Copy it now: it is shown only this once." } " The broker keeps only a hash of it." }
                pre { code data-testid="api-token" { (secret) } }
            }
        }
        h1 { "Your account" }
        p { "Signed in as " strong { (session.user.email) }
            @if session.user.is_admin { " (administrator)" } "." }
        h2 { "Change password" }
        form.stack method="post" action="/account/password" {
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Current password"
                input type="password" name="current" required autocomplete="current-password" maxlength=(password::MAX_LEN);
            }
            label { "New password"
                span.hint { "Signs out every other browser of this account." }
                input type="password" name="password" required autocomplete="new-password"
                    minlength=(password::MIN_LEN) maxlength=(password::MAX_LEN);
            }
            label { "New password again"
                input type="password" name="password_again" required autocomplete="new-password"
                    minlength=(password::MIN_LEN) maxlength=(password::MAX_LEN);
            }
            button type="submit" { "Change password" }
        }
        (tokens_section(session, tokens))
    }
}

/// The account's API tokens; an empty list (logged) if they cannot be read.
async fn tokens_of(shared: &Arc<Shared>, user: i64) -> Vec<ApiToken> {
    match shared
        .store
        .blocking(move |s| api_tokens::list(s, user))
        .await
    {
        Ok(tokens) => tokens,
        Err(e) => {
            tracing::error!(error = %e, "listing API tokens failed");
            Vec::new()
        }
    }
}

pub async fn account_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match current_session(&shared, &headers).await {
        Some((session, _)) => {
            let tokens = tokens_of(&shared, session.user.id).await;
            html_response(
                StatusCode::OK,
                page(
                    "Account",
                    Some(&session),
                    None,
                    account_content(&session, &tokens, None),
                ),
            )
        }
        None => see_other("/signin"),
    }
}

pub async fn change_password(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let (session, token) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let tokens = tokens_of(&shared, session.user.id).await;
    let show = |status, flash| {
        html_response(
            status,
            page(
                "Account",
                Some(&session),
                Some(flash),
                account_content(&session, &tokens, None),
            ),
        )
    };
    if form.password != form.password_again {
        return show(
            StatusCode::UNPROCESSABLE_ENTITY,
            Flash::Error("The two new passwords differ.".into()),
        );
    }
    let user = session.user.id;
    let Some(_hashing) = hashing_slot(&shared).await else {
        return show(StatusCode::SERVICE_UNAVAILABLE, Flash::Error(BUSY.into()));
    };
    let result = shared
        .store
        .blocking(move |s| {
            accounts::change_password(
                s,
                user,
                Some(&token),
                &form.current,
                &form.password,
                UnixTime::now(),
            )
        })
        .await;
    match result {
        Ok(()) => show(
            StatusCode::OK,
            Flash::Ok(
                "Password changed; every other browser of this account is signed out.".into(),
            ),
        ),
        Err(AccountError::BadCredentials) => show(
            StatusCode::UNPROCESSABLE_ENTITY,
            Flash::Error("The current password is wrong.".into()),
        ),
        Err(e @ AccountError::Locked) => {
            show(StatusCode::TOO_MANY_REQUESTS, Flash::Error(sentence(&e)))
        }
        Err(e @ AccountError::WeakPassword(_)) => {
            show(StatusCode::UNPROCESSABLE_ENTITY, Flash::Error(sentence(&e)))
        }
        Err(e) => {
            tracing::error!(error = %e, "password change failed");
            show(
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not change the password; try again later.".into()),
            )
        }
    }
}

/// Creates an API token; the page shows it once.
pub async fn create_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<NewTokenForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let user = session.user.id;
    let created = shared
        .store
        .blocking(move |s| api_tokens::create(s, user, &form.name, UnixTime::now()))
        .await;
    let tokens = tokens_of(&shared, user).await;
    let (status, flash, secret) = match created {
        Ok(new) => {
            tracing::info!(user, token = new.token.id, "API token created");
            (
                StatusCode::CREATED,
                Flash::Ok(format!("API token {} created.", new.token.name)),
                Some(new.secret),
            )
        }
        Err(e @ (AccountError::BadTokenName(_) | AccountError::TooManyTokens(_))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Flash::Error(sentence(&e)),
            None,
        ),
        Err(e) => {
            tracing::error!(error = %e, "creating an API token failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not create the token; try again later.".into()),
                None,
            )
        }
    };
    html_response(
        status,
        page(
            "Account",
            Some(&session),
            Some(flash),
            account_content(&session, &tokens, secret.as_deref()),
        ),
    )
}

/// Revokes one of the account's API tokens.
pub async fn revoke_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<RevokeTokenForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let user = session.user.id;
    let revoked = match form.id.trim().parse::<i64>() {
        Ok(id) => {
            shared
                .store
                .blocking(move |s| api_tokens::revoke(s, user, id))
                .await
        }
        Err(_) => Err(AccountError::NoSuchToken),
    };
    let tokens = tokens_of(&shared, user).await;
    let (status, flash) = match revoked {
        Ok(()) => {
            tracing::info!(user, "API token revoked");
            (
                StatusCode::OK,
                Flash::Ok("The token is revoked: it no longer works.".into()),
            )
        }
        Err(e @ AccountError::NoSuchToken) => (StatusCode::NOT_FOUND, Flash::Error(sentence(&e))),
        Err(e) => {
            tracing::error!(error = %e, "revoking an API token failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not revoke the token; try again later.".into()),
            )
        }
    };
    html_response(
        status,
        page(
            "Account",
            Some(&session),
            Some(flash),
            account_content(&session, &tokens, None),
        ),
    )
}

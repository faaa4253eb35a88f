//! "Forgot your password?": the page that asks for the email address, and
//! the page behind the mailed link that sets a new password.
//!
//! The request page answers the same whatever the address: the lookup and
//! the mail happen in a task of their own, after the answer, so neither the
//! words nor the timing tell whether an account exists.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::{anonymous_page, sentence};
use super::layout::{Flash, page};
use super::{BUSY, check_anonymous_csrf, hashing_slot, html_response, see_other, session_cookie};
use crate::accounts::reset::{self, Requested, ResetError};
use crate::accounts::{AccountError, normalize_email, password};
use crate::broker::Shared;
use crate::mail;
use crate::time::UnixTime;

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

fn forgot_form(csrf: &str, email: &str) -> Markup {
    html! {
        h1 { "Forgot your password?" }
        p { "Give the email address of your account; a link to choose a new password is mailed to it." }
        form.stack method="post" action="/password/forgot" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Email address"
                input type="email" name="email" value=(email) required autocomplete="username" maxlength="254";
            }
            button type="submit" { "Mail me a link" }
        }
        p { "Remembered it? " a href="/signin" { "Sign in" } "." }
    }
}

fn reset_form(csrf: &str, token: &str, email: &str) -> Markup {
    html! {
        h1 { "Choose a new password" }
        p { "For " strong { (email) } ". Every browser signed in to this account is signed out." }
        form.stack method="post" action="/password/reset" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="token" value=(token);
            label { "New password"
                span.hint { (password::MIN_LEN) " to " (password::MAX_LEN) " characters; common passwords are refused." }
                input type="password" name="password" required autocomplete="new-password"
                    minlength=(password::MIN_LEN) maxlength=(password::MAX_LEN);
            }
            label { "New password again"
                input type="password" name="password_again" required autocomplete="new-password"
                    minlength=(password::MIN_LEN) maxlength=(password::MAX_LEN);
            }
            button type="submit" { "Set the new password" }
        }
    }
}

/// The page for a link that cannot be used, and why.
fn unusable(e: &ResetError) -> Response {
    let status = match e {
        ResetError::Unusable => StatusCode::NOT_FOUND,
        ResetError::Expired => StatusCode::GONE,
        ResetError::Suspended => StatusCode::FORBIDDEN,
        ResetError::WeakPassword(_) | ResetError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match e {
        ResetError::Store(_) => "The broker could not check this link; try again later.".into(),
        e => sentence(e),
    };
    html_response(
        status,
        page(
            "Password reset",
            None,
            Some(Flash::Error(message)),
            html! {
                h1 { "Password reset" }
                p { a href="/password/forgot" { "Ask for a new link" } " or " a href="/signin" { "sign in" } "." }
            },
        ),
    )
}

pub async fn forgot_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    anonymous_page(
        &shared,
        &headers,
        StatusCode::OK,
        "Forgot your password?",
        None,
        |c| forgot_form(c, ""),
    )
}

pub async fn forgot(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<ForgotForm>,
) -> Response {
    if let Err(refused) = check_anonymous_csrf(&shared, &headers, &form.csrf) {
        return refused.into_response();
    }
    let again = |status, message: String| {
        anonymous_page(
            &shared,
            &headers,
            status,
            "Forgot your password?",
            Some(Flash::Error(message)),
            |c| forgot_form(c, &form.email),
        )
    };
    let email = match normalize_email(&form.email) {
        Ok(email) => email,
        Err(e @ AccountError::BadEmail(_)) => {
            return again(StatusCode::UNPROCESSABLE_ENTITY, sentence(&e));
        }
        Err(e) => {
            tracing::error!(error = %e, "checking an email address failed");
            return again(StatusCode::INTERNAL_SERVER_ERROR, BUSY.into());
        }
    };
    if let Err(wait) = shared
        .web_limits
        .password_reset
        .check(peer.ip(), UnixTime::now())
    {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many reset requests from your address; try again in {wait} s."),
        );
    }
    tokio::spawn(mail_link(shared.clone(), email.clone()));
    html_response(
        StatusCode::OK,
        page(
            "Check your mail",
            None,
            Some(Flash::Ok(format!(
                "If an account has the address {email}, a link to choose a new password is on its way. It works for one hour."
            ))),
            html! {
                h1 { "Check your mail" }
                p { "No mail after a few minutes? Check the spam folder, or "
                    a href="/password/forgot" { "ask again" } "." }
            },
        ),
    )
}

/// Makes a reset link for `email` if an account may have one, and mails it.
async fn mail_link(shared: Arc<Shared>, email: String) {
    let requested = shared
        .store
        .blocking(move |s| reset::request(s, &email, UnixTime::now()))
        .await;
    let (email, token) = match requested {
        Ok(Requested::Link { email, token }) => (email, token),
        Ok(Requested::NoAccount) => {
            tracing::info!("password reset asked for an address with no account");
            return;
        }
        Ok(Requested::Suspended) => {
            tracing::info!("password reset asked for a suspended account; no link sent");
            return;
        }
        Ok(Requested::TooMany) => {
            tracing::info!(
                "password reset not mailed: the account had its share of links this hour"
            );
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "making a password reset link failed");
            return;
        }
    };
    let link = format!("{}/password/reset/{token}", shared.settings.public_url);
    match mail::password_reset(&email, &link, reset::VALID_SECS / 60) {
        Ok(message) => {
            // The mailer logs the outcome.
            let _ = shared.mailer.send(message).await;
        }
        Err(e) => tracing::warn!(error = %e, "composing a password reset mail failed"),
    }
}

pub async fn reset_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let lookup = token.clone();
    let checked = shared
        .store
        .blocking(move |s| reset::check(s, &lookup, UnixTime::now()))
        .await;
    match checked {
        Ok(email) => anonymous_page(
            &shared,
            &headers,
            StatusCode::OK,
            "Choose a new password",
            None,
            |c| reset_form(c, &token, &email),
        ),
        Err(e) => {
            if let ResetError::Store(e) = &e {
                tracing::error!(error = %e, "checking a password reset link failed");
            }
            unusable(&e)
        }
    }
}

pub async fn reset(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<ResetForm>,
) -> Response {
    if let Err(refused) = check_anonymous_csrf(&shared, &headers, &form.csrf) {
        return refused.into_response();
    }
    let lookup = form.token.clone();
    let email = match shared
        .store
        .blocking(move |s| reset::check(s, &lookup, UnixTime::now()))
        .await
    {
        Ok(email) => email,
        Err(e) => return unusable(&e),
    };
    let again = |status, message: String| {
        anonymous_page(
            &shared,
            &headers,
            status,
            "Choose a new password",
            Some(Flash::Error(message)),
            |c| reset_form(c, &form.token, &email),
        )
    };
    if form.password != form.password_again {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The two passwords differ.".into(),
        );
    }
    let Some(_hashing) = hashing_slot(&shared).await else {
        return again(StatusCode::SERVICE_UNAVAILABLE, BUSY.into());
    };
    let (token, new_password) = (form.token.clone(), form.password.clone());
    let result = shared
        .store
        .blocking(move |s| reset::complete(s, &token, &new_password, UnixTime::now()))
        .await;
    match result {
        Ok(session) => {
            tracing::info!(user = session.user.id, "password reset by email");
            let mut response = see_other("/account");
            response
                .headers_mut()
                .append(header::SET_COOKIE, session_cookie(&shared, &session.token));
            response
        }
        Err(e @ ResetError::WeakPassword(_)) => {
            again(StatusCode::UNPROCESSABLE_ENTITY, sentence(&e))
        }
        Err(e) => {
            if let ResetError::Store(e) = &e {
                tracing::error!(error = %e, "password reset failed");
            }
            unusable(&e)
        }
    }
}

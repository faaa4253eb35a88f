//! Topping up a wallet from the wallet page: the form sends the renter to
//! the provider's checkout, and the provider sends them back to a page
//! that says what happened (asking the provider first, so a payment just
//! approved at PayPal is captured and credited right there).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::layout::{Flash, page};
use super::wallet::render;
use super::{current_session, html_response, see_other, signed_in_form};
use crate::accounts::Session;
use crate::actions::topups::{self, StartError, Topup};
use crate::broker::Shared;
use crate::payments::Provider;
use crate::payments::topup::TopupError;

#[derive(Deserialize)]
pub struct TopupForm {
    csrf: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    amount: String,
}

/// `POST /wallet/topups`: starts a top-up and takes the renter to pay it.
pub async fn start(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<TopupForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    match topups::start(&shared, (&session).into(), &form.provider, &form.amount).await {
        Ok(topup) => match &topup.checkout_url {
            Some(url) => to_checkout(&session, &topup, url),
            None => see_other("/wallet"),
        },
        Err(e) => {
            let status = match &e {
                StartError::Suspended => StatusCode::FORBIDDEN,
                StartError::Topup(TopupError::Provider { .. }) => StatusCode::BAD_GATEWAY,
                StartError::Topup(TopupError::TooMany) => StatusCode::TOO_MANY_REQUESTS,
                StartError::Topup(TopupError::Store(err)) => {
                    tracing::error!(error = %err, "starting a top-up failed");
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let text = if status == StatusCode::INTERNAL_SERVER_ERROR {
                "The broker could not start the top-up; try again later.".to_string()
            } else {
                format!("No top-up: {e}.")
            };
            render(&shared, &session, status, Some(Flash::Error(text))).await
        }
    }
}

/// The page that takes the renter on to the provider's checkout. A page
/// (refreshing to the checkout at once) rather than a redirect: browsers
/// hold a form's redirects to the page's `form-action` policy, which allows
/// only the broker itself.
fn to_checkout(session: &Session, topup: &Topup, url: &str) -> Response {
    let through = Provider::parse(topup.provider).map_or(topup.provider, Provider::label);
    let refresh = format!("0; url={url}");
    html_response(
        StatusCode::OK,
        page(
            "Top-up",
            Some(session),
            None,
            html! {
                meta http-equiv="refresh" content=(refresh);
                h1 { "Top-up of " (topup.amount) " " (topup.currency) }
                p { "Taking you to " (through) " to pay…" }
                p { a href=(url) data-testid="checkout-link" { "Continue to " (through) } }
            },
        ),
    )
}

#[derive(Deserialize)]
pub struct Returned {
    #[serde(default)]
    cancelled: Option<String>,
}

/// `GET /wallet/topups/{id}`: where the provider's checkout sends the
/// renter back; says what became of the top-up.
pub async fn returned(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<Returned>,
) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return see_other("/signin");
    };
    let topup = match topups::look(&shared, (&session).into(), &id).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return html_response(
                StatusCode::NOT_FOUND,
                page(
                    "Top-up",
                    Some(&session),
                    Some(Flash::Error("You have no top-up with that id.".into())),
                    html! { p { a href="/wallet" { "Back to your wallet" } } },
                ),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reading a top-up failed");
            return html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "Top-up",
                    Some(&session),
                    Some(Flash::Error(
                        "The broker could not read the top-up; try again later.".into(),
                    )),
                    html! {},
                ),
            );
        }
    };
    let through = Provider::parse(topup.provider).map_or(topup.provider, Provider::label);
    let amount = format!("{} {}", topup.amount, topup.currency);
    let flash = match topup.state {
        "credited" => Flash::Ok(format!("{amount} is in your wallet. Thank you!")),
        "pending" if query.cancelled.is_some() => Flash::Error(format!(
            "You cancelled the payment at {through}; nothing was charged."
        )),
        "pending" => Flash::Ok(format!(
            "{through} has not confirmed the payment of {amount} yet; your wallet is credited as soon as it does."
        )),
        "refunded" => Flash::Error(format!("The top-up of {amount} was refunded.")),
        _ => Flash::Error(format!(
            "The top-up of {amount} was not paid: {}.",
            topup
                .detail
                .as_deref()
                .unwrap_or("the provider gave no reason")
        )),
    };
    html_response(
        StatusCode::OK,
        page(
            "Top-up",
            Some(&session),
            Some(flash),
            html! {
                h1 { "Top-up of " (amount) }
                p data-testid="topup-state" { "State: " (topup.state) }
                @if let (Some(url), true) = (&topup.checkout_url, query.cancelled.is_some()) {
                    p { a href=(url) { "Pay at " (through) " after all" } }
                }
                p { a href="/wallet" { "Back to your wallet" } }
            },
        ),
    )
}

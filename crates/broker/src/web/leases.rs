//! Leases on the web: rent a device a peer broker manages from this
//! broker's marketplace (the Rent button on peer devices), see the login
//! once, list one's leases and stop one on "Rentals on peer brokers".

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Flash, page};
use super::{current_session, error_page, html_response, see_other, signed_in_form};
use crate::accounts::Session;
use crate::actions::leases::{self, Lease, LeaseError, LeaseUsage, StopError, UsageError};
use crate::actions::rentals::Mailed;
use crate::broker::Shared;
use crate::price::show_price;

#[derive(Deserialize)]
pub struct LeaseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    broker: String,
    #[serde(default)]
    name: String,
    /// The hourly rate the page showed, in cents.
    #[serde(default)]
    rate: String,
}

#[derive(Deserialize)]
pub struct StopForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

/// The Rent button of a peer device.
pub fn rent_button(session: &Session, broker: &str, name: &str, rate: Option<i64>) -> Markup {
    html! {
        form method="post" action="/leases" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="broker" value=(broker);
            input type="hidden" name="name" value=(name);
            input type="hidden" name="rate" value=(rate.unwrap_or(0));
            button type="submit" aria-label={ "Rent " (name) " on " (broker) } { "Rent" }
        }
    }
}

fn leases_page(session: &Session, leases: &[Lease], flash: Option<Flash>) -> Markup {
    page(
        "Rentals on peer brokers",
        Some(session),
        flash,
        html! {
            h1 { "Rentals on peer brokers" }
            p.hint { "Devices managed by brokers this one federates with, rented from this marketplace. Each hour is held from your wallet when it begins; the broker that manages the device reports the minutes it was reachable, and you are charged for those." }
            @if leases.is_empty() {
                div.empty { p { "You have no rentals on peer brokers. " a href="/#peer-devices" { "Find a device" } "." } }
            } @else {
                div.table-wrap { table data-testid="leases" {
                    thead { tr { th { "Device" } th { "Managed by" } th { "Login" } th { "Rate" } th { "Charged" } th { "State" } th { "Note" } th { "" } } }
                    tbody {
                        @for l in leases {
                            tr data-testid={ "lease-" (l.id) } {
                                td { a href={ "/leases/" (l.id) } aria-label={ "What " (l.device) " on " (l.broker) " cost" } { (l.device) } }
                                td { (l.broker) }
                                td { (l.username.as_deref().unwrap_or("-")) }
                                td { (show_price(l.hourly_rate_cents)) " " (l.currency) (per_period(l.period_secs)) }
                                td data-testid={ "charged-" (l.id) } {
                                    (show_price(l.charged_cents)) " " (l.currency)
                                    @if !l.settled { br; small.hint { "so far" } }
                                }
                                td { (l.state) }
                                td { @if let Some(why) = &l.end_reason { (why) } }
                                td {
                                    @if l.state == "active" {
                                        form method="post" action="/leases/stop" {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            input type="hidden" name="id" value=(l.id);
                                            button type="submit" aria-label={ "Stop renting " (l.device) " on " (l.broker) } { "Stop" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        },
    )
}

/// " an hour", or the period the rate is for when it is not an hour.
fn per_period(secs: i64) -> String {
    if secs == 3600 {
        " an hour".into()
    } else {
        format!(" per {secs} s")
    }
}

fn failure_page(session: &Session, status: StatusCode, message: String) -> Response {
    error_page(
        session,
        status,
        "Marketplace",
        message,
        ("/#peer-devices", "Back to the marketplace"),
    )
}

/// `POST /leases`: rents a peer's device at the rate the page showed.
pub async fn rent(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<LeaseForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let Ok(rate) = form.rate.parse::<i64>() else {
        return failure_page(
            &session,
            StatusCode::UNPROCESSABLE_ENTITY,
            "This form is not one of the marketplace's; reload the page and try again.".into(),
        );
    };
    let leased = leases::rent(
        &shared,
        (&session).into(),
        &session.user.email,
        &form.broker,
        &form.name,
        None,
        rate,
    )
    .await;
    let leased = match leased {
        Ok(l) => l,
        Err(e) => {
            let status = match &e {
                LeaseError::NoSuchPeer(_) | LeaseError::NotListed { .. } => StatusCode::NOT_FOUND,
                LeaseError::LowBalance(..) => StatusCode::PAYMENT_REQUIRED,
                LeaseError::Unreachable(_) => StatusCode::BAD_GATEWAY,
                LeaseError::Suspended => StatusCode::FORBIDDEN,
                LeaseError::Store(e) => {
                    tracing::error!(error = %e, "leasing failed");
                    return failure_page(
                        &session,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "The marketplace is unavailable; try again later.".into(),
                    );
                }
                _ => StatusCode::CONFLICT,
            };
            return failure_page(&session, status, format!("Nothing was rented: {e}."));
        }
    };
    let started = &leased.started;
    let to = &session.user.email;
    let mailed = match leased.mail {
        Mailed::Sent if shared.mailer.keeps_mail() => {
            format!("This broker sends no mail: the copy for {to} is in its operator's outbox.")
        }
        Mailed::Sent => format!("A copy was emailed to {to}."),
        Mailed::Sending => format!("A copy is on its way to {to}."),
        Mailed::Failed => "The copy by email could not be sent.".into(),
    };
    html_response(
        StatusCode::CREATED,
        page(
            "Rental started",
            Some(&session),
            Some(Flash::Ok(format!(
                "You are renting {} on {}.",
                started.device, leased.broker
            ))),
            html! {
                h1 { "Your login on " (started.device) }
                p { strong { "Save the password now: it is shown only this once." } }
                dl {
                    dt { "Username" } dd { code data-testid="username" { (started.username) } }
                    dt { "Password" } dd { code data-testid="password" { (started.password) } }
                    dt { "SSH" } dd { code data-testid="ssh-command" { (leased.ssh_command.as_deref().unwrap_or("")) } }
                    dt { "Web" } dd { code data-testid="http-url" { (started.http_url) } " and " code data-testid="https-url" { (started.https_url) } }
                }
                p data-testid="mail-note" { (mailed) }
                p { "End the rental from " a href="/leases" { "Rentals on peer brokers" } "; " (leased.broker) " then wipes the sandbox." }
            },
        ),
    )
}

/// `GET /leases`: the renter's leases.
pub async fn list(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return see_other("/signin");
    };
    match leases::mine(&shared, (&session).into()).await {
        Ok(list) => html_response(StatusCode::OK, leases_page(&session, &list, None)),
        Err(e) => {
            tracing::error!(error = %e, "listing leases failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                leases_page(
                    &session,
                    &[],
                    Some(Flash::Error(
                        "The broker could not list your rentals; try again later.".into(),
                    )),
                ),
            )
        }
    }
}

/// `POST /leases/stop`: stops one of the renter's leases.
pub async fn stop(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<StopForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let outcome = leases::stop(&shared, (&session).into(), &form.id).await;
    let list = leases::mine(&shared, (&session).into())
        .await
        .unwrap_or_default();
    let (status, flash) = match outcome {
        Ok(lease) => (
            StatusCode::OK,
            Flash::Ok(format!(
                "Your rental of {} on {} ended; {} wipes its sandbox.",
                lease.device, lease.broker, lease.broker
            )),
        ),
        Err(StopError::NotFound | StopError::Suspended) => (
            StatusCode::NOT_FOUND,
            Flash::Error("You have no open rental with that id.".into()),
        ),
        Err(StopError::Store(e)) => {
            tracing::error!(error = %e, "stopping a lease failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not stop the rental; try again later.".into()),
            )
        }
    };
    html_response(status, leases_page(&session, &list, Some(flash)))
}

fn usage_content(u: &LeaseUsage) -> Markup {
    let l = &u.lease;
    html! {
        h1 { "Rental of " (l.device) " on " (l.broker) }
        p {
            "Rate: " (show_price(l.hourly_rate_cents)) " " (l.currency) (per_period(l.period_secs))
            ", charged for the minutes the device was reachable, as " (l.broker) " reports them. "
            "Charged so far: " strong data-testid="lease-total" { (show_price(l.charged_cents)) " " (l.currency) } "."
            @if l.settled { " Nothing more will be charged." }
        }
        @if u.charges.is_empty() {
            div.empty { p { "Nothing reported yet: " (l.broker) " reports each hour when it ends." } }
        } @else {
            div.table-wrap { table data-testid="lease-charges" {
                thead { tr { th { "Hour" } th { "What" } th { "Reachable" } th { "Charged" } th { "Note" } } }
                tbody {
                    @for c in &u.charges {
                        tr {
                            td { (c.hour) }
                            td { (c.kind) }
                            td { @if c.kind == "usage" { (c.reachable_minutes) " min" } }
                            td { (show_price(c.amount_cents)) }
                            td { (c.note) }
                        }
                    }
                }
            } }
            p.hint { "Newest first. Each hour is held from your wallet when it begins; when the broker that manages the device reports it, you pay for the reachable minutes and the rest goes back to your wallet." }
        }
        p { a href="/leases" { "Back to Rentals on peer brokers" } }
    }
}

/// `GET /leases/{id}`: what one of the renter's leases cost.
pub async fn usage_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return see_other("/signin");
    };
    match leases::usage(&shared, (&session).into(), &id).await {
        Ok(u) => html_response(
            StatusCode::OK,
            page(
                &format!("Rental of {}", u.lease.device),
                Some(&session),
                None,
                usage_content(&u),
            ),
        ),
        Err(UsageError::NotFound) => error_page(
            &session,
            StatusCode::NOT_FOUND,
            "No such rental",
            "You have no rental on a peer broker with that id.".into(),
            ("/leases", "Back to Rentals on peer brokers"),
        ),
        Err(UsageError::Store(e)) => {
            tracing::error!(error = %e, "reading a lease's usage failed");
            error_page(
                &session,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Rental",
                "The broker could not read this rental; try again later.".into(),
                ("/leases", "Back to Rentals on peer brokers"),
            )
        }
    }
}

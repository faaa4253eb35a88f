//! The marketplace and rentals: anyone browses the listed devices; a signed-in
//! person rents one that is verified, online and idle, gets its login once,
//! and ends the rental from "My rentals".

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use rpibroker_wire::DeviceStatus;
use serde::Deserialize;

use super::devices::show_price;
use super::layout::{Flash, page};
use super::{current_session, html_response, see_other, signed_in_form};
use crate::accounts::Session;
use crate::actions::market::{availability, listing, offered_figures};
use crate::actions::rentals::{self, Mailed, RentError, Rental, StopError, Which};
use crate::broker::Shared;

#[derive(Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

fn figures(d: &DeviceStatus) -> String {
    let (measured, _) = offered_figures(d);
    format!(
        "{} cores, {} MiB memory, {} GiB disk",
        measured.cpu_millicores.map_or("?".into(), |m| format!(
            "{}.{:02}",
            m / 1000,
            m % 1000 / 10
        )),
        measured
            .memory_bytes
            .map_or("?".into(), |b| (b >> 20).to_string()),
        measured
            .disk_bytes
            .map_or("?".into(), |b| (b >> 30).to_string()),
    )
}

fn market(session: Option<&Session>, devices: &[DeviceStatus]) -> Markup {
    html! {
        h1 { "Marketplace" }
        p { "Small computers, verified by this broker, rented by the hour." }
        @if devices.is_empty() {
            div.empty {
                p { "No devices are listed yet." }
                @if session.is_none() {
                    p { a href="/signup" { "Create an account" } " to rent one when they are." }
                }
            }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Device" } th { "Hardware (measured)" } th { "Price per hour" } th { "" } } }
                tbody {
                    @for d in devices {
                        tr {
                            td { strong { (d.name) } br;
                                span.hint { (d.hardware.as_ref().map_or("", |h| h.arch.as_str())) } }
                            td { (figures(d)) }
                            td { (d.hourly_rate.map(show_price).unwrap_or_default()) }
                            td {
                                @match (availability(d), session) {
                                    (Ok(()), Some(s)) => {
                                        form method="post" action="/rent" {
                                            input type="hidden" name="csrf" value=(s.csrf);
                                            input type="hidden" name="name" value=(d.name);
                                            button type="submit" aria-label={ "Rent " (d.name) } { "Rent" }
                                        }
                                    }
                                    (Ok(()), None) => { a href="/signin" { "Sign in to rent" } }
                                    (Err(why), _) => { span.hint { (why) } }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

pub async fn home(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let session = current_session(&shared, &headers).await;
    let session = session.as_ref().map(|(s, _)| s);
    match listing(&shared).await {
        Ok(devices) => html_response(
            StatusCode::OK,
            page("Marketplace", session, None, market(session, &devices)),
        ),
        Err(e) => {
            tracing::error!(error = %e, "listing the marketplace failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "Marketplace",
                    session,
                    Some(Flash::Error(
                        "The marketplace is unavailable; try again later.".into(),
                    )),
                    html! {},
                ),
            )
        }
    }
}

pub async fn rent(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<DeviceForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let (shared_ref, session_ref) = (&shared, &session);
    let back = move |status, message: String| async move {
        let devices = listing(shared_ref).await.unwrap_or_default();
        html_response(
            status,
            page(
                "Marketplace",
                Some(session_ref),
                Some(Flash::Error(message)),
                market(Some(session_ref), &devices),
            ),
        )
    };
    let rented = rentals::rent(
        &shared,
        (&session).into(),
        &session.user.email,
        &form.name,
        Vec::new(),
    )
    .await;
    let (started, mailed) = match rented {
        Ok(done) => done,
        Err(RentError::NotListed) => {
            return back(
                StatusCode::NOT_FOUND,
                "No listed device has that name.".into(),
            )
            .await;
        }
        Err(RentError::Unavailable(device, why)) => {
            return back(
                StatusCode::CONFLICT,
                format!("{device} cannot be rented now: {why}."),
            )
            .await;
        }
        Err(RentError::Taken(device)) => {
            return back(
                StatusCode::CONFLICT,
                format!("{device} was just rented by someone else."),
            )
            .await;
        }
        Err(RentError::Failed(device, e)) => {
            tracing::warn!(%device, error = %e, "rental failed");
            return back(
                StatusCode::BAD_GATEWAY,
                format!("{device} could not be set up for you; try again later."),
            )
            .await;
        }
        Err(e @ (RentError::Suspended | RentError::BadKey(_))) => {
            return back(StatusCode::FORBIDDEN, format!("{e}.")).await;
        }
        Err(RentError::Store(e)) => {
            tracing::error!(error = %e, "renting failed");
            return back(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The marketplace is unavailable; try again later.".into(),
            )
            .await;
        }
    };
    let ssh = started.ssh_command().unwrap_or_default();
    let to = &session.user.email;
    let mailed = match mailed {
        Mailed::Sent => format!("A copy was emailed to {to}."),
        Mailed::Sending => format!("A copy is on its way to {to}."),
        Mailed::Failed => "The copy by email could not be sent.".into(),
    };
    html_response(
        StatusCode::CREATED,
        page(
            "Rental started",
            Some(&session),
            Some(Flash::Ok(format!("You are renting {}.", started.device))),
            html! {
                h1 { "Your login on " (started.device) }
                p { strong { "Save the password now: it is shown only this once." } }
                dl {
                    dt { "Username" } dd { code data-testid="username" { (started.username) } }
                    dt { "Password" } dd { code data-testid="password" { (started.password) } }
                    dt { "SSH" } dd { code data-testid="ssh-command" { (ssh) } }
                    dt { "Web" } dd { code data-testid="http-url" { (started.http_url) } " and " code data-testid="https-url" { (started.https_url) } }
                }
                p data-testid="mail-note" { (mailed) }
                p { "End the rental from " a href="/rentals" { "My rentals" } "; the sandbox is then wiped." }
            },
        ),
    )
}

fn rentals_page(session: &Session, rentals: &[Rental], flash: Option<Flash>) -> Markup {
    page(
        "My rentals",
        Some(session),
        flash,
        html! {
            h1 { "My rentals" }
            @if rentals.is_empty() {
                div.empty { p { "You have no rentals. " a href="/" { "Find a device" } "." } }
            } @else {
                div.table-wrap { table {
                    thead { tr { th { "Device" } th { "Login" } th { "State" } th { "Note" } th { "" } } }
                    tbody {
                        @for r in rentals {
                            tr {
                                td { (r.device) }
                                td { (r.username.as_deref().unwrap_or("-")) }
                                td { (r.state) }
                                td { @if let Some(why) = &r.end_reason { (why) } }
                                td {
                                    @if r.ended_at.is_none() {
                                        form method="post" action="/rentals/stop" {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            input type="hidden" name="name" value=(r.device);
                                            button type="submit" aria-label={ "Stop renting " (r.device) } { "Stop" }
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

pub async fn rentals(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return see_other("/signin");
    };
    match rentals::mine(&shared, (&session).into()).await {
        Ok(list) => html_response(StatusCode::OK, rentals_page(&session, &list, None)),
        Err(e) => {
            tracing::error!(error = %e, "listing rentals failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                rentals_page(
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

pub async fn stop(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<DeviceForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let outcome = rentals::stop(&shared, (&session).into(), Which::Device(&form.name)).await;
    let list = rentals::mine(&shared, (&session).into())
        .await
        .unwrap_or_default();
    let (status, flash) = match outcome {
        Ok(stopped) if stopped.wiped => (
            StatusCode::OK,
            Flash::Ok(format!(
                "Your rental of {} ended; its sandbox was wiped.",
                stopped.device
            )),
        ),
        Ok(stopped) => (
            StatusCode::ACCEPTED,
            Flash::Ok(format!(
                "Your rental of {} is ending; the device will be wiped as soon as it is reachable.",
                stopped.device
            )),
        ),
        Err(StopError::NotFound | StopError::Suspended) => (
            StatusCode::NOT_FOUND,
            Flash::Error("You have no open rental of that device.".into()),
        ),
        Err(StopError::Store(e)) => {
            tracing::error!(error = %e, "stopping a rental failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not stop the rental; try again later.".into()),
            )
        }
    };
    html_response(status, rentals_page(&session, &list, Some(flash)))
}

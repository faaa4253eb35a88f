//! The marketplace and rentals: anyone browses the listed devices; a signed-in
//! person rents one that is verified, online and idle, gets its login once,
//! and ends the rental from "My rentals".

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use rpibroker_wire::verification::Verdict;
use rpibroker_wire::{DeviceName, DeviceStatus};
use serde::Deserialize;

use super::devices::show_price;
use super::layout::{Flash, page};
use super::{current_session, html_response, see_other, signed_in_form};
use crate::accounts::Session;
use crate::broker::Shared;
use crate::mail;
use crate::rental::{self, RentalError, Started};
use crate::store::{RentalRecord, StoreError};

/// How long the rental page waits for the copy of the login by mail before
/// it says the mail is still on its way (sending goes on regardless).
const MAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// Whether a listed device can be rented now, and if not, why.
fn availability(d: &DeviceStatus) -> Result<(), &'static str> {
    if !d.online {
        return Err("offline");
    }
    if d.rental.is_some() {
        return Err("rented");
    }
    if d.verification.as_ref().map(|v| v.verdict) != Some(Verdict::Verified) {
        return Err("not verified");
    }
    if d.sandbox.as_ref().map(|s| s.state.as_str()) != Some("ready") {
        return Err("sandbox not ready");
    }
    if d.hourly_rate.is_none() {
        return Err("no price");
    }
    Ok(())
}

async fn listed(shared: &Arc<Shared>) -> Result<Vec<DeviceStatus>, StoreError> {
    let domain = shared.settings.domain.clone();
    let registry = shared.registry.clone();
    shared
        .store
        .blocking(move |s| {
            s.listed_devices()?
                .into_iter()
                .map(|d| {
                    let online = registry.is_online(&d.name);
                    s.full_status(d, &domain, online)
                })
                .collect()
        })
        .await
}

fn figures(d: &DeviceStatus) -> String {
    let measured = d
        .verification
        .as_ref()
        .and_then(|v| v.measured.as_ref())
        .map(|m| m.figures.clone())
        .or_else(|| d.claimed.clone())
        .unwrap_or_default();
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
    match listed(&shared).await {
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
        let devices = listed(shared_ref).await.unwrap_or_default();
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
    let device = DeviceName::parse(&form.name).ok();
    let current = listed(&shared)
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|d| Some(&d.name) == device.as_ref());
    let Some(current) = current else {
        return back(
            StatusCode::NOT_FOUND,
            "No listed device has that name.".into(),
        )
        .await;
    };
    if let Err(why) = availability(&current) {
        return back(
            StatusCode::CONFLICT,
            format!("{} cannot be rented now: {why}.", current.name),
        )
        .await;
    }
    match rental::start(&shared, &current.name, Vec::new(), Some(session.user.id)).await {
        Ok(started) => {
            tracing::info!(device = %current.name, renter = session.user.id, rental = %started.rental, "rented on the web");
            let ssh = started.ssh_command().unwrap_or_default();
            let mailed = mail_login(&shared, &session.user.email, &started).await;
            html_response(
                StatusCode::CREATED,
                page(
                    "Rental started",
                    Some(&session),
                    Some(Flash::Ok(format!("You are renting {}.", current.name))),
                    html! {
                        h1 { "Your login on " (current.name) }
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
        Err(RentalError::AlreadyRented(..) | RentalError::Ending(..)) => {
            back(
                StatusCode::CONFLICT,
                format!("{} was just rented by someone else.", current.name),
            )
            .await
        }
        Err(e) => {
            tracing::warn!(device = %current.name, error = %e, "rental failed");
            back(
                StatusCode::BAD_GATEWAY,
                format!(
                    "{} could not be set up for you; try again later.",
                    current.name
                ),
            )
            .await
        }
    }
}

/// Mails the renter a copy of the login, waiting at most [`MAIL_WAIT`];
/// returns what the rental page says about it.
async fn mail_login(shared: &Arc<Shared>, to: &str, started: &Started) -> String {
    let message = match mail::rental_credentials(to, started, &shared.settings.public_url) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "composing the rental mail failed");
            return "The copy by email could not be sent.".into();
        }
    };
    match tokio::time::timeout(MAIL_WAIT, shared.mailer.send_in_background(message)).await {
        Ok(Ok(Ok(()))) => format!("A copy was emailed to {to}."),
        Ok(_) => "The copy by email could not be sent.".into(),
        Err(_) => format!("A copy is on its way to {to}."),
    }
}

async fn my_rentals(
    shared: &Arc<Shared>,
    session: &Session,
) -> Result<Vec<(String, RentalRecord)>, StoreError> {
    let renter = session.user.id;
    shared
        .store
        .blocking(move |s| s.rentals_of_renter(renter))
        .await
}

fn rentals_page(
    session: &Session,
    rentals: &[(String, RentalRecord)],
    flash: Option<Flash>,
) -> Markup {
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
                        @for (device, r) in rentals {
                            tr {
                                td { (device) }
                                td { (r.username.as_deref().unwrap_or("-")) }
                                td { (r.state.as_str()) }
                                td { @if let Some(why) = &r.end_reason { (why) } }
                                td {
                                    @if r.ended_at.is_none() {
                                        form method="post" action="/rentals/stop" {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            input type="hidden" name="name" value=(device);
                                            button type="submit" aria-label={ "Stop renting " (device) } { "Stop" }
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
    match my_rentals(&shared, &session).await {
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
    let list = my_rentals(&shared, &session).await.unwrap_or_default();
    // Only a rental of this person, still open.
    let mine = list
        .iter()
        .find(|(device, r)| *device == form.name && r.ended_at.is_none())
        .and_then(|(device, r)| Some((DeviceName::parse(device).ok()?, r.id.clone())));
    let Some((device, rental_id)) = mine else {
        return html_response(
            StatusCode::NOT_FOUND,
            rentals_page(
                &session,
                &list,
                Some(Flash::Error(
                    "You have no open rental of that device.".into(),
                )),
            ),
        );
    };
    let outcome = rental::stop_rental(&shared, &device, Some(&rental_id), None).await;
    let list = my_rentals(&shared, &session).await.unwrap_or_default();
    match outcome {
        Ok(_) => html_response(
            StatusCode::OK,
            rentals_page(
                &session,
                &list,
                Some(Flash::Ok(format!(
                    "Your rental of {device} ended; its sandbox was wiped."
                ))),
            ),
        ),
        Err(e) => {
            tracing::warn!(%device, error = %e, "stopping a rental failed");
            html_response(
                StatusCode::ACCEPTED,
                rentals_page(
                    &session,
                    &list,
                    Some(Flash::Ok(format!(
                        "Your rental of {device} is ending; the device will be wiped as soon as it is reachable."
                    ))),
                ),
            )
        }
    }
}

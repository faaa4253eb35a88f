//! The administrators' pages: every account, device and rental, with the
//! actions only administrators have: suspend or reinstate an account, lift
//! a sign-in lock, suspend or reinstate a device, end anyone's rental with a
//! reason its renter sees.
//!
//! To anyone who is not an administrator these pages do not exist (404),
//! like any other unknown address.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use rpibroker_wire::DeviceName;
use rpibroker_wire::control::RentalId;
use serde::Deserialize;

use super::layout::{Flash, page};
use super::{current_session, html_response, signed_in_form};
use crate::accounts::{Session, normalize_email};
use crate::broker::Shared;
use crate::price::show_price;
use crate::rental::{self, RentalError};
use crate::store::{AdminDevice, AdminRental, AdminUser, StoreError, Suspension};
use crate::time::UnixTime;

/// Everything the administrators' page shows.
struct Overview {
    users: Vec<AdminUser>,
    devices: Vec<(AdminDevice, bool)>,
    rentals: Vec<AdminRental>,
}

async fn overview(shared: &Arc<Shared>) -> Result<Overview, StoreError> {
    let registry = shared.registry.clone();
    shared
        .store
        .blocking(move |s| {
            Ok(Overview {
                users: s.admin_users(UnixTime::now())?,
                devices: s
                    .admin_devices()?
                    .into_iter()
                    .map(|d| {
                        let online = registry.is_online(&d.name);
                        (d, online)
                    })
                    .collect(),
                rentals: s.admin_rentals()?,
            })
        })
        .await
}

fn not_found(session: &Session) -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            Some(session),
            Some(Flash::Error("There is no page at this address.".into())),
            html! {},
        ),
    )
}

fn when(t: i64) -> String {
    crate::time::UnixTime(t).ago(UnixTime::now())
}

fn users_table(session: &Session, users: &[AdminUser]) -> Markup {
    html! {
        h2 id="users" { "Accounts" }
        div.table-wrap { table {
            thead { tr { th { "Email" } th { "Since" } th { "Devices" } th { "State" } th { "" } } }
            tbody {
                @for u in users {
                    tr data-testid={ "user-" (u.email) } {
                        td { (u.email) @if u.is_admin { " " span.hint { "(administrator)" } } }
                        td { (when(u.created_at)) }
                        td { (u.devices) }
                        td {
                            @if let Some(at) = u.suspended_at { "suspended " (when(at)) }
                            @else if u.locked_until.is_some() { "sign-in locked" }
                            @else { "active" }
                        }
                        td {
                            form.inline method="post" action="/admin/users" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="email" value=(u.email);
                                @if u.suspended_at.is_some() {
                                    button type="submit" name="action" value="unsuspend" { "Reinstate" }
                                } @else if u.id != session.user.id {
                                    button type="submit" name="action" value="suspend" aria-label={ "Suspend " (u.email) } { "Suspend" }
                                }
                                @if u.locked_until.is_some() {
                                    button type="submit" name="action" value="unlock" { "Unlock sign-in" }
                                }
                            }
                        }
                    }
                }
            }
        } }
    }
}

fn devices_table(session: &Session, devices: &[(AdminDevice, bool)]) -> Markup {
    html! {
        h2 id="devices" { "Devices" }
        @if devices.is_empty() {
            div.empty { p { "No devices are registered." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Device" } th { "Owner" } th { "State" } th { "Marketplace" } th { "" } } }
                tbody {
                    @for (d, online) in devices {
                        tr data-testid={ "device-" (d.name) } {
                            td { strong { (d.name) } }
                            td { (d.owner_email.as_deref().unwrap_or("the operator")) }
                            td {
                                @if let Some(s) = &d.suspension { "suspended " (when(s.at)) ": " (s.reason) }
                                @else if *online { "online" } @else { "offline" }
                            }
                            td {
                                @if d.listed { "listed" } @else { "not listed" }
                                @if let Some(rate) = d.hourly_rate { " at " (show_price(rate)) }
                            }
                            td {
                                form.inline method="post" action="/admin/devices" {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="name" value=(d.name);
                                    @if d.suspension.is_some() {
                                        button type="submit" name="action" value="unsuspend" { "Reinstate" }
                                    } @else {
                                        input type="text" name="reason" required maxlength=(rental::MAX_REASON)
                                            placeholder="reason, shown to the owner" aria-label={ "reason to suspend " (d.name) };
                                        button type="submit" name="action" value="suspend" { "Suspend" }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn rentals_table(session: &Session, rentals: &[AdminRental]) -> Markup {
    html! {
        h2 id="rentals" { "Rentals" }
        @if rentals.is_empty() {
            div.empty { p { "No rentals yet." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Device" } th { "Renter" } th { "State" } th { "Started" } th { "" } } }
                tbody {
                    @for r in rentals {
                        tr data-testid={ "rental-" (r.id) } {
                            td { (r.device) }
                            td { (r.renter_email.as_deref().unwrap_or("the operator")) }
                            td {
                                (r.state)
                                @if let Some(why) = &r.end_reason { br; span.hint { (why) } }
                            }
                            td { (when(r.started_at)) }
                            td {
                                @if r.ended_at.is_none() {
                                    form.inline method="post" action="/admin/rentals/end" {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        input type="hidden" name="name" value=(r.device);
                                        input type="hidden" name="rental" value=(r.id);
                                        input type="text" name="reason" required maxlength=(rental::MAX_REASON)
                                            placeholder="reason, shown to the renter" aria-label={ "reason to end the rental of " (r.device) };
                                        button type="submit" { "End rental" }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

async fn reply(
    shared: &Arc<Shared>,
    session: &Session,
    status: StatusCode,
    flash: Option<Flash>,
) -> Response {
    match overview(shared).await {
        Ok(o) => html_response(
            status,
            page(
                "Administration",
                Some(session),
                flash,
                html! {
                    h1 { "Administration" }
                    nav aria-label="sections" { a href="#users" { "Accounts" } " · " a href="#devices" { "Devices" } " · " a href="#rentals" { "Rentals" } }
                    (users_table(session, &o.users))
                    (devices_table(session, &o.devices))
                    (rentals_table(session, &o.rentals))
                },
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "reading the administration overview failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "Administration",
                    Some(session),
                    Some(Flash::Error(
                        "The broker could not read its records; try again later.".into(),
                    )),
                    html! {},
                ),
            )
        }
    }
}

pub async fn overview_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return super::see_other("/signin");
    };
    if !session.user.is_admin {
        return not_found(&session);
    }
    reply(&shared, &session, StatusCode::OK, None).await
}

/// The administrator behind a form, or the response for anyone else.
async fn admin_form(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, Response> {
    let (session, _) = signed_in_form(shared, headers, csrf).await?;
    if !session.user.is_admin {
        return Err(not_found(&session));
    }
    Ok(session)
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    action: String,
}

/// Suspends or reinstates an account, or lifts its sign-in lock.
pub async fn user_action(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<UserForm>,
) -> Response {
    let session = match admin_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let show = |status, flash| reply(&shared, &session, status, Some(flash));
    let Ok(email) = normalize_email(&form.email) else {
        return show(
            StatusCode::NOT_FOUND,
            Flash::Error("No account has that email.".into()),
        )
        .await;
    };
    if form.action == "suspend" && email == session.user.email {
        return show(
            StatusCode::UNPROCESSABLE_ENTITY,
            Flash::Error("You cannot suspend your own account.".into()),
        )
        .await;
    }
    let action = form.action.clone();
    let target = email.clone();
    let done = shared
        .store
        .blocking(move |s| -> Result<bool, StoreError> {
            match action.as_str() {
                "suspend" => s.set_suspended(&target, Some(UnixTime::now().0)),
                "unsuspend" => s.set_suspended(&target, None),
                "unlock" => {
                    s.clear_login_failures(&target)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await;
    match done {
        Ok(true) => {
            tracing::info!(admin = session.user.id, action = %form.action, "account changed by an administrator");
            let what = match form.action.as_str() {
                "suspend" => "is suspended and signed out everywhere",
                "unsuspend" => "is reinstated",
                _ => "can sign in again",
            };
            show(StatusCode::OK, Flash::Ok(format!("{email} {what}."))).await
        }
        Ok(false) => {
            show(
                StatusCode::NOT_FOUND,
                Flash::Error("No account has that email, or that is not an action.".into()),
            )
            .await
        }
        Err(e) => {
            tracing::error!(error = %e, "changing an account failed");
            show(
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not save that; try again later.".into()),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
}

/// Suspends a device (ending its rental with a wipe, unlisting it and
/// cutting its session) or reinstates it.
pub async fn device_action(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<DeviceForm>,
) -> Response {
    let session = match admin_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let show = |status, flash| reply(&shared, &session, status, Some(flash));
    let Ok(name) = DeviceName::parse(&form.name) else {
        return show(
            StatusCode::NOT_FOUND,
            Flash::Error("No device has that name.".into()),
        )
        .await;
    };
    let suspension = match form.action.as_str() {
        "suspend" => match rental::parse_reason(&form.reason) {
            Ok(reason) => Some(Suspension {
                at: UnixTime::now().0,
                reason,
            }),
            Err(_) => {
                return show(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Flash::Error(format!(
                        "Give the owner a reason of 1 to {} characters.",
                        rental::MAX_REASON
                    )),
                )
                .await;
            }
        },
        "unsuspend" => None,
        _ => {
            return show(
                StatusCode::UNPROCESSABLE_ENTITY,
                Flash::Error("That is not an action.".into()),
            )
            .await;
        }
    };
    if let Some(s) = &suspension {
        // The rental ends first, while the device can still be reached to
        // wipe its sandbox; offline, the wipe waits for its return.
        let why = format!("Ended by an administrator: {}", s.reason);
        match rental::stop_rental(&shared, &name, None, Some(why)).await {
            Ok(_) | Err(RentalError::NotRented(_)) | Err(RentalError::Device(..)) => {}
            Err(RentalError::NoSuchDevice(_)) => {
                return show(
                    StatusCode::NOT_FOUND,
                    Flash::Error("No device has that name.".into()),
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(device = %name, error = %e, "ending the rental of a device being suspended failed");
            }
        }
    }
    let suspending = suspension.is_some();
    let target = name.clone();
    let done = shared
        .store
        .blocking(move |s| s.set_device_suspension(&target, suspension))
        .await;
    match done {
        Ok(true) => {
            if suspending && let Some((generation, _)) = shared.registry.credential(&name) {
                shared.registry.kick_generation(
                    &name,
                    generation,
                    "the device was suspended by the broker's administrators",
                );
            }
            shared.registry.access.refresh(&name).await;
            tracing::info!(admin = session.user.id, device = %name, suspended = suspending, "device changed by an administrator");
            let what = if suspending {
                "is suspended: it cannot connect and is off the market"
            } else {
                "is reinstated; its owner can list it again"
            };
            show(StatusCode::OK, Flash::Ok(format!("{name} {what}."))).await
        }
        Ok(false) => {
            show(
                StatusCode::NOT_FOUND,
                Flash::Error("No device has that name.".into()),
            )
            .await
        }
        Err(e) => {
            tracing::error!(error = %e, "changing a device's suspension failed");
            show(
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not save that; try again later.".into()),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct EndForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    rental: String,
    #[serde(default)]
    reason: String,
}

/// Ends a rental, with a reason its renter sees.
pub async fn end_rental(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<EndForm>,
) -> Response {
    let session = match admin_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let show = |status, flash| reply(&shared, &session, status, Some(flash));
    let reason = match rental::parse_reason(&form.reason) {
        Ok(r) => format!("Ended by an administrator: {r}"),
        Err(e) => return show(StatusCode::UNPROCESSABLE_ENTITY, Flash::Error(e)).await,
    };
    let (Ok(name), Ok(id)) = (DeviceName::parse(&form.name), RentalId::parse(&form.rental)) else {
        return show(
            StatusCode::NOT_FOUND,
            Flash::Error("No such rental is open.".into()),
        )
        .await;
    };
    match rental::stop_rental(&shared, &name, Some(&id), Some(reason)).await {
        Ok(_) => {
            tracing::info!(admin = session.user.id, device = %name, rental = %id, "rental ended by an administrator");
            show(
                StatusCode::OK,
                Flash::Ok(format!(
                    "The rental of {name} ended; its sandbox was wiped."
                )),
            )
            .await
        }
        Err(RentalError::NotRented(_) | RentalError::NoSuchDevice(_)) => {
            show(
                StatusCode::NOT_FOUND,
                Flash::Error("No such rental is open.".into()),
            )
            .await
        }
        Err(e) => {
            tracing::warn!(device = %name, error = %e, "ending a rental failed");
            show(
                StatusCode::ACCEPTED,
                Flash::Ok(format!(
                    "The rental of {name} is ending; the device is wiped as soon as it is reachable."
                )),
            )
            .await
        }
    }
}

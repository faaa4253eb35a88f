//! The owner's pages: my devices, and registering a device (seed step 1),
//! whose token and agent config are shown once.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use rpibroker_wire::DeviceStatus;
use rpibroker_wire::status::{Earnings, Uptime};
use serde::Deserialize;

use super::layout::{Flash, page};
use super::{current_session, html_response, see_other, signed_in_form};
use crate::accounts::Session;
use crate::actions::devices::{self, DeviceError, MAX_DEVICES_PER_ACCOUNT};
use crate::broker::Shared;
use crate::price::{parse_price, show_price};

#[derive(Deserialize)]
pub struct ListingForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    listed: Option<String>,
    #[serde(default)]
    rate: String,
}

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

fn register_form(session: &Session, name: &str) -> Markup {
    html! {
        h2 { "Register a device" }
        form.stack method="post" action="/devices" {
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Device name"
                span.hint { "Lowercase letters, digits and -, at most "
                    (rpibroker_wire::device_name::MAX_LEN) " characters; it becomes the device's web address." }
                input type="text" name="name" value=(name) required maxlength="63"
                    pattern="[a-z0-9]([a-z0-9-]*[a-z0-9])?" autocomplete="off";
            }
            button type="submit" { "Register device" }
        }
    }
}

fn listing_form(session: &Session, d: &DeviceStatus) -> Markup {
    html! {
        form.inline method="post" action="/devices/listing" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="name" value=(d.name);
            label.check { input type="checkbox" name="listed" value="on" checked[d.listed]; " listed" }
            label.inline { "per hour "
                input type="text" name="rate" inputmode="decimal" size="6" required
                    value=(d.hourly_rate.map(show_price).unwrap_or_default()) aria-label={ "hourly rate of " (d.name) };
            }
            button type="submit" { "Save" }
        }
    }
}

/// Hours and minutes, e.g. `3 h 05 min`.
fn show_duration(secs: i64) -> String {
    format!("{} h {:02} min", secs / 3600, secs % 3600 / 60)
}

/// What the device claims (capped by its sandbox limits) and what the
/// broker measured.
fn hardware(d: &DeviceStatus) -> Markup {
    let measured = d
        .verification
        .as_ref()
        .and_then(|v| v.measured.as_ref())
        .map(|m| m.figures.summary());
    html! {
        @if let Some(claimed) = &d.claimed { "claimed: " (claimed.summary()) } @else { "not reported yet" }
        @if let Some(m) = measured { br; "measured: " (m) }
    }
}

fn device_rows(session: &Session, devices: &[DeviceStatus]) -> Markup {
    let total: Earnings =
        devices
            .iter()
            .filter_map(|d| d.earnings)
            .fold(Earnings::default(), |a, e| Earnings {
                cents: a.cents + e.cents,
                rented_secs: a.rented_secs + e.rented_secs,
                rentals: a.rentals + e.rentals,
            });
    html! {
        @if devices.is_empty() {
            div.empty { p { "No devices yet. Register your first one below." } }
        } @else {
            p data-testid="earnings-total" {
                "Earned so far: " strong { (show_price(total.cents)) } " from " (total.rentals)
                @if total.rentals == 1 { " rental" } @else { " rentals" }
                " (" (show_duration(total.rented_secs)) " rented, at each rental's agreed rate)."
            }
            div.table-wrap { table {
                thead { tr { th { "Device" } th { "State" } th { "Uptime 7 d / 30 d" } th { "Sandbox" } th { "Hardware" } th { "Verified" } th { "Marketplace" } th { "Rental" } th { "Earned" } th { "" } } }
                tbody {
                    @for d in devices {
                        tr {
                            td { strong { (d.name) } br; span.hint { (d.subdomain) } }
                            td data-live={ "state-" (d.name) } {
                                @if let Some(why) = &d.suspended { strong { "suspended" } " by the broker's administrators: " (why) }
                                @else if d.online { "online" } @else if d.last_handshake.is_some() { "offline" } @else { "never connected" }
                            }
                            td data-live={ "uptime-" (d.name) } data-testid={ "uptime-" (d.name) } {
                                @match d.uptime {
                                    Some(u) => { (Uptime::percent(u.week_permille)) " / " (Uptime::percent(u.month_permille)) }
                                    None => { "-" }
                                }
                            }
                            td { span data-live={ "sandbox-" (d.name) } { (d.sandbox.as_ref().map_or("unknown", |s| s.state.as_str())) } (super::limits::form(&session.csrf, d)) }
                            td.hint data-live={ "hardware-" (d.name) } { (hardware(d)) }
                            td data-live={ "verified-" (d.name) } { (d.verification.as_ref().map_or("not yet", |v| v.verdict.as_str())) }
                            td { (listing_form(session, d)) }
                            td {
                                @if let Some(r) = &d.rental {
                                    (r.state) " (" (r.username.as_deref().unwrap_or("-")) ")"
                                    form.inline method="post" action="/devices/end-rental" {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        input type="hidden" name="name" value=(d.name);
                                        input type="text" name="reason" required maxlength="200"
                                            placeholder="reason, shown to the renter" aria-label={ "reason to end the rental of " (d.name) };
                                        button type="submit" { "End rental" }
                                    }
                                } @else { "none" }
                            }
                            td data-testid={ "earned-" (d.name) } {
                                @let e = d.earnings.unwrap_or_default();
                                (show_price(e.cents)) br;
                                span.hint { (show_duration(e.rented_secs)) }
                            }
                            td {
                                form method="post" action="/devices/remove" {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="name" value=(d.name);
                                    button.link type="submit" aria-label={ "Remove " (d.name) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn devices_page(
    session: &Session,
    devices: &[DeviceStatus],
    flash: Option<Flash>,
    name: &str,
) -> Markup {
    page(
        "My devices",
        Some(session),
        flash,
        html! {
            h1 { "My devices" }
            (device_rows(session, devices))
            (register_form(session, name))
        },
    )
}

/// My devices, with a message above them.
pub(super) async fn devices_reply(
    shared: &Arc<Shared>,
    session: &Session,
    status: StatusCode,
    flash: Flash,
) -> Response {
    let devices = devices::mine(shared, session.into())
        .await
        .unwrap_or_default();
    html_response(status, devices_page(session, &devices, Some(flash), ""))
}

pub async fn list(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return see_other("/signin");
    };
    match devices::mine(&shared, (&session).into()).await {
        Ok(devices) => html_response(StatusCode::OK, devices_page(&session, &devices, None, "")),
        Err(e) => {
            tracing::error!(error = %e, "listing devices failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "My devices",
                    Some(&session),
                    Some(Flash::Error(
                        "The broker could not list your devices; try again later.".into(),
                    )),
                    html! {},
                ),
            )
        }
    }
}

pub async fn register(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let refuse = |message: String| async {
        let devices = devices::mine(&shared, (&session).into())
            .await
            .unwrap_or_default();
        html_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            devices_page(&session, &devices, Some(Flash::Error(message)), &form.name),
        )
    };
    let registered = match devices::register(&shared, (&session).into(), &form.name).await {
        Ok(r) => r,
        Err(DeviceError::BadName(e)) => return refuse(format!("{e}.")).await,
        Err(DeviceError::TooMany) => {
            return refuse(format!(
                "An account may register at most {MAX_DEVICES_PER_ACCOUNT} devices; remove one first or ask the operator."
            ))
            .await;
        }
        Err(DeviceError::NameTaken(name)) => {
            return refuse(format!("The name {name} is taken; pick another.")).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "registering a device failed");
            return refuse("The broker could not register the device; try again later.".into())
                .await;
        }
    };
    let (name, device_token, config) =
        (registered.name, registered.token.0, registered.agent_config);
    let json = serde_json::to_string_pretty(&config).unwrap_or_default();
    let download = format!(
        "data:application/json;base64,{}",
        base64_encode(json.as_bytes())
    );
    html_response(
        StatusCode::CREATED,
        page(
            "Device registered",
            Some(&session),
            Some(Flash::Ok(format!("Device {name} is registered."))),
            html! {
                h1 { "Set up " (name) }
                p { strong { "Save its token now: it is shown only this once." }
                    " The broker keeps only a hash of it." }
                p { "Device token: " code data-testid="device-token" { (device_token) } }
                h2 { "1. The agent config" }
                p { a download="device.json" href=(download) { "Download device.json" }
                    " or copy it:" }
                pre data-testid="agent-config" { (json) }
                h2 { "2. On the device" }
                p { "With Docker installed, build the sandbox image and start the agent (as root, or a member of the docker group):" }
                pre { "sandbox/build-image.sh\nrpibroker-agent --config device.json" }
                p { "It connects to this broker, starts the sandbox renters get, and the broker verifies its hardware. Or, to reach your own services without a sandbox, remove the \"sandbox\" section; a stock OpenSSH client works too (the token is the password):" }
                pre { (registered.openssh_command) }
                p { a href="/devices" { "Back to my devices" } }
            },
        ),
    )
}

/// Lists or unlists one of the owner's devices, with its hourly rate.
pub async fn set_listing(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<ListingForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let show = |status, flash| devices_reply(&shared, &session, status, flash);
    let rate = match parse_price(&form.rate) {
        Ok(r) => r,
        Err(e) => {
            return show(
                StatusCode::UNPROCESSABLE_ENTITY,
                Flash::Error(format!("The price {e}.")),
            )
            .await;
        }
    };
    let listed = form.listed.is_some();
    match devices::set_listing(&shared, (&session).into(), &form.name, listed, rate).await {
        Ok(()) => {
            show(
                StatusCode::OK,
                Flash::Ok(format!(
                    "{}: {} at {} per hour.",
                    form.name,
                    if listed { "listed" } else { "not listed" },
                    show_price(rate)
                )),
            )
            .await
        }
        Err(e) => show(error_status(&e), Flash::Error(error_sentence(&e))).await,
    }
}

#[derive(Deserialize)]
pub struct EndRentalForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    reason: String,
}

/// The status of a page that reports `e`.
fn error_status(e: &DeviceError) -> StatusCode {
    match e {
        DeviceError::BadName(_) | DeviceError::BadRate | DeviceError::BadReason(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        DeviceError::NotFound => StatusCode::NOT_FOUND,
        DeviceError::Suspended | DeviceError::DeviceSuspended(..) => StatusCode::FORBIDDEN,
        DeviceError::TooMany
        | DeviceError::NameTaken(_)
        | DeviceError::NotRented(_)
        | DeviceError::RentalStuck(..) => StatusCode::CONFLICT,
        DeviceError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// How a page words `e`; internal details go to the log.
fn error_sentence(e: &DeviceError) -> String {
    match e {
        DeviceError::NotFound => "You have no device by that name.".into(),
        DeviceError::BadReason(why) => why.clone(),
        DeviceError::NotRented(name) => format!("{name} has no rental."),
        DeviceError::RentalStuck(name, _) => format!(
            "{name} has a rental that could not be ended cleanly (is the device online?); try again when it is."
        ),
        DeviceError::Store(e) => {
            tracing::error!(error = %e, "a device action failed");
            "The broker could not save that; try again later.".into()
        }
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
                None => text,
            }
        }
    }
}

/// Ends the rental of one of the owner's devices, with a reason the renter sees.
pub async fn end_rental(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<EndRentalForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let show = |status, flash| devices_reply(&shared, &session, status, flash);
    match devices::end_rental(&shared, (&session).into(), &form.name, &form.reason).await {
        Ok(ended) if ended.wiped => {
            show(
                StatusCode::OK,
                Flash::Ok(format!(
                    "The rental of {} ended; its sandbox was wiped.",
                    ended.device
                )),
            )
            .await
        }
        Ok(ended) => {
            show(
                StatusCode::ACCEPTED,
                Flash::Ok(format!(
                    "The rental of {} is ending; the device is wiped as soon as it is reachable.",
                    ended.device
                )),
            )
            .await
        }
        Err(e) => show(error_status(&e), Flash::Error(error_sentence(&e))).await,
    }
}

/// Removes one of the owner's devices, ending its rental (with a wipe) first.
pub async fn remove(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> Response {
    let (session, _) = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let show = |status, flash| devices_reply(&shared, &session, status, flash);
    match devices::remove(&shared, (&session).into(), &form.name).await {
        Ok(name) => {
            show(
                StatusCode::OK,
                Flash::Ok(format!("{name} is removed: its token no longer works.")),
            )
            .await
        }
        Err(DeviceError::Store(e)) => {
            tracing::error!(error = %e, "removing a device failed");
            show(
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not remove the device; try again later.".into()),
            )
            .await
        }
        Err(e) => show(error_status(&e), Flash::Error(error_sentence(&e))).await,
    }
}

/// Standard base64, for the config's download link.
fn base64_encode(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64_encode(b""), "");
        assert_eq!(super::base64_encode(b"f"), "Zg==");
        assert_eq!(super::base64_encode(b"fo"), "Zm8=");
        assert_eq!(super::base64_encode(b"foo"), "Zm9v");
        assert_eq!(super::base64_encode(b"foobar"), "Zm9vYmFy");
    }
}

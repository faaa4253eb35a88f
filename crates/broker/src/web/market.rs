//! The marketplace and rentals: anyone browses the listed devices, filters
//! and sorts them, and opens a device's page; a signed-in person rents one
//! that is verified, online and idle, gets its login once, and ends the
//! rental from "My rentals".

use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use rpibroker_wire::DeviceName;
use rpibroker_wire::status::Uptime;
use serde::Deserialize;

use super::layout::{Flash, page};
use super::{current_session, html_response, see_other, signed_in_form};
use crate::accounts::Session;
use crate::actions::rentals::{self, Mailed, RentError, Rental, StopError, Which};
use crate::broker::Shared;
use crate::market::listing::PAGE_SIZE;
use crate::market::listing::architectures;
use crate::market::peers::PeerOffer;
use crate::market::query::{Order, SortKey};
use crate::market::{self, Listing, MarketQuery, QueryProblem};
use crate::price::show_price;
use crate::store::StoreError;
use crate::time::UnixTime;

#[derive(Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// The hourly rate the page showed, in cents.
    #[serde(default)]
    rate: String,
}

/// A throughput in KiB/s, in MiB/s.
fn throughput(kib_s: Option<u64>) -> String {
    kib_s.map_or("not measured".into(), |k| {
        format!("{}.{} MiB/s", k / 1024, k % 1024 * 10 / 1024)
    })
}

/// Where a marketplace query string leads.
fn market_href(query: &str) -> String {
    if query.is_empty() {
        "/".into()
    } else {
        format!("/?{query}")
    }
}

/// The rent button, or what stands in its way.
fn rent_action(l: &Listing, session: Option<&Session>) -> Markup {
    html! {
        @match (l.availability(), session) {
            (Ok(()), Some(s)) => {
                form method="post" action="/rent" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="name" value=(l.device.name);
                    @if let Some(rate) = l.device.hourly_rate {
                        input type="hidden" name="rate" value=(rate);
                    }
                    button type="submit" aria-label={ "Rent " (l.device.name) } { "Rent" }
                }
            }
            (Ok(()), None) => { a href="/signin" { "Sign in to rent" } }
            (Err(why), _) => { span.hint { (why) } }
        }
    }
}

fn problems_box(problems: &[QueryProblem]) -> Markup {
    html! {
        @if !problems.is_empty() {
            div.flash.error role="alert" {
                @for p in problems { p { (p) } }
            }
        }
    }
}

fn text_filter(q: &MarketQuery, name: &str, label: &str, hint: &str) -> Markup {
    html! {
        label { (label) " " span.hint { (hint) }
            input type="text" inputmode="decimal" name=(name) value=(q.field(name))
                maxlength=(market::query::MAX_VALUE_LEN) size="6";
        }
    }
}

fn filter_form(q: &MarketQuery, all: &[Listing], peers: &[PeerOffer], own: &str) -> Markup {
    let mut arches = architectures(all);
    arches.extend(architectures(peers));
    arches.extend(q.arch.as_deref());
    arches.sort_unstable();
    arches.dedup();
    let mut brokers: Vec<&str> = peers.iter().map(|o| o.broker.as_str()).collect();
    brokers.extend(q.broker.as_deref().filter(|b| *b != own));
    brokers.sort_unstable();
    brokers.dedup();
    html! {
        form.filters method="get" action="/" aria-label="Filter and sort" {
            (text_filter(q, "min_price", "Price from", "per hour"))
            (text_filter(q, "max_price", "Price up to", "per hour"))
            (text_filter(q, "min_cores", "Cores", "at least"))
            (text_filter(q, "min_memory", "Memory", "GiB, at least"))
            (text_filter(q, "min_disk", "Disk", "GiB, at least"))
            (text_filter(q, "min_uptime", "Uptime", "%, at least"))
            label { "Architecture"
                select name="arch" {
                    option value="" { "any" }
                    @for a in &arches {
                        option value=(a) selected[q.arch.as_deref() == Some(*a)] { (a) }
                    }
                }
            }
            label { "Managed by"
                select name="broker" {
                    option value="" { "any broker" }
                    option value=(own) selected[q.broker.as_deref() == Some(own)] { "this broker (" (own) ")" }
                    @for b in &brokers {
                        option value=(b) selected[q.broker.as_deref() == Some(*b)] { (b) }
                    }
                }
            }
            label { "Sort by"
                select name="sort" {
                    @for key in SortKey::ALL {
                        option value=(key.as_str()) selected[q.sort == key] { (key) }
                    }
                }
            }
            label { "Order"
                select name="order" {
                    option value="asc" selected[q.order == Order::Asc] { "ascending" }
                    option value="desc" selected[q.order == Order::Desc] { "descending" }
                }
            }
            div.checks {
                label.check { input type="checkbox" name="verified" value="on" checked[q.verified_only]; " verified only" }
                label.check { input type="checkbox" name="available" value="on" checked[q.available_only]; " available now" }
            }
            div.checks {
                button type="submit" { "Apply" }
                a href="/" { "Clear filters" }
            }
        }
    }
}

/// This broker's listed devices and its peers' that match `q`, this
/// broker being called `own`.
fn market_view(
    session: Option<&Session>,
    all: &[Listing],
    peers: &[PeerOffer],
    own: &str,
    q: &MarketQuery,
    problems: &[QueryProblem],
) -> Markup {
    let found = market::search(all, q, own);
    html! {
        h1 { "Marketplace" }
        p { "Small computers, verified by this broker, rented by the hour." }
        (problems_box(problems))
        @if all.is_empty() && peers.is_empty() {
            div.empty {
                p { "No devices are listed yet." }
                @if session.is_none() {
                    p { a href="/signup" { "Create an account" } " to rent one when they are." }
                }
            }
        } @else {
            (filter_form(q, all, peers, own))
            @if all.is_empty() {
                div.empty { p { "No devices of this broker are listed yet." } }
            } @else if found.rows.is_empty() {
                div.empty {
                    p { "No device matches these filters." }
                    p { a href="/" { "Clear the filters" } " to see all " (all.len()) " listed devices." }
                }
            } @else {
                p.hint data-testid="matching" {
                    (found.matching) @if found.matching == 1 { " device matches" } @else { " devices match" }
                    @if found.pages > 1 { "; page " (found.page) " of " (found.pages) }
                    "."
                }
                div.table-wrap { table {
                    thead { tr { th { "Device" } th { "Hardware" } th { "Uptime, 30 days" } th { "Price per hour" } th { "" } } }
                    tbody {
                        @for l in &found.rows {
                            tr {
                                td { a href={ "/market/" (l.device.name) } { strong { (l.device.name) } } br;
                                    span.hint { (l.arch().unwrap_or("")) } }
                                td { (l.figures().summary()) br;
                                    span.hint { @if l.verified() { "verified" } @else if l.measured().is_some() { "measured, not verified" } @else { "claimed" } } }
                                td { (l.uptime.map_or("unknown".into(), |u| Uptime::percent(u.month_permille))) }
                                td { (l.device.hourly_rate.map(show_price).unwrap_or_default()) }
                                td data-live={ "rent-" (l.device.name) } { (rent_action(l, session)) }
                            }
                        }
                    }
                } }
                @if found.pages > 1 {
                    nav.pages aria-label="pages" {
                        @if found.page > 1 {
                            a rel="prev" href=(market_href(&q.query_string(found.page - 1))) { "Previous" }
                        }
                        span { "Page " (found.page) " of " (found.pages) }
                        @if found.page < found.pages {
                            a rel="next" href=(market_href(&q.query_string(found.page + 1))) { "Next" }
                        }
                    }
                }
            }
            (peer_view(session, peers, q, own))
        }
    }
}

fn unavailable_page(session: Option<&Session>, error: &StoreError) -> Response {
    tracing::error!(%error, "listing the marketplace failed");
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

pub async fn home(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = current_session(&shared, &headers).await;
    let session = session.as_ref().map(|(s, _)| s);
    let (query, problems) = MarketQuery::parse(raw.as_deref());
    let peers = market::peers::load(&shared).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "reading peer devices failed");
        Vec::new()
    });
    let own = shared.settings.federation.name.as_str();
    match market::load(&shared).await {
        Ok(all) => html_response(
            StatusCode::OK,
            page(
                "Marketplace",
                session,
                None,
                market_view(session, &all, &peers, own, &query, &problems),
            ),
        ),
        Err(e) => unavailable_page(session, &e),
    }
}

/// Devices peer brokers manage that match `q`, one page of them, each
/// with its Rent button (the peer runs the rental) and a link to the broker
/// managing it.
fn peer_view(session: Option<&Session>, peers: &[PeerOffer], q: &MarketQuery, own: &str) -> Markup {
    let found = market::listing::matching(peers, q, own);
    let start = (q.page.max(1) as usize - 1) * PAGE_SIZE;
    let shown = found.iter().skip(start).take(PAGE_SIZE);
    html! {
        @if !peers.is_empty() {
            h2 id="peer-devices" { "On peer brokers" }
            p.hint { "Managed by brokers this one federates with; rent them here, and they run the rental." }
            @if found.is_empty() {
                div.empty { p { "No device of a peer broker matches these filters." } }
            } @else {
                div.table-wrap { table data-testid="peer-devices" {
                    thead { tr { th { "Device" } th { "Managed by" } th { "Hardware" } th { "Price per hour" } th { "" } } }
                    tbody {
                        @for o in shown {
                            tr data-testid={ "peer-device-" (o.broker) "-" (o.device.name) } {
                                td { strong { (o.device.name) } br; span.hint { (o.device.arch.as_deref().unwrap_or("")) } }
                                td { (o.broker) }
                                td { (o.figures().summary()) br;
                                    span.hint { @if o.device.verified { "verified by " (o.broker) } @else { "not verified" } } }
                                td { (o.device.hourly_rate.map(|r| format!("{} {}", show_price(r), o.device.currency)).unwrap_or_default()) }
                                td {
                                    @match (o.device.available, session) {
                                        (true, Some(s)) => { (super::leases::rent_button(s, &o.broker, &o.device.name, o.device.hourly_rate)) }
                                        (true, None) => { a href="/signin" { "Sign in to rent" } }
                                        (false, _) => { "not available now" }
                                    }
                                    a.hint href=(o.href()) { "on " (o.broker) }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn not_found(session: Option<&Session>, name: &str) -> Response {
    let shown: String = name
        .chars()
        .take(rpibroker_wire::device_name::MAX_LEN)
        .collect();
    html_response(
        StatusCode::NOT_FOUND,
        page(
            "No such device",
            session,
            Some(Flash::Error(format!(
                "No device called \u{201c}{shown}\u{201d} is on the marketplace."
            ))),
            html! { p { a href="/" { "Back to the marketplace" } } },
        ),
    )
}

fn device_view(session: Option<&Session>, l: &Listing) -> Markup {
    let d = &l.device;
    let claimed = l.claimed();
    let measured = l.measured();
    let hw = d.hardware.as_ref();
    let claim = |text: Option<&String>| text.cloned().unwrap_or_else(|| "unknown".into());
    html! {
        h1 { (d.name) }
        div data-live="availability" {
            @match l.availability() {
                Ok(()) => { p data-testid="availability" { "Available now." } }
                Err(why) => { p data-testid="availability" { "Not available now: " (why) "." } }
            }
            (rent_action(l, session))
        }
        dl {
            dt { "Price per hour" } dd data-testid="price" { (d.hourly_rate.map_or("not set".into(), show_price)) }
            dt { "Uptime" } dd data-testid="uptime" {
                @match l.uptime {
                    Some(u) => { (Uptime::percent(u.week_permille)) " over 7 days, " (Uptime::percent(u.month_permille)) " over 30 days" }
                    None => { "unknown" }
                }
            }
        }
        h2 { "Hardware" }
        p.hint { "What a renter's sandbox gets: the device's claims, and what this broker measured inside the sandbox." }
        div.table-wrap { table {
            thead { tr { th { "" } th { "Claimed" } th { "Measured" } } }
            tbody {
                tr { th { "Cores" } td { (claimed.cores_text()) }
                    td { (measured.map_or("-".into(), |m| m.cores_text())) } }
                tr { th { "Memory, MiB" } td { (claimed.memory_mib_text()) }
                    td { (measured.map_or("-".into(), |m| m.memory_mib_text())) } }
                tr { th { "Disk, GiB" } td { (claimed.disk_gib_text()) }
                    td { (measured.map_or("-".into(), |m| m.disk_gib_text())) } }
            }
        } }
        dl {
            dt { "Architecture" } dd { (l.arch().unwrap_or("unknown")) }
            dt { "CPU model" } dd data-testid="cpu-model" { (claim(hw.and_then(|h| h.cpu_model.as_ref()))) }
            dt { "Board" } dd { (claim(hw.and_then(|h| h.board.as_ref()))) }
            dt { "Operating system" } dd { (claim(hw.and_then(|h| h.os.as_ref()))) }
        }
        h2 { "Verification" }
        @match &d.verification {
            Some(v) => {
                p data-testid="verdict" { (v.verdict.as_str()) ", " (UnixTime(v.at).ago(UnixTime::now())) "." }
                @if !v.reasons.is_empty() { p { (v.reasons) } }
                @if let Some(m) = &v.measured {
                    dl {
                        dt { "SHA-256, one core" } dd { (throughput(m.cpu_sha256_kib_s)) }
                        dt { "Memory copy" } dd { (throughput(m.memory_copy_kib_s)) }
                        dt { "Disk write, synced" } dd { (throughput(m.disk_write_kib_s)) }
                    }
                }
            }
            None => { p data-testid="verdict" { "Not verified yet." } }
        }
        p { a href="/" { "Back to the marketplace" } }
    }
}

pub async fn device(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let session = current_session(&shared, &headers).await;
    let session = session.as_ref().map(|(s, _)| s);
    let Ok(Path(name)) = name else {
        return not_found(session, "");
    };
    let Ok(device) = DeviceName::parse(&name) else {
        return not_found(session, &name);
    };
    match market::find(&shared, &device).await {
        Ok(Some(listing)) => html_response(
            StatusCode::OK,
            page(
                device.as_str(),
                session,
                None,
                device_view(session, &listing),
            ),
        ),
        Ok(None) => not_found(session, &name),
        Err(e) => unavailable_page(session, &e),
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
        let all = market::load(shared_ref).await.unwrap_or_default();
        let peers = market::peers::load(shared_ref).await.unwrap_or_default();
        let own = shared_ref.settings.federation.name.as_str();
        html_response(
            status,
            page(
                "Marketplace",
                Some(session_ref),
                Some(Flash::Error(message)),
                market_view(
                    Some(session_ref),
                    &all,
                    &peers,
                    own,
                    &MarketQuery::default(),
                    &[],
                ),
            ),
        )
    };
    let agreed = match form.rate.as_str() {
        "" => None,
        rate => match rate.parse::<i64>() {
            Ok(cents) => Some(cents),
            Err(_) => {
                return back(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "This form is not one of the marketplace's; reload the page and try again."
                        .into(),
                )
                .await;
            }
        },
    };
    let rented = rentals::rent(
        &shared,
        (&session).into(),
        &session.user.email,
        &form.name,
        Vec::new(),
        agreed,
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
        Err(RentError::PriceChanged(device, now)) => {
            let now = now.map_or("no price".into(), |c| format!("{} per hour", show_price(c)));
            return back(
                StatusCode::CONFLICT,
                format!("The owner of {device} changed its price since you saw it: it is now {now}. Nothing was rented; check the new price and rent again."),
            )
            .await;
        }
        Err(e @ (RentError::TooMany | RentError::OwnDevice(_))) => {
            return back(StatusCode::CONFLICT, format!("{e}.")).await;
        }
        Err(e @ RentError::LowBalance(..)) => {
            return back(
                StatusCode::PAYMENT_REQUIRED,
                format!("Nothing was rented: {e}."),
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
            p { "Devices rented from peer brokers are under " a href="/leases" { "Rentals on peer brokers" } "." }
            @if rentals.is_empty() {
                div.empty { p { "You have no rentals. " a href="/" { "Find a device" } "." } }
            } @else {
                div.table-wrap { table {
                    thead { tr { th { "Device" } th { "Login" } th { "State" } th { "Note" } th { "" } } }
                    tbody {
                        @for r in rentals {
                            tr {
                                td { a href={ "/rentals/" (r.id) } data-testid={ "usage-link-" (r.device) } { (r.device) } }
                                td { (r.username.as_deref().unwrap_or("-")) }
                                td data-live={ "state-" (r.id) } { (r.state) }
                                td data-live={ "note-" (r.id) } { @if let Some(why) = &r.end_reason { (why) } }
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

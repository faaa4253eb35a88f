//! The administrators' pages: every account, device and rental, with the
//! actions only administrators have: suspend or reinstate an account, lift
//! a sign-in lock, suspend or reinstate a device, end anyone's rental with a
//! reason its renter sees; and the revenue page: the broker's fees, what it
//! owes owners, payouts, and the export and import of crypto payouts.
//!
//! To anyone who is not an administrator these pages do not exist (404),
//! like any other unknown address.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Flash, page};
use super::{current_session, html_response, signed_in_form};
use crate::accounts::Session;
use crate::actions::Actor;
use crate::actions::admin::{self, AdminError, Device, LedgerCheck, Revenue};
use crate::broker::Shared;
use crate::price::show_price;
use crate::rental;
use crate::store::{AdminRental, AdminUser, BucketSum, LeaseTotal, PeerRecord, Sum};
use crate::time::UnixTime;

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

fn devices_table(session: &Session, devices: &[Device]) -> Markup {
    html! {
        h2 id="devices" { "Devices" }
        @if devices.is_empty() {
            div.empty { p { "No devices are registered." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Device" } th { "Owner" } th { "State" } th { "Marketplace" } th { "" } } }
                tbody {
                    @for Device { record: d, online } in devices {
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

fn ledger_section(check: &LedgerCheck) -> Markup {
    html! {
        h2 id="ledger" { "Ledger" }
        @if check.problems.is_empty() {
            p.flash.ok data-testid="ledger-state" { "The ledger is whole: every currency's accounts sum to zero and every balance matches its entries." }
        } @else {
            div.flash.error role="alert" data-testid="ledger-state" {
                p { "The ledger is broken:" }
                ul { @for p in &check.problems { li { (p) } } }
            }
        }
        @if check.totals.is_empty() {
            div.empty { p { "No money has moved yet." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Currency" } th { "Sum of all accounts" } th { "Accounts" } th { "Transfers" } } }
                tbody {
                    @for t in &check.totals {
                        tr data-testid={ "ledger-" (t.currency) } {
                            td { (t.currency) }
                            td { (t.sum) }
                            td { (t.accounts) }
                            td { (t.transfers) }
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
    match admin::overview(shared, Actor::from(session)).await {
        Ok(o) => html_response(
            status,
            page(
                "Administration",
                Some(session),
                flash,
                html! {
                    h1 { "Administration" }
                    nav aria-label="sections" { a href="#users" { "Accounts" } " · " a href="#devices" { "Devices" } " · " a href="#rentals" { "Rentals" } " · " a href="#ledger" { "Ledger" } " · " a href="#peers" { "Peers" } " · " a href="/admin/revenue" { "Revenue and payouts" } }
                    (users_table(session, &o.users))
                    (devices_table(session, &o.devices))
                    (rentals_table(session, &o.rentals))
                    (ledger_section(&o.ledger))
                    (peers_table(session, &o.peers))
                },
            ),
        ),
        Err(AdminError::NotAdmin) => not_found(session),
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

/// The page for an action that was refused.
async fn refused(shared: &Arc<Shared>, session: &Session, e: AdminError) -> Response {
    let (status, message) = match e {
        AdminError::NotAdmin => return not_found(session),
        AdminError::NoSuchAccount => (StatusCode::NOT_FOUND, "No account has that email.".into()),
        AdminError::OwnAccount => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "You cannot suspend your own account.".into(),
        ),
        AdminError::NoSuchDevice => (StatusCode::NOT_FOUND, "No device has that name.".into()),
        AdminError::NoSuchRental => (StatusCode::NOT_FOUND, "No such rental is open.".into()),
        AdminError::NoSuchPeer => (
            StatusCode::NOT_FOUND,
            "No active peer has that name.".into(),
        ),
        e @ AdminError::OpenLeases(_) => (StatusCode::CONFLICT, format!("Not removed: {e}.")),
        AdminError::BadReason(why) | AdminError::Payouts(why) => {
            (StatusCode::UNPROCESSABLE_ENTITY, why)
        }
        AdminError::Store(e) => {
            tracing::error!(error = %e, "an administrator's action failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The broker could not save that; try again later.".into(),
            )
        }
    };
    reply(shared, session, status, Some(Flash::Error(message))).await
}

fn peers_table(session: &Session, peers: &[PeerRecord]) -> Markup {
    html! {
        h2 id="peers" { "Peers" }
        @if peers.is_empty() {
            p { "This broker federates with no other. Invite one with " code { "rpibroker peer invite" } "." }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Broker" } th { "Since" } th { "Credit limit" } th { "Balance" } th { "Listings" } th { "Usage records" } th { "State" } th { "" } } }
                tbody {
                    @for p in peers {
                        tr data-testid={ "peer-" (p.name) } {
                            td { a href={ "/admin/peers/" (p.name) } { (p.name) } br; span.hint { (p.base_url) } }
                            td { (when(p.added_at)) }
                            td { (show_price(p.credit_limit)) " " (p.currency) }
                            td data-testid={ "peer-balance-" (p.name) } {
                                @if p.balance > 0 { "we owe " (show_price(p.balance)) " " (p.currency) }
                                @else if p.balance < 0 { "owes us " (show_price(-p.balance)) " " (p.currency) }
                                @else { "settled" }
                            }
                            td {
                                @if p.missed_pulls > 0 { (p.missed_pulls) " pulls missed" }
                                @else if let Some(at) = p.last_pull_ok_at { "pulled " (when(at)) }
                                @else { "not pulled yet" }
                            }
                            td data-testid={ "peer-usage-" (p.name) } {
                                @if let Some(problem) = &p.usage_problem { strong { "Problem: " } (problem) }
                                @else if let Some(at) = p.usage_checked_at { "agree, checked " (when(at)) }
                                @else { "not checked yet" }
                            }
                            td { @if p.active { "active" } @else if let Some(at) = p.removed_at { "removed " (when(at)) } @else { "removed" } }
                            td {
                                @if p.active {
                                    form.inline method="post" action="/admin/peers/remove" {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        input type="hidden" name="name" value=(p.name);
                                        button type="submit" aria-label={ "Remove peer " (p.name) } { "Remove" }
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

#[derive(Deserialize)]
pub struct PeerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// Stops peering with a broker.
pub async fn remove_peer(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<PeerForm>,
) -> Response {
    let session = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok((s, _)) => s,
        Err(response) => return response,
    };
    match admin::remove_peer(&shared, Actor::from(&session), &form.name).await {
        Ok(()) => {
            let message = format!(
                "{} is no longer a peer: its requests are refused and its devices left the marketplace.",
                form.name
            );
            reply(&shared, &session, StatusCode::OK, Some(Flash::Ok(message))).await
        }
        Err(e) => refused(&shared, &session, e).await,
    }
}

pub async fn overview_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return super::see_other("/signin");
    };
    reply(&shared, &session, StatusCode::OK, None).await
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
    let session = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok((s, _)) => s,
        Err(response) => return response,
    };
    let actor = Actor::from(&session);
    let done = match form.action.as_str() {
        "suspend" | "unsuspend" => {
            let suspend = form.action == "suspend";
            admin::set_account_suspension(&shared, actor, &form.email, suspend)
                .await
                .map(|s| {
                    if suspend {
                        format!("{} is suspended and signed out everywhere.", s.email)
                    } else {
                        format!("{} is reinstated.", s.email)
                    }
                })
        }
        "unlock" => admin::unlock(&shared, actor, &form.email)
            .await
            .map(|email| format!("{email} can sign in again.")),
        _ => {
            return reply(
                &shared,
                &session,
                StatusCode::NOT_FOUND,
                Some(Flash::Error(
                    "No account has that email, or that is not an action.".into(),
                )),
            )
            .await;
        }
    };
    match done {
        Ok(message) => reply(&shared, &session, StatusCode::OK, Some(Flash::Ok(message))).await,
        Err(e) => refused(&shared, &session, e).await,
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
    let session = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok((s, _)) => s,
        Err(response) => return response,
    };
    let reason = match form.action.as_str() {
        "suspend" => Some(form.reason.as_str()),
        "unsuspend" => None,
        _ => {
            return reply(
                &shared,
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(Flash::Error("That is not an action.".into())),
            )
            .await;
        }
    };
    match admin::set_device_suspension(&shared, Actor::from(&session), &form.name, reason).await {
        Ok(done) => {
            let what = if done.suspension.is_some() {
                "is suspended: it cannot connect and is off the market"
            } else {
                "is reinstated; its owner can list it again"
            };
            let message = format!("{} {what}.", done.device);
            reply(&shared, &session, StatusCode::OK, Some(Flash::Ok(message))).await
        }
        Err(e) => refused(&shared, &session, e).await,
    }
}

#[derive(Deserialize)]
pub struct EndForm {
    #[serde(default)]
    csrf: String,
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
    let session = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok((s, _)) => s,
        Err(response) => return response,
    };
    match admin::end_rental(&shared, Actor::from(&session), &form.rental, &form.reason).await {
        Ok(ended) if ended.wiped => {
            let message = format!(
                "The rental of {} ended; its sandbox was wiped.",
                ended.device
            );
            reply(&shared, &session, StatusCode::OK, Some(Flash::Ok(message))).await
        }
        Ok(ended) => {
            let message = format!(
                "The rental of {} is ending; the device is wiped as soon as it is reachable.",
                ended.device
            );
            reply(
                &shared,
                &session,
                StatusCode::ACCEPTED,
                Some(Flash::Ok(message)),
            )
            .await
        }
        Err(e) => refused(&shared, &session, e).await,
    }
}

fn sums(title: &str, id: &str, rows: &[Sum], count: &str) -> Markup {
    html! {
        h2 id=(id) { (title) }
        @if rows.is_empty() {
            div.empty { p { "None." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Currency" } th { "Amount" } th { (count) } } }
                tbody {
                    @for r in rows {
                        tr data-testid={ (id) "-" (r.currency) } {
                            td { (r.currency) }
                            td { (show_price(r.amount)) }
                            td { (r.count) }
                        }
                    }
                }
            } }
        }
    }
}

fn buckets(title: &str, id: &str, rows: &[BucketSum]) -> Markup {
    html! {
        h2 id=(id) { (title) }
        @if rows.is_empty() {
            div.empty { p { "No fees in this time." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "When (UTC)" } th { "Currency" } th { "Fees" } } }
                tbody {
                    @for r in rows {
                        tr data-testid={ (id) "-" (r.bucket) "-" (r.currency) } {
                            td { (r.bucket) }
                            td { (r.currency) }
                            td { (show_price(r.amount)) }
                        }
                    }
                }
            } }
        }
    }
}

fn revenue_content(session: &Session, r: &Revenue) -> Markup {
    html! {
        h1 { "Revenue and payouts" }
        p { a href="/admin#ledger" { "The ledger check is on the administration page." } }
        (sums("Fees ever", "revenue", &r.total, "Accounts"))
        (sums("Owed to owners", "payable", &r.payable, "Owners owed"))
        (sums("Payouts in flight", "in-flight", &r.in_flight, "Accounts"))
        (buckets("Fees per day", "day", &r.by_day))
        (buckets("Fees per month", "month", &r.by_month))
        h2 id="payouts" { "Payouts" }
        @if r.payouts_by_state.is_empty() {
            div.empty { p { "No payouts yet." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "State" } th { "Currency" } th { "Amount" } th { "Payouts" } } }
                tbody {
                    @for p in &r.payouts_by_state {
                        tr data-testid={ "payouts-" (p.state) "-" (p.sum.currency) } {
                            td { (p.state) } td { (p.sum.currency) } td { (show_price(p.sum.amount)) } td { (p.sum.count) }
                        }
                    }
                }
            } }
            div.table-wrap { table {
                thead { tr { th { "Payout" } th { "Owner" } th { "Amount" } th { "To" } th { "State" } } }
                tbody {
                    @for p in &r.payouts {
                        tr data-testid={ "payout-" (p.id) } {
                            td { (p.id) br; span.hint { (UnixTime(p.created_at).date_time()) } }
                            td { (p.owner_email) }
                            td { (show_price(p.amount)) " " (p.currency) }
                            td { (p.method) ": " (p.destination) }
                            td {
                                (p.state)
                                @if let Some(why) = &p.reason { br; span.hint { (why) } }
                                @if let Some(look) = &p.attention { br; strong { "Look it up: " } (look) }
                            }
                        }
                    }
                }
            } }
        }
        h2 id="crypto" { "Crypto payouts" }
        p {
            "Export what is owed to owners who chose a Bitcoin address (this makes this period's payouts, once), "
            "send the amounts, fill in status (paid or failed) and transaction_id, and import the file. "
            "The same is done with " code { "rpibroker admin payouts export" } " and " code { "import" } "."
        }
        form.inline method="post" action="/admin/payouts/export" {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" { "Export crypto payouts (CSV)" }
        }
        form.stack method="post" action="/admin/payouts/import" {
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Completed CSV"
                span.hint { "Up to 16 KiB here; import larger files with the command." }
                textarea name="csv" rows="6" required {}
            }
            button type="submit" { "Import crypto payouts" }
        }
    }
}

async fn revenue_reply(
    shared: &Arc<Shared>,
    session: &Session,
    status: StatusCode,
    flash: Option<Flash>,
) -> Response {
    match admin::revenue(shared, Actor::from(session)).await {
        Ok(r) => html_response(
            status,
            page(
                "Revenue",
                Some(session),
                flash,
                revenue_content(session, &r),
            ),
        ),
        Err(AdminError::NotAdmin) => not_found(session),
        Err(e) => {
            tracing::error!(error = %e, "reading the revenue failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "Revenue",
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

pub async fn revenue_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return super::see_other("/signin");
    };
    revenue_reply(&shared, &session, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Makes this period's crypto payouts and downloads the CSV of those in
/// flight.
pub async fn export_payouts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let session = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok((s, _)) => s,
        Err(response) => return response,
    };
    match admin::export_crypto_payouts(&shared, Actor::from(&session)).await {
        Ok((csv, _)) => {
            let mut response = csv.into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"crypto-payouts.csv\""),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(AdminError::NotAdmin) => not_found(&session),
        Err(e) => refused_revenue(&shared, &session, e).await,
    }
}

async fn refused_revenue(shared: &Arc<Shared>, session: &Session, e: AdminError) -> Response {
    match e {
        AdminError::Store(e) => {
            tracing::error!(error = %e, "a payout action failed");
            revenue_reply(
                shared,
                session,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(Flash::Error(
                    "The broker could not save that; try again later.".into(),
                )),
            )
            .await
        }
        e => {
            revenue_reply(
                shared,
                session,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(Flash::Error(e.to_string())),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    csv: String,
}

/// Records a completed crypto payout CSV.
pub async fn import_payouts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<ImportForm>,
) -> Response {
    let session = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok((s, _)) => s,
        Err(response) => return response,
    };
    match admin::import_crypto_payouts(&shared, Actor::from(&session), form.csv).await {
        Ok(done) => {
            let mut message = format!(
                "{} paid, {} failed (payable again), {} already recorded, {} still pending.",
                done.paid, done.failed, done.unchanged, done.pending
            );
            let (status, flash) = if done.refused.is_empty() {
                (StatusCode::OK, Flash::Ok(message))
            } else {
                message.push(' ');
                message.push_str(&done.refused.join("; "));
                (StatusCode::CONFLICT, Flash::Error(message))
            };
            revenue_reply(&shared, &session, status, Some(flash)).await
        }
        Err(AdminError::NotAdmin) => not_found(&session),
        Err(e) => refused_revenue(&shared, &session, e).await,
    }
}

fn lease_totals(title: &str, testid: &str, leases: &[LeaseTotal], total: i64) -> Markup {
    html! {
        h2 { (title) }
        @if leases.is_empty() {
            p { "None." }
        } @else {
            div.table-wrap { table data-testid=(testid) {
                thead { tr { th { "Lease" } th { "Device" } th { "Hours" } th { "Corrections" } th { "Amount" } th { "State" } } }
                tbody {
                    @for l in leases {
                        tr data-testid={ (testid) "-" (l.lease) } {
                            td { @if l.lease.is_empty() { "payments" } @else { (l.lease) } }
                            td { (l.device) }
                            td { (l.periods) }
                            td { (l.corrections) }
                            td data-testid={ "amount-" (l.lease) } { (show_price(l.total)) }
                            td { @if l.lease.is_empty() { "" } @else if l.ended { "ended" } @else { "running" } }
                        }
                    }
                    tr { td colspan="4" { strong { "Total" } } td { strong { (show_price(total)) } } td {} }
                }
            } }
        }
    }
}

/// `GET /admin/peers/{name}`: this broker's side of its statement with a
/// peer.
pub async fn peer_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return super::see_other("/signin");
    };
    let st = match admin::peer_statement(&shared, Actor::from(&session), &name).await {
        Ok(st) => st,
        Err(AdminError::NotAdmin) => return not_found(&session),
        Err(e) => return refused(&shared, &session, e).await,
    };
    let s = &st.statement;
    let balance = match s.balance {
        0 => "Nothing is owed either way.".to_string(),
        b if b > 0 => format!(
            "This broker owes {} {} {}.",
            st.peer.name,
            show_price(b),
            s.currency
        ),
        b => format!(
            "{} owes this broker {} {}.",
            st.peer.name,
            show_price(-b),
            s.currency
        ),
    };
    html_response(
        StatusCode::OK,
        page(
            &format!("Peer {}", st.peer.name),
            Some(&session),
            None,
            html! {
                h1 { "Statement with " (st.peer.name) }
                p { (st.peer.base_url) " · credit limit " (show_price(st.peer.credit_limit)) " " (st.peer.currency) }
                p data-testid="peer-balance" { strong { (balance) } }
                p data-testid="peer-usage-check" {
                    @if let Some(problem) = &st.peer.usage_problem { strong { "Its usage records do not check out: " } (problem) }
                    @else if let Some(at) = st.peer.usage_checked_at { "Its usage records agreed with this broker's copy " (when(at)) "." }
                    @else { "Its usage records have not been checked yet." }
                }
                (lease_totals(&format!("Leases {} ran for renters here ({} records)", st.peer.name, s.received.seq), "run-by-peer", &st.run_by_peer, s.received.total))
                (lease_totals(&format!("Leases this broker ran for {}'s renters ({} records)", st.peer.name, s.issued.seq), "run-for-peer", &st.run_for_peer, s.issued.total))
                p.hint { "To compare with " (st.peer.name) "'s own statement, run " code { "rpibroker peer statement " (st.peer.name) } " on this broker." }
                p { a href="/admin#peers" { "Back to the administrators' page" } }
            },
        ),
    )
}

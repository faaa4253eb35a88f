//! The owner's earnings page: what the broker owes them, what each device
//! earned per day and per payout period, their payouts and their state, and
//! the form that says where they are paid.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Flash, page};
use super::{current_session, html_response, see_other, signed_in_form};
use crate::accounts::Session;
use crate::actions::Actor;
use crate::actions::earnings::{self, Amount, DeviceEarning, Earnings, EarningsError};
use crate::payouts::method::PayoutMethod;
use crate::price::show_price;
use crate::store::PayoutRecord;
use crate::time::UnixTime;

use crate::broker::Shared;

fn amounts(list: &[Amount]) -> String {
    if list.is_empty() {
        return "0.00".into();
    }
    list.iter()
        .map(|a| format!("{} {}", show_price(a.amount), a.currency))
        .collect::<Vec<_>>()
        .join(", ")
}

fn method_form(session: &Session, e: &Earnings) -> Markup {
    let (kind, destination) = match &e.method {
        Some(m) => (m.kind(), m.destination()),
        None => ("none", ""),
    };
    html! {
        h2 id="method" { "Where you are paid" }
        @if !e.terms.enabled {
            div.empty { p { "This broker does not pay owners out yet." } }
        } @else {
            p {
                @match &e.method {
                    Some(PayoutMethod::Paypal(email)) => { "PayPal: " strong data-testid="payout-method" { (email) } }
                    Some(PayoutMethod::Crypto(address)) => { "Bitcoin address: " code data-testid="payout-method" { (address) } }
                    None => { span data-testid="payout-method" { "You have not said where to pay you; what you earn waits here." } }
                }
            }
            p.hint {
                "Every " (period_words(e.terms.period_secs)) ", everything you are owed is paid out once it reaches "
                (show_price(e.terms.minimum)) "."
            }
            form.stack method="post" action="/earnings/method" {
                input type="hidden" name="csrf" value=(session.csrf);
                label { "Method"
                    select name="kind" {
                        @for m in &e.terms.methods {
                            option value=(m) selected[*m == kind] {
                                @if *m == "paypal" { "PayPal" } @else { "Bitcoin address" }
                            }
                        }
                        option value="none" selected[kind == "none"] { "None (keep it here)" }
                    }
                }
                label { "PayPal email or Bitcoin address"
                    input type="text" name="destination" value=(destination) maxlength="254" autocomplete="off";
                }
                button type="submit" { "Save payout method" }
            }
        }
    }
}

fn period_words(secs: u64) -> String {
    match secs {
        604_800 => "week".into(),
        86_400 => "day".into(),
        s => format!("{s} seconds"),
    }
}

fn earnings_table(title: &str, id: &str, first: &str, rows: &[DeviceEarning]) -> Markup {
    html! {
        h2 id=(id) { (title) }
        @if rows.is_empty() {
            div.empty { p { "Your devices earned nothing in this time." } }
        } @else {
            div.table-wrap { table data-testid=(id) {
                thead { tr { th { (first) } th { "Device" } th { "Earned" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (r.from) }
                            td { (r.device.as_deref().unwrap_or("a removed device")) }
                            td { (show_price(r.amount)) " " (r.currency) }
                        }
                    }
                }
            } }
        }
    }
}

fn payouts_table(payouts: &[PayoutRecord]) -> Markup {
    html! {
        h2 id="payouts" { "Payouts" }
        @if payouts.is_empty() {
            div.empty { p { "No payouts yet." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Made" } th { "Amount" } th { "To" } th { "State" } } }
                tbody {
                    @for p in payouts {
                        tr data-testid={ "payout-" (p.id) } {
                            td { (UnixTime(p.created_at).date_time()) }
                            td { (show_price(p.amount)) " " (p.currency) }
                            td { (p.method) ": " (p.destination) }
                            td {
                                (p.state)
                                @if let Some(why) = &p.reason { br; span.hint { (why) } }
                                @if let Some(tx) = &p.provider_item_id { br; span.hint { (tx) } }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn content(session: &Session, e: &Earnings) -> Markup {
    html! {
        h1 { "Earnings" }
        div.table-wrap { table {
            tbody {
                tr { th { "Owed to you" } td data-testid="payable" { (amounts(&e.payable)) } }
                tr { th { "On its way to you" } td data-testid="in-flight" { (amounts(&e.in_flight)) } }
            }
        } }
        (method_form(session, e))
        (payouts_table(&e.payouts))
        (earnings_table("Per payout period", "by-period", "Period from", &e.by_period))
        (earnings_table("Per day", "by-day", "Day (UTC)", &e.by_day))
    }
}

async fn reply(
    shared: &Arc<Shared>,
    session: &Session,
    status: StatusCode,
    flash: Option<Flash>,
) -> Response {
    match earnings::earnings(shared, Actor::from(session)).await {
        Ok(e) => html_response(
            status,
            page("Earnings", Some(session), flash, content(session, &e)),
        ),
        Err(e) => {
            tracing::error!(error = %e, "reading earnings failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "Earnings",
                    Some(session),
                    Some(Flash::Error(
                        "The broker could not read your earnings; try again later.".into(),
                    )),
                    html! {},
                ),
            )
        }
    }
}

pub async fn earnings_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return see_other("/signin");
    };
    reply(&shared, &session, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct MethodForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    destination: String,
}

/// Sets where the owner is paid.
pub async fn set_method(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<MethodForm>,
) -> Response {
    let session = match signed_in_form(&shared, &headers, &form.csrf).await {
        Ok((s, _)) => s,
        Err(response) => return response,
    };
    let done = earnings::set_method(
        &shared,
        Actor::from(&session),
        &form.kind,
        &form.destination,
    )
    .await;
    let (status, flash) = match done {
        Ok(Some(m)) => (
            StatusCode::OK,
            Flash::Ok(format!("Payouts go to {} now.", m.destination())),
        ),
        Ok(None) => (
            StatusCode::OK,
            Flash::Ok("No payouts will be made; what you earn waits here.".into()),
        ),
        Err(EarningsError::Store(e)) => {
            tracing::error!(error = %e, "saving a payout method failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Flash::Error("The broker could not save that; try again later.".into()),
            )
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Flash::Error(format!("{e}.")),
        ),
    };
    reply(&shared, &session, status, Some(flash)).await
}

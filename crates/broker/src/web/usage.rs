//! A rental's page for its renter (and administrators): what each hour
//! cost and why, from [`crate::billing::usage`]. Anyone else is told there
//! is no such rental.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};

use super::layout::page;
use super::{current_session, error_page, html_response, see_other};
use crate::actions::rentals::{self, UsageError};
use crate::billing::usage::{PeriodState, Usage};
use crate::broker::Shared;
use crate::price::show_price;
use crate::time::UnixTime;

fn explain(state: PeriodState) -> &'static str {
    match state {
        PeriodState::Held => "Under way: the hour's rate is held from your wallet",
        PeriodState::Charged => "Charged for the reachable minutes; the rest released",
        PeriodState::Unpaid => "Not charged: your wallet could not cover it, so the rental ended",
        PeriodState::Free => "Not charged",
        PeriodState::Pending => "Not billed yet",
    }
}

fn content(u: &Usage) -> Markup {
    let now = UnixTime::now();
    let per = if u.period_secs == 3600 {
        "hour".to_string()
    } else {
        format!("{} s", u.period_secs)
    };
    html! {
        h1 { "Rental of " (u.device) }
        p {
            "Rate: " (show_price(u.rate_cents)) " " (u.currency) " per " (per)
            ", charged for the minutes the device was reachable (connected, with its sandbox up). "
            "Charged so far: " strong data-testid="usage-total" { (show_price(u.charged_cents)) " " (u.currency) } "."
        }
        @if u.periods.is_empty() {
            div.empty { p { "Nothing to show yet." } }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th { "Hour" } th { "Began" } th { "Reachable" } th { "Rate" }
                    th { "Charged" } th { "Released" } th { "State" }
                } }
                tbody {
                    @for p in &u.periods {
                        tr data-testid={ "usage-" (p.period) } {
                            td { (p.period) }
                            td { (UnixTime(p.start).ago(now)) }
                            td data-testid={ "reachable-" (p.period) } { (p.reachable_minutes) " min" }
                            td { (show_price(p.rate_cents)) }
                            td data-testid={ "charged-" (p.period) } { (show_price(p.charged_cents)) }
                            td data-testid={ "released-" (p.period) } { (show_price(p.released_cents)) }
                            td title=(explain(p.state)) data-testid={ "state-" (p.period) } { (p.state.as_str()) }
                        }
                    }
                }
            } }
            p.hint { "Newest hour first. Each hour's rate is held from your wallet when it begins; when it ends you pay for the minutes the device was reachable and the rest goes back to your wallet." }
        }
        p { a href="/rentals" { "Back to My rentals" } }
    }
}

const BACK: (&str, &str) = ("/rentals", "Back to My rentals");

pub async fn usage_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return see_other("/signin");
    };
    match rentals::usage(&shared, (&session).into(), &id).await {
        Ok(u) => html_response(
            StatusCode::OK,
            page(
                &format!("Rental of {}", u.device),
                Some(&session),
                None,
                content(&u),
            ),
        ),
        Err(UsageError::NotFound) => error_page(
            &session,
            StatusCode::NOT_FOUND,
            "No such rental",
            "You have no rental with that id.".into(),
            BACK,
        ),
        Err(UsageError::Store(e)) => {
            tracing::error!(error = %e, "reading a rental's usage failed");
            error_page(
                &session,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Rental",
                "The broker could not read this rental; try again later.".into(),
                BACK,
            )
        }
    }
}

//! The wallet page: what a person has paid in and not spent, what the
//! broker owes them for their devices' rentals, and every movement of the
//! two, from the ledger; and the same movements as CSV. With a payment
//! provider configured, it also offers a top-up and lists the pending ones
//! (see [`super::topups`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{Flash, page};
use super::{current_session, html_response, see_other};
use crate::accounts::Session;
use crate::actions::topups::{self, Topup};
use crate::broker::Shared;
use crate::ledger::{Account, Currency};
use crate::payments::Provider;
use crate::price::show_price;
use crate::store::{Movement, StoreError, TopupState};

/// Movements the page lists.
const SHOWN: i64 = 100;
/// Movements the CSV export holds at most.
const CSV_ROWS: i64 = 100_000;

/// An amount with its sign, e.g. `-1.50`.
fn signed(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}", show_price(cents.abs()))
}

/// An amount with its sign and currency, e.g. `-1.50 USD`.
fn money(cents: i64, currency: &Currency) -> String {
    format!("{} {currency}", signed(cents))
}

fn what(account: &Account) -> &'static str {
    match account {
        Account::Payable(_) => "Owed to you",
        Account::Held(_) => "Held for the rental hour under way",
        _ => "Wallet",
    }
}

/// What the wallet page shows besides its balances and movements.
pub struct TopupOffer<'a> {
    pub providers: Vec<Provider>,
    pub currency: &'a Currency,
    pub csrf: &'a str,
    pub pending: Vec<Topup>,
}

fn topup_form(offer: &TopupOffer<'_>) -> Markup {
    html! {
        @if !offer.providers.is_empty() {
            h2 { "Top up" }
            form.stack method="post" action="/wallet/topups" data-testid="topup-form" {
                input type="hidden" name="csrf" value=(offer.csrf);
                label {
                    "Amount (" (offer.currency) ")"
                    input type="text" name="amount" inputmode="decimal" required
                        placeholder="10.00" pattern="[0-9]{1,6}([.][0-9]{1,2})?";
                }
                div role="radiogroup" aria-label="Pay through" {
                    @for (i, p) in offer.providers.iter().enumerate() {
                        label.check {
                            input type="radio" name="provider" value=(p.name()) checked[i == 0];
                            " " (p.label())
                        }
                        " "
                    }
                }
                div { button type="submit" { "Top up" } }
            }
            @if !offer.pending.is_empty() {
                h3 { "Pending top-ups" }
                div.table-wrap { table data-testid="pending-topups" {
                    thead { tr { th { "Started" } th { "Amount" } th { "Through" } th { "" } } }
                    tbody {
                        @for t in &offer.pending {
                            tr {
                                td { (crate::time::UnixTime(t.created_at).ago(crate::time::UnixTime::now())) }
                                td { (t.amount) " " (t.currency) }
                                td { (Provider::parse(t.provider).map_or(t.provider, Provider::label)) }
                                td {
                                    a href={ "/wallet/topups/" (t.id) } { "Check" }
                                    @if let Some(url) = &t.checkout_url {
                                        " · " a href=(url) { "Pay" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn content(
    balances: &[(Account, Currency, i64)],
    movements: &[Movement],
    offer: &TopupOffer<'_>,
) -> Markup {
    html! {
        h1 { "Wallet" }
        (topup_form(offer))
        @if balances.is_empty() {
            div.empty { p { "No money has moved through your account yet." } }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Account" } th { "Balance" } } }
                tbody {
                    @for (account, currency, balance) in balances {
                        tr data-testid={ "balance-" (account.key().0) "-" (currency) } {
                            td { (what(account)) }
                            td { (money(*balance, currency)) }
                        }
                    }
                }
            } }
            h2 { "Movements" }
            p { a href="/wallet.csv" download { "Download every movement as CSV" } }
            div.table-wrap { table {
                thead { tr { th { "When" } th { "Account" } th { "Amount" } th { "What" } } }
                tbody {
                    @for m in movements {
                        tr {
                            td { (crate::time::UnixTime(m.at).ago(crate::time::UnixTime::now())) }
                            td { (what(&m.account)) }
                            td { (money(m.amount, &m.currency)) }
                            td { (m.memo) br; span.hint { (m.transfer) } }
                        }
                    }
                }
            } }
        }
    }
}

/// Every movement of the signed-in person's accounts as CSV, newest first.
pub async fn wallet_csv(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return see_other("/signin");
    };
    let user = session.user.id;
    let movements = match shared
        .store
        .blocking(move |s| s.movements_of_user(user, CSV_ROWS))
        .await
    {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "exporting a wallet failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the wallet could not be read\n",
            )
                .into_response();
        }
    };
    let mut csv =
        String::from("time_unix,account,currency,amount_minor_units,amount,transfer,memo\n");
    for m in &movements {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            m.at,
            m.account.key().0,
            m.currency,
            m.amount,
            signed(m.amount),
            crate::csv::field(&m.transfer),
            crate::csv::field(&m.memo)
        ));
    }
    let mut response = csv.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"wallet.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn wallet_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some((session, _)) = current_session(&shared, &headers).await else {
        return see_other("/signin");
    };
    render(&shared, &session, StatusCode::OK, None).await
}

/// The wallet page of `session`'s account, with `flash` above it.
pub async fn render(
    shared: &Shared,
    session: &Session,
    status: StatusCode,
    flash: Option<Flash>,
) -> Response {
    let user = session.user.id;
    let read = shared
        .store
        .blocking(move |s| -> Result<_, StoreError> {
            Ok((s.balances_of_user(user)?, s.movements_of_user(user, SHOWN)?))
        })
        .await;
    let pending = if shared.payments.providers().is_empty() {
        Ok(Vec::new())
    } else {
        topups::mine(shared, session.into()).await.map(|list| {
            list.into_iter()
                .filter(|t| t.state == TopupState::Pending.as_str())
                .collect()
        })
    };
    match (read, pending) {
        (Ok((balances, movements)), Ok(pending)) => {
            let offer = TopupOffer {
                providers: shared.payments.providers(),
                currency: &shared.settings.billing.currency,
                csrf: &session.csrf,
                pending,
            };
            html_response(
                status,
                page(
                    "Wallet",
                    Some(session),
                    flash,
                    content(&balances, &movements, &offer),
                ),
            )
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "reading a wallet failed");
            html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "Wallet",
                    Some(session),
                    Some(Flash::Error(
                        "The broker could not read your wallet; try again later.".into(),
                    )),
                    html! {},
                ),
            )
        }
    }
}

//! The marketplace: the devices anyone can rent.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::layout::page;
use super::{current_session, html_response};
use crate::broker::Shared;

pub async fn home(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let session = current_session(&shared, &headers).await;
    let content = html! {
        h1 { "Marketplace" }
        p { "Small computers, verified by this broker, rented by the hour." }
        div.empty {
            p { "No devices are listed yet." }
            @if session.is_none() {
                p { a href="/signup" { "Create an account" } " to rent one when they are." }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page(
            "Marketplace",
            session.as_ref().map(|(s, _)| s),
            None,
            content,
        ),
    )
}

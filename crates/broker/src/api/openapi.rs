//! The OpenAPI 3.1 document of the JSON API, kept by hand beside the code in
//! `openapi.json` and served at [`PATH`]. A test checks that it lists exactly
//! the endpoints [`super::endpoints`] serves.

use axum::http::header;
use axum::response::IntoResponse;

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

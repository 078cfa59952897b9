//! The web page at `/`: one static HTML file (no build step) that talks to the inference.sh routes.

use axum::response::{Html, IntoResponse, Response};

const INDEX: &str = include_str!("page/index.html");

pub async fn index() -> Response {
    Html(INDEX).into_response()
}

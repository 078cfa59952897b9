//! Operations: `/health`, `/metrics`, `/openapi.json`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::AppState;

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Ready: the model is loaded and the queue runs"), (status = 503, description = "Starting or shutting down")))]
pub async fn health(State(state): State<AppState>) -> Response {
    let ready = state.ready.load(Ordering::SeqCst);
    let (queued, running) = state.store.depth().await.unwrap_or((-1, -1));
    let body = json!({
        "status": if ready { "ok" } else { "unavailable" },
        "model": state.engine.model(),
        "queued": queued,
        "running": running,
        "queue_capacity": state.cfg.queue_capacity,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if ready && queued >= 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok((queued, running)) = state.store.depth().await {
        metrics::gauge!("foley_queue_depth").set(queued as f64);
        metrics::gauge!("foley_running_tasks").set(running as f64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

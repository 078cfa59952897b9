//! Operations: `/health`, `/models` (the bundles and their weights' licenses), `/metrics` (`/openapi.json` is
//! [`crate::openapi`]'s).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use foley_pipeline::{BundleLicenses, ModelSpec};

use crate::AppState;

/// The licenses of the loaded model's weights, when its name is a model bundle (built in, or a TOML under
/// `FOLEY_MODELS_DIR` / `./models`); `None` for an engine that is not one.
fn loaded_licenses(state: &AppState) -> Option<BundleLicenses> {
    ModelSpec::find(state.engine.model()).ok().map(|spec| spec.licenses())
}

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
        "licenses": loaded_licenses(&state).map(|l| json!({
            "commercial": l.commercial,
            "notice": l.notice,
            "files": l.files.iter().map(|f| (f.role.clone(), json!(f.license.as_ref().map(|x| &x.spdx)))).collect::<serde_json::Map<_, _>>(),
        })),
    });
    let code = if ready && queued >= 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

#[utoipa::path(get, path = "/models", tag = "operations",
    responses((status = 200, description = "The loaded model (`loaded`), its weights' licenses (`licenses`: the verdict on commercial use, a one-line notice, the condition spelled out, and per file the SPDX id, terms URL, source and a line on commercial use; null when the engine is no model bundle) and every built-in bundle with its licenses (`models`)")))]
pub async fn models(State(state): State<AppState>) -> Response {
    let loaded = state.engine.model();
    let models: Vec<_> = ModelSpec::builtin()
        .iter()
        .map(|spec| {
            json!({
                "name": spec.name, "mode": spec.mode, "sample_rate": spec.sample_rate(), "noise": spec.noise,
                "description": spec.description, "loaded": spec.name == loaded, "licenses": spec.licenses(),
            })
        })
        .collect();
    Json(json!({"loaded": loaded, "licenses": loaded_licenses(&state), "models": models})).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok((queued, running)) = state.store.depth().await {
        metrics::gauge!("foley_queue_depth").set(queued as f64);
        metrics::gauge!("foley_running_tasks").set(running as f64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

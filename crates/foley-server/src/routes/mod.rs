//! The router: one module per API family.

pub mod files;
pub mod infsh;
pub mod kling;
pub mod ops;
pub mod stream;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::AppState;

/// JSON bodies (data URIs included) are capped a little above the video size limit.
fn json_limit(state: &AppState) -> usize {
    (state.cfg.limits.max_file_size as usize).saturating_mul(4) / 3 + 64 * 1024
}

pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/apps/run", post(infsh::run))
        .route("/tasks", get(infsh::list))
        .route("/tasks/{id}", get(infsh::get_task).delete(infsh::delete_task))
        .route("/tasks/{id}/stream", get(stream::stream))
        .route("/tasks/{id}/cancel", post(infsh::cancel))
        .route("/tasks/{id}/files", get(infsh::task_files))
        .route("/files", post(files::create))
        .route("/files/{id}", get(files::get))
        .route("/v1/audio/video-to-audio", post(kling::create).get(kling::list))
        .route("/v1/audio/video-to-audio/{id}", get(kling::get))
        .layer(DefaultBodyLimit::max(json_limit(&state)))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::require_key));
    let open = Router::new()
        .route("/files/{id}/upload", put(files::upload).layer(DefaultBodyLimit::disable()))
        .route("/files/{id}/content", get(files::content))
        .route("/files/{id}/waveform.png", get(files::waveform))
        .route("/health", get(ops::health))
        .route("/models", get(ops::models))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/", get(crate::page::index));
    authed.merge(open).layer(TraceLayer::new_for_http()).with_state(state)
}

/// A worker node's routes: only `/health` and `/metrics`.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

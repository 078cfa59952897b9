//! inference.sh protocol: `POST /apps/run`, `GET|DELETE /tasks/{id}`, `POST /tasks/{id}/cancel`,
//! `GET /tasks/{id}/files`. Shapes follow what the `inferencesh` SDK 0.36 sends and parses.

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::render::{base_url, envelope};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::tasks::{load, submit, Submitter, APP};
use crate::types::{Api, TaskStatus};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RunBody {
    /// `klingai/video-to-audio`, optionally `@version` (any version runs the loaded model).
    pub app: Option<String>,
    pub input: Option<Value>,
    /// Called with the task when it ends.
    pub webhook: Option<String>,
}

/// Whether `app` names this server's app (`klingai/video-to-audio[@version][:function]`).
pub fn is_our_app(app: &str) -> bool {
    let name = app.split('@').next().unwrap_or("").split(':').next().unwrap_or("");
    name.eq_ignore_ascii_case(APP) || name.eq_ignore_ascii_case("foley/video-to-audio")
}

#[utoipa::path(post, path = "/apps/run", tag = "inference.sh", request_body = RunBody,
    responses((status = 200, description = "The queued task, in {data: task}"), (status = 404, description = "Unknown app"),
        (status = 422, description = "Invalid input (detail names the field and the rule)"), (status = 429, description = "Queue full, or this key's task bound or submission rate reached (code names which; Retry-After)")))]
pub async fn run(State(state): State<AppState>, Extension(caller): Extension<Caller>, headers: HeaderMap, body: Result<Json<RunBody>, axum::extract::rejection::JsonRejection>) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(crate::error::sentence(&e.body_text())))?;
    let app = body.app.unwrap_or_default();
    if !is_our_app(&app) {
        return Err(ApiError::not_found(format!("The app {app:?} does not exist on this server; it serves {APP}.")));
    }
    let input = body.input.unwrap_or(Value::Null);
    if !input.is_object() {
        return Err(ApiError::invalid("input: must be an object with at least `video`."));
    }
    let who = Submitter { caller, api: Api::Infsh, app: &app };
    let task = submit(&state, who, input, body.webhook.filter(|w| !w.is_empty()), None, base_url(&state, &headers)).await?;
    Ok(envelope(crate::render::task(&state, &task)).into_response())
}

#[utoipa::path(get, path = "/tasks/{id}", tag = "inference.sh", responses((status = 200, description = "The task, in {data: task}"), (status = 404, description = "No such task, or another key's (answered alike)")))]
pub async fn get_task(State(state): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let t = load(&state, &caller, &id).await?;
    Ok(envelope(crate::render::task(&state, &t)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub offset: Option<i64>,
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/tasks", tag = "inference.sh", params(("offset" = Option<i64>, Query), ("limit" = Option<i64>, Query, description = "1–100, default 20")),
    responses((status = 200, description = "{data: {items: [task + owner], total, offset, limit, caller}}: the tasks submitted with this API key (every task for an operator key), either API, newest first")))]
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(20);
    if offset < 0 || !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("offset must be at least 0 and limit between 1 and 100."));
    }
    let (rows, total) = state.store.list_scoped(None, caller.scope(), offset, limit).await?;
    let names = state.keys.names();
    let items: Vec<Value> = rows
        .iter()
        .map(|t| {
            let mut v = crate::render::task(&state, t);
            if let Some(o) = &t.output {
                v["waveform_url"] = crate::render::waveform_url(&state, &t.base_url, &o.audio.id).into();
            }
            v["owner"] = crate::render::owner(&names, t.owner.as_deref());
            v
        })
        .collect();
    let me = serde_json::json!({"name": caller.name, "operator": caller.operator});
    Ok(envelope(serde_json::json!({"items": items, "total": total, "offset": offset, "limit": limit, "caller": me})).into_response())
}

#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = "inference.sh", responses((status = 204, description = "Cancelled (or cancelling: a running task stops at its next step)"), (status = 409, description = "Already ended")))]
pub async fn cancel(State(state): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let t = load(&state, &caller, &id).await?;
    if t.status == TaskStatus::Cancelled {
        return Ok(StatusCode::NO_CONTENT);
    }
    if t.status.is_terminal() {
        return Err(ApiError::conflict(format!("The task has already ended ({}); there is nothing to cancel.", t.status.name())));
    }
    if state.store.cancel_queued(&id).await? {
        tracing::info!(task = %id, key = %caller.name, "cancelled while queued");
        state.publish(&id);
        crate::webhooks::on_terminal(&state, &id);
        return Ok(StatusCode::NO_CONTENT);
    }
    // The run may be on this node (its token stops it at once) or on another one (which sees `cancelling` through
    // the database's notification, or at its next lease renewal, and stops it there).
    let token = state.running.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned();
    if let Some(token) = &token {
        token.cancel();
    }
    if state.store.mark_cancelling(&id).await? || token.is_some() {
        tracing::info!(task = %id, key = %caller.name, "cancelling while running");
        state.publish(&id);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    pub files: Option<String>,
}

#[utoipa::path(delete, path = "/tasks/{id}", tag = "inference.sh", params(("files" = Option<bool>, Query, description = "Also delete its input and output files")),
    responses((status = 204), (status = 409, description = "Still running")))]
pub async fn delete_task(State(state): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>, Query(q): Query<DeleteQuery>) -> Result<StatusCode, ApiError> {
    let t = load(&state, &caller, &id).await?;
    if !t.status.is_terminal() {
        return Err(ApiError::conflict("The task has not ended; cancel it first, then delete it."));
    }
    let files = if matches!(q.files.as_deref(), Some("true" | "1")) { state.store.task_files(&id).await? } else { Vec::new() };
    state.store.delete(&id).await?;
    tracing::info!(task = %id, key = %caller.name, "deleted");
    for f in files {
        state.files.delete(&f.id).await?;
        state.store.delete_file(&f.id).await?;
    }
    if matches!(q.files.as_deref(), Some("true" | "1")) {
        if let Some(fid) = &t.input_file_id {
            state.files.delete(fid).await?;
            state.store.delete_file(fid).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/tasks/{id}/files", tag = "inference.sh", responses((status = 200, description = "The task's input and output files")))]
pub async fn task_files(State(state): State<AppState>, Extension(caller): Extension<Caller>, headers: HeaderMap, Path(id): Path<String>, Query(q): Query<std::collections::HashMap<String, String>>) -> Result<Response, ApiError> {
    let t = load(&state, &caller, &id).await?;
    let base = base_url(&state, &headers);
    let mut rows = Vec::new();
    if let Some(fid) = &t.input_file_id {
        if let Some(mut f) = state.store.get_file(fid).await? {
            f.role = "input".into();
            rows.push(f);
        }
    }
    rows.extend(state.store.task_files(&id).await?);
    let role = q.get("role");
    let list: Vec<Value> = rows.iter().filter(|f| role.is_none_or(|r| *r == f.role)).map(|f| crate::render::file_row(&state, &base, f)).collect();
    Ok(envelope(Value::Array(list)).into_response())
}

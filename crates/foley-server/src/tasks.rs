//! What both front doors (inference.sh and Kling) share about tasks: submitting one (input rules, the video,
//! admission within the queue bound and the key's bounds, the key's submission rate) and reading one as the
//! calling key may see it. The routes call in here; nothing here knows a route.

use axum::http::StatusCode;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::Admission;
use crate::types::{now_ms, Api, NewTask};
use crate::AppState;

/// The app this server runs, as the hosted service names it.
pub const APP: &str = "klingai/video-to-audio";

/// Who submits a task and through which door: the API key's [`Caller`], the API, the app as named.
pub struct Submitter<'a> {
    pub caller: Caller,
    pub api: Api,
    pub app: &'a str,
}

/// What both front doors share: check the input, validate the video, persist as queued (or 429).
pub async fn submit(
    state: &AppState,
    who: Submitter<'_>,
    mut input: Value,
    webhook: Option<String>,
    external_id: Option<String>,
    base: String,
) -> Result<crate::types::TaskRow, ApiError> {
    let Submitter { caller, api, app } = who;
    if state.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "The server is shutting down; retry shortly."));
    }
    if let Some(rate) = state.rate.as_ref() {
        if let Err(wait) = rate.check(caller.owner.0.as_deref().unwrap_or("")) {
            return Err(refused(&caller, crate::limits::rate_limited(state, wait)));
        }
    }
    crate::inputs::restore_sdk_text_uploads(state, &caller, &mut input).await?;
    let (queued, _) = state.store.depth().await?;
    if queued as usize >= state.cfg.queue_capacity {
        return Err(refused(&caller, full(state)));
    }
    let video = match input.get("video") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o.get("uri").and_then(Value::as_str).unwrap_or_default().to_string(),
        Some(Value::Null) | None => String::new(),
        Some(_) => return Err(ApiError::invalid("video: must be a string (a file uri, an http(s) URL or a data URI).")),
    };
    // Field rules first (cheap), then the video (may download and decode).
    crate::inputs::build_request(state, &input, std::path::Path::new("-"))?;
    if let Some(w) = &webhook {
        crate::netguard::check_url(w, state.cfg.allow_private_urls)
            .await
            .map_err(|e| ApiError::invalid(format!("webhook: {}", crate::error::sentence(&e.to_string()))))?;
    }
    let v = crate::inputs::resolve_video(state, &caller, "video", &video).await?;
    let request = crate::inputs::build_request(state, &input, &v.path)?;
    let task = NewTask {
        id: uuid::Uuid::new_v4().to_string(),
        api,
        app: app.to_string(),
        input,
        request,
        input_file_id: Some(v.file_id),
        webhook,
        external_id,
        base_url: base,
        created_at: now_ms(),
        owner: caller.owner.0.clone(),
    };
    let bounds = crate::store::Bounds { capacity: state.cfg.queue_capacity, per_owner: state.cfg.max_tasks_per_key };
    match state.store.admit_within(&task, bounds).await? {
        Admission::Admitted => {}
        Admission::QueueFull => return Err(refused(&caller, full(state))),
        Admission::OwnerFull => return Err(refused(&caller, crate::limits::too_many_tasks(state))),
    }
    if let Some(rate) = state.rate.as_ref() {
        rate.charge(caller.owner.0.as_deref().unwrap_or(""));
    }
    metrics::counter!("foley_tasks_submitted_total", "api" => api.as_str(), "key" => caller.name.clone()).increment(1);
    tracing::info!(task = %task.id, api = api.as_str(), key = %caller.name, "queued");
    state.wake.notify_one();
    state.publish(&task.id);
    state.store.get(&task.id).await?.ok_or_else(|| ApiError::internal("The task vanished after it was stored."))
}

/// Counts a refused submission by reason (the error's code) and key, and hands the error back.
fn refused(caller: &Caller, e: ApiError) -> ApiError {
    metrics::counter!("foley_tasks_refused_total", "reason" => e.code, "key" => caller.name.clone()).increment(1);
    tracing::info!(key = %caller.name, reason = e.code, "submission refused");
    e
}

fn full(state: &AppState) -> ApiError {
    ApiError::busy(
        format!("The queue is full ({} tasks waiting); retry later.", state.cfg.queue_capacity),
        5,
    )
}

/// The task `id` as `caller` may see it. Every route that names a task reads it through here: another key's
/// task is answered exactly as a missing one (the same 404 and sentence), so ids reveal nothing across keys.
pub async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<crate::types::TaskRow, ApiError> {
    let t = state.store.get(id).await?.filter(|t| caller.may_see(t.owner.as_deref()));
    t.ok_or_else(|| no_task(id))
}

/// The answer for a task that does not exist (or is not the caller's).
pub fn no_task(id: &str) -> ApiError {
    ApiError::not_found(format!("There is no task {id}."))
}

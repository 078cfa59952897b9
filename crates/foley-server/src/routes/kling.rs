//! Kling-style REST: `POST /v1/audio/video-to-audio`, `GET /v1/audio/video-to-audio/{task_id|external_task_id}`,
//! `GET /v1/audio/video-to-audio?pageNum&pageSize`. Kling envelopes (`code`, `message`, `request_id`, `data`);
//! errors carry a non-zero `code` and the sentence in `message`, with the HTTP status.

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, KlingError};
use crate::render::{base_url, kling_envelope, kling_task};
use crate::types::Api;
use crate::AppState;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KlingCreate {
    pub video_id: Option<String>,
    pub video_url: Option<String>,
    #[serde(default)]
    pub sound_effect_prompt: Option<String>,
    #[serde(default)]
    pub bgm_prompt: Option<String>,
    #[serde(default)]
    pub asmr_mode: Option<bool>,
    pub external_task_id: Option<String>,
    pub callback_url: Option<String>,
}

#[utoipa::path(post, path = "/v1/audio/video-to-audio", tag = "kling", request_body = KlingCreate,
    responses((status = 200, description = "Kling envelope with task_id, task_status submitted")))]
pub async fn create(State(state): State<AppState>, Extension(caller): Extension<Caller>, headers: HeaderMap, body: Result<Json<KlingCreate>, axum::extract::rejection::JsonRejection>) -> Result<Response, KlingError> {
    let Json(b) = body.map_err(|e| ApiError::bad_request(crate::error::sentence(&e.body_text())))?;
    let video = match (b.video_id.filter(|s| !s.is_empty()), b.video_url.filter(|s| !s.is_empty())) {
        (Some(id), None) => id,
        (None, Some(url)) => url,
        _ => return Err(ApiError::invalid("video_id / video_url: give exactly one of them.").into()),
    };
    if let Some(ext) = &b.external_task_id {
        if state.store.get_by_external(ext).await.map_err(ApiError::from)?.is_some() {
            return Err(ApiError::conflict(format!("external_task_id: {ext:?} is already used by another task.")).into());
        }
    }
    let mut input = json!({"video": video});
    if let Some(p) = b.sound_effect_prompt {
        input["sound_effect_prompt"] = p.into();
    }
    if let Some(p) = b.bgm_prompt {
        input["bgm_prompt"] = p.into();
    }
    if let Some(a) = b.asmr_mode {
        input["asmr_mode"] = a.into();
    }
    let webhook = b.callback_url.filter(|c| !c.is_empty());
    let who = crate::tasks::Submitter { caller, api: Api::Kling, app: crate::tasks::APP };
    let t = crate::tasks::submit(&state, who, input, webhook, b.external_task_id, base_url(&state, &headers)).await?;
    Ok(Json(kling_envelope(kling_task(&state, &t))).into_response())
}

#[utoipa::path(get, path = "/v1/audio/video-to-audio/{id}", tag = "kling", responses((status = 200, description = "Kling envelope of the task (by task_id or external_task_id)")))]
pub async fn get(State(state): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<Response, KlingError> {
    // By task id, then by external id; another key's task is answered as a missing one, as on every route.
    let t = match crate::tasks::load(&state, &caller, &id).await {
        Ok(t) => t,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            let by_external = state.store.get_by_external(&id).await.map_err(ApiError::from)?;
            by_external.filter(|t| caller.may_see(t.owner.as_deref())).ok_or(e)?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(kling_envelope(kling_task(&state, &t))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub page_num: Option<i64>,
    pub page_size: Option<i64>,
}

#[utoipa::path(get, path = "/v1/audio/video-to-audio", tag = "kling", params(("pageNum" = Option<i64>, Query), ("pageSize" = Option<i64>, Query)),
    responses((status = 200, description = "Kling envelope with this key's Kling tasks (every key's for an operator key), newest first")))]
pub async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>, Query(p): Query<Page>) -> Result<Response, KlingError> {
    let num = p.page_num.unwrap_or(1);
    let size = p.page_size.unwrap_or(30);
    if num < 1 || !(1..=500).contains(&size) {
        return Err(ApiError::invalid("pageNum must be at least 1 and pageSize between 1 and 500.").into());
    }
    let scope = caller.scope();
    let (rows, _total) = state.store.list_scoped(Some(Api::Kling.as_str()), scope, (num - 1) * size, size).await.map_err(ApiError::from)?;
    let data: Vec<Value> = rows.iter().map(|t| kling_task(&state, t)).collect();
    Ok(Json(kling_envelope(Value::Array(data))).into_response())
}

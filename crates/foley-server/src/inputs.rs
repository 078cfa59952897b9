//! Turning a client's input into a [`foley_pipeline::Request`]: the video may be a file this server issued
//! (its `uri`, or its id), an http(s) URL (fetched under [`crate::netguard`] rules) or a `data:` URI. The video
//! is probed and validated (foley-media) before the task is accepted, so a bad video is a synchronous 4xx.

use std::path::PathBuf;

use axum::http::StatusCode;
use base64::Engine as _;
use foley_pipeline::Request;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::{sentence, ApiError};
use crate::netguard::NetError;
use crate::types::{now_ms, FileRow};
use crate::AppState;

/// A resolved input video: a local file and its file id in the store.
pub struct Video {
    pub path: PathBuf,
    pub file_id: String,
}

/// The id in a file `uri` this server issued (`<any base>/files/<id>` or `/files/<id>/content?...`).
pub fn own_file_id(s: &str) -> Option<&str> {
    let path = match s.find("://") {
        Some(i) => &s[i + 3..][s[i + 3..].find('/')?..],
        None => s,
    };
    let path = path.split(['?', '#']).next()?;
    let rest = path.strip_prefix("/files/")?;
    let id = rest.strip_suffix("/content").unwrap_or(rest);
    (!id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(id)
}

/// Resolves the `video` value (a string) to a stored, validated local file.
/// A file id or uri names one of `caller`'s files (another key's file is answered as a missing one), unless the
/// value is a valid signed download URL: those are bearer links.
pub async fn resolve_video(state: &AppState, caller: &Caller, field: &str, value: &str) -> Result<Video, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::invalid(format!(
            "{field}: is required; give an uploaded file's uri, an http(s) URL or a data URI."
        )));
    }
    let owner = caller.owner.0.as_deref();
    let video = if let Some(id) = own_file_id(value) {
        let bearer = signed_download(state, value, id);
        existing(state, caller, bearer, field, id).await?
    } else if value.starts_with("data:") {
        from_data_uri(state, owner, field, value).await?
    } else if value.starts_with("http://") || value.starts_with("https://") {
        from_url(state, owner, field, value).await?
    } else if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && value.len() == 36 {
        existing(state, caller, false, field, value).await?
    } else {
        return Err(ApiError::invalid(format!(
            "{field}: {value:.60?} is neither a file uri of this server, an http(s) URL nor a data URI."
        )));
    };
    validate(state, field, &video).await?;
    Ok(video)
}

/// Whether `value` is a download URL of file `id` with a valid, unexpired signature.
fn signed_download(state: &AppState, value: &str, id: &str) -> bool {
    let Some((_, query)) = value.split_once('?') else { return false };
    let param = |name: &str| query.split(['&', '#']).find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
    let (Some(expires), Some(sig)) = (param("expires").and_then(|e| e.parse::<i64>().ok()), param("sig")) else {
        return false;
    };
    crate::signing::verify(&state.cfg.signing_secret, crate::signing::Purpose::Download, id, expires, sig, now_ms() / 1000)
}

async fn existing(state: &AppState, caller: &Caller, bearer: bool, field: &str, id: &str) -> Result<Video, ApiError> {
    let f = state.store.get_file(id).await?.filter(|f| bearer || caller.may_see(f.owner.as_deref()));
    match f {
        Some(f) if f.uploaded => Ok(Video { path: state.files.local_path(id).await?, file_id: f.id }),
        Some(_) => Err(ApiError::invalid(format!("{field}: the file {id} was announced but its upload never finished."))),
        None => Err(ApiError::invalid(format!("{field}: there is no file {id} on this server."))),
    }
}

async fn store_input(state: &AppState, owner: Option<&str>, tmp: PathBuf, filename: &str) -> Result<Video, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let size = match state.files.put_path(&id, &tmp).await {
        Ok(size) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
    };
    let row = FileRow {
        id: id.clone(),
        filename: filename.to_string(),
        content_type: "application/octet-stream".into(),
        size: size as i64,
        uploaded: true,
        task_id: None,
        role: "input".into(),
        created_at: now_ms(),
        owner: owner.map(str::to_string),
    };
    state.store.insert_file(&row).await?;
    Ok(Video { path: state.files.local_path(&id).await?, file_id: id })
}

async fn from_data_uri(state: &AppState, owner: Option<&str>, field: &str, value: &str) -> Result<Video, ApiError> {
    let max = state.cfg.limits.max_file_size;
    let (_, b64) = value
        .split_once(";base64,")
        .ok_or_else(|| ApiError::invalid(format!("{field}: data URIs must be base64 (data:<type>;base64,...).")))?;
    if (b64.len() as u64) / 4 * 3 > max + 3 {
        return Err(ApiError::too_large(format!("{field}: the data URI is over the {:.1} MB limit.", max as f64 / 1e6)));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ApiError::invalid(format!("{field}: the data URI's base64 is invalid.")))?;
    let tmp = state.files.scratch_dir().join(format!("in-{}", uuid::Uuid::new_v4()));
    tokio::fs::write(&tmp, &bytes).await.map_err(crate::ServerError::from)?;
    store_input(state, owner, tmp, "input").await
}

async fn from_url(state: &AppState, owner: Option<&str>, field: &str, url: &str) -> Result<Video, ApiError> {
    let tmp = state.files.scratch_dir().join(format!("in-{}", uuid::Uuid::new_v4()));
    let res = crate::netguard::fetch_to_file(
        url,
        &tmp,
        state.cfg.limits.max_file_size,
        state.cfg.allow_private_urls,
        state.cfg.fetch_timeout,
    )
    .await;
    match res {
        Ok(_) => {
            let name = url.rsplit('/').next().unwrap_or("input").split('?').next().unwrap_or("input").to_string();
            store_input(state, owner, tmp, &name).await
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            let msg = format!("{field}: {}", sentence(&e.to_string()));
            Err(match e {
                NetError::Refused(_) => ApiError::invalid(msg),
                NetError::TooLarge(_) => ApiError::too_large(msg),
                NetError::Failed(_) => ApiError::new(StatusCode::BAD_REQUEST, "fetch_failed", format!("{field}: the URL could not be fetched: {}", sentence(&e.to_string()))),
            })
        }
    }
}

async fn validate(state: &AppState, field: &str, v: &Video) -> Result<(), ApiError> {
    let path = v.path.clone();
    let limits = state.cfg.limits.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        foley_media::init();
        foley_media::check(&path, &limits)
    })
    .await
    .map_err(|e| ApiError::internal(format!("Validation crashed: {e}.")))?;
    match verdict {
        Ok(_) => Ok(()),
        Err(e) => match e.as_input() {
            Some(input) => {
                let status = if input.kind() == "too_large" {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                Err(ApiError::new(status, "invalid_video", format!("{field}: {}", sentence(&input.to_string()))))
            }
            None => Err(ApiError::invalid(format!("{field}: the file could not be read as a video ({e})."))),
        },
    }
}

/// Text fields the SDK may have mistaken for files.
const TEXT_FIELDS: [&str; 3] = ["sound_effect_prompt", "bgm_prompt", "negative_prompt"];

/// Undoes a quirk of the `inferencesh` SDK 0.36: any input string of 16+ characters that happens to be valid
/// base64 (e.g. the prompt "oceanwavesseagul") is decoded and uploaded as a file, and the field replaced by the
/// file's uri. For prompt fields holding one of our small uploads, the original text is restored by
/// re-encoding the bytes.
pub async fn restore_sdk_text_uploads(state: &AppState, caller: &Caller, input: &mut Value) -> Result<(), ApiError> {
    let Some(obj) = input.as_object_mut() else { return Ok(()) };
    for field in TEXT_FIELDS {
        let Some(id) = obj.get(field).and_then(Value::as_str).and_then(own_file_id).map(str::to_string) else {
            continue;
        };
        let Some(f) = state.store.get_file(&id).await?.filter(|f| caller.may_see(f.owner.as_deref())) else { continue };
        if !f.uploaded || f.size > 1024 {
            continue;
        }
        let bytes = tokio::fs::read(state.files.local_path(&id).await?).await.map_err(crate::ServerError::from)?;
        obj.insert(field.into(), Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)));
    }
    Ok(())
}

/// Builds the engine request from the input object (video already resolved to `video_path`).
/// Unknown fields and wrong types are 422s naming the field.
pub fn build_request(state: &AppState, input: &Value, video_path: &std::path::Path) -> Result<Request, ApiError> {
    let mut obj = input.as_object().cloned().ok_or_else(|| ApiError::invalid("input: must be a JSON object."))?;
    if let Some(m) = obj.remove("model") {
        let want = state.engine.model();
        if m.as_str().is_some_and(|m| !m.is_empty() && m != want) {
            return Err(ApiError::invalid(format!("model: this server runs {want:?}; {m} is not loaded.")));
        }
    }
    obj.insert("video".into(), Value::String(video_path.to_string_lossy().into_owned()));
    obj.retain(|_, v| !v.is_null());
    let req: Request = serde_json::from_value(Value::Object(obj)).map_err(|e| {
        ApiError::invalid(format!("input: {}", sentence(&e.to_string().replace(" at line 1 column 0", ""))))
    })?;
    req.check_fields().map_err(|e| ApiError::invalid(sentence(&e.to_string())))?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::own_file_id;

    #[test]
    fn file_uris_are_recognised() {
        let id = "0b8f4e4e-6f0e-4c55-9d77-3f1f1a1b2c3d";
        assert_eq!(own_file_id(&format!("http://127.0.0.1:8080/files/{id}")), Some(id));
        assert_eq!(own_file_id(&format!("https://x.y/files/{id}/content?expires=1&sig=2")), Some(id));
        assert_eq!(own_file_id(&format!("/files/{id}")), Some(id));
        assert_eq!(own_file_id("https://example.com/video.mp4"), None);
        assert_eq!(own_file_id("https://example.com/files/../etc"), None);
    }
}

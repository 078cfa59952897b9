//! How stored tasks and files look on the wire: inference.sh task snapshots, File objects with signed URLs,
//! Kling task envelopes, the SDK's `{data}` envelope, and the base of absolute URLs.

use serde_json::{json, Value};

use crate::signing::{sign, Purpose};
use crate::types::{now_ms, rfc3339, FileRef, FileRow, StoredOutput, TaskRow, TaskStatus};
use crate::AppState;

/// A signed, expiring download URL of a stored file.
pub fn download_url(state: &AppState, base: &str, file_id: &str) -> String {
    let expires = now_ms() / 1000 + state.cfg.url_ttl.as_secs() as i64;
    let sig = sign(&state.cfg.signing_secret, Purpose::Download, file_id, expires);
    format!("{base}/files/{file_id}/content?expires={expires}&sig={sig}")
}

/// The signed waveform picture of a stored wav (same signature as its download: who may fetch the wav may
/// see its picture). The expiry is rounded up to the hour so that the URL, and the browser's cached copy,
/// stay the same across the page's polls and reloads.
pub fn waveform_url(state: &AppState, base: &str, file_id: &str) -> String {
    let expires = (now_ms() / 1000 + state.cfg.url_ttl.as_secs() as i64) / 3600 * 3600 + 3600;
    let sig = sign(&state.cfg.signing_secret, Purpose::Download, file_id, expires);
    format!("{base}/files/{file_id}/waveform.png?expires={expires}&sig={sig}")
}

/// A signed, expiring upload URL (the SDK's PUT carries no Authorization header).
pub fn upload_url(state: &AppState, base: &str, file_id: &str) -> String {
    let expires = now_ms() / 1000 + 3600;
    let sig = sign(&state.cfg.signing_secret, Purpose::Upload, file_id, expires);
    format!("{base}/files/{file_id}/upload?expires={expires}&sig={sig}")
}

/// The permanent `uri` of a file: what clients put into `input.video` (the server resolves it locally).
pub fn file_uri(base: &str, file_id: &str) -> String {
    format!("{base}/files/{file_id}")
}

/// An output File object: `uri` downloads it (signed), `filename`, `content_type`, `size`.
pub fn file_ref(state: &AppState, base: &str, f: &FileRef) -> Value {
    json!({
        "id": f.id,
        "uri": download_url(state, base, &f.id),
        "filename": f.filename,
        "content_type": f.content_type,
        "size": f.size,
    })
}

pub fn file_row(state: &AppState, base: &str, f: &FileRow) -> Value {
    json!({
        "id": f.id,
        "uri": file_uri(base, &f.id),
        "download_url": download_url(state, base, &f.id),
        "filename": f.filename,
        "content_type": f.content_type,
        "size": f.size,
        "role": f.role,
        "created_at": rfc3339(f.created_at),
    })
}

pub fn output(state: &AppState, base: &str, o: &StoredOutput) -> Value {
    let mut v = json!({
        "video": file_ref(state, base, &o.video),
        "audio": file_ref(state, base, &o.audio),
        "duration": o.duration,
        "sample_rate": o.sample_rate,
        "seed": o.seed,
        "model": o.model,
        "settings": o.settings,
    });
    if let Some(s) = &o.sfx_audio {
        v["sfx_audio"] = file_ref(state, base, s);
    }
    if let Some(b) = &o.bgm_audio {
        v["bgm_audio"] = file_ref(state, base, b);
    }
    v
}

/// The inference.sh task object (every snapshot, GET and `/apps/run` answer).
pub fn task(state: &AppState, t: &TaskRow) -> Value {
    json!({
        "id": t.id,
        "app": t.app,
        "status": t.status,
        "status_name": t.status.name(),
        "progress": t.progress,
        "stage": t.stage,
        "input": t.input,
        "output": t.output.as_ref().map(|o| output(state, &t.base_url, o)),
        "error": t.error,
        "logs": t.logs,
        "session_id": Value::Null,
        "webhook": t.webhook,
        "created_at": rfc3339(t.created_at),
        "updated_at": rfc3339(t.updated_at),
    })
}

/// Whose task it is, for listings: `{"name", "key"}` — the key's name where the key is still known
/// (`null` otherwise) and its fingerprint (`null` for tasks stored without a key).
pub fn owner(names: &std::collections::HashMap<String, String>, owner: Option<&str>) -> Value {
    json!({"name": owner.and_then(|o| names.get(o)), "key": owner})
}

/// The webhook payload of an inference.sh task (the hosted page's documented shape).
pub fn webhook_payload(state: &AppState, t: &TaskRow) -> Value {
    json!({
        "id": t.id,
        "status": t.status,
        "output": t.output.as_ref().map(|o| output(state, &t.base_url, o)),
        "error": t.error.clone().unwrap_or_default(),
        "session_id": Value::Null,
        "created_at": rfc3339(t.created_at),
        "updated_at": rfc3339(t.updated_at),
    })
}

/// Kling's `data` object of a task.
pub fn kling_task(state: &AppState, t: &TaskRow) -> Value {
    let mut d = json!({
        "task_id": t.id,
        "task_status": t.status.kling(),
        "task_status_msg": t.error.clone().unwrap_or_default(),
        "task_info": {"external_task_id": t.external_id},
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    });
    if t.status == TaskStatus::Completed {
        if let Some(o) = &t.output {
            let b = &t.base_url;
            d["task_result"] = json!({
                "videos": [{"id": o.video.id, "url": download_url(state, b, &o.video.id), "duration": format!("{:.2}", o.duration)}],
                "audios": [{"id": o.audio.id, "url_wav": download_url(state, b, &o.audio.id), "duration_wav": format!("{:.2}", o.duration)}],
            });
        }
    }
    d
}

/// Kling's envelope around `data`.
pub fn kling_envelope(data: Value) -> Value {
    json!({"code": 0, "message": "SUCCEED", "request_id": uuid::Uuid::new_v4().to_string(), "data": data})
}

/// Scheme and authority for absolute URLs: the configured public URL, else what the request's Host says.
pub fn base_url(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    if let Some(u) = &state.cfg.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers.get("x-forwarded-host").or_else(|| headers.get(http::header::HOST));
    let host = host.and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let proto = headers.get("x-forwarded-proto").and_then(|p| p.to_str().ok()).unwrap_or("http");
    let proto = if proto == "https" { "https" } else { "http" };
    format!("{proto}://{host}")
}

/// The `{"data": ..., "messages": []}` envelope the SDK unwraps.
pub fn envelope(data: serde_json::Value) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"data": data, "messages": []}))
}

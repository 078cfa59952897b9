//! Files: `POST /files` announces uploads and hands out signed `PUT` URLs (the SDK's PUT has no
//! Authorization header), `GET /files/{id}` (with a key) and `GET /files/{id}/content?expires&sig`
//! (signed, no key: for players and browsers; ranges supported) download. Local files are served by tower-http's
//! ServeFile; files in a bucket are streamed through this node (see [`crate::files`]).

use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

use crate::render::{base_url, envelope};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::signing::{verify, Purpose};
use crate::types::{now_ms, FileRow};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateFiles {
    pub files: Vec<NewFile>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewFile {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<i64>,
}

#[utoipa::path(post, path = "/files", tag = "files", request_body = CreateFiles,
    responses((status = 200, description = "{data: [{id, uri, upload_url, ...}]}"), (status = 413, description = "Over the size limit")))]
pub async fn create(State(state): State<AppState>, Extension(caller): Extension<Caller>, headers: HeaderMap, body: Result<Json<CreateFiles>, axum::extract::rejection::JsonRejection>) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(crate::error::sentence(&e.body_text())))?;
    if body.files.is_empty() || body.files.len() > 16 {
        return Err(ApiError::bad_request("files: give between 1 and 16 files."));
    }
    let base = base_url(&state, &headers);
    let max = state.cfg.limits.max_file_size as i64;
    let mut out = Vec::new();
    for f in body.files {
        let size = f.size.unwrap_or(0);
        if size > max {
            return Err(ApiError::too_large(format!("files: the file is {:.1} MB; the limit is {:.1} MB.", size as f64 / 1e6, max as f64 / 1e6)));
        }
        let filename: String = f.filename.filter(|n| !n.is_empty()).unwrap_or_else(|| "upload".into()).chars().filter(|c| !c.is_control() && *c != '/' && *c != '\\').take(200).collect();
        let row = FileRow {
            id: uuid::Uuid::new_v4().to_string(),
            filename,
            content_type: f.content_type.filter(|c| !c.is_empty()).unwrap_or_else(|| "application/octet-stream".into()),
            size,
            uploaded: false,
            task_id: None,
            role: "upload".into(),
            created_at: now_ms(),
            owner: caller.owner.0.clone(),
        };
        state.store.insert_file(&row).await?;
        out.push(json!({
            "id": row.id,
            "uri": crate::render::file_uri(&base, &row.id),
            "upload_url": crate::render::upload_url(&state, &base, &row.id),
            "filename": row.filename,
            "content_type": row.content_type,
            "size": row.size,
            "created_at": crate::types::rfc3339(row.created_at),
        }));
    }
    Ok(envelope(Value::Array(out)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct Signed {
    pub expires: Option<i64>,
    pub sig: Option<String>,
}

fn check_sig(state: &AppState, purpose: Purpose, id: &str, q: &Signed) -> Result<(), ApiError> {
    let (Some(exp), Some(sig)) = (q.expires, q.sig.as_deref()) else {
        return Err(ApiError::forbidden("This URL is not signed."));
    };
    if !verify(&state.cfg.signing_secret, purpose, id, exp, sig, now_ms() / 1000) {
        return Err(ApiError::forbidden("This URL's signature is invalid or has expired."));
    }
    Ok(())
}

/// Files whose upload is under way on this node.
static UPLOADING: std::sync::Mutex<std::collections::BTreeSet<String>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// This node's hold on one file's upload, released when dropped.
struct Uploading(String);

impl Uploading {
    /// `None` while another request uploads `id` on this node.
    fn take(id: &str) -> Option<Self> {
        UPLOADING.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string()).then(|| Uploading(id.to_string()))
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        UPLOADING.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
    }
}

/// `PUT /files/{id}/upload?expires&sig`: the bytes of an announced file (streamed, size-capped). One upload per
/// file: a second PUT while the first runs (on this node) or after it is a 409, and each PUT streams into a scratch
/// file of its own.
pub async fn upload(State(state): State<AppState>, Path(id): Path<String>, Query(q): Query<Signed>, body: Body) -> Result<StatusCode, ApiError> {
    check_sig(&state, Purpose::Upload, &id, &q)?;
    let f = state.store.get_file(&id).await?.ok_or_else(|| ApiError::not_found(format!("There is no file {id}.")))?;
    let Some(_hold) = Uploading::take(&id) else {
        return Err(ApiError::conflict("This file is being uploaded by another request."));
    };
    // Read again under the hold: an upload that ended since the read above has marked it.
    let f = if f.uploaded { f } else { state.store.get_file(&id).await?.unwrap_or(f) };
    if f.uploaded {
        return Err(ApiError::conflict("This file has already been uploaded."));
    }
    let max = state.cfg.limits.max_file_size;
    let tmp = state.files.scratch_dir().join(format!("up-{id}-{}", uuid::Uuid::new_v4()));
    // The scratch file is this request's alone: removed whenever the upload does not get through.
    let stored = async {
        let mut file = tokio::fs::File::create(&tmp).await.map_err(crate::ServerError::from)?;
        let mut stream = body.into_data_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("The upload was interrupted: {e}.")))?;
            total += chunk.len() as u64;
            if total > max {
                return Err(ApiError::too_large(format!("The upload is over the {:.1} MB limit.", max as f64 / 1e6)));
            }
            file.write_all(&chunk).await.map_err(crate::ServerError::from)?;
        }
        file.flush().await.map_err(crate::ServerError::from)?;
        drop(file);
        state.files.put_path(&id, &tmp).await?;
        Ok::<_, ApiError>(total)
    }
    .await;
    let total = match stored {
        Ok(total) => total,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    state.store.mark_uploaded(&id, total as i64).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(get, path = "/files/{id}", tag = "files", responses((status = 200, description = "The file's bytes (with an API key)")))]
pub async fn get(State(state): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    serve(&state, Some(&caller), &id, req).await
}

/// `GET /files/{id}/content?expires&sig`: a signed download.
pub async fn content(State(state): State<AppState>, Path(id): Path<String>, Query(q): Query<Signed>, req: Request) -> Result<Response, ApiError> {
    check_sig(&state, Purpose::Download, &id, &q)?;
    serve(&state, None, &id, req).await
}

/// `GET /files/{id}/waveform.png?expires&sig`: the waveform picture of a stored wav (the signature of its
/// download URL), rendered on request (see [`crate::waveform`]). Output files never change, so browsers may
/// keep it.
pub async fn waveform(State(state): State<AppState>, Path(id): Path<String>, Query(q): Query<Signed>) -> Result<Response, ApiError> {
    check_sig(&state, Purpose::Download, &id, &q)?;
    let f = state.store.get_file(&id).await?.filter(|f| f.uploaded).ok_or_else(|| ApiError::not_found(format!("There is no file {id}.")))?;
    if f.content_type != "audio/wav" {
        return Err(ApiError::invalid(format!("The file {id} is not a wav ({}); only wavs have a waveform.", f.content_type)));
    }
    let png = match crate::waveform::cached(&id) {
        Some(png) => png,
        None => {
            let path = state.files.local_path(&id).await?;
            let png = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
                let audio = foley_media::read_wav(&path).map_err(|e| e.to_string())?;
                crate::waveform::png(&audio, crate::waveform::WIDTH, crate::waveform::HEIGHT).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| ApiError::internal(format!("rendering the waveform stopped: {e}")))?
            .map_err(|e| ApiError::invalid(format!("The waveform of {id} could not be drawn: {e}.")))?;
            let png = std::sync::Arc::new(png);
            crate::waveform::remember(&id, png.clone());
            png
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "private, max-age=86400, immutable")],
        png.as_ref().clone(),
    )
        .into_response())
}

/// Serves file `id`: to `caller` only if it is theirs (another key's file is answered as a missing one), to anyone
/// for `None` (a signed URL, already checked: signed links are bearer links).
async fn serve(state: &AppState, caller: Option<&Caller>, id: &str, req: Request) -> Result<Response, ApiError> {
    let f = state.store.get_file(id).await?.filter(|f| f.uploaded && caller.is_none_or(|c| c.may_see(f.owner.as_deref())));
    let f = f.ok_or_else(|| ApiError::not_found(format!("There is no file {id}.")))?;
    let mut resp = match state.files.disk_path(id) {
        Some(path) => tower_http::services::ServeFile::new(path).oneshot(req).await.map_err(|e| ApiError::internal(e.to_string()))?.map(Body::new),
        None => remote(state, id, f.size.max(0) as u64, req.headers()).await?,
    };
    if let Ok(v) = HeaderValue::from_str(&f.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}\"", f.filename.replace('"', ""))) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// A download from a remote store, streamed through this node (any node can serve any file): the whole file,
/// or one byte range (`Range: bytes=a-b`, `a-`, `-n`) as 206; several ranges or an unsatisfiable one are 416,
/// as tower-http's ServeFile answers for local files.
async fn remote(state: &AppState, id: &str, size: u64, headers: &HeaderMap) -> Result<Response, ApiError> {
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(h) => match http_range_header::parse_range_header(h).and_then(|r| r.validate(size)) {
            Ok(r) if r.len() == 1 => Some(*r[0].start()..*r[0].end() + 1),
            _ => {
                let mut resp = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range", format!("The range {h:?} cannot be served; the file is {size} bytes (one range at most).")).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(resp);
            }
        },
    };
    let body = state.files.read(id, range.clone()).await?;
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let len = match &range {
        Some(r) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1)) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r.end - r.start
        }
        None => size,
    };
    resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

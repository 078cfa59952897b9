//! Errors: [`ApiError`] is what a client sees (an RFC 9457 problem+json body whose `detail` is one sentence the
//! `inferencesh` SDK shows as `APIError.message`); [`ServerError`] is everything internal.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Internal failures (storage, files, network, engine loading).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("file store: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Other(String),
    /// The file store (a bucket) cannot be reached or timed out: 503, worth retrying.
    #[error("the file store is unavailable ({0})")]
    StoreUnavailable(String),
    /// The file store answered with a refusal (missing object, access denied): 502.
    #[error("the file store refused the request ({0})")]
    StoreRefused(String),
}

/// A client-facing error: HTTP status, a short title, a one-sentence detail and a stable machine code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds for a Retry-After header (429/503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), retry_after: None }
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", detail)
    }
    pub fn busy(detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after), ..Self::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", detail) }
    }
    /// 429 for a per-key limit: `code` names the limit, `detail` says which and how to get under it.
    pub fn limited(code: &'static str, detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after), ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, detail) }
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
    pub fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
    /// The problem+json body.
    pub fn problem(&self) -> serde_json::Value {
        serde_json::json!({
            "type": format!("https://foley.local/problems/{}", self.code),
            "title": self.title(),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        })
    }
}

impl ServerError {
    /// Whether the database could not be reached (restarting, network cut, every connection busy): the request
    /// may be retried, and the client gets a 503 rather than a 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ServerError::Db(e) => match e {
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
                sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_) => true,
                // Class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
                sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether a unique constraint refused a row (two nodes racing for the same Kling external_task_id).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, ServerError::Db(sqlx::Error::Database(d)) if d.is_unique_violation())
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        match &e {
            ServerError::StoreUnavailable(m) => {
                tracing::warn!(error = %e, "file store unavailable");
                let detail = format!("The file store is unavailable ({m}); retry shortly.");
                let a = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "file_store_unavailable", detail);
                return ApiError { retry_after: Some(5), ..a };
            }
            ServerError::StoreRefused(m) => {
                tracing::warn!(error = %e, "file store refused");
                let detail = format!("The file store refused the request ({m}).");
                return ApiError::new(StatusCode::BAD_GATEWAY, "file_store_error", detail);
            }
            _ => {}
        }
        if e.is_unavailable() {
            tracing::warn!(error = %e, "the database is unavailable");
            return ApiError {
                retry_after: Some(2),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "The task database is unavailable right now; retry shortly.",
                )
            };
        }
        if e.is_duplicate() {
            return ApiError::conflict("A task with this external_task_id already exists.");
        }
        tracing::error!(error = %e, "internal error");
        ApiError::internal(format!("The server failed: {e}."))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.problem())).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

/// Makes one sentence of a message: trimmed, with a final period.
pub fn sentence(text: &str) -> String {
    let mut s = text.trim().to_string();
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

/// An [`ApiError`] in Kling's shape.
pub struct KlingError(pub ApiError);

impl From<ApiError> for KlingError {
    fn from(e: ApiError) -> Self {
        KlingError(e)
    }
}

impl IntoResponse for KlingError {
    fn into_response(self) -> Response {
        let e = self.0;
        let code = match e.status {
            StatusCode::UNAUTHORIZED => 1000,
            StatusCode::NOT_FOUND => 1203,
            StatusCode::TOO_MANY_REQUESTS => 1303,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => 1201,
            s if s.is_server_error() => 5000,
            _ => 1200,
        };
        let mut resp = (e.status, axum::Json(serde_json::json!({"code": code, "message": e.detail, "request_id": uuid::Uuid::new_v4().to_string()}))).into_response();
        if let Some(s) = e.retry_after {
            resp.headers_mut().insert(http::header::RETRY_AFTER, s.into());
        }
        resp
    }
}

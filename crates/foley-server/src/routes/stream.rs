//! `GET /tasks/{id}/stream`: NDJSON, one task snapshot per line whenever the task changes, `{"type":"heartbeat"}`
//! lines in between, and the end of the body right after the terminal snapshot (what the SDK's `_iter_ndjson`
//! reads). The SDK 0.36 keeps only id/status/input/output/logs/timestamps of each update, so progress is also in
//! `logs`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

#[utoipa::path(get, path = "/tasks/{id}/stream", tag = "inference.sh",
    responses((status = 200, description = "application/x-ndjson: task snapshots and heartbeats, ending after a terminal snapshot")))]
pub async fn stream(State(state): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<Response, ApiError> {
    // Subscribe before the first read so that no change between the two is missed.
    let mut events = state.events.subscribe();
    let first = crate::tasks::load(&state, &caller, &id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(16);
    tokio::spawn(async move {
        let snap = |t: &crate::types::TaskRow| format!("{}\n", crate::render::task(&state, t));
        let mut last = (first.status, first.updated_at, first.progress.to_bits());
        if tx.send(Ok(snap(&first))).await.is_err() || first.status.is_terminal() {
            return;
        }
        let mut heartbeat = tokio::time::interval(state.cfg.heartbeat);
        heartbeat.tick().await;
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        // Bounded: a stream lives at most a day (the SDK reconnects).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
        loop {
            let check = tokio::select! {
                ev = events.recv() => match ev {
                    Ok(changed) => changed == id,
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                },
                _ = heartbeat.tick() => {
                    if tx.send(Ok("{\"type\":\"heartbeat\"}\n".to_string())).await.is_err() {
                        return;
                    }
                    false
                }
                _ = poll.tick() => {
                    if state.shutting_down.load(Ordering::SeqCst) || tokio::time::Instant::now() > deadline {
                        return;
                    }
                    true
                }
            };
            if !check {
                continue;
            }
            let t = match state.store.get(&id).await {
                Ok(Some(t)) => t,
                _ => return,
            };
            let key = (t.status, t.updated_at, t.progress.to_bits());
            if key == last {
                continue;
            }
            last = key;
            if tx.send(Ok(snap(&t))).await.is_err() || t.status.is_terminal() {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(body)
        .expect("static response parts"))
}

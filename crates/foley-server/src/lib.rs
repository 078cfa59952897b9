//! HTTP front of foley: inference.sh-compatible and Kling-style routes over a durable task queue,
//! file store, webhooks, auth, metrics and the web page. Calls the pipeline only through
//! [`foley_pipeline::Engine`]; never model internals.
//!
//! Layout: [`routes`] (one module per API family; handlers only), [`tasks`] (what both API families share:
//! submitting a task and reading one as the calling key may see it), [`error`] (the JSON and Kling error shapes,
//! below everything that raises them), [`render`] (wire shapes), [`store`] (tasks and file records, SQLite or PostgreSQL),
//! [`cluster`] (what a node of several does: cross-node events, leases),
//! [`files`] (bytes: local directory or S3-compatible bucket), [`worker`] (the queue consumer), [`webhooks`], [`inputs`] (resolving and validating
//! the input video), [`netguard`] (outbound HTTP under SSRF rules), [`auth`], [`signing`], [`metrics`],
//! [`openapi`], [`page`] (and the [`waveform`] picture it shows).

pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod files;
pub mod inputs;
pub mod limits;
pub mod metrics;
pub mod netguard;
pub mod openapi;
pub mod page;
pub mod render;
pub mod retention;
pub mod routes;
pub mod signing;
pub mod store;
pub mod tasks;
pub mod types;
pub mod waveform;
pub mod webhooks;
pub mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use foley_pipeline::{CancelToken, Engine};
use tokio::sync::{broadcast, Notify};

pub use config::Config;
pub use error::{ApiError, ServerError};

/// Shared state of the handlers and workers.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub store: Arc<dyn store::TaskStore>,
    pub files: Arc<dyn files::FileStore>,
    pub engine: Arc<dyn Engine>,
    /// The accepted keys (names, roles), replaced when the keys file changes.
    pub keys: Arc<auth::KeyRing>,
    /// Per-key submission rate (`None`: no rate limit).
    pub rate: Arc<Option<limits::RateLimiter>>,
    /// Task ids whose state changed (streams and the page listen).
    pub events: broadcast::Sender<String>,
    /// Wakes idle workers when a task is queued.
    pub wake: Arc<Notify>,
    /// Cancel tokens of the running tasks.
    pub running: Arc<Mutex<HashMap<String, CancelToken>>>,
    /// False until the engine is loaded and recovery is done; false again while shutting down.
    pub ready: Arc<AtomicBool>,
    pub shutting_down: Arc<AtomicBool>,
    pub metrics: ::metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    /// Opens the store (`cfg.database`, else SQLite under `cfg.data_dir`) and the file directory.
    pub async fn open(cfg: Config, engine: Arc<dyn Engine>) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let store: Arc<dyn store::TaskStore> = match &cfg.database {
            Some(url) => Arc::new(store::PgStore::connect(url, &cluster::node_name(), cfg.lease).await?),
            None => Arc::new(store::SqliteStore::open(&cfg.data_dir.join("foley.db")).await?),
        };
        let files = files::open(&cfg.files, &cfg.data_dir).await?;
        let keys = auth::keyfile::load(&cfg).map_err(ServerError::Other)?;
        let rate = cfg.key_rate_per_min.map(|r| limits::RateLimiter::new(r, cfg.key_burst));
        Ok(AppState {
            cfg: Arc::new(cfg),
            store,
            files,
            engine,
            keys: Arc::new(auth::KeyRing::new(keys)),
            rate: Arc::new(rate),
            events: broadcast::channel(1024).0,
            wake: Arc::new(Notify::new()),
            running: Arc::new(Mutex::new(HashMap::new())),
            ready: Arc::new(AtomicBool::new(false)),
            shutting_down: Arc::new(AtomicBool::new(false)),
            metrics: metrics::handle(),
        })
    }

    /// Tells streams and the page that a task changed.
    pub fn publish(&self, task_id: &str) {
        let _ = self.events.send(task_id.to_string());
    }
}

/// Answers `/health` (and everything else) with 503 on `listener` until `load` returns: model loading can take
/// minutes, and orchestrators should see "not ready" rather than a closed port. Returns what `load` returned;
/// the caller then hands a clone of the same socket to [`serve`].
pub async fn while_loading<T: Send + 'static>(
    listener: tokio::net::TcpListener,
    load: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServerError> {
    use axum::response::IntoResponse;
    let loading = axum::Router::new().fallback(|| async {
        let mut r = ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "loading",
            "The model is loading; retry shortly.",
        )
        .into_response();
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, 5.into());
        r
    });
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, loading)
            .with_graceful_shutdown(async move {
                let _ = done_rx.await;
            })
            .await
    });
    let result = tokio::task::spawn_blocking(load).await.map_err(|e| ServerError::Other(format!("loading: {e}")))?;
    let _ = done_tx.send(());
    let _ = server.await;
    Ok(result)
}

/// Runs the server on `listener` until `shutdown` resolves: recovers unfinished tasks, starts the workers (unless
/// `--role api`) and re-sends pending webhooks, serves, then stops taking work and waits (bounded) for running
/// tasks. In a cluster, also runs [`cluster::spawn`]'s loops; a `--role worker` node serves only /health and /metrics.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let rec = state.store.recover(state.cfg.max_attempts).await?;
    if rec.requeued + rec.failed + rec.queued > 0 {
        tracing::warn!(requeued = rec.requeued, failed = rec.failed, queued = rec.queued, "recovered unfinished tasks");
    }
    webhooks::resume_pending(&state).await;
    let workers = if state.cfg.role.runs_tasks() { worker::spawn(&state) } else { Vec::new() };
    let mut background = cluster::spawn(&state);
    background.extend(retention::spawn(&state));
    background.extend(auth::keyfile::spawn(&state));
    state.ready.store(true, Ordering::SeqCst);
    tracing::info!(addr = %listener.local_addr()?, model = state.engine.model(), role = ?state.cfg.role, "serving");
    let app = if state.cfg.role.serves_api() { routes::router(state.clone()) } else { routes::ops_router(state.clone()) };
    let st = state.clone();
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new tasks; waiting for running ones");
            st.ready.store(false, Ordering::SeqCst);
            st.shutting_down.store(true, Ordering::SeqCst);
            st.wake.notify_waiters();
        })
        .await?;
    worker::drain(&state, workers).await;
    background.iter().for_each(|t| t.abort());
    Ok(())
}

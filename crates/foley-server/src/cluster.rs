//! What a node of a cluster does besides HTTP and running tasks, when the store is shared
//! ([`crate::store::TaskStore::shared`]): follows the other nodes' changes (streams, wake-ups, cancels), renews
//! the leases of its running tasks, re-queues tasks whose lease lapsed and takes over webhooks nobody delivers.
//! Also [`ApiOnly`], the engine of a `--role api` node, which names the model but never loads it.

use std::path::Path;
use std::time::{Duration, Instant};

use foley_pipeline::{CancelToken, Engine, Output, PipelineError, ProgressFn, Request};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::types::TaskStatus;
use crate::AppState;

/// A name for this process in `worker_id`: host, pid and a random part (two starts never share one).
pub fn node_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}-{:04x}", std::process::id(), rand::random::<u16>())
}

/// Starts the background loops of a cluster node (none for a store only this process uses).
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    if !state.store.shared() {
        return Vec::new();
    }
    let mut tasks = Vec::new();
    if let Some(rx) = state.store.listen() {
        tasks.push(tokio::spawn(follow(state.clone(), rx)));
    }
    tasks.push(tokio::spawn(maintain(state.clone())));
    tasks
}

/// Forwards changes made anywhere: to streams, to idle workers (a queued task) and to running tasks (a cancel).
async fn follow(state: AppState, mut rx: tokio::sync::mpsc::UnboundedReceiver<crate::store::Change>) {
    while let Some(c) = rx.recv().await {
        if c.task_id.is_empty() {
            // (Re)connected: whatever happened meanwhile is in the store; let idle workers look.
            state.wake.notify_waiters();
            continue;
        }
        match c.status {
            Some(TaskStatus::Queued) => state.wake.notify_one(),
            Some(TaskStatus::Cancelling) => cancel_local(&state, &c.task_id),
            _ => {}
        }
        let _ = state.events.send(c.task_id);
    }
}

fn cancel_local(state: &AppState, id: &str) {
    let token = state.running.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
    if let Some(t) = token {
        info!(task = %id, "cancel requested through another node");
        t.cancel();
    }
}

/// Lease renewals (every third of the lease), lapsed-lease reaping and webhook take-overs (every half lease).
async fn maintain(state: AppState) {
    let lease = state.cfg.lease.max(Duration::from_millis(300));
    let mut renew = tokio::time::interval(lease / 3);
    let mut reap = tokio::time::interval(lease / 2);
    let mut last_webhooks = Instant::now();
    loop {
        tokio::select! {
            _ = renew.tick() => {
                let ids: Vec<String> = state.running.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
                match state.store.renew(&ids).await {
                    Ok(cancelling) => cancelling.iter().for_each(|id| cancel_local(&state, id)),
                    Err(e) => warn!(error = %e, running = ids.len(), "renewing leases failed"),
                }
            }
            _ = reap.tick() => {
                match state.store.reap_lapsed(state.cfg.max_attempts).await {
                    Ok(r) if r.requeued + r.failed > 0 => {
                        metrics::counter!("foley_lease_expiries_total").increment(r.requeued + r.failed);
                        warn!(requeued = r.requeued, failed = r.failed, "re-queued tasks whose worker stopped");
                        state.wake.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "reaping lapsed leases failed"),
                }
                if last_webhooks.elapsed() >= Duration::from_secs(5) {
                    last_webhooks = Instant::now();
                    crate::webhooks::resume_pending(&state).await;
                }
            }
        }
    }
}

/// The engine of an API node: it knows the model's name (to check `model` in inputs) and runs nothing.
pub struct ApiOnly {
    model: String,
}

impl ApiOnly {
    pub fn new(model: impl Into<String>) -> Self {
        ApiOnly { model: model.into() }
    }
}

impl Engine for ApiOnly {
    fn model(&self) -> &str {
        &self.model
    }
    fn generate(&self, _: &Request, _: &Path, _: ProgressFn<'_>, _: &CancelToken) -> Result<Output, PipelineError> {
        Err(PipelineError::Internal("this node has --role api and runs no tasks".into()))
    }
}

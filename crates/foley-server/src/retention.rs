//! Retention: every node sweeps now and then for files older than `--retention` that no task still needs
//! ([`crate::store::TaskStore::expire`]) and removes them from the file store and the records, so that the disk
//! (or the bucket) does not grow without bound. Task records stay (their outputs then answer 404).

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::types::now_ms;
use crate::AppState;

/// Files removed per batch (a sweep runs batches until one comes back short).
const BATCH: i64 = 200;

/// Starts the sweeper (none when retention is off).
pub fn spawn(state: &AppState) -> Option<JoinHandle<()>> {
    let keep = state.cfg.retention?;
    let every = (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
    let st = state.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            sweep(&st, keep).await;
        }
    }))
}

/// One sweep: removes what expired; returns how many files.
pub async fn sweep(state: &AppState, keep: Duration) -> u64 {
    let cutoff = now_ms() - keep.as_millis() as i64;
    let mut total = 0;
    loop {
        match state.store.expire(cutoff, BATCH, state.files.as_ref()).await {
            Ok(n) => {
                total += n;
                metrics::counter!("foley_files_expired_total").increment(n);
                if n < BATCH as u64 {
                    break;
                }
            }
            Err(e) => {
                warn!(error = %e, "retention: removing expired files failed");
                break;
            }
        }
    }
    if total > 0 {
        info!(files = total, "retention: removed expired files");
    }
    total
}

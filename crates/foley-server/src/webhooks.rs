//! Webhooks (inference.sh `webhook`) and callbacks (Kling `callback_url`): POSTed when a task ends, signed
//! with `X-Foley-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, retried with exponential
//! backoff on non-2xx or network errors, under the same SSRF rules as URL inputs. The "still to deliver" flag
//! is in the store, so deliveries interrupted by a restart are resumed at the next start. In a cluster a node
//! claims a delivery for as long as its retries can take ([`hold_ms`]); when it dies, another node takes over.

use std::time::Duration;

use tracing::{info, warn};

use crate::signing::webhook_signature;
use crate::types::{now_ms, Api, TaskRow};
use crate::AppState;

/// Spawns delivery of a task's terminal notification (if it has a webhook).
pub fn on_terminal(state: &AppState, task_id: &str) {
    let st = state.clone();
    let id = task_id.to_string();
    tokio::spawn(async move {
        match st.store.claim_webhook(&id, hold_ms(&st)).await {
            Ok(Some(t)) => deliver(&st, &t, true).await,
            Ok(None) => {}
            Err(e) => warn!(task = %id, error = %e, "webhook: loading the task failed"),
        }
    });
}

/// Best-effort notification of a non-terminal change (Kling callbacks report every status change): one attempt,
/// awaited for at most 3 s so that it reaches the receiver before the terminal one.
pub async fn on_change(state: &AppState, task: &TaskRow) {
    if task.api != Api::Kling || task.webhook.is_none() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), deliver(state, task, false)).await;
}

/// How long a claimed delivery is this node's: every attempt's timeout and backoff, and a minute to spare.
pub fn hold_ms(state: &AppState) -> i64 {
    let mut total = Duration::from_secs(60);
    let mut delay = state.cfg.webhook_backoff;
    for _ in 0..state.cfg.webhook_attempts.max(1) {
        total += Duration::from_secs(10) + delay;
        delay = (delay * 2).min(Duration::from_secs(300));
    }
    total.as_millis() as i64
}

/// Re-sends the notifications a previous process (or, in a cluster, a node that stopped) did not get through.
pub async fn resume_pending(state: &AppState) {
    match state.store.claim_due_webhooks(hold_ms(state)).await {
        Ok(tasks) => {
            for t in tasks {
                let st = state.clone();
                tokio::spawn(async move { deliver(&st, &t, true).await });
            }
        }
        Err(e) => warn!(error = %e, "webhook: listing pending deliveries failed"),
    }
}

pub fn payload(state: &AppState, t: &TaskRow) -> serde_json::Value {
    match t.api {
        Api::Infsh => crate::render::webhook_payload(state, t),
        Api::Kling => crate::render::kling_envelope(crate::render::kling_task(state, t)),
    }
}

async fn deliver(state: &AppState, t: &TaskRow, terminal: bool) {
    let Some(url) = t.webhook.clone() else { return };
    let body = serde_json::to_vec(&payload(state, t)).unwrap_or_default();
    let attempts = if terminal { state.cfg.webhook_attempts.max(1) } else { 1 };
    let mut delay = state.cfg.webhook_backoff;
    for attempt in 1..=attempts {
        let ts = now_ms() / 1000;
        let headers = [
            ("X-Foley-Signature", webhook_signature(&state.cfg.signing_secret, ts, &body)),
            ("X-Foley-Task-Id", t.id.clone()),
            ("X-Foley-Attempt", attempt.to_string()),
        ];
        let res = crate::netguard::post_json(
            &url,
            body.clone(),
            &headers,
            state.cfg.allow_private_urls,
            Duration::from_secs(10),
        )
        .await;
        match res {
            Ok(code) if (200..300).contains(&code) => {
                info!(task = %t.id, attempt, "webhook delivered");
                metrics::counter!("foley_webhooks_total", "result" => "delivered").increment(1);
                if terminal {
                    clear(state, &t.id).await;
                }
                return;
            }
            Ok(code) => warn!(task = %t.id, attempt, code, "webhook answered non-2xx"),
            Err(crate::netguard::NetError::Refused(why)) => {
                warn!(task = %t.id, %why, "webhook refused by the SSRF rules; not retried");
                break;
            }
            Err(e) => warn!(task = %t.id, attempt, error = %e, "webhook failed"),
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(300));
        }
    }
    metrics::counter!("foley_webhooks_total", "result" => "gave_up").increment(1);
    if terminal {
        clear(state, &t.id).await;
    }
}

/// Marks a delivery done, retrying for a minute while the database is unreachable (else another node, or the next
/// start, would send it again).
async fn clear(state: &AppState, id: &str) {
    for _ in 0..60 {
        match state.store.clear_webhook_pending(id).await {
            Ok(()) => return,
            Err(e) => {
                warn!(task = %id, error = %e, "webhook: recording the delivery failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

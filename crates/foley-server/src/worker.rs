//! The queue consumer: each worker claims the oldest queued task from the store, runs the engine on a
//! blocking thread with a cancel token and a progress callback, stores the outputs and ends the task.
//! The store is the queue (durable); the workers hold nothing that a restart would lose except the run itself,
//! which [`crate::store::TaskStore::recover`] re-queues.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use foley_pipeline::{CancelToken, Output, PipelineError, Progress};
use tokio::task::JoinHandle;
use tracing::{info, warn, Instrument};

use crate::error::sentence;
use crate::types::{now_ms, FileRef, FileRow, StoredOutput, TaskRow, TaskStatus};
use crate::AppState;

/// How long shutdown waits for running tasks before leaving them to the next start's recovery.
pub const DRAIN_GRACE: Duration = Duration::from_secs(20);

pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    (0..state.cfg.workers.max(1)).map(|i| tokio::spawn(worker_loop(state.clone(), i))).collect()
}

/// Waits for the workers to finish their current task (bounded by [`DRAIN_GRACE`]).
pub async fn drain(state: &AppState, workers: Vec<JoinHandle<()>>) {
    state.wake.notify_waiters();
    let all = futures_util::future::join_all(workers);
    if tokio::time::timeout(DRAIN_GRACE, all).await.is_err() {
        warn!("running tasks did not finish in time; the next start re-queues them");
    }
}

async fn worker_loop(state: AppState, index: usize) {
    loop {
        if state.shutting_down.load(Ordering::SeqCst) {
            break;
        }
        let asked = Instant::now();
        let claimed = state.store.claim_next().await;
        metrics::histogram!("foley_claim_seconds").record(asked.elapsed().as_secs_f64());
        match claimed {
            Ok(Some(task)) => {
                let waited = (now_ms() - task.created_at).max(0) as f64 / 1000.0;
                metrics::histogram!("foley_queue_wait_seconds").record(waited);
                let span = tracing::info_span!("task", id = %task.id, worker = index);
                run(&state, task).instrument(span).await;
            }
            Ok(None) => {
                let notified = state.wake.notified();
                let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            }
            Err(e) => {
                warn!(error = %e, "claiming a task failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Progress lines are written to the store when the stage changes or every whole 5 %.
fn worth_logging(last: &Option<(String, f32)>, stage: &str, pct: f32) -> bool {
    match last {
        None => true,
        Some((s, p)) => s != stage || (pct - p) >= 5.0 || (pct >= 100.0 && *p < 100.0),
    }
}

async fn run(state: &AppState, task: TaskRow) {
    let started = Instant::now();
    info!(attempt = task.attempts, "running");
    state.publish(&task.id);
    crate::webhooks::on_change(state, &task).await;
    let token = CancelToken::new();
    state.running.lock().unwrap_or_else(|e| e.into_inner()).insert(task.id.clone(), token.clone());
    // A cancel that came between the claim and now (through any node) found no token to cancel.
    if matches!(state.store.get(&task.id).await, Ok(Some(t)) if t.status == TaskStatus::Cancelling) {
        token.cancel();
    }
    let out_dir = state.files.scratch_dir().join(format!("run-{}", task.id));
    let _ = tokio::fs::remove_dir_all(&out_dir).await;
    let result = match tokio::fs::create_dir_all(&out_dir).await {
        Err(e) => Err(PipelineError::Internal(format!("cannot create the work directory: {e}"))),
        // The input comes from the file store (any node's upload), linked or downloaded into the run directory.
        Ok(()) => match crate::files::stage_input(state.files.as_ref(), &task, &out_dir).await {
            Ok(staged) => generate(state, &staged, &out_dir, token.clone()).await,
            Err(e) => Err(PipelineError::Internal(format!("The input video could not be read from the file store: {e}"))),
        },
    };
    let end = match result {
        Ok(out) => match store_outputs(state, &task, &out).await {
            Ok(stored) => {
                for t in &out.timings {
                    metrics::histogram!("foley_stage_seconds", "stage" => format!("{:?}", t.stage).to_lowercase())
                        .record(t.seconds);
                }
                (TaskStatus::Completed, Some(stored), None, "completed".to_string())
            }
            Err(e) => {
                let msg = format!("The outputs could not be stored: {e}.");
                (TaskStatus::Failed, None, Some(msg.clone()), format!("failed: {msg}"))
            }
        },
        Err(PipelineError::Cancelled) => {
            (TaskStatus::Cancelled, None, Some("The task was cancelled.".to_string()), "cancelled".to_string())
        }
        Err(e) => {
            let msg = sentence(&e.to_string());
            (TaskStatus::Failed, None, Some(msg.clone()), format!("failed: {msg}"))
        }
    };
    let (status, output, error, log) = end;
    let _ = tokio::fs::remove_dir_all(&out_dir).await;
    // While the database is unreachable the end is retried (the lease is still renewed: the task stays in
    // `running` until then), so that a short outage does not make another node run the task again.
    let mut tries = 0;
    loop {
        match state.store.finish(&task.id, status, output.as_ref(), error.as_deref(), &log).await {
            Ok(true) => {}
            Ok(false) => warn!("task was already terminal (or another node's) when it ended"),
            Err(e) if e.is_unavailable() && tries < 120 => {
                if tries == 0 {
                    warn!(error = %e, "storing the end of the task failed; retrying while the database is away");
                }
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => warn!(error = %e, "storing the end of the task failed"),
        }
        break;
    }
    state.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&task.id);
    let secs = started.elapsed().as_secs_f64();
    metrics::histogram!("foley_task_seconds", "status" => status.name()).record(secs);
    metrics::counter!("foley_tasks_total", "status" => status.name()).increment(1);
    info!(status = status.name(), seconds = secs, "ended");
    state.publish(&task.id);
    crate::webhooks::on_terminal(state, &task.id);
}

/// Runs the engine on a blocking thread; progress flows back through a channel and is stored as it comes.
async fn generate(
    state: &AppState,
    task: &TaskRow,
    out_dir: &std::path::Path,
    token: CancelToken,
) -> Result<Output, PipelineError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
    let engine = state.engine.clone();
    let request = task.request.clone();
    let dir = out_dir.to_path_buf();
    let job = tokio::task::spawn_blocking(move || {
        let report = move |p: Progress| {
            let _ = tx.send(p);
        };
        engine.generate(&request, &dir, &report, &token)
    });
    let st = state.clone();
    let id = task.id.clone();
    let pump = tokio::spawn(async move {
        let mut last: Option<(String, f32)> = None;
        while let Some(p) = rx.recv().await {
            let stage = format!("{:?}", p.stage).to_lowercase();
            // Everything below 100 % is the engine's; 100 % is reached only after the outputs are stored.
            let pct = (p.percent.clamp(0.0, 100.0) * 0.98).floor();
            let line = worth_logging(&last, &stage, pct).then(|| format!("progress {pct:.0}% ({stage})"));
            if line.is_some() {
                last = Some((stage.clone(), pct));
            }
            if let Err(e) = st.store.progress(&id, TaskStatus::Running, pct, &stage, line.as_deref()).await {
                warn!(error = %e, "storing progress failed");
            }
            st.publish(&id);
        }
    });
    let result = job.await.unwrap_or_else(|e| Err(PipelineError::Internal(format!("the generation panicked: {e}"))));
    let _ = pump.await;
    result
}

async fn store_outputs(state: &AppState, task: &TaskRow, out: &Output) -> Result<StoredOutput, crate::ServerError> {
    // Best effort: a database away for a moment must not fail a finished run.
    if let Err(e) = state.store.progress(&task.id, TaskStatus::Uploading, 98.0, "upload", Some("uploading outputs")).await {
        warn!(error = %e, "storing progress failed");
    }
    state.publish(&task.id);
    let video_ext = out.video.extension().and_then(|e| e.to_str()).unwrap_or("mp4").to_string();
    let video_type = if video_ext == "mov" { "video/quicktime" } else { "video/mp4" };
    let video = put(state, task, &out.video, &format!("video.{video_ext}"), video_type).await?;
    let audio = put(state, task, &out.audio, "audio.wav", "audio/wav").await?;
    let sfx = put(state, task, &out.sfx_stem, "sfx.wav", "audio/wav").await?;
    let bgm = match &out.bgm_stem {
        Some(p) => Some(put(state, task, p, "bgm.wav", "audio/wav").await?),
        None => None,
    };
    Ok(StoredOutput {
        video,
        audio,
        sfx_audio: Some(sfx),
        bgm_audio: bgm,
        duration: out.duration_s,
        sample_rate: out.sample_rate,
        seed: out.seed,
        model: out.model.clone(),
        settings: out.settings.clone(),
    })
}

async fn put(
    state: &AppState,
    task: &TaskRow,
    path: &std::path::Path,
    filename: &str,
    content_type: &str,
) -> Result<FileRef, crate::ServerError> {
    let id = uuid::Uuid::new_v4().to_string();
    let size = state.files.put_path(&id, path).await? as i64;
    let row = FileRow {
        id: id.clone(),
        filename: filename.to_string(),
        content_type: content_type.to_string(),
        size,
        uploaded: true,
        task_id: Some(task.id.clone()),
        role: "output".into(),
        created_at: now_ms(),
        owner: task.owner.clone(),
    };
    // Retried while the database is unreachable (for up to a minute), like the end of the task.
    let mut tries = 0;
    while let Err(e) = state.store.insert_file(&row).await {
        if !e.is_unavailable() || tries >= 120 {
            return Err(e);
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(FileRef { id, filename: filename.to_string(), content_type: content_type.to_string(), size })
}

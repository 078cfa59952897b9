//! The task store: where tasks and file records live. [`SqliteStore`] (the default) serves one process;
//! [`PgStore`] is shared by the nodes of a cluster (`FOR UPDATE SKIP LOCKED` claims, leases, LISTEN/NOTIFY).
//! The cluster-only methods have defaults that keep the single-process behaviour.

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;

use crate::error::ServerError;
use crate::types::{FileRow, NewTask, StoredOutput, TaskRow, TaskStatus};

pub type Result<T> = std::result::Result<T, ServerError>;

/// A task changed somewhere in the cluster (from PostgreSQL's NOTIFY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub task_id: String,
    pub status: Option<TaskStatus>,
}

/// What a restart did to the tasks it found unfinished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    pub requeued: u64,
    pub failed: u64,
    pub queued: u64,
}

/// Whose tasks a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every task (an operator key).
    All,
    /// The tasks of one key (`None`: tasks submitted without a key).
    Owner(Option<&'a str>),
}

/// The bounds an admission is checked against, atomically with its insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Tasks waiting (queued) in the whole store, beyond which nothing is admitted.
    pub capacity: usize,
    /// Tasks queued or running (cancelling, uploading) of the submitting key, beyond which that key's next
    /// task is refused; `None`: no per-key bound.
    pub per_owner: Option<usize>,
}

/// What [`TaskStore::admit_within`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The store-wide queue bound ([`Bounds::capacity`]) is reached.
    QueueFull,
    /// The submitting key's bound ([`Bounds::per_owner`]) is reached.
    OwnerFull,
}

/// Task statuses that count as live (queued, running, cancelling, uploading) for the per-key bound.
pub const LIVE_STATUSES: &str = "2, 7, 8, 9";

#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Inserts the task as queued if fewer than `capacity` tasks are waiting; `false` when full. Atomic.
    async fn admit(&self, task: &NewTask, capacity: usize) -> Result<bool> {
        Ok(self.admit_within(task, Bounds { capacity, per_owner: None }).await? == Admission::Admitted)
    }
    /// Inserts the task as queued if the queue and its owner are within `bounds`. Atomic across every process
    /// sharing the store; when refused, says which bound was reached (the queue's first).
    async fn admit_within(&self, task: &NewTask, bounds: Bounds) -> Result<Admission>;
    async fn get(&self, id: &str) -> Result<Option<TaskRow>>;
    async fn get_by_external(&self, external_id: &str) -> Result<Option<TaskRow>>;
    /// Tasks of one API (`None`: both) within `scope`, newest first, and their total count. `Scope::Owner(None)`
    /// is the tasks submitted without a key (owner as in [`NewTask::owner`]).
    async fn list_scoped(&self, api: Option<&str>, scope: Scope<'_>, offset: i64, limit: i64) -> Result<(Vec<TaskRow>, i64)>;
    /// Moves the oldest queued task to running and returns it (one claimer wins each task).
    async fn claim_next(&self) -> Result<Option<TaskRow>>;
    /// Records progress of a running task and appends `log` (a line) to its logs.
    async fn progress(&self, id: &str, status: TaskStatus, percent: f32, stage: &str, log: Option<&str>) -> Result<()>;
    /// Ends a task that is not already terminal; `false` if it was. Sets `webhook_pending` when it has a webhook.
    async fn finish(
        &self,
        id: &str,
        status: TaskStatus,
        output: Option<&StoredOutput>,
        error: Option<&str>,
        log: &str,
    ) -> Result<bool>;
    /// Cancels a task that is still queued; `false` if it is not queued (any more).
    async fn cancel_queued(&self, id: &str) -> Result<bool>;
    /// Moves a task from running to cancelling; `false` if it was not running.
    async fn mark_cancelling(&self, id: &str) -> Result<bool>;
    async fn clear_webhook_pending(&self, id: &str) -> Result<()>;
    async fn webhook_pending(&self) -> Result<Vec<TaskRow>>;
    /// At start-up: tasks left running by a dead process are re-queued (or failed after `max_attempts`).
    async fn recover(&self, max_attempts: i64) -> Result<Recovery>;
    /// (queued, running) counts.
    async fn depth(&self) -> Result<(i64, i64)>;
    /// Deletes a terminal task; `Err(Conflict)`-like `false` when it is still live.
    async fn delete(&self, id: &str) -> Result<bool>;

    async fn insert_file(&self, f: &FileRow) -> Result<()>;
    async fn get_file(&self, id: &str) -> Result<Option<FileRow>>;
    async fn mark_uploaded(&self, id: &str, size: i64) -> Result<()>;
    /// Output files of a task.
    async fn task_files(&self, task_id: &str) -> Result<Vec<FileRow>>;
    async fn delete_file(&self, id: &str) -> Result<()>;
    /// Retention: removes up to `limit` files created before `cutoff_ms` that no task still needs (none live, none
    /// finished since `cutoff_ms`) — outputs and inputs of old tasks, unused uploads, uploads announced but never
    /// PUT — bytes first (through `files`), then their records; returns how many. In a cluster each file is
    /// claimed by one node (a node that dies midway leaves the records for the next sweep).
    async fn expire(&self, cutoff_ms: i64, limit: i64, files: &dyn crate::files::FileStore) -> Result<u64>;

    /// Whether several processes share this store (then leases, lapsed-lease reaping and cross-node events run).
    fn shared(&self) -> bool {
        false
    }
    /// Extends the leases of the tasks this node runs; returns those among them that are now `cancelling`.
    async fn renew(&self, _ids: &[String]) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Re-queues (or fails after `max_attempts`) running tasks whose lease lapsed.
    async fn reap_lapsed(&self, _max_attempts: i64) -> Result<Recovery> {
        Ok(Recovery::default())
    }
    /// Takes the terminal webhook of a task for `hold_ms` (one node delivers it); `None` if not pending or
    /// held by another node.
    async fn claim_webhook(&self, id: &str, _hold_ms: i64) -> Result<Option<TaskRow>> {
        Ok(self.get(id).await?.filter(|t| t.webhook_pending && t.webhook.is_some()))
    }
    /// Takes every pending webhook that no node holds.
    async fn claim_due_webhooks(&self, _hold_ms: i64) -> Result<Vec<TaskRow>> {
        self.webhook_pending().await
    }
    /// Changes made by any node, as they happen (`None` for a store no other process writes to).
    fn listen(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Change>> {
        None
    }
}

// What both stores write and read the same way.

/// The task columns every query returns, in `task_row`'s order.
const TASK_COLS: &str = "id, api, app, status, input, request, input_file_id, output, error, logs, progress, stage, \
    webhook, webhook_pending, external_id, base_url, attempts, created_at, updated_at, started_at, finished_at, owner";

/// A value stored as JSON text.
fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| ServerError::Corrupt(e.to_string()))
}

/// A JSON text column read back; `what` names it in the error.
fn parse<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| ServerError::Corrupt(format!("{what}: {e}")))
}

/// One line of a task's logs at `ms`.
fn log_line(ms: i64, text: &str) -> String {
    format!("[{}] {}\n", crate::types::rfc3339(ms), text)
}

/// A result row of either store, read by column name. Their one difference in reading: SQLite keeps a flag as an
/// integer, PostgreSQL as a boolean.
trait StoreRow {
    fn text(&self, column: &str) -> Result<String>;
    fn text_or_null(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn int_or_null(&self, column: &str) -> Result<Option<i64>>;
    fn real(&self, column: &str) -> Result<f64>;
    fn flag(&self, column: &str) -> Result<bool>;
}

macro_rules! store_row {
    ($row:ty, $flag:ty) => {
        impl StoreRow for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn text_or_null(&self, column: &str) -> Result<Option<String>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int_or_null(&self, column: &str) -> Result<Option<i64>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn real(&self, column: &str) -> Result<f64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn flag(&self, column: &str) -> Result<bool> {
                Ok(sqlx::Row::try_get::<$flag, _>(self, column)? != <$flag>::default())
            }
        }
    };
}
store_row!(sqlx::sqlite::SqliteRow, i64);
store_row!(sqlx::postgres::PgRow, bool);

/// A [`TaskRow`] from a row holding [`TASK_COLS`].
fn task_row(r: &impl StoreRow) -> Result<TaskRow> {
    Ok(TaskRow {
        id: r.text("id")?,
        api: crate::types::Api::parse(&r.text("api")?),
        app: r.text("app")?,
        status: TaskStatus::try_from(r.int("status")?).map_err(ServerError::Corrupt)?,
        input: parse(&r.text("input")?, "input")?,
        request: parse(&r.text("request")?, "request")?,
        input_file_id: r.text_or_null("input_file_id")?,
        output: r.text_or_null("output")?.map(|o| parse(&o, "output")).transpose()?,
        error: r.text_or_null("error")?,
        logs: r.text("logs")?,
        progress: r.real("progress")? as f32,
        stage: r.text_or_null("stage")?,
        webhook: r.text_or_null("webhook")?,
        webhook_pending: r.flag("webhook_pending")?,
        external_id: r.text_or_null("external_id")?,
        base_url: r.text("base_url")?,
        attempts: r.int("attempts")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        started_at: r.int_or_null("started_at")?,
        finished_at: r.int_or_null("finished_at")?,
        owner: r.text_or_null("owner")?,
    })
}

/// A [`FileRow`] from a row of the `files` table.
fn file_row(r: &impl StoreRow) -> Result<FileRow> {
    Ok(FileRow {
        id: r.text("id")?,
        filename: r.text("filename")?,
        content_type: r.text("content_type")?,
        size: r.int("size")?,
        uploaded: r.flag("uploaded")?,
        task_id: r.text_or_null("task_id")?,
        role: r.text("role")?,
        created_at: r.int("created_at")?,
        owner: r.text_or_null("owner")?,
    })
}

//! The task store: where tasks and file records live. [`TaskStore`] is small so that a Postgres store
//! (`FOR UPDATE SKIP LOCKED` in `claim_next`) can serve several workers; [`SqliteStore`] is the default.

mod sqlite;

pub use sqlite::SqliteStore;

use async_trait::async_trait;

use crate::error::ServerError;
use crate::types::{FileRow, NewTask, StoredOutput, TaskRow, TaskStatus};

pub type Result<T> = std::result::Result<T, ServerError>;

/// What a restart did to the tasks it found unfinished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    pub requeued: u64,
    pub failed: u64,
    pub queued: u64,
}

#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Inserts the task as queued if fewer than `capacity` tasks are waiting; `false` when full. Atomic.
    async fn admit(&self, task: &NewTask, capacity: usize) -> Result<bool>;
    async fn get(&self, id: &str) -> Result<Option<TaskRow>>;
    async fn get_by_external(&self, external_id: &str) -> Result<Option<TaskRow>>;
    /// Tasks of one API, newest first, and the total count.
    async fn list(&self, api: &str, offset: i64, limit: i64) -> Result<(Vec<TaskRow>, i64)>;
    /// Tasks submitted with one key (`owner` as in [`NewTask::owner`]; `None`: tasks submitted without a key),
    /// through either API, newest first, and their total count.
    async fn list_owned(&self, owner: Option<&str>, offset: i64, limit: i64) -> Result<(Vec<TaskRow>, i64)>;
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
}

//! Task and file records as the server keeps them, and the status numbers of the inference.sh protocol.

use serde::{Deserialize, Serialize};

/// Task status, numbered as the `inferencesh` SDK's `TaskStatus` enum (0.36). Terminal: 10–13.
/// foley uses received (only inside a request), queued, running, cancelling, uploading and the four ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(into = "i64", try_from = "i64")]
pub enum TaskStatus {
    Received = 1,
    Queued = 2,
    Running = 7,
    Cancelling = 8,
    Uploading = 9,
    Completed = 10,
    Failed = 11,
    Cancelled = 12,
    Rejected = 13,
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        (self as i64) >= 10
    }
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::Received => "received",
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Cancelling => "cancelling",
            TaskStatus::Uploading => "uploading",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Rejected => "rejected",
        }
    }
    /// Kling's status words: submitted, processing, succeed, failed.
    pub fn kling(self) -> &'static str {
        match self {
            TaskStatus::Received | TaskStatus::Queued => "submitted",
            TaskStatus::Running | TaskStatus::Cancelling | TaskStatus::Uploading => "processing",
            TaskStatus::Completed => "succeed",
            TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Rejected => "failed",
        }
    }
}

impl From<TaskStatus> for i64 {
    fn from(s: TaskStatus) -> i64 {
        s as i64
    }
}

impl TryFrom<i64> for TaskStatus {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        Ok(match v {
            1 => TaskStatus::Received,
            2 => TaskStatus::Queued,
            7 => TaskStatus::Running,
            8 => TaskStatus::Cancelling,
            9 => TaskStatus::Uploading,
            10 => TaskStatus::Completed,
            11 => TaskStatus::Failed,
            12 => TaskStatus::Cancelled,
            13 => TaskStatus::Rejected,
            other => return Err(format!("unknown task status {other}")),
        })
    }
}

/// Which front door a task came through (decides the shape of its callbacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Infsh,
    Kling,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Infsh => "infsh",
            Api::Kling => "kling",
        }
    }
    pub fn parse(s: &str) -> Api {
        if s == "kling" {
            Api::Kling
        } else {
            Api::Infsh
        }
    }
}

/// A stored file (upload or output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRow {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    /// Whether its bytes are in the file store (an announced upload is not, until its PUT).
    pub uploaded: bool,
    /// The task that produced it (outputs only).
    pub task_id: Option<String>,
    /// "upload", "input" or "output".
    pub role: String,
    pub created_at: i64,
    /// Fingerprint of the key whose file it is (the uploader's, or the task's owner for inputs and outputs);
    /// `None` without keys and for files stored before owners existed.
    #[serde(default)]
    pub owner: Option<String>,
}

/// A reference to a stored output file, kept in a task's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
}

/// A finished task's output as stored (URLs are signed when it is shown, so they never go stale in the DB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOutput {
    pub video: FileRef,
    pub audio: FileRef,
    pub sfx_audio: Option<FileRef>,
    pub bgm_audio: Option<FileRef>,
    pub duration: f64,
    pub sample_rate: u32,
    pub seed: u64,
    pub model: String,
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// A task about to be admitted.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub api: Api,
    pub app: String,
    /// The input as the client sent it (echoed back in every snapshot).
    pub input: serde_json::Value,
    /// What the engine will run (the video resolved to a local file).
    pub request: foley_pipeline::Request,
    pub input_file_id: Option<String>,
    pub webhook: Option<String>,
    pub external_id: Option<String>,
    /// Scheme and authority the client used, for absolute URLs in snapshots and webhooks.
    pub base_url: String,
    pub created_at: i64,
    /// Fingerprint of the submitting API key ([`crate::auth::Owner`]); `None` without keys.
    pub owner: Option<String>,
}

/// A stored task.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: String,
    pub api: Api,
    pub app: String,
    pub status: TaskStatus,
    pub input: serde_json::Value,
    pub request: foley_pipeline::Request,
    pub input_file_id: Option<String>,
    pub output: Option<StoredOutput>,
    pub error: Option<String>,
    pub logs: String,
    pub progress: f32,
    pub stage: Option<String>,
    pub webhook: Option<String>,
    pub webhook_pending: bool,
    pub external_id: Option<String>,
    pub base_url: String,
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Fingerprint of the submitting API key ([`crate::auth::Owner`]); `None` without keys.
    pub owner: Option<String>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 (UTC, millisecond precision) of a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_as_sdk_integers() {
        for s in [TaskStatus::Queued, TaskStatus::Running, TaskStatus::Completed, TaskStatus::Cancelled] {
            let n = serde_json::to_value(s).unwrap();
            assert_eq!(serde_json::from_value::<TaskStatus>(n).unwrap(), s);
        }
        assert_eq!(serde_json::to_value(TaskStatus::Completed).unwrap(), 10);
        assert!(TaskStatus::Failed.is_terminal() && !TaskStatus::Uploading.is_terminal());
    }

    #[test]
    fn rfc3339_is_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_705_314_600_500), "2024-01-15T10:30:00.5Z");
    }
}

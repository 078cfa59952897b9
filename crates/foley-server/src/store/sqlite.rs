//! SQLite task store (sqlx). WAL journal with `synchronous=FULL`: a task is on disk before its 2xx is sent.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{file_row, json, log_line, task_row, Admission, Bounds, Recovery, Result, Scope, TaskStore, LIVE_STATUSES, TASK_COLS};
use crate::error::ServerError;
use crate::types::{now_ms, FileRow, NewTask, StoredOutput, TaskRow, TaskStatus};

/// The schema, created and upgraded by the migrations in `migrations/sqlite/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");


pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        MIGRATOR.run(&pool).await.map_err(|e| ServerError::Other(format!("migrating the database: {e}")))?;
        Ok(SqliteStore { pool })
    }
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn admit_within(&self, t: &NewTask, bounds: Bounds) -> Result<Admission> {
        let logs = log_line(t.created_at, "queued");
        let per_owner = bounds.per_owner.map_or(i64::MAX, |n| n as i64);
        // One statement: SQLite runs it under its write lock, so both counts and the insert are atomic.
        let q = format!(
            "INSERT INTO tasks (id, api, app, status, input, request, input_file_id, webhook, external_id, base_url, \
             logs, created_at, updated_at, owner) \
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
             WHERE (SELECT COUNT(*) FROM tasks WHERE status = ?) < ? \
             AND (SELECT COUNT(*) FROM tasks WHERE owner IS ? AND status IN ({LIVE_STATUSES})) < ?"
        );
        let res = sqlx::query(&q)
        .bind(&t.id)
        .bind(t.api.as_str())
        .bind(&t.app)
        .bind(TaskStatus::Queued as i64)
        .bind(json(&t.input)?)
        .bind(json(&t.request)?)
        .bind(&t.input_file_id)
        .bind(&t.webhook)
        .bind(&t.external_id)
        .bind(&t.base_url)
        .bind(logs)
        .bind(t.created_at)
        .bind(t.created_at)
        .bind(&t.owner)
        .bind(TaskStatus::Queued as i64)
        .bind(bounds.capacity as i64)
        .bind(&t.owner)
        .bind(per_owner)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 1 {
            return Ok(Admission::Admitted);
        }
        let (queued, _) = self.depth().await?;
        Ok(if queued as usize >= bounds.capacity { Admission::QueueFull } else { Admission::OwnerFull })
    }

    async fn get(&self, id: &str) -> Result<Option<TaskRow>> {
        let q = format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?");
        sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?.as_ref().map(task_row).transpose()
    }

    async fn get_by_external(&self, external_id: &str) -> Result<Option<TaskRow>> {
        let q = format!("SELECT {TASK_COLS} FROM tasks WHERE external_id = ?");
        sqlx::query(&q).bind(external_id).fetch_optional(&self.pool).await?.as_ref().map(task_row).transpose()
    }

    async fn list_scoped(&self, api: Option<&str>, scope: Scope<'_>, offset: i64, limit: i64) -> Result<(Vec<TaskRow>, i64)> {
        let (all, owner) = match scope {
            Scope::All => (true, None),
            Scope::Owner(o) => (false, o),
        };
        let filter = "(?1 IS NULL OR api = ?1) AND (?2 OR owner IS ?3)";
        let q = format!("SELECT {TASK_COLS} FROM tasks WHERE {filter} ORDER BY seq DESC LIMIT ?4 OFFSET ?5");
        let rows = sqlx::query(&q).bind(api).bind(all).bind(owner).bind(limit).bind(offset).fetch_all(&self.pool).await?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM tasks WHERE {filter}"))
            .bind(api)
            .bind(all)
            .bind(owner)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows.iter().map(task_row).collect::<Result<_>>()?, total))
    }

    async fn claim_next(&self) -> Result<Option<TaskRow>> {
        let now = now_ms();
        let q = format!(
            "UPDATE tasks SET status = ?, attempts = attempts + 1, started_at = ?, updated_at = ?, \
             logs = logs || ? \
             WHERE seq = (SELECT seq FROM tasks WHERE status = ? ORDER BY seq LIMIT 1) AND status = ? \
             RETURNING {TASK_COLS}"
        );
        let row = sqlx::query(&q)
            .bind(TaskStatus::Running as i64)
            .bind(now)
            .bind(now)
            .bind(log_line(now, "running"))
            .bind(TaskStatus::Queued as i64)
            .bind(TaskStatus::Queued as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_row).transpose()
    }

    async fn progress(&self, id: &str, status: TaskStatus, percent: f32, stage: &str, log: Option<&str>) -> Result<()> {
        let now = now_ms();
        let line = log.map(|l| log_line(now, l)).unwrap_or_default();
        sqlx::query(
            "UPDATE tasks SET status = CASE WHEN status = ? THEN status ELSE ? END, progress = ?, stage = ?, \
             updated_at = ?, logs = logs || ? WHERE id = ? AND status < 10",
        )
        .bind(TaskStatus::Cancelling as i64)
        .bind(status as i64)
        .bind(percent as f64)
        .bind(stage)
        .bind(now)
        .bind(line)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn finish(
        &self,
        id: &str,
        status: TaskStatus,
        output: Option<&StoredOutput>,
        error: Option<&str>,
        log: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let output = output.map(json).transpose()?;
        let progress_sql = if status == TaskStatus::Completed { "100" } else { "progress" };
        let q = format!(
            "UPDATE tasks SET status = ?, output = ?, error = ?, progress = {progress_sql}, updated_at = ?, \
             finished_at = ?, logs = logs || ?, webhook_pending = (webhook IS NOT NULL) WHERE id = ? AND status < 10"
        );
        let res = sqlx::query(&q)
            .bind(status as i64)
            .bind(output)
            .bind(error)
            .bind(now)
            .bind(now)
            .bind(log_line(now, log))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn cancel_queued(&self, id: &str) -> Result<bool> {
        let now = now_ms();
        let res = sqlx::query(
            "UPDATE tasks SET status = ?, error = ?, updated_at = ?, finished_at = ?, logs = logs || ?, \
             webhook_pending = (webhook IS NOT NULL) WHERE id = ? AND status = ?",
        )
        .bind(TaskStatus::Cancelled as i64)
        .bind("The task was cancelled before it started.")
        .bind(now)
        .bind(now)
        .bind(log_line(now, "cancelled while queued"))
        .bind(id)
        .bind(TaskStatus::Queued as i64)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn mark_cancelling(&self, id: &str) -> Result<bool> {
        let now = now_ms();
        let res = sqlx::query(
            "UPDATE tasks SET status = ?, updated_at = ?, logs = logs || ? WHERE id = ? AND status IN (?, ?)",
        )
        .bind(TaskStatus::Cancelling as i64)
        .bind(now)
        .bind(log_line(now, "cancelling"))
        .bind(id)
        .bind(TaskStatus::Running as i64)
        .bind(TaskStatus::Uploading as i64)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn clear_webhook_pending(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE tasks SET webhook_pending = 0 WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn webhook_pending(&self) -> Result<Vec<TaskRow>> {
        let q = format!("SELECT {TASK_COLS} FROM tasks WHERE webhook_pending = 1 ORDER BY seq");
        sqlx::query(&q).fetch_all(&self.pool).await?.iter().map(task_row).collect()
    }

    async fn recover(&self, max_attempts: i64) -> Result<Recovery> {
        let now = now_ms();
        let live = "status IN (7, 8, 9)";
        let failed = sqlx::query(&format!(
            "UPDATE tasks SET status = ?, error = ?, updated_at = ?, finished_at = ?, logs = logs || ?, \
             webhook_pending = (webhook IS NOT NULL) WHERE {live} AND (attempts >= ? OR status = 8)"
        ))
        .bind(TaskStatus::Failed as i64)
        .bind("The server restarted while this task was running and it had no retries left.")
        .bind(now)
        .bind(now)
        .bind(log_line(now, "failed: the server restarted while the task was running (no retries left)"))
        .bind(max_attempts)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let requeued = sqlx::query(&format!(
            "UPDATE tasks SET status = ?, progress = 0, stage = NULL, updated_at = ?, logs = logs || ? WHERE {live}"
        ))
        .bind(TaskStatus::Queued as i64)
        .bind(now)
        .bind(log_line(now, "re-queued: the server restarted while the task was running"))
        .execute(&self.pool)
        .await?
        .rows_affected();
        let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = 2").fetch_one(&self.pool).await?;
        Ok(Recovery { requeued, failed, queued: queued as u64 })
    }

    async fn depth(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(status = 2), 0) AS q, COALESCE(SUM(status IN (7, 8, 9)), 0) AS r FROM tasks",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("q")?, row.try_get("r")?))
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM tasks WHERE id = ? AND status >= 10").bind(id).execute(&self.pool).await?;
        Ok(res.rows_affected() == 1)
    }

    async fn insert_file(&self, f: &FileRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO files (id, filename, content_type, size, uploaded, task_id, role, created_at, owner) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&f.id)
        .bind(&f.filename)
        .bind(&f.content_type)
        .bind(f.size)
        .bind(f.uploaded as i64)
        .bind(&f.task_id)
        .bind(&f.role)
        .bind(f.created_at)
        .bind(&f.owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_file(&self, id: &str) -> Result<Option<FileRow>> {
        sqlx::query("SELECT * FROM files WHERE id = ?").bind(id).fetch_optional(&self.pool).await?.as_ref().map(file_row).transpose()
    }

    async fn mark_uploaded(&self, id: &str, size: i64) -> Result<()> {
        sqlx::query("UPDATE files SET uploaded = 1, size = ? WHERE id = ?").bind(size).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn task_files(&self, task_id: &str) -> Result<Vec<FileRow>> {
        sqlx::query("SELECT * FROM files WHERE task_id = ? ORDER BY created_at, id")
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(file_row)
            .collect()
    }

    async fn delete_file(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM files WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn expire(&self, cutoff_ms: i64, limit: i64, files: &dyn crate::files::FileStore) -> Result<u64> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM files WHERE created_at < ?1 AND NOT EXISTS (SELECT 1 FROM tasks t \
             WHERE (t.id = files.task_id OR t.input_file_id = files.id) AND (t.status < 10 OR t.finished_at >= ?1)) \
             ORDER BY created_at LIMIT ?2",
        )
        .bind(cutoff_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        for id in &ids {
            files.delete(id).await?;
            self.delete_file(id).await?;
        }
        Ok(ids.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Api;

    fn task(id: &str, owner: Option<&str>, api: Api) -> NewTask {
        NewTask {
            id: id.into(),
            api,
            app: "klingai/video-to-audio".into(),
            input: serde_json::json!({"video": "x"}),
            request: foley_pipeline::Request::default(),
            input_file_id: None,
            webhook: None,
            external_id: None,
            base_url: "http://127.0.0.1".into(),
            created_at: now_ms(),
            owner: owner.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn an_owner_scope_lists_one_keys_tasks_of_both_apis_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("foley.db")).await.unwrap();
        for (id, owner, api) in [("a1", Some("aaaa"), Api::Infsh), ("b1", Some("bbbb"), Api::Infsh), ("a2", Some("aaaa"), Api::Kling), ("n1", None, Api::Infsh)] {
            assert!(s.admit(&task(id, owner, api), 100).await.unwrap());
        }
        let ids = |rows: Vec<TaskRow>| rows.into_iter().map(|t| t.id).collect::<Vec<_>>();
        let (rows, total) = s.list_scoped(None, Scope::Owner(Some("aaaa")), 0, 10).await.unwrap();
        assert_eq!((ids(rows), total), (vec!["a2".to_string(), "a1".to_string()], 2));
        let (rows, total) = s.list_scoped(None, Scope::Owner(Some("aaaa")), 1, 1).await.unwrap();
        assert_eq!((ids(rows), total), (vec!["a1".to_string()], 2));
        let (rows, _) = s.list_scoped(None, Scope::Owner(None), 0, 10).await.unwrap();
        assert_eq!(ids(rows), vec!["n1".to_string()]);
        assert_eq!(s.list_scoped(None, Scope::Owner(Some("cccc")), 0, 10).await.unwrap().1, 0);
    }

    #[tokio::test]
    async fn a_database_from_before_owners_gets_the_column_and_keeps_its_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("foley.db");
        {
            // The schema of the versions before migrations (migration 0001 is that schema, unchanged).
            let old_schema = include_str!("../../migrations/sqlite/0001_initial.sql");
            assert!(!old_schema.contains("owner"));
            let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display())).unwrap().create_if_missing(true);
            let pool = SqlitePoolOptions::new().connect_with(opts).await.unwrap();
            sqlx::raw_sql(old_schema).execute(&pool).await.unwrap();
            sqlx::query("INSERT INTO tasks (id, api, app, status, input, request, base_url, created_at, updated_at) VALUES ('old', 'infsh', 'a', 10, '{}', ?, 'b', 1, 1)")
                .bind(serde_json::to_string(&foley_pipeline::Request::default()).unwrap())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let s = SqliteStore::open(&path).await.unwrap();
        assert!(s.get("old").await.unwrap().is_some());
        assert!(s.admit(&task("new", Some("aaaa"), Api::Infsh), 10).await.unwrap());
        assert_eq!(s.list_scoped(None, Scope::Owner(None), 0, 10).await.unwrap().0[0].id, "old");
        assert_eq!(s.list_scoped(None, Scope::Owner(Some("aaaa")), 0, 10).await.unwrap().0[0].id, "new");
    }
}

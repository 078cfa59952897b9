//! PostgreSQL task store shared by the nodes of a cluster (sqlx). Claims take the oldest queued task with
//! `FOR UPDATE SKIP LOCKED` and give it a lease (`worker_id`, `lease_expires_at` on the database's clock) that the
//! running node renews; any node re-queues tasks whose lease lapsed. Admission takes a transaction-scoped advisory
//! lock so that the queue bound holds across nodes. A trigger announces every task change on `foley_tasks`
//! ([`PgStore::listen`] follows it with a `PgListener` that reconnects by itself).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{file_row, json, log_line, task_row, Admission, Bounds, Change, Recovery, Result, Scope, TaskStore, LIVE_STATUSES, TASK_COLS};
use crate::error::ServerError;
use crate::types::{now_ms, FileRow, NewTask, StoredOutput, TaskRow, TaskStatus};

/// The schema, created and upgraded by the migrations in `migrations/postgres/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The NOTIFY channel of task changes (see the migration's trigger).
const CHANNEL: &str = "foley_tasks";
/// Advisory lock key serialising admissions (the queue bound is cluster-wide).
const ADMIT_LOCK: i64 = 0x666f_6c65_7901;


pub struct PgStore {
    pool: PgPool,
    /// This node's name in `worker_id` (host, pid and a random part).
    node: String,
    lease_ms: i64,
}

impl PgStore {
    /// Connects (`postgres://user:pass@host:port/db`) and brings the schema up to date. `lease` is how long a
    /// claimed task stays this node's without a renewal.
    pub async fn connect(url: &str, node: &str, lease: Duration) -> Result<Self> {
        let opts: PgConnectOptions = url.parse().map_err(|e| ServerError::Other(format!("--database: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await.map_err(|e| ServerError::Other(format!("migrating the database: {e}")))?;
        Ok(PgStore { pool, node: node.to_string(), lease_ms: lease.as_millis().max(1) as i64 })
    }

    /// The node name this store claims under.
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// Follows the NOTIFY channel forever, reconnecting after a lost connection (a database restart); after each
/// (re)connection it sends a `Change` with an empty id, meaning "anything may have changed meanwhile".
async fn follow(pool: PgPool, tx: mpsc::UnboundedSender<Change>) {
    let mut announced_loss = false;
    loop {
        let connected = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<PgListener, sqlx::Error>(l)
        };
        let mut listener = match connected.await {
            Ok(l) => l,
            Err(e) => {
                if !announced_loss {
                    warn!(error = %e, "cluster events: cannot listen; retrying every second");
                    announced_loss = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if announced_loss {
            info!("cluster events: listening again");
        }
        if tx.send(Change { task_id: String::new(), status: None }).is_err() {
            return;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    let mut parts = n.payload().splitn(2, ' ');
                    let task_id = parts.next().unwrap_or_default().to_string();
                    let status = parts.next().and_then(|s| s.parse::<i64>().ok()).and_then(|s| TaskStatus::try_from(s).ok());
                    if tx.send(Change { task_id, status }).is_err() {
                        return;
                    }
                }
                Ok(None) | Err(_) => {
                    warn!("cluster events: the connection to the database was lost; reconnecting");
                    announced_loss = true;
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl TaskStore for PgStore {
    async fn admit_within(&self, t: &NewTask, bounds: Bounds) -> Result<Admission> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ADMIT_LOCK).execute(&mut *tx).await?;
        let queued: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = 2").fetch_one(&mut *tx).await?;
        if queued >= bounds.capacity as i64 {
            return Ok(Admission::QueueFull);
        }
        if let Some(per_owner) = bounds.per_owner {
            let q = format!("SELECT COUNT(*) FROM tasks WHERE owner IS NOT DISTINCT FROM $1 AND status IN ({LIVE_STATUSES})");
            let live: i64 = sqlx::query_scalar(&q).bind(&t.owner).fetch_one(&mut *tx).await?;
            if live >= per_owner as i64 {
                return Ok(Admission::OwnerFull);
            }
        }
        sqlx::query(
            "INSERT INTO tasks (id, api, app, status, input, request, input_file_id, webhook, external_id, base_url, \
             logs, created_at, updated_at, owner) VALUES ($1, $2, $3, 2, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)",
        )
        .bind(&t.id)
        .bind(t.api.as_str())
        .bind(&t.app)
        .bind(json(&t.input)?)
        .bind(json(&t.request)?)
        .bind(&t.input_file_id)
        .bind(&t.webhook)
        .bind(&t.external_id)
        .bind(&t.base_url)
        .bind(log_line(t.created_at, "queued"))
        .bind(t.created_at)
        .bind(&t.owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Admission::Admitted)
    }

    async fn get(&self, id: &str) -> Result<Option<TaskRow>> {
        let q = format!("SELECT {TASK_COLS} FROM tasks WHERE id = $1");
        sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?.as_ref().map(task_row).transpose()
    }

    async fn get_by_external(&self, external_id: &str) -> Result<Option<TaskRow>> {
        let q = format!("SELECT {TASK_COLS} FROM tasks WHERE external_id = $1");
        sqlx::query(&q).bind(external_id).fetch_optional(&self.pool).await?.as_ref().map(task_row).transpose()
    }

    async fn list_scoped(&self, api: Option<&str>, scope: Scope<'_>, offset: i64, limit: i64) -> Result<(Vec<TaskRow>, i64)> {
        let (all, owner) = match scope {
            Scope::All => (true, None),
            Scope::Owner(o) => (false, o),
        };
        let filter = "($1::TEXT IS NULL OR api = $1) AND ($2 OR owner IS NOT DISTINCT FROM $3)";
        let q = format!("SELECT {TASK_COLS} FROM tasks WHERE {filter} ORDER BY seq DESC LIMIT $4 OFFSET $5");
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
            "UPDATE tasks SET status = 7, attempts = attempts + 1, started_at = $1, updated_at = $1, \
             logs = logs || $2, worker_id = $3, lease_expires_at = foley_now_ms() + $4 \
             WHERE seq = (SELECT seq FROM tasks WHERE status = 2 ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {TASK_COLS}"
        );
        let row = sqlx::query(&q)
            .bind(now)
            .bind(log_line(now, &format!("running on {}", self.node)))
            .bind(&self.node)
            .bind(self.lease_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_row).transpose()
    }

    async fn progress(&self, id: &str, status: TaskStatus, percent: f32, stage: &str, log: Option<&str>) -> Result<()> {
        let now = now_ms();
        let line = log.map(|l| log_line(now, l)).unwrap_or_default();
        sqlx::query(
            "UPDATE tasks SET status = CASE WHEN status = 8 THEN status ELSE $1 END, progress = $2, stage = $3, \
             updated_at = $4, logs = logs || $5 WHERE id = $6 AND status < 10 AND worker_id = $7",
        )
        .bind(status as i64)
        .bind(percent as f64)
        .bind(stage)
        .bind(now)
        .bind(line)
        .bind(id)
        .bind(&self.node)
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
        // Only the node holding the lease ends a task: one whose lease lapsed was re-queued and is someone else's.
        let q = format!(
            "UPDATE tasks SET status = $1, output = $2, error = $3, progress = {progress_sql}, updated_at = $4, \
             finished_at = $4, logs = logs || $5, webhook_pending = (webhook IS NOT NULL), lease_expires_at = NULL \
             WHERE id = $6 AND status < 10 AND worker_id = $7"
        );
        let res = sqlx::query(&q)
            .bind(status as i64)
            .bind(output)
            .bind(error)
            .bind(now)
            .bind(log_line(now, log))
            .bind(id)
            .bind(&self.node)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn cancel_queued(&self, id: &str) -> Result<bool> {
        let now = now_ms();
        let res = sqlx::query(
            "UPDATE tasks SET status = 12, error = $1, updated_at = $2, finished_at = $2, logs = logs || $3, \
             webhook_pending = (webhook IS NOT NULL) WHERE id = $4 AND status = 2",
        )
        .bind("The task was cancelled before it started.")
        .bind(now)
        .bind(log_line(now, "cancelled while queued"))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn mark_cancelling(&self, id: &str) -> Result<bool> {
        let now = now_ms();
        let res = sqlx::query(
            "UPDATE tasks SET status = 8, updated_at = $1, logs = logs || $2 WHERE id = $3 AND status IN (7, 9)",
        )
        .bind(now)
        .bind(log_line(now, "cancelling"))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn clear_webhook_pending(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE tasks SET webhook_pending = FALSE, webhook_claimed_until = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn webhook_pending(&self) -> Result<Vec<TaskRow>> {
        let q = format!("SELECT {TASK_COLS} FROM tasks WHERE webhook_pending ORDER BY seq");
        sqlx::query(&q).fetch_all(&self.pool).await?.iter().map(task_row).collect()
    }

    /// In a cluster a starting node must not touch tasks other nodes run: it only reaps lapsed leases.
    async fn recover(&self, max_attempts: i64) -> Result<Recovery> {
        let mut rec = self.reap_lapsed(max_attempts).await?;
        let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status = 2").fetch_one(&self.pool).await?;
        rec.queued = queued as u64;
        Ok(rec)
    }

    async fn depth(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE status = 2) AS q, COUNT(*) FILTER (WHERE status IN (7, 8, 9)) AS r FROM tasks",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("q")?, row.try_get("r")?))
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM tasks WHERE id = $1 AND status >= 10").bind(id).execute(&self.pool).await?;
        Ok(res.rows_affected() == 1)
    }

    async fn insert_file(&self, f: &FileRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO files (id, filename, content_type, size, uploaded, task_id, role, created_at, owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&f.id)
        .bind(&f.filename)
        .bind(&f.content_type)
        .bind(f.size)
        .bind(f.uploaded)
        .bind(&f.task_id)
        .bind(&f.role)
        .bind(f.created_at)
        .bind(&f.owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_file(&self, id: &str) -> Result<Option<FileRow>> {
        sqlx::query("SELECT * FROM files WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(file_row)
            .transpose()
    }

    async fn mark_uploaded(&self, id: &str, size: i64) -> Result<()> {
        sqlx::query("UPDATE files SET uploaded = TRUE, size = $1 WHERE id = $2").bind(size).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn task_files(&self, task_id: &str) -> Result<Vec<FileRow>> {
        sqlx::query("SELECT * FROM files WHERE task_id = $1 ORDER BY created_at, id")
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(file_row)
            .collect()
    }

    async fn delete_file(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM files WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn expire(&self, cutoff_ms: i64, limit: i64, files: &dyn crate::files::FileStore) -> Result<u64> {
        // The rows stay locked (SKIP LOCKED for other nodes) until the bytes are gone and the records deleted.
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM files WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM tasks t \
             WHERE (t.id = files.task_id OR t.input_file_id = files.id) AND (t.status < 10 OR t.finished_at >= $1)) \
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(cutoff_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            files.delete(id).await?;
        }
        sqlx::query("DELETE FROM files WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn renew(&self, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "UPDATE tasks SET lease_expires_at = foley_now_ms() + $1 \
             WHERE id = ANY($2) AND worker_id = $3 AND status IN (7, 8, 9) RETURNING id, status",
        )
        .bind(self.lease_ms)
        .bind(ids)
        .bind(&self.node)
        .fetch_all(&self.pool)
        .await?;
        let mut cancelling = Vec::new();
        for r in rows {
            if r.try_get::<i64, _>("status")? == TaskStatus::Cancelling as i64 {
                cancelling.push(r.try_get("id")?);
            }
        }
        Ok(cancelling)
    }

    async fn reap_lapsed(&self, max_attempts: i64) -> Result<Recovery> {
        let now = now_ms();
        // One statement, so that a task is either re-queued or ended, never both; a cancelling task ends cancelled.
        let rows = sqlx::query(
            "UPDATE tasks SET \
               status = CASE WHEN status = 8 THEN 12 WHEN attempts >= $1 THEN 11 ELSE 2 END, \
               error = CASE WHEN status = 8 THEN 'The task was cancelled.' WHEN attempts >= $1 THEN $2 ELSE error END, \
               finished_at = CASE WHEN status = 8 OR attempts >= $1 THEN $3 ELSE NULL END, \
               progress = CASE WHEN status = 8 OR attempts >= $1 THEN progress ELSE 0 END, \
               stage = CASE WHEN status = 8 OR attempts >= $1 THEN stage ELSE NULL END, \
               webhook_pending = CASE WHEN status = 8 OR attempts >= $1 THEN webhook IS NOT NULL ELSE webhook_pending END, \
               logs = logs || CASE WHEN status = 8 THEN $4 WHEN attempts >= $1 THEN $5 ELSE $6 END, \
               lease_expires_at = NULL, updated_at = $3 \
             WHERE status IN (7, 8, 9) AND lease_expires_at < foley_now_ms() \
             RETURNING status, worker_id",
        )
        .bind(max_attempts)
        .bind("The worker running this task stopped (its lease lapsed) and it had no retries left.")
        .bind(now)
        .bind(log_line(now, "cancelled: the worker running the task stopped"))
        .bind(log_line(now, "failed: the worker running the task stopped (no retries left)"))
        .bind(log_line(now, "re-queued: the worker running the task stopped (its lease lapsed)"))
        .fetch_all(&self.pool)
        .await?;
        let mut rec = Recovery::default();
        for r in &rows {
            let status: i64 = r.try_get("status")?;
            let worker: Option<String> = r.try_get("worker_id")?;
            warn!(worker = worker.as_deref().unwrap_or("?"), requeued = status == 2, "a task's lease lapsed");
            if status == 2 {
                rec.requeued += 1;
            } else {
                rec.failed += 1;
            }
        }
        Ok(rec)
    }

    async fn claim_webhook(&self, id: &str, hold_ms: i64) -> Result<Option<TaskRow>> {
        let q = format!(
            "UPDATE tasks SET webhook_claimed_until = foley_now_ms() + $1 WHERE id = $2 AND webhook_pending \
             AND webhook IS NOT NULL AND (webhook_claimed_until IS NULL OR webhook_claimed_until < foley_now_ms()) \
             RETURNING {TASK_COLS}"
        );
        sqlx::query(&q).bind(hold_ms).bind(id).fetch_optional(&self.pool).await?.as_ref().map(task_row).transpose()
    }

    async fn claim_due_webhooks(&self, hold_ms: i64) -> Result<Vec<TaskRow>> {
        let q = format!(
            "UPDATE tasks SET webhook_claimed_until = foley_now_ms() + $1 WHERE seq IN ( \
               SELECT seq FROM tasks WHERE webhook_pending AND webhook IS NOT NULL \
               AND (webhook_claimed_until IS NULL OR webhook_claimed_until < foley_now_ms()) \
               ORDER BY seq LIMIT 64 FOR UPDATE SKIP LOCKED) \
             RETURNING {TASK_COLS}"
        );
        sqlx::query(&q).bind(hold_ms).fetch_all(&self.pool).await?.iter().map(task_row).collect()
    }

    fn listen(&self) -> Option<mpsc::UnboundedReceiver<Change>> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(follow(self.pool.clone(), tx));
        Some(rx)
    }
}

//! Server configuration (filled by the `foley serve` flags / `FOLEY_*` environment variables).

use std::path::PathBuf;
use std::time::Duration;

/// Everything `serve` needs besides the engine.
#[derive(Clone)]
pub struct Config {
    /// Where the SQLite database (`foley.db`) and the files (`files/`) live.
    pub data_dir: PathBuf,
    /// Accepted Bearer keys. Empty with `no_auth` = open server (refused unless bound to loopback by the CLI).
    pub api_keys: Vec<String>,
    /// Operator keys (see and manage every task), named `operator-1`, `operator-2`…
    pub operator_keys: Vec<String>,
    /// A keys file (`name key` / `operator name key` per line; see [`crate::auth::keyfile`]), re-read while the
    /// server runs.
    pub api_keys_file: Option<PathBuf>,
    /// How often the keys file is checked for changes.
    pub keys_reload: Duration,
    pub no_auth: bool,
    /// Secret for signing download/upload URLs and webhooks (random per start when not given:
    /// signed URLs then die with the process).
    pub signing_secret: Vec<u8>,
    /// How long signed download URLs stay valid.
    pub url_ttl: Duration,
    /// Tasks waiting (not yet running) beyond which submissions get 429.
    pub queue_capacity: usize,
    /// Tasks of one key queued or running (cancelling, uploading) at once, beyond which that key's submissions get
    /// 429 (`None`: no bound). Counted across the cluster.
    pub max_tasks_per_key: Option<usize>,
    /// Submissions per minute one key may make on this node, sustained (`None`: no rate limit) …
    pub key_rate_per_min: Option<f64>,
    /// … and in a burst (the token bucket's size).
    pub key_burst: u32,
    /// Generations run at once.
    pub workers: usize,
    /// Times a task is (re)started before a restart fails it instead of re-queueing it.
    pub max_attempts: i64,
    /// Acceptance limits of the input video.
    pub limits: foley_media::Limits,
    /// Allow URL inputs and webhooks to reach loopback/private/link-local addresses (tests, closed networks).
    pub allow_private_urls: bool,
    /// Timeout of one URL fetch (under the SDK's 30 s request timeout, since the fetch happens before the 2xx).
    pub fetch_timeout: Duration,
    /// Webhook deliveries tried per event (exponential backoff from `webhook_backoff`).
    pub webhook_attempts: u32,
    pub webhook_backoff: Duration,
    /// Absolute base URL for links (`https://foley.example.com`); default: what the request's Host says.
    pub public_url: Option<String>,
    /// Interval between heartbeat lines on task streams.
    pub heartbeat: Duration,
    /// Where uploads and outputs live (`--files`): `<data_dir>/files` by default, or an S3-compatible bucket.
    pub files: crate::files::Location,
    /// `postgres://…`: share tasks with other nodes through PostgreSQL instead of `data_dir/foley.db`.
    pub database: Option<String>,
    /// What this process does in a cluster.
    pub role: Role,
    /// How long a claimed task stays this node's without a renewal (PostgreSQL only; renewed every third).
    pub lease: Duration,
    /// Files no task needs any more are removed this long after they were made (`None`: kept forever).
    pub retention: Option<Duration>,
}

/// The part a process plays: `All` is the single process (HTTP and workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// HTTP only: accepts, validates and serves; never loads the model nor runs tasks.
    Api,
    /// Claims and runs tasks; serves only `/health` and `/metrics`.
    Worker,
    #[default]
    All,
}

impl Role {
    pub fn runs_tasks(self) -> bool {
        self != Role::Api
    }
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }
}

impl Config {
    /// Defaults for a data directory (no keys, so callers must set keys or `no_auth`).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            api_keys: Vec::new(),
            operator_keys: Vec::new(),
            api_keys_file: None,
            keys_reload: Duration::from_secs(2),
            no_auth: false,
            signing_secret: rand::random::<[u8; 32]>().to_vec(),
            url_ttl: Duration::from_secs(24 * 3600),
            queue_capacity: 32,
            max_tasks_per_key: Some(16),
            key_rate_per_min: Some(60.0),
            key_burst: 30,
            workers: 1,
            max_attempts: 2,
            limits: foley_media::Limits::default(),
            allow_private_urls: false,
            fetch_timeout: Duration::from_secs(20),
            webhook_attempts: 6,
            webhook_backoff: Duration::from_secs(1),
            public_url: None,
            heartbeat: Duration::from_secs(5),
            files: crate::files::Location::Local,
            database: None,
            role: Role::All,
            lease: Duration::from_secs(30),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl std::fmt::Debug for Config {
    /// Secrets are redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("api_keys", &format!("[{} redacted]", self.api_keys.len()))
            .field("operator_keys", &format!("[{} redacted]", self.operator_keys.len()))
            .field("api_keys_file", &self.api_keys_file)
            .field("no_auth", &self.no_auth)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_tasks_per_key", &self.max_tasks_per_key)
            .field("key_rate_per_min", &self.key_rate_per_min)
            .field("key_burst", &self.key_burst)
            .field("workers", &self.workers)
            .field("allow_private_urls", &self.allow_private_urls)
            .field("public_url", &self.public_url)
            .field("files", &self.files)
            .field("database", &self.database.as_ref().map(|_| "[redacted]"))
            .field("role", &self.role)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

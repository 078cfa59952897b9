//! `foley serve`: the HTTP server (inference.sh-compatible and Kling-style APIs, web page at `/`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use foley_pipeline::Engine;

use super::probe::LimitArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on. Anything but loopback requires API keys.
    #[arg(long, env = "FOLEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Model variant to load once at start (a name from models/, e.g. large_44k_v2 or small_16k; tiny-test for a
    /// self-check without downloads). Default: large_44k_v2 on a GPU, small_16k on the CPU.
    #[arg(long, env = "FOLEY_MODEL")]
    pub model: Option<String>,
    /// Use the checkpoints in this folder in place (an MMAudio checkout, a ComfyUI models/mmaudio folder or a
    /// folder of the official files), before foley's imported store and the Hugging Face cache.
    #[arg(long, env = "FOLEY_WEIGHTS_DIR")]
    pub weights_dir: Option<PathBuf>,
    /// Networks' dtype: on the CPU f32 (default) or bf16 (weights held in bf16: half the memory; products
    /// accumulated in f32, on AVX512-BF16 where the processor has it); on a GPU bf16 (default), f16 or f32.
    #[arg(long, env = "FOLEY_DTYPE", value_parser = ["f32", "bf16", "f16"])]
    pub dtype: Option<String>,
    /// Directory of the task database (foley.db) and the stored files.
    #[arg(long, env = "FOLEY_DATA_DIR", default_value = "foley-data")]
    pub data_dir: PathBuf,
    /// Accepted API keys, comma-separated (clients send `Authorization: Bearer <key>`); named key-1, key-2… in
    /// logs and metrics. Each key sees only its own tasks and files.
    #[arg(long, env = "FOLEY_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// A keys file: one `name key` per line (`operator name key` for an operator key), `#` comments. Re-read
    /// every 2 s while the server runs: a changed file takes effect at once; a bad one keeps the previous keys
    /// (and the log says why). Adds to --api-keys and --operator-keys.
    #[arg(long, env = "FOLEY_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Operator keys, comma-separated (named operator-1…): they see and manage every key's tasks.
    #[arg(long, env = "FOLEY_OPERATOR_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub operator_keys: Vec<String>,
    /// Tasks one key may have queued or running at once (across the cluster); more get HTTP 429 with
    /// Retry-After. Keep it under --queue-capacity so that one client cannot fill the queue. 0 = no bound.
    #[arg(long, env = "FOLEY_MAX_TASKS_PER_KEY", default_value_t = 16)]
    pub max_tasks_per_key: usize,
    /// Submissions per minute one key may make, sustained (token bucket, per API node); more get HTTP 429 with
    /// Retry-After. 0 = no rate limit.
    #[arg(long, env = "FOLEY_KEY_RATE", default_value_t = 60.0)]
    pub key_rate: f64,
    /// Submissions one key may make at once before --key-rate applies (the token bucket's size).
    #[arg(long, env = "FOLEY_KEY_BURST", default_value_t = 30)]
    pub key_burst: u32,
    /// Serve without API keys (allowed only when listening on loopback).
    #[arg(long, env = "FOLEY_NO_AUTH")]
    pub no_auth: bool,
    /// Secret for signed file URLs and webhook signatures; random per start when absent (signed URLs then
    /// stop working at restart, and receivers cannot verify webhooks).
    #[arg(long, env = "FOLEY_SIGNING_SECRET", hide_env_values = true)]
    pub signing_secret: Option<String>,
    /// Tasks allowed to wait in the queue; more get HTTP 429 with Retry-After.
    #[arg(long, env = "FOLEY_QUEUE_CAPACITY", default_value_t = 32)]
    pub queue_capacity: usize,
    /// Generations run at the same time.
    #[arg(long, env = "FOLEY_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Starts of a task before a restart fails it instead of re-queueing it.
    #[arg(long, env = "FOLEY_MAX_ATTEMPTS", default_value_t = 2)]
    pub max_attempts: i64,
    /// Let URL inputs and webhooks reach loopback/private/link-local addresses (closed networks, tests).
    #[arg(long, env = "FOLEY_ALLOW_PRIVATE_URLS")]
    pub allow_private_urls: bool,
    /// Public base URL for links in responses (default: from the request's Host header).
    #[arg(long, env = "FOLEY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Lifetime of signed download URLs, seconds.
    #[arg(long, env = "FOLEY_URL_TTL", default_value_t = 86_400)]
    pub url_ttl: u64,
    /// Webhook delivery attempts per event (exponential backoff).
    #[arg(long, env = "FOLEY_WEBHOOK_ATTEMPTS", default_value_t = 6)]
    pub webhook_attempts: u32,
    /// First webhook retry delay, milliseconds (doubles each attempt).
    #[arg(long, env = "FOLEY_WEBHOOK_BACKOFF_MS", default_value_t = 1000)]
    pub webhook_backoff_ms: u64,
    /// Where uploads and outputs are stored: unset = <data-dir>/files; `s3://bucket[/prefix]` = an S3-compatible
    /// bucket (endpoint, region and keys from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY), with a bounded local cache in <data-dir>/cache for what the engine reads.
    #[arg(long, env = "FOLEY_FILES")]
    pub files: Option<String>,
    /// Size of that local cache of bucket files, MB (least recently used files leave first).
    #[arg(long, env = "FOLEY_FILES_CACHE_MB", default_value_t = 2048)]
    pub files_cache_mb: u64,
    /// Share tasks with other nodes through PostgreSQL (`postgres://user:pass@host:5432/db`) instead of the
    /// SQLite file under --data-dir. The schema is created and upgraded at start.
    #[arg(long, env = "FOLEY_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// What this process does: `api` (HTTP only, never loads the model), `worker` (runs tasks; serves only
    /// /health and /metrics) or `all` (both, the single-process server). `api` and `worker` need --database.
    #[arg(long, env = "FOLEY_ROLE", value_enum, default_value = "all")]
    pub role: RoleArg,
    /// Seconds a claimed task stays this node's without renewal (PostgreSQL; renewed every third). A task whose
    /// worker stopped runs again elsewhere after this, counted against --max-attempts.
    #[arg(long, env = "FOLEY_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// How long files are kept once no task needs them (finished tasks' inputs and outputs, unused uploads,
    /// uploads announced but never sent): a number with s, m, h or d (`7d`, `12h`); `0` keeps them forever.
    #[arg(long, env = "FOLEY_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub retention: Duration,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `7d`, `12h`, `30m`, `45s` (or plain seconds).
fn parse_retention(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a number with s, m, h or d (e.g. 7d)"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// `--role`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    Api,
    Worker,
    All,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let no_keys = args.api_keys.iter().chain(&args.operator_keys).all(|k| k.trim().is_empty());
    if no_keys && args.api_keys_file.is_none() && !args.no_auth {
        bail!("no API keys: set FOLEY_API_KEYS (or --api-keys, --api-keys-file), or pass --no-auth on a loopback address");
    }
    if !args.key_rate.is_finite() || args.key_rate < 0.0 {
        bail!("--key-rate must be a number of submissions per minute, 0 or more");
    }
    if args.no_auth && !args.listen.ip().is_loopback() {
        bail!("--no-auth is only allowed on a loopback address, not {}", args.listen);
    }
    if args.role != RoleArg::All && args.database.is_none() {
        let role = format!("{:?}", args.role).to_lowercase();
        bail!("--role {role} needs --database postgres://… (nodes share tasks through PostgreSQL)");
    }
    if args.database.as_deref().is_some_and(|d| !d.starts_with("postgres://") && !d.starts_with("postgresql://")) {
        bail!("--database must be a postgres:// URL");
    }
    let model = args.model.clone().unwrap_or_else(|| foley_pipeline::default_model().to_string());
    let weights_dir = args.weights_dir.clone();
    // an API node never loads the model, so its --dtype is not checked
    let dtype = match args.role {
        RoleArg::Api => None,
        _ => super::dtype_arg(&foley_pipeline::device_for(&model), args.dtype.as_deref())?,
    };
    let mut cfg = foley_server::Config::new(&args.data_dir);
    cfg.api_keys = args.api_keys.into_iter().filter(|k| !k.trim().is_empty()).collect();
    cfg.operator_keys = args.operator_keys.into_iter().filter(|k| !k.trim().is_empty()).collect();
    cfg.api_keys_file = args.api_keys_file;
    cfg.max_tasks_per_key = (args.max_tasks_per_key > 0).then_some(args.max_tasks_per_key);
    cfg.key_rate_per_min = (args.key_rate > 0.0).then_some(args.key_rate);
    cfg.key_burst = args.key_burst.max(1);
    cfg.no_auth = args.no_auth;
    if let Some(s) = args.signing_secret {
        cfg.signing_secret = s.into_bytes();
    }
    cfg.queue_capacity = args.queue_capacity.max(1);
    if cfg.max_tasks_per_key.is_some_and(|n| n > cfg.queue_capacity) {
        tracing::warn!(
            max_tasks_per_key = args.max_tasks_per_key,
            queue_capacity = cfg.queue_capacity,
            "--max-tasks-per-key is above --queue-capacity: one key can fill the whole queue"
        );
    }
    cfg.workers = args.workers.max(1);
    cfg.max_attempts = args.max_attempts.max(1);
    cfg.allow_private_urls = args.allow_private_urls;
    cfg.public_url = args.public_url;
    cfg.url_ttl = Duration::from_secs(args.url_ttl);
    cfg.webhook_attempts = args.webhook_attempts.max(1);
    cfg.webhook_backoff = Duration::from_millis(args.webhook_backoff_ms);
    cfg.limits = args.limits.limits();
    cfg.files = foley_server::files::Location::parse(args.files.as_deref().unwrap_or(""), args.files_cache_mb.saturating_mul(1_000_000))
        .map_err(anyhow::Error::msg)?;
    cfg.database = args.database;
    cfg.lease = Duration::from_secs(args.lease_secs.max(1));
    cfg.retention = (!args.retention.is_zero()).then_some(args.retention);
    cfg.role = match args.role {
        RoleArg::Api => foley_server::config::Role::Api,
        RoleArg::Worker => foley_server::config::Role::Worker,
        RoleArg::All => foley_server::config::Role::All,
    };
    // The keys are checked before the model loads (which can take minutes).
    let keys = foley_server::auth::keyfile::load(&cfg).map_err(anyhow::Error::msg)?;
    if keys.is_empty() && !cfg.no_auth {
        bail!("no API keys: the keys file names none, and neither --api-keys nor --operator-keys gives one");
    }
    let api_only = args.role == RoleArg::Api;
    tracing::info!(config = ?cfg, "starting");
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(async move {
        // Bound first: while the model loads, /health answers 503 instead of the port being closed.
        let socket = std::net::TcpListener::bind(args.listen).with_context(|| format!("listen on {}", args.listen))?;
        socket.set_nonblocking(true)?;
        let engine: Arc<dyn Engine> = if api_only {
            // An API node names the model (inputs are checked against it) but never loads it.
            Arc::new(foley_server::cluster::ApiOnly::new(model))
        } else {
            let loading = tokio::net::TcpListener::from_std(socket.try_clone()?)?;
            eprintln!("foley: loading {model} (http://{} answers 503 until it is ready)", socket.local_addr()?);
            foley_server::while_loading(loading, move || foley_pipeline::load_engine_from(&model, weights_dir.as_deref(), dtype)).await??
        };
        let state = foley_server::AppState::open(cfg, engine).await?;
        let listener = tokio::net::TcpListener::from_std(socket)?;
        eprintln!("foley: serving {} on http://{}", state.engine.model(), listener.local_addr()?);
        foley_server::serve(state, listener, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

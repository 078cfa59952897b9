//! Test harness: a foley server on a free loopback port (own thread, own runtime, temp data dir) running the
//! [`engine::ToneEngine`], a runner for the SDK scripts in the repository's tests/sdk/, and a loopback S3 server
//! ([`s3::Moto`]).
#![allow(dead_code)]

pub mod engine;
pub mod s3;
#[path = "../../../foley-media/tests/common/mod.rs"]
pub mod media;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foley_server::{AppState, Config};

pub const KEY: &str = "inf_test_key_0123456789";
pub const SECRET: &str = "test-signing-secret";

pub struct Server {
    pub base: String,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn config(dir: &Path) -> Config {
    let mut cfg = Config::new(dir);
    cfg.api_keys = vec![KEY.to_string()];
    cfg.signing_secret = SECRET.as_bytes().to_vec();
    cfg.allow_private_urls = true;
    cfg.webhook_backoff = Duration::from_millis(200);
    cfg.webhook_attempts = 4;
    cfg.heartbeat = Duration::from_secs(2);
    cfg
}

/// Starts a server on `dir` with `engine`, after `tweak` adjusts the config; returns once it accepts connections.
pub fn start(dir: &Path, engine: engine::ToneEngine, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = config(dir);
    tweak(&mut cfg);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let state = AppState::open(cfg, Arc::new(engine)).await.expect("open state");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            foley_server::serve(state, listener, async move {
                let _ = stop_rx.await;
            })
            .await
            .expect("serve");
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("server did not start");
    wait_ready(&format!("{addr}"));
    Server { base: format!("http://{addr}"), dir: dir.to_path_buf(), stop: Some(stop_tx), thread: Some(thread) }
}

/// Polls `GET /health` until 200 (bounded).
pub fn wait_ready(addr: &str) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(s, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server at {addr} never became ready");
}

/// Checks that python3 and the `inferencesh` SDK are installed; fails loudly otherwise (CI installs both via
/// `scripts/setup --tests`).
pub fn require_sdk() {
    let out = Command::new("python3")
        .args(["-c", "import inferencesh, requests; print(inferencesh.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is required for the SDK tests (run scripts/setup --tests): {e}"));
    assert!(
        out.status.success(),
        "the inferencesh Python SDK is required for these tests; run `scripts/setup --tests` \
         (pip install inferencesh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository's tests/sdk (this file is compiled into tests of the root package and of foley-server).
pub fn sdk_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [root.join("tests/sdk"), root.join("../../tests/sdk")].into_iter().find(|p| p.is_dir()).expect("tests/sdk")
}

/// Runs `python3 tests/sdk/<script> <args>` against `base` (killed after `timeout`); returns stdout, panics with
/// stdout+stderr on failure.
pub fn py(base: &str, script: &str, args: &[&str], env: &[(&str, String)], timeout: Duration) -> String {
    py_in(Path::new("."), base, script, args, env, timeout)
}

/// [`py`] with `cwd` as the working directory.
pub fn py_in(cwd: &Path, base: &str, script: &str, args: &[&str], env: &[(&str, String)], timeout: Duration) -> String {
    require_sdk();
    let mut cmd = Command::new("python3");
    cmd.current_dir(cwd);
    cmd.arg(sdk_dir().join(script))
        .args(args)
        .env("FOLEY_URL", base)
        .env("INFERENCE_API_KEY", KEY)
        .env("FOLEY_SIGNING_SECRET", SECRET)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn python3");
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("wait python").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{script} {args:?} timed out after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

//! End-to-end tests of `foley serve --model tiny-test` (the real engine with tiny random weights, on the CPU)
//! driven by the real `inferencesh` Python SDK (tests/sdk/*.py): the weights' licenses, upload and run, stream,
//! errors, webhooks, cancel, 50 concurrent submissions against a queue of 10, and kill -9 mid-queue then restart.
//! The same scripts run against an in-process server with a fast stand-in engine in
//! crates/foley-server/tests/sdk.rs.

#[path = "../crates/foley-server/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::media::video;
use common::{py, wait_ready, KEY, SECRET};

const T: Duration = Duration::from_secs(300);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A `foley serve` process, killed (SIGKILL) when dropped.
struct Serve {
    child: Child,
    base: String,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(dir: &Path, port: u16, extra: &[&str]) -> Serve {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_foley"))
        .args(["serve", "--model", "tiny-test", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("data"))
        .args(["--api-keys", KEY, "--signing-secret", SECRET, "--allow-private-urls", "--webhook-backoff-ms", "200"])
        .args(extra)
        .env("FOLEY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start foley serve");
    let srv = Serve { child, base: format!("http://127.0.0.1:{port}"), port };
    wait_ready(&format!("127.0.0.1:{port}"));
    srv
}

#[test]
fn tiny_test_run_stream_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let srv = serve(dir.path(), free_port(), &[]);
    py(&srv.base, "licenses.py", &["tiny-test"], &[], T);
    py(&srv.base, "run.py", &["local", s(&video("h264_aac_mp4"))], &[], T);
    py(&srv.base, "run.py", &["base64", s(&video("exact3_mp4"))], &[], T);
    py(&srv.base, "run.py", &["url", s(&video("h264_mp4"))], &[], T);
    py(&srv.base, "run.py", &["stream", s(&video("h264_mp4"))], &[], T);
    py(&srv.base, "errors.py", &[s(&video("short_mp4")), s(&video("h264_mp4")), s(&video("text_mp4"))], &[], T);
}

#[test]
fn tiny_test_webhook_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let srv = serve(dir.path(), free_port(), &[]);
    py(&srv.base, "webhook.py", &[s(&video("h264_mp4"))], &[("FOLEY_NO_FAIL_CASE", "1".into())], T);
    py(&srv.base, "cancel.py", &[s(&video("exact20_mp4"))], &[], T);
}

#[test]
fn tiny_test_fifty_concurrent_submissions_with_capacity_ten() {
    let dir = tempfile::tempdir().unwrap();
    // One worker, no per-key limits: the bound the submissions meet is the queue's. The blocker: a 20 s video.
    let srv = serve(dir.path(), free_port(), &["--queue-capacity", "10", "--workers", "1", "--max-tasks-per-key", "0", "--key-rate", "0"]);
    let blocker = video("exact20_mp4");
    let out = py(&srv.base, "load.py", &[s(&video("exact3_mp4")), "50", "10", s(&blocker)], &[], Duration::from_secs(500));
    eprintln!("load (tiny-test): {out}");
}

#[test]
fn tiny_test_kill_9_mid_queue_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let srv = serve(dir.path(), port, &[]);
    let ids: Vec<String> =
        serde_json::from_str(py(&srv.base, "restart.py", &["submit", s(&video("exact3_mp4")), "5"], &[], T).trim())
            .unwrap();
    // Until the first task runs, then SIGKILL (Drop): no graceful shutdown.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !std::fs::read_to_string(dir.path().join("server.log")).unwrap().contains("running") {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(srv);
    let t0 = Instant::now();
    let srv = serve(dir.path(), port, &[]);
    let ready_s = t0.elapsed().as_secs_f64();
    let mut args = vec!["wait"];
    args.extend(ids.iter().map(String::as_str));
    let out = py(&srv.base, "restart.py", &args, &[], T);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let statuses: Vec<i64> = ids.iter().map(|i| v[i]["status"].as_i64().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 10), "every accepted task completes after the restart: {statuses:?}");
    let requeued = ids.iter().filter(|i| v[i.as_str()]["logs"].as_str().unwrap().contains("re-queued")).count();
    assert_eq!(requeued, 1, "the task that was running is re-queued: {out}");
    eprintln!(
        "restart (tiny-test): {} tasks, {requeued} re-queued, ready {ready_s:.2}s after kill, all done {:.2}s after kill (port {})",
        ids.len(),
        t0.elapsed().as_secs_f64(),
        srv.port
    );
}

#[test]
fn tiny_test_sigterm_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut srv = serve(dir.path(), port, &[]);
    let ids: Vec<String> =
        serde_json::from_str(py(&srv.base, "restart.py", &["submit", s(&video("exact3_mp4")), "1"], &[], T).trim())
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !std::fs::read_to_string(dir.path().join("server.log")).unwrap().contains("running") {
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    let ok = Command::new("kill").args(["-TERM", &srv.child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "foley serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    // Drained, not abandoned: the first process itself ended the task, after it was told to stop (so the task was
    // still running at the SIGTERM) and before it exited.
    let id = &ids[0];
    let lines: Vec<&str> = log.lines().collect();
    let stop = lines.iter().position(|l| l.contains("shutting down")).unwrap_or_else(|| panic!("no shutdown line:\n{log}"));
    let ended = lines.iter().position(|l| l.contains(id.as_str()) && l.contains("ended") && l.contains("completed"));
    let ended = ended.unwrap_or_else(|| panic!("the task did not end in the process that got the SIGTERM:\n{log}"));
    assert!(stop < ended, "the task ended before the SIGTERM, so no drain was tested:\n{log}");
    drop(srv);
    let srv = serve(dir.path(), port, &[]);
    let out = py(&srv.base, "restart.py", &["wait", id], &[], T);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v[id]["status"], 10, "{out}");
    // Run once: one start, no re-queue by the next process's recovery, and the next process never ran it.
    let task_log = v[id]["logs"].as_str().unwrap();
    let starts = task_log.lines().filter(|l| l.ends_with("] running")).count();
    assert_eq!(starts, 1, "the task ran once: {task_log}");
    assert!(!task_log.contains("re-queued"), "the task was abandoned and re-run after the restart: {task_log}");
    let second = std::fs::read_to_string(dir.path().join("server.log")).unwrap()[log.len()..].to_string();
    assert!(!second.lines().any(|l| l.contains(id.as_str()) && l.contains("running")), "re-run after the restart:\n{second}");
    eprintln!("sigterm: exited in {:.2}s, the running task drained", t0.elapsed().as_secs_f64());
}

/// `GET path` on `port` without a key: the body.
fn get_body(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(sock, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    let _ = sock.read_to_string(&mut buf);
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

#[test]
fn tiny_test_a_keys_name_not_the_key_in_logs_and_metrics() {
    const STUDIO: &str = "inf_studio_b_secret_0123456789";
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("# one line per studio\nstudio-b {STUDIO}\n")).unwrap();
    let srv = serve(dir.path(), free_port(), &["--api-keys-file", s(&keys)]);
    py(&srv.base, "run.py", &["local", s(&video("h264_aac_mp4"))], &[("INFERENCE_API_KEY", STUDIO.into())], T);
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.lines().any(|l| l.contains("queued") && l.contains("studio-b")), "the key's name in the log:\n{log}");
    assert!(!log.contains(STUDIO) && !log.contains(KEY), "a key in the log:\n{log}");
    let metrics = get_body(srv.port, "/metrics");
    assert!(metrics.lines().any(|l| l.starts_with("foley_tasks_submitted_total") && l.contains("key=\"studio-b\"")), "{metrics}");
    assert!(!metrics.contains(STUDIO), "a key in the metrics");
}

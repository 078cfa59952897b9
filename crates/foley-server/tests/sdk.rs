//! End-to-end tests with the real `inferencesh` Python SDK (tests/sdk/*.py) against an in-process foley server
//! running the tone test engine (tests/common/engine.rs): real uploads, validation, muxing, streams, webhooks,
//! cancellation, the bounded queue and a kill -9 restart.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::engine::ToneEngine;
use common::media::video;
use common::{py, start};

const T: Duration = Duration::from_secs(180);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn run_wait_with_local_file_upload() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(3, 20), |_| {});
    let out = py(&srv.base, "run.py", &["local", s(&video("h264_aac_mp4"))], &[], T);
    assert!(out.contains("bgm_audio"), "{out}");
}

#[test]
fn run_wait_with_mov_keeps_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(2, 10), |_| {});
    py(&srv.base, "run.py", &["mov", s(&video("prores_mov"))], &[], T);
}

#[test]
fn run_wait_with_loopback_url() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(2, 10), |_| {});
    py(&srv.base, "run.py", &["url", s(&video("h264_mp4"))], &[], T);
}

#[test]
fn run_wait_with_base64_and_data_uri() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(2, 10), |_| {});
    py(&srv.base, "run.py", &["base64", s(&video("exact3_mp4"))], &[], T);
    py(&srv.base, "run.py", &["base64_prompt", s(&video("exact3_mp4"))], &[], T);
}

#[test]
fn stream_yields_updates_then_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(8, 150), |_| {});
    let out = py(&srv.base, "run.py", &["stream", s(&video("h264_mp4"))], &[], T);
    eprintln!("{out}");
}

#[test]
fn invalid_inputs_are_api_errors_with_our_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(1, 10), |_| {});
    let out = py(&srv.base, "errors.py", &[s(&video("short_mp4")), s(&video("h264_mp4")), s(&video("text_mp4"))], &[], T);
    eprintln!("{out}");
}

#[test]
fn ssrf_rules_refuse_private_targets() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(1, 10), |c| c.allow_private_urls = false);
    py(&srv.base, "ssrf.py", &[s(&video("h264_mp4"))], &[], T);
}

#[test]
fn webhook_is_signed_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(2, 10), |_| {});
    let out = py(&srv.base, "webhook.py", &[s(&video("h264_mp4"))], &[], T);
    eprintln!("{out}");
}

#[test]
fn cancel_queued_and_running() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(40, 100), |_| {});
    py(&srv.base, "cancel.py", &[s(&video("h264_mp4"))], &[], T);
}

#[test]
fn fifty_concurrent_submissions_with_capacity_ten() {
    let dir = tempfile::tempdir().unwrap();
    // One worker, no per-key limits: the bound the submissions meet is the queue's.
    let srv = start(dir.path(), ToneEngine::new(2, 20), |c| {
        c.queue_capacity = 10;
        c.workers = 1;
        c.max_tasks_per_key = None;
        c.key_rate_per_min = None;
    });
    let out = py(&srv.base, "load.py", &[s(&video("exact3_mp4")), "50", "10", "hold"], &[], Duration::from_secs(400));
    eprintln!("load: {out}");
}

/// Child process of [`kill_9_mid_queue_then_restart`]: a server on FOLEY_CHILD_PORT over FOLEY_CHILD_DIR.
#[test]
#[ignore = "started by kill_9_mid_queue_then_restart"]
fn child_server() {
    let Ok(dir) = std::env::var("FOLEY_CHILD_DIR") else { return };
    let port: u16 = std::env::var("FOLEY_CHILD_PORT").unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let cfg = common::config(Path::new(&dir));
        let state = foley_server::AppState::open(cfg, std::sync::Arc::new(ToneEngine::new(10, 100))).await.unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        // Bounded: the parent kills it long before.
        foley_server::serve(state, listener, tokio::time::sleep(Duration::from_secs(240))).await.unwrap();
    });
}

fn spawn_child(dir: &Path, port: u16) -> Child {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["child_server", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("FOLEY_CHILD_DIR", dir)
        .env("FOLEY_CHILD_PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_ready(&format!("127.0.0.1:{port}"));
    child
}

#[test]
fn kill_9_mid_queue_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_child(dir.path(), port);
    let ids: Vec<String> =
        serde_json::from_str(py(&base, "restart.py", &["submit", s(&video("exact3_mp4")), "6"], &[], T).trim()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL: no graceful shutdown, a task is mid-run and the rest are queued.
    child.kill().unwrap();
    child.wait().unwrap();
    let t0 = Instant::now();
    let mut child = spawn_child(dir.path(), port);
    let restart_s = t0.elapsed().as_secs_f64();
    let mut args = vec!["wait"];
    args.extend(ids.iter().map(String::as_str));
    let out = py(&base, "restart.py", &args, &[], T);
    let drained_s = t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let statuses: Vec<i64> = ids.iter().map(|i| v[i]["status"].as_i64().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 10), "every accepted task completes after the restart: {statuses:?}");
    let requeued = ids.iter().filter(|i| v[i.as_str()]["logs"].as_str().unwrap().contains("re-queued")).count();
    assert!(requeued >= 1, "the task that was running was re-queued: {out}");
    eprintln!("restart: {} tasks, {requeued} re-queued, ready {restart_s:.2}s after kill, all done {drained_s:.2}s", ids.len());
}

#[test]
fn kling_style_rest() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(3, 20), |_| {});
    py(&srv.base, "kling.py", &[s(&video("h264_mp4"))], &[], T);
}

#[test]
fn health_metrics_openapi_page_auth_and_signed_urls() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(2, 10), |c| c.api_keys.push("inf_second_key".into()));
    let out = py(&srv.base, "ops.py", &[s(&video("h264_mp4"))], &[], T);
    eprintln!("ops: {out}");
    py(&srv.base, "licenses.py", &["tone-test"], &[], T);
}

#[test]
fn web_page_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    // 3 s per task: long enough to queue one behind another and cancel it from the keyboard.
    const OPERATOR: &str = "inf_page_operator_0123456789";
    let srv = start(dir.path(), ToneEngine::new(20, 150), |c| c.operator_keys = vec![OPERATOR.into()]);
    let env = [("FOLEY_OPERATOR_KEY", OPERATOR.to_string())];
    let out = py(&srv.base, "page.py", &[s(&video("h264_mp4")), s(&video("short_mp4"))], &env, T);
    eprintln!("page: {out}");
}

/// A loopback webhook receiver answering 500 until `accept` is set; records the bodies it got.
struct Hook {
    url: String,
    accept: std::sync::Arc<std::sync::atomic::AtomicBool>,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<(u16, String)>>>,
}

fn hook() -> Hook {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let accept = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, b) = (accept.clone(), bodies.clone());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut r = BufReader::new(conn);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let code = if a.load(Ordering::SeqCst) { 200 } else { 500 };
            b.lock().unwrap().push((code, String::from_utf8_lossy(&body).into_owned()));
            let _ = write!(r.get_mut(), "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    Hook { url, accept, bodies }
}

#[test]
fn undelivered_webhook_is_resent_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = hook();
    let slow_retries = |c: &mut foley_server::Config| {
        c.webhook_attempts = 100;
        c.webhook_backoff = Duration::from_millis(300);
    };
    let srv = start(dir.path(), ToneEngine::new(1, 10), slow_retries);
    let ids: Vec<String> =
        serde_json::from_str(py(&srv.base, "restart.py", &["submit_webhook", s(&video("h264_mp4")), &h.url], &[], T).trim())
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.bodies.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no webhook attempts");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(srv); // stops while the delivery is still being retried
    let failed_attempts = h.bodies.lock().unwrap().len();
    h.accept.store(true, std::sync::atomic::Ordering::SeqCst);
    let _srv = start(dir.path(), ToneEngine::new(1, 10), slow_retries);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !h.bodies.lock().unwrap().iter().any(|(c, _)| *c == 200) {
        assert!(Instant::now() < deadline, "webhook not re-sent after restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    let bodies = h.bodies.lock().unwrap();
    let (_, last) = bodies.iter().find(|(c, _)| *c == 200).unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["id"], ids[0].as_str());
    assert_eq!(v["status"], 10);
    eprintln!("webhook: {failed_attempts} failed attempts before the restart, delivered after it");
}

fn status_line(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.lines().next().unwrap_or("").to_string()
}

#[test]
fn health_is_503_while_the_model_loads() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let loading = tokio::net::TcpListener::from_std(socket.try_clone().unwrap()).unwrap();
        let load = tokio::spawn(foley_server::while_loading(loading, || {
            std::thread::sleep(Duration::from_millis(1500));
            7
        }));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let line = tokio::task::spawn_blocking(move || status_line(addr, "/health")).await.unwrap();
        assert!(line.starts_with("HTTP/1.1 503"), "{line}");
        assert_eq!(load.await.unwrap().unwrap(), 7);
        // The same socket then serves the real server.
        let dir = tempfile::tempdir().unwrap();
        let state = foley_server::AppState::open(common::config(dir.path()), std::sync::Arc::new(ToneEngine::new(1, 1)))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::from_std(socket).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let srv = tokio::spawn(foley_server::serve(state, listener, async move {
            let _ = stopped.await;
        }));
        let line = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let l = status_line(addr, "/health");
                if l.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
                    return l;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let _ = stop.send(());
        srv.await.unwrap().unwrap();
    });
}

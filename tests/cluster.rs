//! A cluster on one machine: a throwaway PostgreSQL (crates/foley-server/tests/common/pg.rs), two `foley serve
//! --role api` nodes and three `--role worker` processes (`--model tiny-test`, a 3 s lease), each with its own
//! data directory, sharing one S3-compatible bucket (moto on loopback, crates/foley-server/tests/common/s3.rs)
//! for uploads and outputs, driven by the real `inferencesh` SDK (tests/sdk/cluster.py): 100 submissions over both API nodes,
//! each run exactly once (the workers' completed-task counters) with one webhook each; a stream and a cancel
//! through an API node of tasks that run on workers; a second key's calls (delete and cancel included) through the
//! other API node answered as for a missing task; `kill -9` of a worker mid-task; PostgreSQL restarted mid-run.

#[path = "../crates/foley-server/tests/common/mod.rs"]
mod common;
#[path = "../crates/foley-server/tests/common/pg.rs"]
mod pg;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::media::video;
use common::s3::Moto;
use common::{py, wait_ready, KEY, SECRET};

const LEASE_S: u64 = 3;
/// A second client key: it must not see or touch the first key's tasks.
const KEY_B: &str = "inf_cluster_key_b_0123456789";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A `foley serve` process, killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Node {
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node with its own data directory (`dir/<name>`); its files live in `moto`'s bucket `foley-cluster`.
fn node(dir: &Path, db: &str, moto: &Moto, role: &str, name: &str) -> (Node, f64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = dir.join(format!("{name}.log"));
    let t0 = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_foley"))
        .args(["serve", "--model", "tiny-test", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join(name))
        .args(["--files", "s3://foley-cluster/files", "--database", db, "--role", role, "--lease-secs", &LEASE_S.to_string(), "--queue-capacity", "200"])
        .args(["--api-keys", &format!("{KEY},{KEY_B}"), "--signing-secret", SECRET, "--allow-private-urls", "--webhook-backoff-ms", "200"])
        // One client submits 100 tasks here: no per-key bound or rate.
        .args(["--max-tasks-per-key", "0", "--key-rate", "0"])
        .envs(moto.env())
        .env("FOLEY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start foley serve");
    let n = Node { child, addr: format!("127.0.0.1:{port}"), log };
    wait_ready(&n.addr);
    (n, t0.elapsed().as_secs_f64())
}

/// `GET path` with the API key: (status, body), bounded by a 10 s read timeout.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(sock, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    let _ = sock.read_to_string(&mut buf);
    let code = buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Sum of a counter over nodes' /metrics (lines `name{labels} value` containing `filter`).
fn counter(nodes: &[&Node], name: &str, filter: &str) -> f64 {
    nodes
        .iter()
        .flat_map(|n| get(&n.addr, "/metrics").1.lines().map(String::from).collect::<Vec<_>>())
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn wait_all(base: &str, ids: &[String]) -> serde_json::Value {
    let mut args = vec!["wait"];
    args.extend(ids.iter().map(String::as_str));
    serde_json::from_str(py(base, "restart.py", &args, &[], Duration::from_secs(300)).trim()).unwrap()
}

fn submit(base: &str, clip: &Path, n: usize, steps: u32) -> Vec<String> {
    let out = py(base, "cluster.py", &["submit", s(clip), &n.to_string(), &steps.to_string()], &[], Duration::from_secs(120));
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn two_api_nodes_three_workers_one_postgres() {
    let pg = pg::Pg::start();
    let moto = Moto::start();
    moto.create_bucket("foley-cluster");
    let dir = tempfile::tempdir().unwrap();
    let db = pg.url();
    let (api_a, start_a) = node(dir.path(), &db, &moto, "api", "api-a");
    let (api_b, start_b) = node(dir.path(), &db, &moto, "api", "api-b");
    eprintln!("api nodes ready in {start_a:.2}s and {start_b:.2}s (no model loaded)");
    assert!(start_a.min(start_b) < 2.0, "an API node starts without the model: {start_a:.2}s, {start_b:.2}s");
    let mut workers: Vec<Node> = (0..3).map(|i| node(dir.path(), &db, &moto, "worker", &format!("worker-{i}")).0).collect();
    // A worker serves only /health and /metrics.
    assert_eq!(get(&workers[0].addr, "/tasks/x").0, 404);
    let both = [("FOLEY_URL_B", api_b.base())];
    let clip = video("exact3_mp4");

    // 100 submissions over both API nodes; outputs from either; one webhook each; each run once.
    let t0 = Instant::now();
    let out = py(&api_a.base(), "cluster.py", &["load", s(&clip), "100"], &both, Duration::from_secs(900));
    eprintln!("cluster load: {} ({:.1}s)", out.trim(), t0.elapsed().as_secs_f64());
    let w: Vec<&Node> = workers.iter().collect();
    assert_eq!(counter(&w, "foley_tasks_total", "completed"), 100.0, "each of the 100 tasks ran exactly once");
    let per_worker: Vec<f64> = w.iter().map(|n| counter(&[n], "foley_tasks_total", "completed")).collect();
    eprintln!("completed per worker: {per_worker:?}");

    // Stream through A of a task that runs on a worker; cancel through A of a task submitted through B.
    py(&api_a.base(), "run.py", &["stream", s(&clip)], &[], Duration::from_secs(120));
    let out = py(&api_a.base(), "cluster.py", &["cancel", s(&clip)], &both, Duration::from_secs(120));
    eprintln!("cluster cancel: {}", out.trim());

    // Key B, through B, on a task of key A submitted through A: every by-id route answers as for a missing task.
    let env_b = [("FOLEY_URL_B", api_b.base()), ("FOLEY_KEY_B", KEY_B.to_string())];
    let out = py(&api_a.base(), "cluster.py", &["isolate", s(&clip)], &env_b, Duration::from_secs(180));
    eprintln!("cluster isolation: {}", out.trim());

    // kill -9 of the worker running a task: it completes on another one within the lease and a few seconds.
    let ids = submit(&api_a.base(), &clip, 1, 60);
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        if let Some(i) = workers.iter().position(|n| n.log().lines().any(|l| l.contains(&ids[0]) && l.contains("running"))) {
            break i;
        }
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(workers.remove(victim));
    let killed = Instant::now();
    let v = wait_all(&api_b.base(), &ids);
    let took = killed.elapsed().as_secs_f64();
    let logs = v[&ids[0]]["logs"].as_str().unwrap();
    assert_eq!(v[&ids[0]]["status"], 10, "{logs}");
    assert!(logs.contains("re-queued"), "the killed worker's task ran again: {logs}");
    eprintln!("kill -9: completed elsewhere {took:.2}s after the kill (lease {LEASE_S}s)");
    assert!(took < LEASE_S as f64 + 15.0, "{took:.2}s");

    // PostgreSQL restarted mid-run: 503s (not hangs, not 500s) meanwhile; nodes reconnect; nothing lost.
    let ids = submit(&api_a.base(), &clip, 6, 25);
    pg.stop();
    let t = Instant::now();
    let (code, body) = get(&api_a.addr, &format!("/tasks/{}", ids[0]));
    let took = t.elapsed().as_secs_f64();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("database_unavailable") && took < 8.0, "{body} after {took:.2}s");
    let (code, body) = get(&api_b.addr, "/v1/audio/video-to-audio");
    assert_eq!(code, 503, "{body}");
    std::thread::sleep(Duration::from_secs(2));
    pg.start_again();
    let v = wait_all(&api_b.base(), &ids);
    let statuses: Vec<i64> = ids.iter().map(|i| v[i]["status"].as_i64().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 10), "every accepted task completes after the restart: {statuses:?}\n{v:#}");
    for n in [&api_a, &api_b] {
        assert!(!n.log().contains("panicked"), "{}", n.log());
    }
    eprintln!("postgres restart: 503 in {took:.2}s during the outage; all {} tasks completed", ids.len());
}

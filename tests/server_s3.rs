//! `foley serve --model tiny-test --files s3://…` against a real S3-compatible server (moto on loopback), driven
//! by the real `inferencesh` SDK (tests/sdk/s3.py): the upload, the run and the downloads (whole and ranged,
//! streamed from the bucket) all go through the bucket, the objects are really there, deleting a task removes
//! them, the node's data directory holds no outputs beyond its bounded cache, and a bucket that goes away gives
//! prompt 503 problem+json answers.

#[path = "../crates/foley-server/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::media::video;
use common::s3::{free_port, Moto};
use common::{py, wait_ready, KEY, SECRET};

const T: Duration = Duration::from_secs(300);
const CACHE_MB: u64 = 1;

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Regular files under `dir` with their sizes, relative paths.
fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, e.metadata().unwrap().len()));
            }
        }
    }
    out
}

#[test]
fn tiny_test_with_files_in_a_bucket() {
    let moto = Moto::start();
    moto.create_bucket("foley-e2e");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let srv = Serve(
        Command::new(env!("CARGO_BIN_EXE_foley"))
            .args(["serve", "--model", "tiny-test", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .args(["--api-keys", KEY, "--signing-secret", SECRET, "--allow-private-urls"])
            .args(["--files", "s3://foley-e2e/node-a", "--files-cache-mb", &CACHE_MB.to_string()])
            .envs(moto.env())
            .env("FOLEY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start foley serve"),
    );
    wait_ready(&format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    let mut env = moto.env();
    env.push(("FOLEY_S3_BUCKET", "foley-e2e".into()));
    env.push(("FOLEY_S3_PREFIX", "node-a".into()));
    let clip = video("h264_aac_mp4");
    let out = py(&base, "s3.py", &["run", clip.to_str().unwrap()], &env, T);
    eprintln!("s3 run: {out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();

    // The node keeps no files of its own: no files/ directory, nothing left in tmp/, the cache within its bound.
    let held = files_under(&data);
    let stray: Vec<_> =
        held.iter().filter(|(p, _)| !p.starts_with("cache/") && !p.starts_with("foley.db")).collect();
    assert!(stray.is_empty(), "files outside the cache: {stray:?}");
    let cached: Vec<_> = held.iter().filter(|(p, _)| p.starts_with("cache/")).collect();
    let total: u64 = cached.iter().map(|(_, n)| n).sum();
    assert!(total <= CACHE_MB * 1_000_000 || cached.len() == 1, "cache over its bound: {cached:?}");
    eprintln!("data dir after two tasks: {} cached files, {total} bytes (bound {CACHE_MB} MB)", cached.len());

    // The bucket goes away: prompt 503s with a reason, no hang, and the server stays up.
    drop(moto);
    let uri = v["video_uri"].as_str().unwrap();
    let out = py(&base, "s3.py", &["down", uri, clip.to_str().unwrap()], &env, T);
    eprintln!("s3 down: {out}");
    wait_ready(&format!("127.0.0.1:{port}"));
    drop(srv);
}

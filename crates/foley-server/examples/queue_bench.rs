//! Benchmark of the PostgreSQL task queue (not of a model): a throwaway PostgreSQL on loopback (the tests'
//! harness), two in-process worker nodes of 4 workers each (8 in all) running the real worker loop, leases and
//! LISTEN/NOTIFY wake-ups, on an engine that does no work (it writes four small files), and a third store as the
//! API node admitting tasks straight into the database.
//!
//! 1. Dispatch latency: with every worker idle, one task at a time; admission → engine start, p50/p99.
//! 2. Throughput: N tasks (default 10 000) admitted at once; claims per second until all are done, then checks
//!    that each task ran exactly once and all completed (none lost, none doubled).
//!
//! `cargo run -p foley-server --release --example queue_bench -- [N] [LATENCY_SAMPLES]`

#[path = "../tests/common/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foley_pipeline::{CancelToken, Engine, Output, PipelineError, ProgressFn, Request};
use foley_server::config::Role;
use foley_server::store::{PgStore, TaskStore};
use foley_server::types::{now_ms, Api, NewTask, TaskStatus};
use foley_server::{AppState, Config};

/// Records when each run (by seed) started; writes tiny outputs.
struct NoWork {
    started: Arc<Mutex<HashMap<u64, Vec<Instant>>>>,
}

impl Engine for NoWork {
    fn model(&self) -> &str {
        "no-work"
    }
    fn generate(&self, req: &Request, dir: &Path, _: ProgressFn<'_>, _: &CancelToken) -> Result<Output, PipelineError> {
        let seed = req.seed.unwrap_or(u64::MAX);
        self.started.lock().unwrap().entry(seed).or_default().push(Instant::now());
        let file = |name: &str| {
            let p = dir.join(name);
            std::fs::write(&p, b"0123456789").map(|_| p).map_err(|e| PipelineError::Internal(e.to_string()))
        };
        Ok(Output {
            video: file("video.mp4")?,
            audio: file("audio.wav")?,
            sfx_stem: file("sfx.wav")?,
            bgm_stem: None,
            duration_s: 1.0,
            sample_rate: 16_000,
            seed,
            model: "no-work".into(),
            settings: serde_json::json!({}),
            timings: vec![],
        })
    }
}

fn task(seed: u64) -> NewTask {
    NewTask {
        id: uuid::Uuid::new_v4().to_string(),
        api: Api::Infsh,
        app: "klingai/video-to-audio".into(),
        input: serde_json::json!({"video": "bench", "seed": seed}),
        request: Request { seed: Some(seed), ..Request::default() },
        input_file_id: None,
        webhook: None,
        external_id: None,
        base_url: "http://127.0.0.1".into(),
        created_at: now_ms(),
        owner: None,
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = *args.first().unwrap_or(&10_000);
    let samples = *args.get(1).unwrap_or(&300);
    let pg = pg::Pg::start();
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let started: Arc<Mutex<HashMap<u64, Vec<Instant>>>> = Arc::default();
        let mut stops = Vec::new();
        for i in 0..2 {
            let mut cfg = Config::new(dir.path().join(format!("node{i}")));
            cfg.no_auth = true;
            cfg.database = Some(pg.url());
            cfg.role = Role::Worker;
            cfg.workers = 4;
            cfg.queue_capacity = n as usize + 10;
            cfg.retention = None;
            let engine = Arc::new(NoWork { started: started.clone() });
            let state = AppState::open(cfg, engine).await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            stops.push(tx);
            tokio::spawn(foley_server::serve(state, listener, async move {
                let _ = rx.await;
            }));
        }
        let api = Arc::new(PgStore::connect(&pg.url(), "bench-api", Duration::from_secs(30)).await?);
        tokio::time::sleep(Duration::from_millis(500)).await;

        // 1. Dispatch latency with idle workers.
        let mut lat = Vec::new();
        for i in 0..samples {
            let seed = 1_000_000 + i;
            let t0 = Instant::now();
            api.admit(&task(seed), n as usize + 10).await?;
            let start = loop {
                if let Some(t) = started.lock().unwrap().get(&seed).and_then(|v| v.first().copied()) {
                    break t;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            };
            lat.push(start.duration_since(t0).as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "dispatch (admit -> engine start, idle workers, {samples} tasks): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat[lat.len() - 1]
        );
        while api.depth().await? != (0, 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // 2. Throughput: n tasks at once.
        let t0 = Instant::now();
        // Eight admitters, so that admission is not what limits the rate.
        let admitters = (0..8u64).map(|k| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for seed in (k..n).step_by(8) {
                    let t = task(seed);
                    ids.push(t.id.clone());
                    assert!(api.admit(&t, n as usize + 10).await.expect("admit"), "admitted");
                }
                ids
            })
        });
        let ids: Vec<String> =
            futures_util::future::join_all(admitters).await.into_iter().flat_map(|r| r.expect("admitter")).collect();
        let admitted = t0.elapsed().as_secs_f64();
        while api.depth().await? != (0, 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all = t0.elapsed().as_secs_f64();
        let runs = started.lock().unwrap().clone();
        let doubled = (0..n).filter(|s| runs.get(s).map_or(0, Vec::len) > 1).count();
        let missing = (0..n).filter(|s| !runs.contains_key(s)).count();
        let mut completed = 0;
        for id in &ids {
            if api.get(id).await?.map(|t| t.status) == Some(TaskStatus::Completed) {
                completed += 1;
            }
        }
        println!(
            "throughput ({n} tasks, 8 workers on 2 nodes): admitted in {admitted:.2} s ({:.0}/s); all done in {all:.2} s \
             = {:.0} tasks/s end to end",
            n as f64 / admitted,
            n as f64 / all
        );
        println!("checks: completed {completed}/{n}, engine runs missing {missing}, run more than once {doubled}");
        for s in stops {
            let _ = s.send(());
        }
        if completed != n as usize || missing != 0 || doubled != 0 {
            return Err("lost or doubled tasks".into());
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

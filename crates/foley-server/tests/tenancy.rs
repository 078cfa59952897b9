//! Several keys on one server (or two nodes on one PostgreSQL): every route that names a task or a file answers
//! another key's task exactly as a missing one (same status, same body once the id is swapped), and the owner's
//! task is untouched afterwards; operator keys see and manage everything; the keys file is re-read without a
//! restart; per-key limits (live tasks, submission rate) keep one client from starving the others.
//! In-process servers with the tone engine (tests/common); PostgreSQL from tests/common/pg.rs.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::path::Path;
use std::time::{Duration, Instant};

use common::engine::ToneEngine;
use common::media::video;
use common::{start, KEY};
use serde_json::{json, Value};

/// Key A is the harness's KEY (`key-1`); B and C are two more client keys, OP an operator key.
const A: &str = KEY;
const B: &str = "inf_tenant_b_0123456789";
const C: &str = "inf_tenant_c_0123456789";
const OP: &str = "inf_operator_0123456789";

/// A blocking HTTP client for the tests (reqwest on its own runtime).
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

/// An answer: status, Retry-After, the body as text and as JSON (`Null` when it is not JSON).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    text: String,
    json: Value,
}

impl Http {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Http { rt, client }
    }

    fn call(&self, method: &str, url: &str, key: Option<&str>, body: Option<Value>) -> Answer {
        let mut req = self.client.request(method.parse().unwrap(), url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(serde_json::to_vec(&b).unwrap());
        }
        self.rt.block_on(async {
            let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
            // Streams of a live task never end; the first kilobytes are enough.
            let text = match tokio::time::timeout(Duration::from_secs(3), resp.text()).await {
                Ok(t) => t.unwrap_or_default(),
                Err(_) => String::from("<still streaming>"),
            };
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            Answer { status, retry_after, text, json }
        })
    }

    fn put(&self, url: &str, bytes: Vec<u8>) -> u16 {
        self.rt.block_on(async { self.client.put(url).body(bytes).send().await.unwrap().status().as_u16() })
    }
}

/// Uploads `clip` with `key` (`POST /files` + the signed PUT); returns the file's (id, uri).
fn upload(h: &Http, base: &str, key: &str, clip: &Path) -> (String, String) {
    let bytes = std::fs::read(clip).unwrap();
    let body = json!({"files": [{"filename": "clip.mp4", "content_type": "video/mp4", "size": bytes.len()}]});
    let a = h.call("POST", &format!("{base}/files"), Some(key), Some(body));
    assert_eq!(a.status, 200, "{}", a.text);
    let f = &a.json["data"][0];
    assert_eq!(h.put(f["upload_url"].as_str().unwrap(), bytes), 200);
    (f["id"].as_str().unwrap().to_string(), f["uri"].as_str().unwrap().to_string())
}

fn run(h: &Http, base: &str, key: &str, video: &str) -> Answer {
    let body = json!({"app": "klingai/video-to-audio", "input": {"video": video, "sound_effect_prompt": "rain"}});
    h.call("POST", &format!("{base}/apps/run"), Some(key), Some(body))
}

fn submit(h: &Http, base: &str, key: &str, video: &str) -> String {
    let a = run(h, base, key, video);
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["data"]["id"].as_str().unwrap().to_string()
}

/// Polls the task with `key` until `done` holds of it (bounded); returns the task.
fn wait_for(h: &Http, base: &str, key: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let a = h.call("GET", &format!("{base}/tasks/{id}"), Some(key), None);
        assert_eq!(a.status, 200, "{}", a.text);
        if done(&a.json["data"]) {
            return a.json["data"].clone();
        }
        assert!(Instant::now() < deadline, "task {id} never {what}: {}", a.text);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(t: &Value) -> i64 {
    t["status"].as_i64().unwrap_or(-1)
}

/// The file id in a file URL of this server.
fn file_id(uri: &str) -> String {
    let path = uri.split("/files/").nth(1).unwrap();
    path.split(['/', '?']).next().unwrap().to_string()
}

/// `a` with `id` written as ID and Kling's random request_id dropped: what two answers must share.
fn normal(a: &Answer, id: &str) -> (u16, Option<String>, Value) {
    let mut v: Value = serde_json::from_str(&a.text.replace(id, "ID")).unwrap_or(Value::String(a.text.replace(id, "ID")));
    if let Some(o) = v.as_object_mut() {
        o.remove("request_id");
    }
    (a.status, a.retry_after.clone(), v)
}

/// Every by-id route of a task: (method, path) with ID in place of the id.
const TASK_ROUTES: [(&str, &str); 7] = [
    ("GET", "/tasks/ID"),
    ("GET", "/tasks/ID/files"),
    ("GET", "/tasks/ID/stream"),
    ("POST", "/tasks/ID/cancel"),
    ("DELETE", "/tasks/ID"),
    ("DELETE", "/tasks/ID?files=true"),
    ("GET", "/v1/audio/video-to-audio/ID"),
];

/// What A owns at the start of the probes.
struct Owned {
    done: String,
    running: String,
    kling: String,
    external: String,
    upload_id: String,
    upload_uri: String,
    outputs: Vec<String>,
}

/// A's tasks on `a_base`: one completed (inference.sh), one completed through Kling with an external id, one
/// running (6 s per task, so that it still runs while the other keys probe it).
fn make_owned(h: &Http, a_base: &str) -> Owned {
    let (upload_id, upload_uri) = upload(h, a_base, A, &video("h264_mp4"));
    let done = submit(h, a_base, A, &upload_uri);
    let external = format!("ext-{}", &done[..8]);
    let body = json!({"video_id": upload_id, "sound_effect_prompt": "steps", "external_task_id": external});
    let k = h.call("POST", &format!("{a_base}/v1/audio/video-to-audio"), Some(A), Some(body));
    assert_eq!(k.status, 200, "{}", k.text);
    let kling = k.json["data"]["task_id"].as_str().unwrap().to_string();
    let t = wait_for(h, a_base, A, &done, "completed", |t| status(t) == 10);
    wait_for(h, a_base, A, &kling, "completed", |t| status(t) == 10);
    let out = &t["output"];
    let outputs = ["video", "audio", "sfx_audio"].iter().filter_map(|k| out[*k]["uri"].as_str()).map(file_id).collect();
    let running = submit(h, a_base, A, &upload_uri);
    wait_for(h, a_base, A, &running, "running", |t| status(t) == 7);
    Owned { done, running, kling, external, upload_id, upload_uri, outputs }
}

/// Key `key` on `base` probes every route for A's things: each answer equals the answer for an unknown id.
fn probe(h: &Http, base: &str, key: &str, o: &Owned) -> usize {
    let mut checked = 0;
    let unknown = uuid::Uuid::new_v4().to_string();
    for (method, route) in TASK_ROUTES {
        let missing = h.call(method, &format!("{base}{}", route.replace("ID", &unknown)), Some(key), None);
        assert_eq!(missing.status, 404, "{method} {route} of an unknown id: {}", missing.text);
        for id in [&o.done, &o.running, &o.kling, &o.external] {
            let got = h.call(method, &format!("{base}{}", route.replace("ID", id)), Some(key), None);
            assert_eq!(normal(&got, id), normal(&missing, &unknown), "{method} {route} of A's {id} with another key");
            checked += 1;
        }
    }
    // Files: A's upload and outputs through the keyed download route.
    let missing = h.call("GET", &format!("{base}/files/{unknown}"), Some(key), None);
    assert_eq!(missing.status, 404, "{}", missing.text);
    for fid in o.outputs.iter().chain([&o.upload_id]) {
        let got = h.call("GET", &format!("{base}/files/{fid}"), Some(key), None);
        assert_eq!(normal(&got, fid), normal(&missing, &unknown), "GET /files/{fid} of A's file with another key");
        checked += 1;
    }
    // A's upload as the video of another key's task: "no such file", as for an unknown one.
    let unknown_uri = o.upload_uri.replace(&o.upload_id, &unknown);
    let missing = run(h, base, key, &unknown_uri);
    assert_eq!(missing.status, 422, "{}", missing.text);
    for video in [o.upload_uri.clone(), o.upload_id.clone()] {
        let got = run(h, base, key, &video);
        assert_eq!(normal(&got, &o.upload_id), normal(&missing, &unknown), "A's upload {video} as another key's video");
        checked += 1;
    }
    // Listings show none of A's tasks.
    let list = h.call("GET", &format!("{base}/tasks"), Some(key), None);
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(!list.text.contains(&o.done) && !list.text.contains(&o.running), "{}", list.text);
    let kl = h.call("GET", &format!("{base}/v1/audio/video-to-audio"), Some(key), None);
    assert_eq!(kl.status, 200, "{}", kl.text);
    assert!(!kl.text.contains(&o.kling), "{}", kl.text);
    checked
}

/// After the probes, A's things are as they were, through `base`.
fn untouched(h: &Http, base: &str, o: &Owned) {
    let t = h.call("GET", &format!("{base}/tasks/{}", o.done), Some(A), None);
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(status(&t.json["data"]), 10);
    assert!(t.json["data"]["output"]["video"]["uri"].is_string());
    let files = h.call("GET", &format!("{base}/tasks/{}/files", o.done), Some(A), None);
    assert!(files.json["data"].as_array().is_some_and(|f| f.len() >= 3), "{}", files.text);
    let k = h.call("GET", &format!("{base}/v1/audio/video-to-audio/{}", o.external), Some(A), None);
    assert_eq!((k.status, k.json["data"]["task_id"].as_str()), (200, Some(o.kling.as_str())), "{}", k.text);
    // The running task was not cancelled by anyone else's cancel: it completes.
    let r = wait_for(h, base, A, &o.running, "ended", |t| status(t) >= 10);
    assert_eq!(status(&r), 10, "A's running task was disturbed: {r}");
    assert!(!r["logs"].as_str().unwrap_or("").contains("cancel"), "{r}");
    let list = h.call("GET", &format!("{base}/tasks"), Some(A), None);
    assert_eq!(list.json["data"]["total"], 3, "{}", list.text);
}

fn three_keys(c: &mut foley_server::Config) {
    c.api_keys = vec![A.into(), B.into(), C.into()];
    c.operator_keys = vec![OP.into()];
}

/// The operator sees A's tasks with their owner's name and may manage them; signed links stay bearer links.
fn operator(h: &Http, base: &str, o: &Owned) {
    let list = h.call("GET", &format!("{base}/tasks?limit=100"), Some(OP), None);
    assert_eq!(list.json["data"]["caller"], json!({"name": "operator-1", "operator": true}), "{}", list.text);
    let items = list.json["data"]["items"].as_array().unwrap();
    let mine = items.iter().find(|t| t["id"] == o.done.as_str()).expect("the operator lists A's task");
    assert_eq!(mine["owner"]["name"], "key-1");
    let t = h.call("GET", &format!("{base}/tasks/{}", o.done), Some(OP), None);
    assert_eq!(t.status, 200);
    let signed = t.json["data"]["output"]["audio"]["uri"].as_str().unwrap().to_string();
    assert_eq!(h.call("GET", &signed, None, None).status, 200, "a signed download link works without a key");
    let kl = h.call("GET", &format!("{base}/v1/audio/video-to-audio?pageSize=100"), Some(OP), None);
    assert!(kl.text.contains(&o.kling), "{}", kl.text);
    assert_eq!(h.call("DELETE", &format!("{base}/tasks/{}", o.done), Some(OP), None).status, 204);
    assert_eq!(h.call("GET", &format!("{base}/tasks/{}", o.done), Some(A), None).status, 404);
}

#[test]
fn another_keys_task_is_a_missing_task_on_every_route_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(60, 100), three_keys);
    let h = Http::new();
    let o = make_owned(&h, &srv.base);
    let n = probe(&h, &srv.base, B, &o) + probe(&h, &srv.base, C, &o);
    untouched(&h, &srv.base, &o);
    operator(&h, &srv.base, &o);
    eprintln!("sqlite: {n} answers to keys B and C equal to an unknown id's; A's tasks untouched");
}

#[test]
fn another_keys_task_is_a_missing_task_across_two_nodes_on_postgres() {
    let pg = pg::Pg::start();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = pg.url();
    let db2 = db.clone();
    let node1 = start(d1.path(), ToneEngine::new(60, 100), |c| {
        three_keys(c);
        c.database = Some(db);
    });
    // An API node on the same database: B's calls (deletes and cancels included) go through it.
    let node2 = start(d2.path(), ToneEngine::new(60, 100), |c| {
        three_keys(c);
        c.database = Some(db2);
        c.role = foley_server::config::Role::Api;
    });
    let h = Http::new();
    let o = make_owned(&h, &node1.base);
    let n = probe(&h, &node2.base, B, &o) + probe(&h, &node1.base, C, &o);
    untouched(&h, &node2.base, &o);
    untouched(&h, &node1.base, &o);
    operator(&h, &node2.base, &o);
    eprintln!("postgres, two nodes: {n} answers to keys B and C equal to an unknown id's; A's tasks untouched");
}

#[test]
fn the_keys_file_names_keys_and_is_reloaded_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, "# studio\nalice inf_alice_0123456789\n").unwrap();
    let f = file.clone();
    let srv = start(&dir.path().join("data"), ToneEngine::new(1, 10), move |c| {
        c.api_keys_file = Some(f);
        c.keys_reload = Duration::from_millis(200);
    });
    let h = Http::new();
    let tasks = format!("{}/tasks", srv.base);
    let me = |key: &str| h.call("GET", &tasks, Some(key), None);
    assert_eq!(me("inf_alice_0123456789").json["data"]["caller"]["name"], "alice");
    assert_eq!(me(A).json["data"]["caller"]["name"], "key-1", "the listed keys stay");
    assert_eq!(me("inf_bob_0123456789").status, 401);
    let until = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::fs::write(&file, "alice inf_alice_0123456789\noperator boss inf_bob_0123456789\n").unwrap();
    until("the added operator key works", &|| me("inf_bob_0123456789").status == 200);
    assert_eq!(me("inf_bob_0123456789").json["data"]["caller"], json!({"name": "boss", "operator": true}));
    // A bad file keeps the keys in force.
    std::fs::write(&file, "alice inf_alice_0123456789 and more words\n").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(me("inf_bob_0123456789").status, 200, "a bad keys file keeps the previous keys");
    // A removed key stops working.
    std::fs::write(&file, "alice inf_alice_0123456789\n").unwrap();
    until("the removed key is refused", &|| me("inf_bob_0123456789").status == 401);
    assert_eq!(me("inf_alice_0123456789").status, 200);
}

/// The `name` counter's value on the line that also has all of `labels`.
fn counter(h: &Http, base: &str, name: &str, labels: &[&str]) -> f64 {
    let m = h.call("GET", &format!("{base}/metrics"), None, None).text;
    m.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_flooding_key_does_not_keep_another_keys_task_from_running() {
    flood(None);
}

#[test]
fn a_flooding_key_does_not_keep_another_keys_task_from_running_on_postgres() {
    let pg = pg::Pg::start();
    flood(Some(pg.url()));
}

/// Key A floods a server (on `database`, else SQLite); key B's task is still admitted and run.
fn flood(database: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    // 0.5 s per task, one worker; the queue holds 6, a key 3 at a time.
    let srv = start(dir.path(), ToneEngine::new(5, 100), |c| {
        three_keys(c);
        c.queue_capacity = 6;
        c.max_tasks_per_key = Some(3);
        c.database = database;
    });
    let h = Http::new();
    let (_, uri_a) = upload(&h, &srv.base, A, &video("exact3_mp4"));
    let (_, uri_b) = upload(&h, &srv.base, B, &video("exact3_mp4"));
    // A floods: 12 concurrent submissions.
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..12)
            .map(|_| {
                let (base, uri) = (srv.base.clone(), uri_a.clone());
                s.spawn(move || run(&Http::new(), &base, A, &uri))
            })
            .collect();
        hs.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let ok: Vec<String> = answers.iter().filter(|a| a.status == 200).map(|a| a.json["data"]["id"].as_str().unwrap().to_string()).collect();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert_eq!(ok.len(), 3, "A gets its 3: {answers:?}");
    for r in &refused {
        assert_eq!(r.status, 429, "{}", r.text);
        assert_eq!(r.json["code"], "key_task_limit", "{}", r.text);
        assert!(r.json["detail"].as_str().unwrap().contains("per-key task limit"), "{}", r.text);
        assert_eq!(r.retry_after.as_deref(), Some("5"));
    }
    // B is admitted right away, and its task runs in its turn (after at most A's three).
    let t0 = Instant::now();
    let b = submit(&h, &srv.base, B, &uri_b);
    let done = wait_for(&h, &srv.base, B, &b, "ended", |t| status(t) >= 10);
    assert_eq!(status(&done), 10, "{done}");
    let took = t0.elapsed().as_secs_f64();
    assert!(took < 30.0, "B's task took {took:.1}s");
    for id in &ok {
        assert_eq!(status(&wait_for(&h, &srv.base, A, id, "ended", |t| status(t) >= 10)), 10);
    }
    // Per-key counters, by the key's name (the process's counters: the SQLite and PostgreSQL floods add up).
    assert!(counter(&h, &srv.base, "foley_tasks_refused_total", &["key=\"key-1\"", "key_task_limit"]) >= 9.0);
    assert!(counter(&h, &srv.base, "foley_tasks_submitted_total", &["key=\"key-2\""]) >= 1.0);
    // A is under its bound again once its tasks ended.
    assert_eq!(run(&h, &srv.base, A, &uri_a).status, 200);
    eprintln!("flood: A 3 admitted / 9 refused (429 key_task_limit); B's task done {took:.1}s after it was submitted");
}

#[test]
fn a_keys_submission_rate_is_bounded_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(1, 10), |c| {
        three_keys(c);
        c.key_rate_per_min = Some(6.0);
        c.key_burst = 2;
    });
    let h = Http::new();
    let (_, uri_a) = upload(&h, &srv.base, A, &video("exact3_mp4"));
    let (_, uri_c) = upload(&h, &srv.base, C, &video("exact3_mp4"));
    assert_eq!(run(&h, &srv.base, A, &uri_a).status, 200);
    assert_eq!(run(&h, &srv.base, A, &uri_a).status, 200);
    let third = run(&h, &srv.base, A, &uri_a);
    assert_eq!(third.status, 429, "{}", third.text);
    assert_eq!(third.json["code"], "key_rate_limit", "{}", third.text);
    assert!(third.json["detail"].as_str().unwrap().contains("rate limit"), "{}", third.text);
    let wait: u64 = third.retry_after.as_deref().and_then(|s| s.parse().ok()).expect("Retry-After");
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    // Kling's door answers the same limit in its envelope.
    let body = json!({"video_url": uri_a});
    let k = h.call("POST", &format!("{}/v1/audio/video-to-audio", srv.base), Some(A), Some(body));
    assert_eq!((k.status, k.json["code"].as_i64()), (429, Some(1303)), "{}", k.text);
    assert!(k.retry_after.is_some());
    // Another key has its own bucket.
    assert_eq!(run(&h, &srv.base, C, &uri_c).status, 200);
    assert_eq!(counter(&h, &srv.base, "foley_tasks_refused_total", &["key=\"key-1\"", "key_rate_limit"]), 2.0);
}

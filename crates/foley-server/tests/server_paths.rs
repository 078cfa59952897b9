//! Server paths that had no test of their own (issue 33): retention on the default store (SQLite `expire`) and the
//! sweeper of a running server, the webhook that gives up after its last attempt (and stays given up across a
//! restart), the upload route's 413 size cap and 409 second upload, and each key's own Kling task list. The server paths run on SQLite and on a
//! throwaway PostgreSQL (tests/common/pg.rs); in-process servers with the tone engine (tests/common).

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::engine::ToneEngine;
use common::media::video;
use common::{start, KEY};
use foley_server::files::{FileStore, LocalFiles};
use foley_server::store::{PgStore, SqliteStore, TaskStore};
use foley_server::types::{now_ms, Api, FileRow, NewTask, TaskStatus};
use serde_json::{json, Value};

/// A blocking HTTP client (reqwest on its own runtime).
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Http { rt, client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap() }
    }

    /// `method url` with the test key and an optional JSON body: (status, body as text, body as JSON or Null).
    fn call(&self, method: &str, url: &str, body: Option<Value>) -> (u16, String, Value) {
        self.call_as(KEY, method, url, body)
    }

    /// [`Http::call`] with `key`.
    fn call_as(&self, key: &str, method: &str, url: &str, body: Option<Value>) -> (u16, String, Value) {
        let mut req = self.client.request(method.parse().unwrap(), url).bearer_auth(key);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(serde_json::to_vec(&b).unwrap());
        }
        self.rt.block_on(async {
            let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            (status, text, json)
        })
    }

    /// `PUT url` (a signed upload URL: no key) with `bytes`: (status, body).
    fn put(&self, url: &str, bytes: Vec<u8>) -> (u16, String) {
        self.rt.block_on(async {
            let resp = self.client.put(url).body(bytes).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap_or_default())
        })
    }

    /// `GET /files/{id}` with the key: (status, bytes).
    fn file(&self, base: &str, id: &str) -> (u16, Vec<u8>) {
        self.rt.block_on(async {
            let resp = self.client.get(format!("{base}/files/{id}")).bearer_auth(KEY).send().await.unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap_or_default().to_vec())
        })
    }
}

/// Announces one file of `size` bytes: the answer, and on 200 its (id, upload URL).
fn announce(h: &Http, base: &str, size: usize) -> (u16, String, Option<(String, String)>) {
    announce_as(h, base, KEY, size)
}

fn announce_as(h: &Http, base: &str, key: &str, size: usize) -> (u16, String, Option<(String, String)>) {
    let body = json!({"files": [{"filename": "clip.mp4", "content_type": "video/mp4", "size": size}]});
    let (status, text, v) = h.call_as(key, "POST", &format!("{base}/files"), Some(body));
    let f = &v["data"][0];
    let made = f["id"].as_str().map(|id| (id.to_string(), f["upload_url"].as_str().unwrap().to_string()));
    (status, text, made)
}

/// Uploads `clip`; returns the file's (id, uri).
fn upload(h: &Http, base: &str, clip: &Path) -> (String, String) {
    upload_as(h, base, KEY, clip)
}

fn upload_as(h: &Http, base: &str, key: &str, clip: &Path) -> (String, String) {
    let bytes = std::fs::read(clip).unwrap();
    let (status, text, made) = announce_as(h, base, key, bytes.len());
    assert_eq!(status, 200, "{text}");
    let (id, url) = made.unwrap();
    assert_eq!(h.put(&url, bytes).0, 200);
    let uri = format!("{base}/files/{id}");
    (id, uri)
}

fn submit(h: &Http, base: &str, input: Value, webhook: Option<&str>) -> String {
    let mut body = json!({"app": "klingai/video-to-audio", "input": input});
    if let Some(w) = webhook {
        body["webhook"] = json!(w);
    }
    let (status, text, v) = h.call("POST", &format!("{base}/apps/run"), Some(body));
    assert_eq!(status, 200, "{text}");
    v["data"]["id"].as_str().unwrap().to_string()
}

/// Polls the task until `done` holds of it (bounded); returns it.
fn wait_for(h: &Http, base: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text, v) = h.call("GET", &format!("{base}/tasks/{id}"), None);
        assert_eq!(status, 200, "{text}");
        if done(&v["data"]) {
            return v["data"].clone();
        }
        assert!(Instant::now() < deadline, "task {id} never {what}: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(t: &Value) -> i64 {
    t["status"].as_i64().unwrap_or(-1)
}

/// The file id in a file URL of this server.
fn file_id(uri: &str) -> String {
    uri.split("/files/").nth(1).unwrap().split(['/', '?']).next().unwrap().to_string()
}

// --- Retention -----------------------------------------------------------------------------------------------

fn new_task(input_file: &str) -> NewTask {
    NewTask {
        id: uuid::Uuid::new_v4().to_string(),
        api: Api::Infsh,
        app: "klingai/video-to-audio".into(),
        input: json!({"video": "x"}),
        request: foley_pipeline::Request::default(),
        input_file_id: Some(input_file.into()),
        webhook: None,
        external_id: None,
        base_url: "http://127.0.0.1".into(),
        created_at: now_ms(),
        owner: None,
    }
}

/// The default store's `expire`: old files no task needs go (bytes, then records): a finished task's input and
/// outputs, an unused upload, an upload announced but never sent; a queued or running task's input stays, and so
/// do files newer than the cutoff and the files of a task that finished after it. `limit` bounds one call.
#[tokio::test]
async fn sqlite_expire_removes_only_what_no_task_needs() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("foley.db")).await.unwrap();
    let files = LocalFiles::new(dir.path()).unwrap();
    let file = |id: &str, task: Option<&str>, uploaded: bool, created_at: i64| FileRow {
        id: id.into(),
        filename: "f".into(),
        content_type: "video/mp4".into(),
        size: 1,
        uploaded,
        task_id: task.map(String::from),
        role: if task.is_some() { "output" } else { "upload" }.into(),
        created_at,
        owner: None,
    };
    // put_path takes the file it is given: one source each.
    let src = |id: &str| {
        let p = dir.path().join(format!("src-{id}"));
        std::fs::write(&p, b"x").unwrap();
        p
    };
    // Tasks in claim order: done (finished), running, queued.
    let (done, running, queued) = (new_task("in-done"), new_task("in-running"), new_task("in-queued"));
    for t in [&done, &running, &queued] {
        assert!(s.admit(t, 10).await.unwrap());
    }
    assert_eq!(s.claim_next().await.unwrap().unwrap().id, done.id);
    assert!(s.finish(&done.id, TaskStatus::Completed, None, None, "completed").await.unwrap());
    assert_eq!(s.claim_next().await.unwrap().unwrap().id, running.id);
    let old = now_ms() - 10_000;
    let stored = [
        ("in-done", None),
        ("out-done", Some(done.id.as_str())),
        ("in-running", None),
        ("in-queued", None),
        ("unused", None),
    ];
    for (id, task) in stored {
        files.put_path(id, &src(id)).await.unwrap();
        s.insert_file(&file(id, task, true, old)).await.unwrap();
    }
    s.insert_file(&file("never-put", None, false, old)).await.unwrap();
    files.put_path("young", &src("young")).await.unwrap();
    s.insert_file(&file("young", None, true, now_ms() + 60_000)).await.unwrap();
    let gone = |id: &'static str| {
        let (files, s) = (&files, &s);
        async move { !files.exists(id).await.unwrap() && s.get_file(id).await.unwrap().is_none() }
    };
    let kept = |id: &'static str| {
        let (files, s) = (&files, &s);
        async move { files.exists(id).await.unwrap() && s.get_file(id).await.unwrap().is_some() }
    };

    // A cutoff before the task finished: its files are kept (it finished after the cutoff); only what no task
    // names goes, at most `limit` a call, oldest first.
    let before_finish = now_ms() - 5_000;
    assert_eq!(s.expire(before_finish, 1, &files).await.unwrap(), 1);
    assert_eq!(s.expire(before_finish, 100, &files).await.unwrap(), 1);
    assert_eq!(s.expire(before_finish, 100, &files).await.unwrap(), 0);
    for id in ["unused", "never-put"] {
        assert!(s.get_file(id).await.unwrap().is_none(), "{id} removed");
    }
    assert!(gone("unused").await);
    for id in ["in-done", "out-done", "in-running", "in-queued", "young"] {
        assert!(kept(id).await, "{id} kept while its task finished after the cutoff");
    }
    // A cutoff after it finished: its input and outputs go; the live tasks' inputs and the young file stay.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(s.expire(now_ms(), 100, &files).await.unwrap(), 2);
    for id in ["in-done", "out-done"] {
        assert!(gone(id).await, "{id} removed");
    }
    for id in ["in-running", "in-queued", "young"] {
        assert!(kept(id).await, "{id} kept");
    }
    // Once the live ones end, theirs go too.
    assert!(s.cancel_queued(&queued.id).await.unwrap());
    assert!(s.finish(&running.id, TaskStatus::Failed, None, Some("x"), "failed").await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(s.expire(now_ms(), 100, &files).await.unwrap(), 2);
    for id in ["in-running", "in-queued"] {
        assert!(gone(id).await, "{id} removed");
    }
    assert!(kept("young").await);
}

/// The sweeper of a running server (retention of 2 s, a sweep a second): a finished task's input and outputs are
/// removed, bytes and records, while the input of a task that is still running (older than the retention) stays.
fn sweeper(database: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(1, 10), |c| {
        c.retention = Some(Duration::from_secs(2));
        c.database = database;
    });
    let h = Http::new();
    let (in_done, uri_done) = upload(&h, &srv.base, &video("h264_mp4"));
    let done = submit(&h, &srv.base, json!({"video": uri_done}), None);
    let t = wait_for(&h, &srv.base, &done, "completed", |t| status(t) == 10);
    let outputs: Vec<String> =
        ["video", "audio", "sfx_audio"].iter().map(|k| file_id(t["output"][*k]["uri"].as_str().unwrap())).collect();
    let (in_live, uri_live) = upload(&h, &srv.base, &video("h264_mp4"));
    let live = submit(&h, &srv.base, json!({"video": uri_live, "sound_effect_prompt": "__hold__"}), None);
    wait_for(&h, &srv.base, &live, "running", |t| status(t) == 7);
    let on_disk = |id: &str| dir.path().join("files").join(id).exists();
    for id in outputs.iter().chain([&in_done, &in_live]) {
        assert_eq!(h.file(&srv.base, id).0, 200, "{id} there at first");
        assert!(on_disk(id), "{id} on disk at first");
    }
    let t0 = Instant::now();
    let removed = |id: &String| h.file(&srv.base, id).0 == 404 && !on_disk(id);
    while !outputs.iter().chain([&in_done]).all(removed) {
        assert!(t0.elapsed() < Duration::from_secs(20), "the sweeper did not remove the finished task's files");
        std::thread::sleep(Duration::from_millis(100));
    }
    let swept_s = t0.elapsed().as_secs_f64();
    // Two more sweeps: the running task's input, well past the retention by now, is still there.
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(h.file(&srv.base, &in_live).0, 200, "a running task's input was removed");
    assert!(on_disk(&in_live));
    // The finished task itself stays (retention is about files); its outputs are gone.
    assert_eq!(status(&wait_for(&h, &srv.base, &done, "kept", |_| true)), 10);
    assert_eq!(h.call("POST", &format!("{}/tasks/{live}/cancel", srv.base), None).0, 204);
    wait_for(&h, &srv.base, &live, "cancelled", |t| status(t) == 12);
    eprintln!("sweeper: the finished task's files removed {swept_s:.1}s after it ended; the running one's input kept");
}

#[test]
fn sweeper_removes_a_finished_tasks_files_and_keeps_a_running_ones_input_sqlite() {
    sweeper(None);
}

#[test]
fn sweeper_removes_a_finished_tasks_files_and_keeps_a_running_ones_input_postgres() {
    let pg = pg::Pg::start();
    sweeper(Some(pg.url()));
}

// --- Webhook give-up -----------------------------------------------------------------------------------------

/// A loopback webhook receiver that answers 500 to everything; records (task id, X-Foley-Attempt) of each call.
fn failing_hook() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut r = BufReader::new(conn);
            let (mut len, mut task, mut attempt) = (0usize, String::new(), String::new());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                let value = || line.split_once(':').map(|(_, v)| v.trim().to_string()).unwrap_or_default();
                if lower.starts_with("content-length:") {
                    len = value().parse().unwrap_or(0);
                } else if lower.starts_with("x-foley-task-id:") {
                    task = value();
                } else if lower.starts_with("x-foley-attempt:") {
                    attempt = value();
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            c.lock().unwrap().push((task, attempt));
            let _ = write!(r.get_mut(), "HTTP/1.1 500 No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, calls)
}

/// A webhook whose receiver always fails is tried `webhook_attempts` times (attempts 1, 2, 3), then given up:
/// no fourth attempt, and the next start does not send it again (the delivery is recorded as over).
fn webhook_gives_up(database: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (hook, calls) = failing_hook();
    let cfg = |c: &mut foley_server::Config| {
        c.webhook_attempts = 3;
        c.webhook_backoff = Duration::from_millis(100);
        c.database = database.clone();
    };
    let srv = start(dir.path(), ToneEngine::new(1, 10), cfg);
    let h = Http::new();
    let (_, uri) = upload(&h, &srv.base, &video("h264_mp4"));
    let id = submit(&h, &srv.base, json!({"video": uri}), Some(&hook));
    wait_for(&h, &srv.base, &id, "completed", |t| status(t) == 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "3 attempts expected: {:?}", calls.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A fourth would come 400 ms after the third (the backoff doubles: 100, 200, 400 ms).
    std::thread::sleep(Duration::from_millis(1500));
    let expected: Vec<(String, String)> = ["1", "2", "3"].iter().map(|a| (id.clone(), a.to_string())).collect();
    assert_eq!(*calls.lock().unwrap(), expected, "three attempts, then none");
    drop(srv);
    // The give-up is recorded (PostgreSQL's delivery hold would hide a pending flag from the restart below).
    let pending = h.rt.block_on(async {
        let store: Box<dyn TaskStore> = match &database {
            Some(url) => Box::new(PgStore::connect(url, "check", Duration::from_secs(30)).await.unwrap()),
            None => Box::new(SqliteStore::open(&dir.path().join("foley.db")).await.unwrap()),
        };
        store.get(&id).await.unwrap().unwrap().webhook_pending
    });
    assert!(!pending, "a given-up webhook is still marked to deliver");
    // The next start resumes deliveries still pending; this one is over.
    let srv = start(dir.path(), ToneEngine::new(1, 10), cfg);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(*calls.lock().unwrap(), expected, "a given-up webhook was sent again after a restart");
    drop(srv);
}

#[test]
fn a_webhook_gives_up_after_its_last_attempt_sqlite() {
    webhook_gives_up(None);
}

#[test]
fn a_webhook_gives_up_after_its_last_attempt_postgres() {
    let pg = pg::Pg::start();
    webhook_gives_up(Some(pg.url()));
}

// --- Uploads: 413 and 409 ------------------------------------------------------------------------------------

/// The upload cap of [`uploads`]: big enough that two PUTs at once overlap.
const CAP: usize = 4_000_000;

/// With a 4 MB cap: announcing a bigger file is a 413; sending more bytes than the cap to an announced file
/// is a 413 that stores nothing (the file stays unsent, no scratch file is left, a right-sized PUT then works); a
/// second PUT to a sent file is a 409 that leaves the first bytes as they were; of two PUTs at once, one is stored
/// whole (200) and the other refused (409).
fn uploads(database: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(1, 10), |c| {
        c.limits.max_file_size = CAP as u64;
        c.database = database;
    });
    let h = Http::new();
    let (status, text, made) = announce(&h, &srv.base, CAP + 1);
    assert_eq!(status, 413, "{text}");
    assert!(made.is_none() && text.contains("the limit is"), "{text}");
    let (status, text, made) = announce(&h, &srv.base, CAP);
    assert_eq!(status, 200, "{text}");
    let (id, url) = made.unwrap();

    let (status, text) = h.put(&url, vec![7u8; CAP + 1]);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("over the") && text.contains("limit"), "{text}");
    assert_eq!(h.file(&srv.base, &id).0, 404, "an upload over the cap is not stored");
    assert!(!dir.path().join("files").join(&id).exists(), "no bytes kept");
    let scratch: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!scratch.iter().any(|n| n.to_string_lossy().starts_with(&format!("up-{id}"))), "scratch files left: {scratch:?}");

    let first: Vec<u8> = (0..CAP as u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(h.put(&url, first.clone()), (200, String::new()));
    assert_eq!(h.file(&srv.base, &id), (200, first.clone()));

    let (status, text) = h.put(&url, vec![1u8; 100]);
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("already been uploaded"), "{text}");
    assert_eq!(h.file(&srv.base, &id), (200, first), "the first upload's bytes are untouched");

    // Two PUTs of one file at once: one is stored whole and answered 200, the other is refused and stores nothing.
    for round in 0..8 {
        let (status, text, made) = announce(&h, &srv.base, CAP);
        assert_eq!(status, 200, "{text}");
        let (id, url) = made.unwrap();
        let (a, b) = (vec![b'a'; CAP], vec![b'b'; CAP]);
        let (ra, rb) = h.rt.block_on(async {
            let put = |bytes: Vec<u8>| {
                let req = h.client.put(&url).body(bytes);
                async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
            };
            futures_util::future::join(put(a.clone()), put(b.clone())).await
        });
        let stored = h.file(&srv.base, &id);
        // The refused one may also see its connection closed before its body is sent (0): the 409 came first.
        let expected = match (ra, rb) {
            (200, 409 | 0) => (200, a),
            (409 | 0, 200) => (200, b),
            other => panic!("round {round}: two PUTs at once answered {other:?}, not 200 and 409"),
        };
        assert!(stored == expected, "round {round}: the stored bytes are not the accepted upload's ({ra}, {rb})");
    }
}

#[test]
fn uploads_over_the_cap_are_413_and_a_second_upload_is_409_sqlite() {
    uploads(None);
}

#[test]
fn uploads_over_the_cap_are_413_and_a_second_upload_is_409_postgres() {
    let pg = pg::Pg::start();
    uploads(Some(pg.url()));
}

// --- The Kling list is each key's -----------------------------------------------------------------------------

/// Two keys create Kling tasks (and A an inference.sh one): each key's `GET /v1/audio/video-to-audio` lists its own
/// Kling tasks, all of them, newest first, and nothing else. (tenancy.rs checks that other keys do not see A's
/// task; this checks that the owner does, so that a list emptied for everyone fails too.)
fn kling_lists(database: Option<String>) {
    const B: &str = "inf_kling_list_b_0123456789";
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), ToneEngine::new(1, 10), |c| {
        c.api_keys.push(B.into());
        c.database = database;
    });
    let h = Http::new();
    let url = format!("{}/v1/audio/video-to-audio", srv.base);
    let create = |key: &str, video_id: &str| {
        let (status, text, v) = h.call_as(key, "POST", &url, Some(json!({"video_id": video_id, "sound_effect_prompt": "steps"})));
        assert_eq!(status, 200, "{text}");
        v["data"]["task_id"].as_str().unwrap().to_string()
    };
    let (a_video, a_uri) = upload_as(&h, &srv.base, KEY, &video("h264_mp4"));
    let (b_video, _) = upload_as(&h, &srv.base, B, &video("h264_mp4"));
    let a1 = create(KEY, &a_video);
    let b1 = create(B, &b_video);
    let a2 = create(KEY, &a_video);
    let infsh = submit(&h, &srv.base, json!({"video": a_uri}), None);
    let listed = |key: &str, query: &str| {
        let (status, text, v) = h.call_as(key, "GET", &format!("{url}{query}"), None);
        assert_eq!(status, 200, "{text}");
        v["data"].as_array().unwrap().iter().map(|t| t["task_id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(listed(KEY, "?pageSize=100"), vec![a2.clone(), a1.clone()], "A's Kling tasks, newest first, not {infsh}");
    assert_eq!(listed(B, "?pageSize=100"), vec![b1.clone()], "B's Kling task only");
    assert_eq!(listed(KEY, "?pageSize=1&pageNum=2"), vec![a1.clone()], "A's second page");
    // A's tasks run to their end before the server stops (B's one is drained by the stop).
    for id in [&a1, &a2, &infsh] {
        wait_for(&h, &srv.base, id, "ended", |t| status(t) >= 10);
    }
}

#[test]
fn each_key_lists_its_own_kling_tasks_sqlite() {
    kling_lists(None);
}

#[test]
fn each_key_lists_its_own_kling_tasks_postgres() {
    let pg = pg::Pg::start();
    kling_lists(Some(pg.url()));
}

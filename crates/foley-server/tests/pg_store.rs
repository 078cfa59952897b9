//! The PostgreSQL task store against a real, throwaway PostgreSQL (tests/common/pg.rs): two stores stand for two
//! nodes. Exclusive claims under concurrency, the cluster-wide queue bound, leases (renewal, lapse, re-queue,
//! max attempts, only the lease holder ends a task), unique Kling external ids, exclusive webhook claims, and
//! notifications that reach the other node and come back after a PostgreSQL restart.

#[path = "common/pg.rs"]
mod pg;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use foley_server::store::{PgStore, Scope, TaskStore};
use foley_server::types::{now_ms, Api, NewTask, TaskStatus};

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<foley_server::store::Change>) -> foley_server::store::Change {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a change within 10 s").unwrap()
}

fn task(webhook: Option<&str>, external: Option<&str>) -> NewTask {
    NewTask {
        id: uuid::Uuid::new_v4().to_string(),
        api: Api::Infsh,
        app: "klingai/video-to-audio".into(),
        input: serde_json::json!({"video": "x"}),
        request: foley_pipeline::Request::default(),
        input_file_id: None,
        webhook: webhook.map(String::from),
        external_id: external.map(String::from),
        base_url: "http://127.0.0.1".into(),
        created_at: now_ms(),
        owner: None,
    }
}

async fn node(pg: &pg::Pg, name: &str, lease_ms: u64) -> Arc<PgStore> {
    Arc::new(PgStore::connect(&pg.url(), name, Duration::from_millis(lease_ms)).await.expect("connect"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_are_exclusive_and_the_queue_bound_is_cluster_wide() {
    let pg = pg::Pg::start();
    let (a, b) = (node(&pg, "a", 30_000).await, node(&pg, "b", 30_000).await);
    // 40 admissions racing over two nodes against a bound of 25: exactly 25 get in.
    let admits = (0..40).map(|i| {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { s.admit(&task(None, None), 25).await.unwrap() })
    });
    let admitted = futures_util::future::join_all(admits).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(admitted, 25);
    assert_eq!(a.depth().await.unwrap(), (25, 0));
    // 8 claimers on two nodes until the queue is empty: every task claimed once.
    let claimers = (0..8).map(|i| {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(t) = s.claim_next().await.unwrap() {
                assert_eq!(t.status, TaskStatus::Running);
                assert_eq!(t.attempts, 1);
                got.push(t.id);
            }
            got
        })
    });
    let all: Vec<String> = futures_util::future::join_all(claimers).await.into_iter().flat_map(|r| r.unwrap()).collect();
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (25, 25));
    assert_eq!(b.depth().await.unwrap(), (0, 25));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_is_requeued_then_failed_after_max_attempts() {
    let pg = pg::Pg::start();
    let (a, b) = (node(&pg, "a", 600).await, node(&pg, "b", 600).await);
    let t = task(Some("http://127.0.0.1:9/hook"), None);
    assert!(a.admit(&t, 10).await.unwrap());
    assert_eq!(a.claim_next().await.unwrap().unwrap().id, t.id);
    // Renewed: the lease holds past its length.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(a.renew(&[t.id.clone()]).await.unwrap().is_empty());
    }
    assert_eq!(b.reap_lapsed(2).await.unwrap().requeued, 0);
    // Not renewed: any node re-queues it, counting the attempt.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = b.reap_lapsed(2).await.unwrap();
    assert_eq!((r.requeued, r.failed), (1, 0));
    let row = a.get(&t.id).await.unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (TaskStatus::Queued, 1));
    assert!(row.logs.contains("re-queued"), "{}", row.logs);
    // b runs it now; a (the old holder) can neither renew nor end it.
    assert_eq!(b.claim_next().await.unwrap().unwrap().attempts, 2);
    assert!(!a.finish(&t.id, TaskStatus::Completed, None, None, "completed").await.unwrap());
    a.renew(&[t.id.clone()]).await.unwrap();
    // Second lapse: no attempts left, so it fails, with its webhook pending.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = a.reap_lapsed(2).await.unwrap();
    assert_eq!((r.requeued, r.failed), (0, 1));
    let row = a.get(&t.id).await.unwrap().unwrap();
    assert_eq!(row.status, TaskStatus::Failed);
    assert!(row.webhook_pending);
    assert!(row.error.unwrap().contains("lease lapsed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_reach_the_holder_and_external_ids_are_unique() {
    let pg = pg::Pg::start();
    let (a, b) = (node(&pg, "a", 30_000).await, node(&pg, "b", 30_000).await);
    let t = task(None, Some("ext-1"));
    assert!(a.admit(&t, 10).await.unwrap());
    let dup = b.admit(&task(None, Some("ext-1")), 10).await.unwrap_err();
    assert!(dup.is_duplicate(), "{dup}");
    assert_eq!(b.get_by_external("ext-1").await.unwrap().unwrap().id, t.id);
    b.claim_next().await.unwrap().unwrap();
    // Cancelled through a: b's next renewal reports it.
    assert!(a.mark_cancelling(&t.id).await.unwrap());
    assert_eq!(b.renew(&[t.id.clone()]).await.unwrap(), vec![t.id.clone()]);
    assert!(b.finish(&t.id, TaskStatus::Cancelled, None, Some("The task was cancelled."), "cancelled").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_holds_each_webhook_until_its_hold_ends() {
    let pg = pg::Pg::start();
    let (a, b) = (node(&pg, "a", 30_000).await, node(&pg, "b", 30_000).await);
    let t = task(Some("http://127.0.0.1:9/hook"), None);
    assert!(a.admit(&t, 10).await.unwrap());
    a.claim_next().await.unwrap().unwrap();
    assert!(a.finish(&t.id, TaskStatus::Completed, None, None, "completed").await.unwrap());
    assert!(a.claim_webhook(&t.id, 700).await.unwrap().is_some());
    assert!(b.claim_webhook(&t.id, 700).await.unwrap().is_none());
    assert!(b.claim_due_webhooks(700).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(900)).await;
    // a stopped without recording the delivery: b takes it over, once.
    assert_eq!(b.claim_due_webhooks(700).await.unwrap().len(), 1);
    assert!(a.claim_due_webhooks(700).await.unwrap().is_empty());
    b.clear_webhook_pending(&t.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(a.claim_due_webhooks(700).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_other_nodes_and_an_outage_is_unavailable_not_a_hang() {
    let pg = pg::Pg::start();
    let (a, b) = (node(&pg, "a", 30_000).await, node(&pg, "b", 30_000).await);
    let mut rx = b.listen().expect("a shared store listens");
    assert_eq!(next(&mut rx).await.task_id, "", "connected");
    let t = task(None, None);
    assert!(a.admit(&t, 10).await.unwrap());
    let c = next(&mut rx).await;
    assert_eq!((c.task_id.as_str(), c.status), (t.id.as_str(), Some(TaskStatus::Queued)));

    pg.stop();
    let t0 = std::time::Instant::now();
    let e = a.get(&t.id).await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(8), "answered in {:?}", t0.elapsed());
    let api: foley_server::ApiError = e.into();
    assert_eq!(api.status.as_u16(), 503);

    pg.start_again();
    // b's listener reconnects by itself (announced by an empty id), and a's pool too.
    let c = next(&mut rx).await;
    assert_eq!(c.task_id, "", "reconnected: {c:?}");
    let t2 = task(None, None);
    assert!(a.admit(&t2, 10).await.unwrap());
    loop {
        let c = next(&mut rx).await;
        if c.task_id == t2.id {
            break;
        }
    }
    assert_eq!(a.depth().await.unwrap(), (2, 0), "nothing accepted was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_what_no_task_needs() {
    use foley_server::files::{FileStore, LocalFiles};
    use foley_server::types::FileRow;
    let pg = pg::Pg::start();
    let a = node(&pg, "a", 30_000).await;
    let dir = tempfile::tempdir().unwrap();
    let files = LocalFiles::new(dir.path()).unwrap();
    let file = |id: &str, task: Option<&str>, uploaded: bool| FileRow {
        id: id.into(),
        filename: "f".into(),
        content_type: "video/mp4".into(),
        size: 1,
        uploaded,
        task_id: task.map(String::from),
        role: if task.is_some() { "output" } else { "upload" }.into(),
        created_at: now_ms(),
        owner: None,
    };
    let put = |id: &str| {
        let p = dir.path().join(format!("src-{id}"));
        std::fs::write(&p, b"x").unwrap();
        p
    };
    // A finished task with an input and an output; a queued task with an input; an upload never sent.
    let mut done = task(None, None);
    done.input_file_id = Some("in-done".into());
    let mut live = task(None, None);
    live.input_file_id = Some("in-live".into());
    for t in [&done, &live] {
        assert!(a.admit(t, 10).await.unwrap());
    }
    a.claim_next().await.unwrap().unwrap();
    assert!(a.finish(&done.id, TaskStatus::Completed, None, None, "completed").await.unwrap());
    for (id, task_id) in [("in-done", None), ("out-done", Some(done.id.as_str())), ("in-live", None)] {
        files.put_path(id, &put(id)).await.unwrap();
        a.insert_file(&file(id, task_id, true)).await.unwrap();
    }
    a.insert_file(&file("never-put", None, false)).await.unwrap();
    // Nothing is old enough yet.
    assert_eq!(a.expire(now_ms() - 60_000, 100, &files).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Everything is "old": all but the queued task's input go, bytes and records.
    assert_eq!(a.expire(now_ms(), 100, &files).await.unwrap(), 3);
    for id in ["in-done", "out-done", "never-put"] {
        assert!(!files.exists(id).await.unwrap() && a.get_file(id).await.unwrap().is_none(), "{id} removed");
    }
    assert!(files.exists("in-live").await.unwrap() && a.get_file("in-live").await.unwrap().is_some(), "in-live kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_lists_its_own_tasks_on_any_node() {
    let pg = pg::Pg::start();
    let (a, b) = (node(&pg, "a", 30_000).await, node(&pg, "b", 30_000).await);
    let mut ids = Vec::new();
    for owner in [Some("aaaa"), Some("bbbb"), Some("aaaa"), None] {
        let t = NewTask { owner: owner.map(String::from), ..task(None, None) };
        assert!(a.admit(&t, 10).await.unwrap());
        ids.push(t.id);
    }
    let listed = |rows: Vec<foley_server::types::TaskRow>| rows.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let (rows, total) = b.list_scoped(None, Scope::Owner(Some("aaaa")), 0, 10).await.unwrap();
    assert_eq!((listed(rows), total), (vec![ids[2].clone(), ids[0].clone()], 2), "newest first, from another node");
    let (rows, total) = b.list_scoped(None, Scope::Owner(Some("aaaa")), 1, 1).await.unwrap();
    assert_eq!((listed(rows), total), (vec![ids[0].clone()], 2));
    assert_eq!(listed(b.list_scoped(None, Scope::Owner(None), 0, 10).await.unwrap().0), vec![ids[3].clone()], "no key: owner-less tasks");
    assert_eq!(b.list_scoped(None, Scope::Owner(Some("cccc")), 0, 10).await.unwrap().1, 0);
}

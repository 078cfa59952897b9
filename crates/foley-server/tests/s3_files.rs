//! The S3 file store against a real S3-compatible server (moto, started here on loopback): put, ranged reads,
//! exists, delete, the bounded cache and re-download, a multipart upload, and the clear, bounded errors of a
//! bucket that is unreachable, silent or missing.

#[path = "common/s3.rs"]
#[allow(dead_code)]
mod s3;

use std::time::{Duration, Instant};

use foley_server::files::s3::{Timeouts, PART_SIZE};
use foley_server::files::{FileStore, S3Files};
use foley_server::ServerError;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};
use s3::{Moto, ACCESS_KEY, REGION, SECRET_KEY};

fn builder(endpoint: &str) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_region(REGION)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
}

/// The bucket as a plain object_store client sees it (to check what foley really wrote).
fn raw(endpoint: &str, bucket: &str) -> impl ObjectStore {
    builder(endpoint).with_bucket_name(bucket).with_allow_http(true).build().unwrap()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn bytes(s: &S3Files, id: &str, range: Option<std::ops::Range<u64>>) -> Result<Vec<u8>, ServerError> {
    let chunks: Vec<bytes::Bytes> = s.read(id, range).await?.try_collect().await.map_err(ServerError::from)?;
    Ok(chunks.concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_read_ranges_exists_delete_and_the_bounded_cache() {
    let moto = Moto::start();
    moto.create_bucket("foley-unit");
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Files::with_builder(builder(&moto.endpoint), dir.path(), "foley-unit", "pre/fix", 4000, Timeouts::default())
        .await
        .unwrap();
    let a = data(3000);
    let src = s3.scratch_dir().join("a");
    std::fs::write(&src, &a).unwrap();
    assert_eq!(s3.put_path("a-1", &src).await.unwrap(), 3000);
    // The object is in the bucket under the prefix, with its bytes.
    let store = raw(&moto.endpoint, "foley-unit");
    let obj = store.get(&"pre/fix/a-1".into()).await.unwrap().bytes().await.unwrap();
    assert_eq!(obj.as_ref(), a.as_slice());
    assert!(s3.exists("a-1").await.unwrap());
    assert!(!s3.exists("b-1").await.unwrap());
    assert_eq!(bytes(&s3, "a-1", None).await.unwrap(), a);
    assert_eq!(bytes(&s3, "a-1", Some(100..200)).await.unwrap(), a[100..200]);
    assert_eq!(bytes(&s3, "a-1", Some(2990..3000)).await.unwrap(), a[2990..]);

    // A second file pushes the first out of the 4000-byte cache; reading it again downloads it.
    let b = data(2500).into_iter().rev().collect::<Vec<u8>>();
    let src = s3.scratch_dir().join("b");
    std::fs::write(&src, &b).unwrap();
    s3.put_path("b-1", &src).await.unwrap();
    assert_eq!(s3.cache_usage().await, (1, 2500), "the least recently used file left the cache");
    let p = s3.local_path("a-1").await.unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), a, "downloaded again from the bucket");
    assert_eq!(s3.cache_usage().await, (1, 3000));
    let copy = dir.path().join("copy");
    s3.copy_to("b-1", &copy).await.unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), b, "a copy straight from the bucket");

    s3.delete("a-1").await.unwrap();
    assert!(!s3.exists("a-1").await.unwrap());
    assert!(store.head(&"pre/fix/a-1".into()).await.is_err(), "deleted from the bucket");
    s3.delete("a-1").await.unwrap();
    let e = bytes(&s3, "a-1", None).await.unwrap_err();
    assert!(matches!(e, ServerError::StoreRefused(_)), "{e}");
    assert!(s3.local_path("../etc").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_goes_up_in_parts() {
    let moto = Moto::start();
    moto.create_bucket("foley-multi");
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Files::with_builder(builder(&moto.endpoint), dir.path(), "foley-multi", "", 1 << 30, Timeouts::default())
        .await
        .unwrap();
    let n = 2 * PART_SIZE + 12_345;
    let big = data(n);
    let src = s3.scratch_dir().join("big");
    std::fs::write(&src, &big).unwrap();
    let t0 = Instant::now();
    assert_eq!(s3.put_path("big-1", &src).await.unwrap(), n as u64);
    eprintln!("multipart upload of {:.1} MB: {:.2} s", n as f64 / 1e6, t0.elapsed().as_secs_f64());
    let meta = raw(&moto.endpoint, "foley-multi").head(&"big-1".into()).await.unwrap();
    assert_eq!(meta.size, n as u64);
    let etag = meta.e_tag.unwrap_or_default();
    assert!(etag.trim_matches('"').ends_with("-3"), "a 3-part multipart upload's ETag, got {etag}");
    let p = PART_SIZE as u64;
    assert_eq!(bytes(&s3, "big-1", Some(p - 10..p + 10)).await.unwrap(), big[PART_SIZE - 10..PART_SIZE + 10]);
    assert_eq!(bytes(&s3, "big-1", None).await.unwrap(), big);
}

fn quick() -> Timeouts {
    Timeouts { connect: Duration::from_secs(1), request: Duration::from_secs(4), idle: Duration::from_secs(4), retries: 1 }
}

fn unavailable<T: std::fmt::Debug>(r: Result<T, ServerError>, t0: Instant, what: &str) {
    let e = r.unwrap_err();
    assert!(matches!(e, ServerError::StoreUnavailable(_)), "{what}: {e}");
    assert!(t0.elapsed() < Duration::from_secs(15), "{what}: answered after {:?}", t0.elapsed());
    let api: foley_server::ApiError = e.into();
    assert_eq!(api.status.as_u16(), 503, "{what}");
    assert!(api.detail.starts_with("The file store is unavailable (") && api.retry_after.is_some(), "{}", api.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bucket_is_a_prompt_503() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", s3::free_port());
    let t0 = Instant::now();
    // Unreachable at start is only a warning: the node starts and answers 503 until the bucket is back.
    let s3 = S3Files::with_builder(builder(&endpoint), dir.path(), "foley-down", "", 1 << 20, quick()).await.unwrap();
    let src = s3.scratch_dir().join("x");
    std::fs::write(&src, b"bytes").unwrap();
    let t0b = Instant::now();
    unavailable(s3.put_path("x-1", &src).await, t0b, "put");
    assert!(src.exists(), "a failed upload leaves the source to its owner");
    let t = Instant::now();
    unavailable(s3.read("x-1", None).await.map(|_| ()), t, "read");
    let t = Instant::now();
    unavailable(s3.exists("x-1").await, t, "exists");
    let t = Instant::now();
    unavailable(s3.local_path("x-1").await, t, "local_path");
    eprintln!("unreachable bucket: open + 4 failed calls in {:.2} s", t0.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_bucket_times_out_instead_of_hanging() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Files::with_builder(builder(&format!("http://127.0.0.1:{port}")), dir.path(), "foley-silent", "", 1 << 20, quick())
        .await
        .unwrap();
    let t = Instant::now();
    unavailable(s3.read("x-1", Some(0..10)).await.map(|_| ()), t, "read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_refused_at_start() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let r = S3Files::with_builder(builder(&moto.endpoint), dir.path(), "no-such-bucket", "p", 1 << 20, quick()).await;
    let e = r.err().expect("a missing bucket is a start-up error");
    assert!(matches!(e, ServerError::StoreRefused(_)) && e.to_string().contains("NoSuchBucket"), "{e}");
    eprintln!("missing bucket: {e}");
}

//! The real download code against a local HTTP server on 127.0.0.1 (nothing else is ever contacted): Hub files
//! through hf-hub with `HF_ENDPOINT` pointing at a server that speaks the Hub's `resolve` protocol (etag,
//! x-repo-commit, ranges), plain URL files into the same cache, checksums (sha256 and md5) verified, a
//! corrupted download detected and removed, and `HF_HUB_OFFLINE=1` working from a copied cache.
//! One test function: the environment variables are process-wide.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foley_pipeline::fetch::{self, NoProgress};
use foley_pipeline::ModelSpec;
use md5::Md5;
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn hex<D: Digest>(b: &[u8]) -> String {
    D::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Serves `files` (URL path → bytes) until the process ends; counts requests.
fn serve(files: HashMap<String, Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut range_start = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(r) = lower.strip_prefix("range: bytes=") {
                    range_start = r.trim().split('-').next().and_then(|s| s.parse::<usize>().ok());
                }
            }
            let resp = match files.get(&path) {
                None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                Some(body) => {
                    let hub = path.contains("/resolve/");
                    let mut head = String::new();
                    let part: &[u8] = match range_start {
                        Some(s) if hub => {
                            // the metadata probe asks for bytes=0-0
                            let end = if line.contains("bytes=0-0") { 0 } else { body.len().saturating_sub(1) };
                            let part = &body[s.min(body.len())..(end + 1).min(body.len()).max(s.min(body.len()))];
                            head.push_str("HTTP/1.1 206 Partial Content\r\n");
                            head.push_str(&format!("content-range: bytes {s}-{}/{}\r\n", s + part.len().max(1) - 1, body.len()));
                            part
                        }
                        _ => {
                            head.push_str("HTTP/1.1 200 OK\r\n");
                            body
                        }
                    };
                    if hub {
                        head.push_str(&format!("etag: \"{}\"\r\nx-repo-commit: {COMMIT}\r\n", hex::<Sha256>(body)));
                    }
                    head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", part.len()));
                    [head.into_bytes(), part.to_vec()].concat()
                }
            };
            let _ = stream.write_all(&resp);
        }
    });
    (addr, count)
}

fn spec(text: &str) -> ModelSpec {
    ModelSpec::parse(text, "test").unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let meta = std::fs::symlink_metadata(&src).unwrap();
        if meta.is_dir() {
            copy_dir(&src, &dst);
        } else {
            // like `cp -L`: a copied cache holds real files
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn downloads_verify_and_work_offline_from_a_copied_cache() {
    let blobs: Vec<Vec<u8>> = (0..5).map(|i| (0..10_000 + i * 777).map(|j| (j * 31 + i) as u8).collect()).collect();
    let mut files = HashMap::new();
    files.insert("/org/net/resolve/main/weights/net.pth".to_string(), blobs[0].clone());
    files.insert("/files/v0.1/vae.pth".to_string(), blobs[1].clone());
    files.insert("/org/voc/resolve/main/voc.pt".to_string(), blobs[2].clone());
    files.insert("/files/v0.1/sync.pth".to_string(), blobs[3].clone());
    files.insert("/org/clip/resolve/main/clip.bin".to_string(), blobs[4].clone());
    files.insert("/org/bad/resolve/main/bad.pth".to_string(), b"not what was published".to_vec());
    files.insert("/files/v0.1/bad.pth".to_string(), b"truncated or tampered".to_vec());
    let (addr, count) = serve(files);

    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HUB_CACHE", cache.path());
    std::env::set_var("HF_ENDPOINT", &addr);
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::remove_var("HF_HOME");

    let text = format!(
        r#"name = "loop"
mode = "16k"
[files.network]
repo = "org/net"
file = "weights/net.pth"
sha256 = "{}"
[files.vae]
url = "{addr}/files/v0.1/vae.pth"
md5 = "{}"
[files.vocoder]
repo = "org/voc"
file = "voc.pt"
[files.synchformer]
url = "{addr}/files/v0.1/sync.pth"
md5 = "{}"
[files.clip]
repo = "org/clip"
file = "clip.bin"
sha256 = "{}"
"#,
        hex::<Sha256>(&blobs[0]),
        hex::<Md5>(&blobs[1]),
        hex::<Md5>(&blobs[3]),
        hex::<Sha256>(&blobs[4]),
    );
    let good = spec(&text);
    assert!(fetch::resolve(&good).unwrap_err().to_string().contains("foley models download loop"));

    let fetched = fetch::download(&good, NoProgress).unwrap();
    assert_eq!(fetched.len(), 5);
    for (f, blob) in fetched.iter().zip(&blobs) {
        assert!(!f.cached);
        assert_eq!(&std::fs::read(&f.path).unwrap(), blob, "{}", f.role);
        assert!(f.path.starts_with(cache.path()), "{} in the cache", f.path.display());
    }
    assert_eq!(fetched.iter().map(|f| f.verified).collect::<Vec<_>>(), [true, true, false, true, true]);
    // hub files in the hub's layout
    assert!(cache.path().join(format!("models--org--net/snapshots/{COMMIT}/weights/net.pth")).exists());
    assert!(fetch::resolve(&good).is_ok());
    // a second download is served from the cache
    let before = count.load(Ordering::SeqCst);
    assert!(fetch::download(&good, NoProgress).unwrap().iter().all(|f| f.cached));
    assert_eq!(count.load(Ordering::SeqCst), before);

    // a corrupted hub download (bad sha256) and a corrupted URL download (bad md5) are detected and removed
    let bad_hub = text.replace("repo = \"org/net\"\nfile = \"weights/net.pth\"", "repo = \"org/bad\"\nfile = \"bad.pth\"");
    let e = fetch::download(&spec(&bad_hub), NoProgress).unwrap_err().to_string();
    assert!(e.contains("bad.pth: checksum mismatch"), "{e}");
    assert!(fetch::locate(&spec(&bad_hub).files["network"]).unwrap().is_none(), "corrupt file removed");
    let bad_url = text.replace(&format!("{addr}/files/v0.1/vae.pth"), &format!("{addr}/files/v0.1/bad.pth"));
    let e = fetch::download(&spec(&bad_url), NoProgress).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(fetch::locate(&spec(&bad_url).files["vae"]).unwrap().is_none());

    // offline: a copied cache works, nothing is fetched, missing files are reported
    let copy = tempfile::tempdir().unwrap();
    copy_dir(cache.path(), copy.path());
    std::env::set_var("HF_HUB_CACHE", copy.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let before = count.load(Ordering::SeqCst);
    let found = fetch::resolve(&good).unwrap();
    assert!(found.iter().all(|(_, p)| p.starts_with(copy.path())));
    assert!(fetch::download(&good, NoProgress).unwrap().iter().all(|f| f.cached));
    let e = fetch::download(&spec(&bad_hub), NoProgress).unwrap_err().to_string();
    assert!(e.contains("HF_HUB_OFFLINE"), "{e}");
    assert_eq!(count.load(Ordering::SeqCst), before, "no request while offline");
    std::env::remove_var("HF_HUB_OFFLINE");
}

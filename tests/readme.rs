//! The README's "Use it as a drop-in endpoint" section, run as written: its first block starts this build's
//! `foley serve --model tiny-test` (found on PATH), the others use the real `inferencesh` SDK, `curl` and `jq`
//! against it (tests/sdk/readme.py says what is substituted). The README cannot drift from the server.

#[path = "../crates/foley-server/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Duration;

use common::media::video;

#[test]
fn readme_endpoint_snippets_run_as_written() {
    for tool in ["curl", "jq", "bash"] {
        let ok = std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is required by the README's snippets (scripts/setup --tests installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(video("exact3_mp4"), dir.path().join("clip.mp4")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bin = Path::new(env!("CARGO_BIN_EXE_foley")).parent().unwrap().to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()))).unwrap();
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let out = common::py_in(
        dir.path(),
        &format!("http://127.0.0.1:{port}"),
        "readme.py",
        &[readme.to_str().unwrap(), video("prores_mov").to_str().unwrap()],
        // The README's key (the serve block exports it; clients read it from INFERENCE_API_KEY).
        &[("INFERENCE_API_KEY", "inf_your_key".into()), ("PATH", path.to_string_lossy().into_owned())],
        Duration::from_secs(600),
    );
    eprintln!("readme: {out}");
}

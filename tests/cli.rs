//! End-to-end tests of the `foley` binary: exit codes, one-line errors, JSON output, muxing.

#[path = "../crates/foley-media/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::{tone, video};

fn foley(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_foley")).args(args).output().expect("run foley")
}

fn os<S: AsRef<std::ffi::OsStr> + ?Sized>(s: &S) -> &std::ffi::OsStr {
    s.as_ref()
}

/// A failed run: exit code 2 and exactly one line on stderr, starting with "error: ".
fn assert_user_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "stdout {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    err
}

#[test]
fn probe_accepts_a_valid_video() {
    let out = foley(&[os("probe"), video("h264_aac_mp4").as_os_str()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict:   ok") && text.contains("h264") && text.contains("aac"), "{text}");
}

#[test]
fn probe_json() {
    let out = foley(&[os("probe"), video("rotated_mp4").as_os_str(), os("--json")]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"]["ok"], true);
    assert_eq!(v["info"]["video"]["rotation"], 270);
    assert_eq!(v["info"]["container"], "mp4");

    let out = foley(&[os("probe"), video("short_mp4").as_os_str(), os("--json")]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"]["kind"], "duration");
    assert_eq!(v["info"]["duration_s"], 2.52);
}

#[test]
fn probe_rejections_are_one_line_exit_2() {
    let e = assert_user_error(&foley(&[os("probe"), video("short_mp4").as_os_str()]));
    assert_eq!(e.trim(), "error: video is 2.52 s long; it must be between 3 and 20 s");
    for name in ["empty_mp4", "text_mp4", "mkv_as_mp4", "hls_mov", "still_mov", "truncated_mp4", "audio_only_mp4"] {
        assert_user_error(&foley(&[os("probe"), video(name).as_os_str()]));
    }
    assert_user_error(&foley(&[os("probe"), os("/nonexistent/clip.mp4")]));
    // Limits come from flags (or FOLEY_* environment variables).
    let e = assert_user_error(&foley(&[os("probe"), video("h264_mp4").as_os_str(), os("--max-duration"), os("4")]));
    assert!(e.contains("between 3 and 4 s"), "{e}");
}

#[test]
fn mux_writes_a_playable_file() {
    let dir = tempfile::tempdir().unwrap();
    let wav = tone(dir.path(), "t.wav", 44_100, 2, 5.0);
    let out_path = dir.path().join("out.mov");
    let out = foley(&[os("mux"), video("prores_mov").as_os_str(), wav.as_os_str(), os("-o"), out_path.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = foley_media::probe(&out_path).unwrap();
    assert_eq!(info.container, foley_media::Container::Mov);
    assert_eq!(info.audio.map(|a| a.codec), Some("aac".to_string()));
}

#[test]
fn mux_errors_are_one_line_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let wav = tone(dir.path(), "t.wav", 16_000, 1, 1.0);
    let out_path = dir.path().join("out.mp4");
    let e = assert_user_error(&foley(&[os("mux"), video("hevc_mov").as_os_str(), wav.as_os_str(), os("-o"),
        out_path.as_os_str()]));
    assert!(e.contains(".mov"), "{e}");
    assert_user_error(&foley(&[os("mux"), video("h264_mp4").as_os_str(), os("/nonexistent.wav"), os("-o"),
        out_path.as_os_str()]));
    assert_user_error(&foley(&[os("mux"), video("text_mp4").as_os_str(), wav.as_os_str(), os("-o"),
        out_path.as_os_str()]));
    assert!(!out_path.exists());
}

#[test]
fn bad_arguments_exit_2() {
    let out = foley(&[os("probe")]);
    assert_eq!(out.status.code(), Some(2));
    let out = foley(&[os("frobnicate")]);
    assert_eq!(out.status.code(), Some(2));
}

/// `foley models list|download` with an empty, offline Hugging Face cache.
fn foley_offline(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_foley"))
        .args(args)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run foley")
}

#[test]
fn models_list_and_download_show_the_weights_licenses() {
    let dir = tempfile::tempdir().unwrap();
    let out = foley_offline(&["models", "list", "--json"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 5);
    for r in &rows {
        let files = r["licenses"]["files"].as_array().unwrap();
        assert_eq!(files.len(), 5, "{r}");
        for f in files {
            let l = &f["license"];
            assert!(["spdx", "name", "url", "source", "note"].iter().all(|k| l[k].as_str().is_some_and(|v| !v.is_empty())), "{f}");
        }
    }
    let by = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap().clone();
    let small = by("small_16k")["licenses"].clone();
    assert_eq!(small["commercial"], "no");
    assert_eq!(small["files"][0]["license"]["spdx"], "CC-BY-NC-4.0");
    assert_eq!(small["files"][0]["license"]["url"], "https://creativecommons.org/licenses/by-nc/4.0/");
    assert_eq!(by("tiny-test")["licenses"]["commercial"], "yes");

    // The text list has a use column and a licenses column.
    let out = foley_offline(&["models", "list"], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |n: &str| text.lines().find(|l| l.starts_with(&format!("{n} "))).unwrap_or_else(|| panic!("{text}")).to_string();
    assert!(line("small_16k").contains("non-commercial") && line("small_16k").contains("CC-BY-NC-4.0"), "{text}");
    assert!(line("tiny-test").contains("commercial ok") && line("tiny-test").contains("MIT"), "{text}");

    // download prints the licenses, the non-commercial condition spelled out, before it fetches (and fails
    // here: offline).
    let out = foley_offline(&["models", "download", "small_16k", "--quiet"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("small_16k weights: non-commercial use only"), "{text}");
    assert!(text.contains("CC-BY-NC-4.0 <https://creativecommons.org/licenses/by-nc/4.0/>"), "{text}");
    assert!(text.contains("NOT FOR COMMERCIAL USE"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HF_HUB_OFFLINE"));
}

/// `foley probe | head` with the reader gone: a quiet exit, not a panic; a full disk: one line, exit 1.
#[cfg(unix)]
#[test]
fn a_closed_or_full_stdout_is_not_a_panic() {
    let run = |stdout: std::process::Stdio| {
        Command::new(env!("CARGO_BIN_EXE_foley"))
            .args([os("probe"), video("h264_aac_mp4").as_os_str()])
            .stdout(stdout)
            .output()
            .expect("run foley")
    };
    // a socket pair, one end closed, stands for the pipe whose reader has gone (std::io::pipe needs Rust 1.87)
    let (reader, writer) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    drop(reader);
    let out = run(std::os::fd::OwnedFd::from(writer).into());
    assert_eq!(out.status.code(), Some(0), "stderr {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    // a full disk: Linux's /dev/full fails every write with ENOSPC; on Linux a missing one fails the test rather
    // than skipping the case (other Unixes have no such device)
    #[cfg(target_os = "linux")]
    {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full for the full-disk case");
        let out = run(full.into());
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: writing to standard output"), "{err}");
    }
}

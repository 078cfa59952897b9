//! End-to-end generation with the `tiny-test` bundle (tiny random weights in the official formats, shipped in
//! models/tiny-test/): the whole real code path — decode, CLIP, Synchformer, text, MM-DiT sampling, VAE,
//! vocoder, mixing, loudness, mux — on generated clips of 3, 8 and 20 s, mp4 and mov, with and without an
//! audio track, effects only, music only, both, ASMR. Checks the container and codecs, the audio duration
//! against the video's, that video packets are copied untouched, the stems, the loudness, and determinism.

#[path = "../crates/foley-media/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use foley_pipeline::{CancelToken, Engine, Output, Progress, Request, Stage};

fn engine() -> Arc<dyn Engine> {
    static E: OnceLock<Arc<dyn Engine>> = OnceLock::new();
    E.get_or_init(|| foley_pipeline::load_engine("tiny-test").expect("tiny-test loads")).clone()
}

/// A testsrc2 clip, 160x120 at 25 fps, h264, with a sine audio track when `audio`.
fn clip(dir: &Path, name: &str, secs: f64, audio: bool) -> PathBuf {
    let p = dir.join(name);
    let src = format!("testsrc2=size=160x120:rate=25:duration={secs}");
    let mut args = vec!["-f", "lavfi", "-i", &src];
    let sine = format!("sine=frequency=330:sample_rate=44100:duration={secs}");
    if audio {
        args.extend(["-f", "lavfi", "-i", &sine, "-c:a", "aac", "-shortest"]);
    }
    args.extend(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]);
    let ps = p.to_string_lossy().into_owned();
    args.push(&ps);
    common::ffmpeg(&args);
    p
}

/// (pts_time, sha256) of every video packet, via ffprobe.
fn video_packets(path: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_packets", "-show_data_hash", "sha256",
            "-show_entries", "packet=pts_time,data_hash", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn run(req: &Request, dir: &Path) -> Output {
    let stages = std::sync::Mutex::new(Vec::<Progress>::new());
    let progress = |p: Progress| stages.lock().unwrap().push(p);
    let out = engine().generate(req, dir, &progress, &CancelToken::new()).expect("generate");
    let stages = stages.into_inner().unwrap();
    assert!(stages.windows(2).all(|w| w[1].percent >= w[0].percent), "progress never goes back");
    assert_eq!(stages.last().map(|p| (p.stage, p.percent)), Some((Stage::Mux, 100.0)));
    out
}

/// Everything every generation must satisfy.
fn check(input: &Path, out: &Output, ext: &str, target_lufs: f64, music: bool) {
    assert_eq!(out.video.extension().and_then(|e| e.to_str()), Some(ext));
    let (pin, pout) = (foley_media::probe(input).unwrap(), foley_media::probe(&out.video).unwrap());
    assert_eq!(pout.container, pin.container);
    assert_eq!(pout.video.codec, pin.video.codec);
    let a = pout.audio.as_ref().expect("an audio track");
    assert_eq!((a.codec.as_str(), a.sample_rate, a.channels), ("aac", 48_000, 2));
    assert_eq!(common::ffprobe(&out.video, "a", "codec_name").lines().count(), 1, "one audio track");
    let audio_dur: f64 = common::ffprobe(&out.video, "a:0", "duration").parse().unwrap();
    let one_frame = 1024.0 / 48_000.0;
    assert!((audio_dur - pin.duration_s).abs() <= one_frame, "audio {audio_dur} s vs video {} s", pin.duration_s);
    assert_eq!(video_packets(input), video_packets(&out.video), "video packets copied untouched");
    // the wav mix and stems
    let mix = foley_media::read_wav(&out.audio).unwrap();
    assert_eq!((mix.sample_rate, mix.channels), (48_000, 2));
    assert!((mix.duration_s() - pin.duration_s).abs() <= 1.0 / 48_000.0 + 1e-9);
    let (lufs, tp) = foley_pipeline::mix::measure(&mix.samples, 2, 48_000).unwrap();
    assert!((lufs - target_lufs).abs() <= 1.0, "mix loudness {lufs} vs {target_lufs}");
    assert!(tp <= -1.0 + 1e-3, "true peak {tp}");
    // the muxed audio keeps it (AAC-encoded)
    let muxed = foley_media::decode_audio_track(&out.video, a.index, 48_000, 2).unwrap();
    let (lufs_muxed, _) = foley_pipeline::mix::measure(&muxed.samples, 2, 48_000).unwrap();
    assert!((lufs_muxed - target_lufs).abs() <= 1.0, "muxed loudness {lufs_muxed} vs {target_lufs}");
    assert!(out.sfx_stem.is_file());
    assert_eq!(out.bgm_stem.as_ref().is_some_and(|p| p.is_file()), music, "music stem");
    assert_eq!(out.model, "tiny-test");
    assert_eq!(out.settings["noise_model"], true);
    for stage in [Stage::Frames, Stage::Clip, Stage::Synchformer, Stage::Sampling, Stage::Vocoder, Stage::Mux] {
        assert!(out.timings.iter().any(|t| t.stage == stage), "{stage:?} timed");
    }
}

#[test]
fn sfx_only_3s_mp4_without_audio_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 3.0, false);
    let req = Request { video: input.clone(), sound_effect_prompt: "footsteps".into(), seed: Some(7), ..Request::default() };
    let (d1, d2, d3) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    for d in [&d1, &d2, &d3] {
        std::fs::create_dir(d).unwrap();
    }
    let a = run(&req, &d1);
    check(&input, &a, "mp4", -16.0, false);
    assert_eq!(a.seed, 7);
    assert_eq!(a.settings["num_steps"], 25);
    let b = run(&req, &d2);
    assert_eq!(std::fs::read(&a.audio).unwrap(), std::fs::read(&b.audio).unwrap(), "same seed, same audio");
    assert_eq!(std::fs::read(&a.sfx_stem).unwrap(), std::fs::read(&b.sfx_stem).unwrap());
    let c = run(&Request { seed: Some(8), ..req }, &d3);
    assert_ne!(std::fs::read(&a.audio).unwrap(), std::fs::read(&c.audio).unwrap(), "another seed, other audio");
}

#[test]
fn sfx_and_bgm_8s_mov_with_audio_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mov", 8.0, true);
    let req = Request {
        video: input.clone(),
        sound_effect_prompt: "rain on a tin roof".into(),
        bgm_prompt: "slow ambient synth pad".into(),
        seed: Some(3),
        num_steps: Some(6),
        ..Request::default()
    };
    let out = run(&req, dir.path());
    check(&input, &out, "mov", -16.0, true);
    assert_eq!(out.settings["bgm_level_db"], -10.0);
    assert_eq!(out.settings["generated_duration_s"], 8.0);
}

#[test]
fn bgm_only_20s_mp4_keeping_original_audio() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 20.0, true);
    let req = Request {
        video: input.clone(),
        bgm_prompt: "upbeat acoustic guitar".into(),
        seed: Some(11),
        num_steps: Some(4),
        keep_original_audio: true,
        ..Request::default()
    };
    let out = run(&req, dir.path());
    // the original track is mixed under after normalisation: the muxed loudness stays near the target
    check(&input, &out, "mp4", -16.0, true);
    assert_eq!(out.settings["keep_original_audio"], true);
    assert!((out.duration_s - 20.0).abs() < 0.05);
}

#[test]
fn asmr_8s_mp4_uses_its_profile() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 8.0, false);
    let req = Request {
        video: input.clone(),
        sound_effect_prompt: "fingers tapping on wood".into(),
        asmr_mode: true,
        seed: Some(5),
        num_steps: Some(4),
        ..Request::default()
    };
    let out = run(&req, dir.path());
    check(&input, &out, "mp4", foley_pipeline::settings::asmr::LUFS, false);
    let s = &out.settings;
    assert_eq!(s["asmr_mode"], true);
    assert_eq!(s["num_steps"], 4, "an explicit value wins over the profile");
    assert_eq!(s["cfg_strength"], f64::from(foley_pipeline::settings::asmr::CFG));
    assert!(s["sfx_prompt"].as_str().unwrap().starts_with("fingers tapping on wood, "));
    assert_eq!(s["negative_prompt"], foley_pipeline::settings::asmr::NEGATIVE);
}

#[test]
fn bad_requests_are_user_errors_and_cancellation_stops() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 3.0, false);
    let e = engine();
    let nop = |_: Progress| {};
    let long = Request { video: input.clone(), sound_effect_prompt: "x".repeat(201), ..Request::default() };
    assert!(e.generate(&long, dir.path(), &nop, &CancelToken::new()).unwrap_err().is_user_error());
    let short = clip(dir.path(), "short.mp4", 2.0, false);
    let err = e.generate(&Request { video: short, ..Request::default() }, dir.path(), &nop, &CancelToken::new());
    assert!(err.unwrap_err().is_user_error());
    let wrong = Request { video: input.clone(), output_format: foley_pipeline::OutputFormat::Mov, ..Request::default() };
    assert!(e.generate(&wrong, dir.path(), &nop, &CancelToken::new()).unwrap_err().is_user_error());
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let cancel_in_sampling = move |p: Progress| {
        if p.stage == Stage::Sampling {
            c2.cancel();
        }
    };
    let req = Request { video: input, seed: Some(1), ..Request::default() };
    let err = e.generate(&req, dir.path(), &cancel_in_sampling, &cancel).unwrap_err();
    assert!(matches!(err, foley_pipeline::PipelineError::Cancelled), "{err}");
}

// ---------------------------------------------------------------------------------------------------------------
// The `foley generate` / `foley models` commands

fn foley(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_foley"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run foley")
}

fn one_line_exit_2(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(2), "stdout {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    err
}

#[test]
fn cli_generate_json_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mov", 4.0, true);
    let out = dir.path().join("out.mov");
    let wav = dir.path().join("mix.wav");
    let stems = dir.path().join("stems");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let r = foley(
        &["generate", &s(&input), "--model", "tiny-test", "--sfx", "waves", "--bgm", "piano", "--seed", "9", "--steps",
            "3", "-o", &s(&out), "--wav", &s(&wav), "--stems", &s(&stems), "--json"],
        &[],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["model"], "tiny-test");
    assert_eq!(v["noise"], true);
    assert_eq!(v["seed"], 9);
    assert_eq!(v["settings"]["num_steps"], 3);
    assert!(v["timings"].as_array().unwrap().len() >= 8);
    assert!(out.is_file() && wav.is_file() && stems.join("sfx.wav").is_file() && stems.join("bgm.wav").is_file());
    assert_eq!(foley_media::probe(&out).unwrap().container, foley_media::Container::Mov);
    // no work directory is left behind
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".foley-")).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `--dtype bf16` on the CPU: the same pipeline with bf16 weights gives a playable output.
#[test]
fn cli_generate_bf16_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 3.0, true);
    let out = dir.path().join("out.mp4");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let r = foley(
        &["generate", &s(&input), "--model", "tiny-test", "--steps", "2", "--dtype", "bf16", "-o", &s(&out), "--json"],
        &[("FOLEY_LOG", "warn")],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["model"], "tiny-test");
    assert!(out.is_file());
    assert_eq!(foley_media::probe(&out).unwrap().container, foley_media::Container::Mp4);
}

#[test]
fn cli_generate_bad_input_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 3.0, false);
    let short = clip(dir.path(), "short.mp4", 2.0, false);
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let long = "x".repeat(201);
    let e = one_line_exit_2(&foley(&["generate", &s(&input), "--model", "tiny-test", "--sfx", &long], &[]));
    assert!(e.contains("sound_effect_prompt") && e.contains("201"), "{e}");
    one_line_exit_2(&foley(&["generate", &s(&short), "--model", "tiny-test"], &[]));
    one_line_exit_2(&foley(&["generate", &s(&input), "--model", "tiny-test", "--steps", "0"], &[]));
    one_line_exit_2(&foley(&["generate", &s(&input), "--model", "no_such_model"], &[]));
    let e = one_line_exit_2(&foley(&["generate", &s(&input), "--model", "tiny-test", "--dtype", "f16"], &[]));
    assert!(e.contains("--dtype") && e.contains("f16"), "{e}");
    one_line_exit_2(&foley(&["generate", "/nonexistent.mp4", "--model", "tiny-test"], &[]));
    let e = one_line_exit_2(&foley(
        &["generate", &s(&input), "--model", "tiny-test", "-o", &s(&dir.path().join("x.mov"))],
        &[],
    ));
    assert!(e.contains(".mp4"), "{e}");
}

#[test]
fn cli_missing_weights_say_how_to_download() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 3.0, false);
    let cache = dir.path().join("hub");
    let env = [("HF_HUB_CACHE", cache.to_str().unwrap()), ("HF_HUB_OFFLINE", "1")];
    let r = foley(&["generate", input.to_str().unwrap(), "--model", "small_16k"], &env);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("foley models download small_16k") && err.contains("tiny-test"), "{err}");
    let r = foley(&["models", "list", "--json"], &env);
    assert!(r.status.success());
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let rows = v.as_array().unwrap();
    let by = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap().clone();
    assert_eq!(by("tiny-test")["present"], true);
    assert_eq!(by("small_16k")["present"], false);
    assert_eq!(by("small_16k")["default"], true, "CPU build: small_16k is the default");
    let r = foley(&["models", "list", "--present"], &env);
    assert_eq!(String::from_utf8_lossy(&r.stdout).lines().next(), Some("tiny-test"));
    let r = foley(&["models", "download", "small_16k", "--quiet"], &env);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("HF_HUB_OFFLINE"));
}

#[test]
fn windowed_generation_of_a_20s_clip() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 20.0, false);
    let spec = foley_pipeline::ModelSpec::find("tiny-test").unwrap();
    let engine = foley_pipeline::FoleyEngine::load(spec, candle_core::Device::Cpu).unwrap().with_window(Some(8.0));
    let req = Request { video: input.clone(), sound_effect_prompt: "wind".into(), seed: Some(2), num_steps: Some(2), ..Request::default() };
    let out = engine.generate(&req, dir.path(), &|_| {}, &CancelToken::new()).unwrap();
    check(&input, &out, "mp4", -16.0, false);
    assert_eq!(out.settings["window_s"], 8.0);
}

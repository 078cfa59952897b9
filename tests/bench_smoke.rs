//! CI smoke of `foley bench` (so the command cannot rot): the tiny-test bundle's shapes, 2 sampler steps, a 3 s
//! clip, `--json`; checks every field the comparison script reads. Not the reference and not a timing test.

use std::process::Command;

#[test]
fn bench_tiny_test_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_foley"))
        .args(["bench", "--model", "tiny-test", "--steps", "2", "--duration", "3", "--json"])
        .output()
        .expect("foley runs");
    assert!(out.status.success(), "foley bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["implementation"], "foley");
    assert_eq!(v["model"], "tiny-test");
    assert_eq!(v["steps"], 2);
    assert_eq!(v["dtype"], "f32");
    let stages: Vec<&str> =
        v["stages"].as_array().expect("stages").iter().filter_map(|s| s["stage"].as_str()).collect();
    for s in ["frames", "clip", "synchformer", "text", "sampling", "vae", "vocoder", "mux"] {
        assert!(stages.contains(&s), "stage {s} missing from {stages:?}");
    }
    for k in ["end_to_end_s", "end_to_end_cpu_s", "sampler_per_step_s", "rtf", "peak_rss_mb", "load_s"] {
        let x = v[k].as_f64().unwrap_or(-1.0);
        assert!(x >= 0.0 && x.is_finite(), "{k} = {}", v[k]);
    }
    assert!((v["duration_s"].as_f64().unwrap_or(0.0) - 3.0).abs() < 0.1);
    assert!(v["peak_rss_mb"].as_f64().unwrap_or(0.0) > 1.0);
}

#[test]
fn bench_rejects_bad_arguments_with_exit_2() {
    for args in [["--duration", "2"], ["--steps", "0"], ["--dtype", "bf16"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_foley"))
            .args(["bench", "--model", "tiny-test"])
            .args(args)
            .output()
            .expect("foley runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

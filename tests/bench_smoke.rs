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
    for args in [["--duration", "2"], ["--steps", "0"], ["--dtype", "f16"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_foley"))
            .args(["bench", "--model", "tiny-test"])
            .args(args)
            .output()
            .expect("foley runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `--dtype bf16` on the CPU runs the whole pipeline with bf16 weights and reports the kernel it ran on (widened
/// where the processor has no AVX512-BF16, with one log line saying so) and the processor.
#[test]
fn bench_tiny_test_bf16_on_the_cpu() {
    let out = Command::new(env!("CARGO_BIN_EXE_foley"))
        .args(["bench", "--model", "tiny-test", "--steps", "2", "--duration", "3", "--json", "--dtype", "bf16"])
        .env_remove("FOLEY_CPU_BF16")
        .output()
        .expect("foley runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "foley bench --dtype bf16 failed: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["dtype"], "bf16");
    let kernel = v["cpu_bf16_kernel"].as_str().expect("the bf16 kernel is reported");
    assert!(["avx512-bf16", "widen"].contains(&kernel), "{kernel}");
    if kernel == "widen" {
        let lines = stderr.lines().filter(|l| l.contains("no AVX512-BF16")).count();
        assert_eq!(lines, 1, "one log line about the fallback: {stderr}");
    }
    assert!(v["cpu"].as_str().is_some_and(|c| !c.is_empty()) || !cfg!(target_os = "linux"), "{}", v["cpu"]);
}

#[test]
fn bench_gemm_reports_peaks_and_kernels() {
    let out = Command::new(env!("CARGO_BIN_EXE_foley"))
        .args(["bench", "--gemm", "--json"])
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("foley runs");
    assert!(out.status.success(), "foley bench --gemm failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    let gemms = v["gemms"].as_array().expect("gemms");
    for kernel in ["f32", "bf16 widen"] {
        assert!(gemms.iter().any(|g| g["kernel"] == kernel && g["gflops"].as_f64().is_some_and(|x| x > 0.0)));
    }
    assert_eq!(v["peaks"].as_array().map(Vec::len), Some(2));
    // the bf16 kernel's activation packing is measured on any processor, for every shape
    let packing = v["lhs_packing"].as_array().expect("lhs_packing");
    assert_eq!(packing.len(), 6);
    assert!(packing.iter().all(|p| p["ms"].as_f64().is_some_and(|x| x > 0.0) && p["of_f32_gemm"].as_f64().is_some()));
}

//! `foley bench --gemm`: the processor's arithmetic peaks and each CPU GEMM kernel's rate at the networks' shapes,
//! measured in one run so that a kernel's rate can be read as a fraction of the peak it runs against (f32 kernels
//! against the f32 FMA peak, VDPBF16PS against the bf16 one). Rates depend on the machine: record its `cpu` line
//! with them.

use std::process::ExitCode;

use foley_models::cpu_bf16::peak::{gemm_gflops, peak_gflops, GemmKind, Peak};
use serde::Serialize;

/// Shapes `(name, m, n, k)`: activations m×k times weight k×n. CLIP ViT-H/14-384 on 4 frames (577 tokens each),
/// the MM-DiT small_16k's latent stream on 8 s (250 latents, cond and uncond batched: 500 rows).
const SHAPES: [(&str, usize, usize, usize); 6] = [
    ("clip qkv", 2308, 3840, 1280),
    ("clip mlp fc1", 2308, 5120, 1280),
    ("clip mlp fc2", 2308, 1280, 5120),
    ("dit qkv", 500, 1344, 448),
    ("dit mlp in", 500, 1792, 448),
    ("dit mlp out", 500, 448, 1792),
];

#[derive(Serialize)]
struct PeakRow {
    kind: &'static str,
    gflops: Option<f64>,
}

#[derive(Serialize)]
struct GemmRow {
    shape: &'static str,
    m: usize,
    n: usize,
    k: usize,
    kernel: &'static str,
    gflops: f64,
    /// The rate as a fraction of the peak of the instructions the kernel runs on.
    of_peak: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    cpu: String,
    threads: usize,
    peaks: Vec<PeakRow>,
    gemms: Vec<GemmRow>,
}

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let f32_peak = peak_gflops(Peak::F32Fma, 1.0);
    let bf16_peak = peak_gflops(Peak::Bf16Dot, 1.0);
    let mut gemms = Vec::new();
    for (shape, m, n, k) in SHAPES {
        for kind in GemmKind::available() {
            let gflops = gemm_gflops(kind, (m, n, k), 3);
            let peak = match kind {
                GemmKind::Bf16Avx512 => bf16_peak,
                GemmKind::F32 | GemmKind::Bf16Widen => f32_peak,
            };
            gemms.push(GemmRow { shape, m, n, k, kernel: kind.name(), gflops, of_peak: peak.map(|p| gflops / p) });
        }
    }
    let report = Report {
        cpu: super::sysinfo::cpu_model(),
        threads: super::sysinfo::threads(),
        peaks: vec![
            PeakRow { kind: Peak::F32Fma.name(), gflops: f32_peak },
            PeakRow { kind: Peak::Bf16Dot.name(), gflops: bf16_peak },
        ],
        gemms,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("foley bench --gemm: {} threads; cpu: {}", report.threads, report.cpu);
    for p in &report.peaks {
        let v = p.gflops.map_or("not on this processor".to_string(), |g| format!("{g:.0} GFLOP/s"));
        outln!("peak {:<16} {v}", p.kind);
    }
    outln!("{:<14} {:>17} {:<12} {:>9} {:>8}", "shape", "m x n x k", "kernel", "GFLOP/s", "of peak");
    for g in &report.gemms {
        let of = g.of_peak.map_or("-".to_string(), |f| format!("{:.0} %", 100.0 * f));
        let dims = format!("{}x{}x{}", g.m, g.n, g.k);
        outln!("{:<14} {:>17} {:<12} {:>9.0} {:>8}", g.shape, dims, g.kernel, g.gflops, of);
    }
    Ok(ExitCode::SUCCESS)
}

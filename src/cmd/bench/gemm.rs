//! `foley bench --gemm`: the processor's arithmetic peaks and each CPU GEMM kernel's rate at the networks' shapes,
//! measured in one run so that a kernel's rate can be read as a fraction of the peak it runs against (f32 kernels
//! against the f32 FMA peak, VDPBF16PS against the bf16 one), and the time the bf16 kernel spends packing its
//! activations (measured on any processor). Rates depend on the machine: record its `cpu` line with them.

use std::process::ExitCode;

use foley_kernels::cpu_bf16::peak::{gemm_gflops, lhs_pack_ms, peak_gflops, GemmKind, Peak};
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

/// The bf16 kernel's packing of a shape's f32 activations (bf16 pair panels), against the GEMMs' times.
#[derive(Serialize)]
struct PackRow {
    shape: &'static str,
    ms: f64,
    /// Its share of the f32 GEMM's time at that shape.
    of_f32_gemm: f64,
    /// Its share of the VDPBF16PS GEMM's time (which includes it), where that kernel runs.
    of_bf16_gemm: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    cpu: String,
    threads: usize,
    peaks: Vec<PeakRow>,
    gemms: Vec<GemmRow>,
    lhs_packing: Vec<PackRow>,
}

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let f32_peak = peak_gflops(Peak::F32Fma, 1.0);
    let bf16_peak = peak_gflops(Peak::Bf16Dot, 1.0);
    let (mut gemms, mut lhs_packing) = (Vec::new(), Vec::new());
    for (shape, m, n, k) in SHAPES {
        let ms_at = |gflops: f64| 2.0 * (m * n * k) as f64 / gflops / 1e6;
        let (mut f32_ms, mut bf16_ms) = (f64::NAN, None);
        for kind in GemmKind::available() {
            let gflops = gemm_gflops(kind, (m, n, k), 3);
            let peak = match kind {
                GemmKind::Bf16Avx512 => bf16_peak,
                GemmKind::F32 | GemmKind::Bf16Widen => f32_peak,
            };
            match kind {
                GemmKind::F32 => f32_ms = ms_at(gflops),
                GemmKind::Bf16Avx512 => bf16_ms = Some(ms_at(gflops)),
                GemmKind::Bf16Widen => {}
            }
            gemms.push(GemmRow { shape, m, n, k, kernel: kind.name(), gflops, of_peak: peak.map(|p| gflops / p) });
        }
        let ms = lhs_pack_ms((m, k), 5);
        lhs_packing.push(PackRow { shape, ms, of_f32_gemm: ms / f32_ms, of_bf16_gemm: bf16_ms.map(|b| ms / b) });
    }
    let report = Report {
        cpu: super::sysinfo::cpu_model(),
        threads: super::sysinfo::threads(),
        peaks: vec![
            PeakRow { kind: Peak::F32Fma.name(), gflops: f32_peak },
            PeakRow { kind: Peak::Bf16Dot.name(), gflops: bf16_peak },
        ],
        gemms,
        lhs_packing,
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
    outln!("bf16 kernel's packing of the f32 activations:");
    outln!("{:<14} {:>9} {:>12} {:>13}", "shape", "ms", "of f32 gemm", "of bf16 gemm");
    for p in &report.lhs_packing {
        let of_bf16 = p.of_bf16_gemm.map_or("-".to_string(), |f| format!("{:.1} %", 100.0 * f));
        outln!("{:<14} {:>9.2} {:>10.1} % {:>13}", p.shape, p.ms, 100.0 * p.of_f32_gemm, of_bf16);
    }
    Ok(ExitCode::SUCCESS)
}

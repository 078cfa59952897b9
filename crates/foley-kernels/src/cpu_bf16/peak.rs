//! What the processor can do at most, for `foley bench --gemm`: the arithmetic peak of its f32 FMA and bf16
//! dot-product instructions (independent chains in registers, no memory traffic), and the GEMM rates of each
//! kernel at the networks' shapes, so that a GEMM's rate is reported beside the peak it is measured against; and
//! what the bf16 kernel spends packing its activations, the part of its time that is not products.

use std::time::Instant;

use rayon::prelude::*;

use super::blocked::{self, Job};
use super::{avx512_gemm_add, lanes, widen_gemm_add, Kernel, Operand, Packed, Rhs};

/// An arithmetic peak to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peak {
    /// f32 fused multiply-add on the widest vectors the processor has (AVX-512 or AVX2 + FMA): 2 flops per lane.
    F32Fma,
    /// VDPBF16PS on 512-bit vectors: 4 flops per f32 lane (two products, two sums).
    Bf16Dot,
}

impl Peak {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Peak::F32Fma => "f32 fma",
            Peak::Bf16Dot => "bf16 vdpbf16ps",
        }
    }
}

/// Independent accumulator chains per thread in a peak loop (enough to hide the instructions' latency).
const CHAINS: usize = 12;

/// GFLOP/s of `peak` on all of rayon's threads at once over about `seconds`, or `None` where the processor lacks
/// the instructions.
pub fn peak_gflops(peak: Peak, seconds: f64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = is_x86_feature_detected!("avx512f");
        let (run, flops_per_iter): (unsafe fn(u64) -> f32, f64) = match peak {
            Peak::F32Fma if avx512 => (x86::fma512, (CHAINS * 16 * 2) as f64),
            Peak::F32Fma if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") => {
                (x86::fma256, (CHAINS * 8 * 2) as f64)
            }
            Peak::Bf16Dot if super::has_avx512_bf16() => (x86::dpbf16, (CHAINS * 16 * 4) as f64),
            _ => return None,
        };
        // calibrate on one thread, then all threads together
        let mut iters = 1u64 << 16;
        loop {
            let t = Instant::now();
            // SAFETY: the features `run` needs were checked above
            std::hint::black_box(unsafe { run(iters) });
            let dt = t.elapsed().as_secs_f64();
            if dt > 0.05 || iters > 1 << 34 {
                iters = ((iters as f64) * (seconds / dt.max(1e-9))).max(1.0) as u64;
                break;
            }
            iters *= 4;
        }
        let threads = rayon::current_num_threads();
        let t = Instant::now();
        (0..threads).into_par_iter().for_each(|_| {
            // SAFETY: as above
            std::hint::black_box(unsafe { run(iters) });
        });
        Some(flops_per_iter * iters as f64 * threads as f64 / t.elapsed().as_secs_f64() / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (peak, seconds);
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma256(iters: u64) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc.iter().fold(_mm256_setzero_ps(), |s, v| _mm256_add_ps(s, *v)));
        out[0]
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma512(iters: u64) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, v| _mm512_add_ps(s, *v)))
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn dpbf16(iters: u64) -> f32 {
        let a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3), _mm512_set1_ps(1e-3));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_dpbf16_ps(*v, a, a);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, v| _mm512_add_ps(s, *v)))
    }
}

/// One GEMM kernel to time at a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmKind {
    /// f32 activations × f32 weights (gemm's kernels, what the f32 path runs).
    F32,
    /// f32 activations × bf16 weights, widened (what `--dtype bf16` runs without AVX512-BF16).
    Bf16Widen,
    /// f32 activations × bf16 weights on VDPBF16PS (what `--dtype bf16` runs with AVX512-BF16).
    Bf16Avx512,
}

impl GemmKind {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            GemmKind::F32 => "f32",
            GemmKind::Bf16Widen => "bf16 widen",
            GemmKind::Bf16Avx512 => "bf16 avx512",
        }
    }

    /// The kinds this processor runs.
    pub fn available() -> Vec<GemmKind> {
        let mut kinds = vec![GemmKind::F32, GemmKind::Bf16Widen];
        if Kernel::get() == Kernel::Avx512Bf16 {
            kinds.push(GemmKind::Bf16Avx512);
        }
        kinds
    }
}

/// GFLOP/s of `dst (m×n) = x (m×k) · w (k×n)` with `kind`: the fastest of `reps + 1` runs (the first also warms up).
pub fn gemm_gflops(kind: GemmKind, (m, n, k): (usize, usize, usize), reps: usize) -> f64 {
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0).collect();
    let wf: Vec<f32> = (0..k * n).map(|i| ((i * 104_729 % 1000) as f32 - 500.0) / 5000.0).collect();
    let wh: Vec<u16> = wf.iter().map(|&v| super::blocked::to_bf16(v)).collect();
    // the VDPBF16PS kernel reads its weight packed once at load, as the networks hold it
    // SAFETY: wh holds the whole k×n matrix
    let packed = (kind == GemmKind::Bf16Avx512).then(|| unsafe { Packed::new(Operand::Bf16(wh.as_ptr(), n), k, n) });
    let mut dst = vec![0f32; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) + 1 {
        dst.fill(0.0);
        let t = Instant::now();
        // SAFETY: the vectors hold the whole matrices; Bf16Avx512 is only listed where the kernel was selected
        unsafe {
            let out = (dst.as_mut_ptr(), n);
            let lhs = Operand::F32(x.as_ptr(), k);
            match kind {
                GemmKind::F32 => {
                    crate::gemm::gemm_add((m, n, k), out, (x.as_ptr(), k), (wf.as_ptr(), n), crate::gemm::gemm_parallelism())
                }
                GemmKind::Bf16Widen => widen_gemm_add((m, n, k), out, lhs, Operand::Bf16(wh.as_ptr(), n)),
                GemmKind::Bf16Avx512 => {
                    if let Some(p) = &packed {
                        avx512_gemm_add((m, n, k), out, lhs, Rhs::Packed(p))
                    }
                }
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * (m * n * k) as f64 / best / 1e9
}

/// Milliseconds the blocked bf16 GEMM ([`GemmKind::Bf16Avx512`]) spends packing an f32 `m×k` left operand into
/// bf16 pair panels, the fastest of `reps + 1` runs. The packing needs no bf16 instructions, so this runs on any
/// processor; it is compiled for AVX-512 where the bf16 kernel is selected, as the kernel runs it.
pub fn lhs_pack_ms((m, k): (usize, usize), reps: usize) -> f64 {
    unsafe fn pack_only(j: Job<'_, '_>) {
        if let Job::Pack { .. } = j {
            blocked::job::<lanes::Emulated>(j)
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn pack_only_avx512(j: Job<'_, '_>) {
        if let Job::Pack { .. } = j {
            blocked::job::<lanes::Emulated>(j)
        }
    }
    #[cfg(target_arch = "x86_64")]
    let run: blocked::JobFn = if Kernel::get() == Kernel::Avx512Bf16 { pack_only_avx512 } else { pack_only };
    #[cfg(not(target_arch = "x86_64"))]
    let run: blocked::JobFn = pack_only;
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0).collect();
    // a one-column right operand: the packing of the left one is the whole of the work
    let w = vec![0u16; k];
    let mut dst = vec![0f32; m];
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) + 1 {
        let t = Instant::now();
        // SAFETY: the vectors hold the whole matrices; `run` only packs (its features were checked above)
        unsafe {
            let (lhs, rhs) = (Operand::F32(x.as_ptr(), k), Operand::Bf16(w.as_ptr(), 1));
            blocked::gemm_add((m, 1, k), (dst.as_mut_ptr(), 1), lhs, Rhs::Plain(rhs), run, rayon::current_num_threads())
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e3
}

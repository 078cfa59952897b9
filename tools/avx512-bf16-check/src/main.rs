//! Runs foley's blocked bf16 GEMM (`crates/foley-kernels/src/cpu_bf16/{blocked,lanes}.rs`, included as they are)
//! with the real VDPBF16PS instruction and with its plain-Rust emulation on the same operands, and checks both
//! against the f64 product of the bf16-rounded operands. Exit 0: the instruction-level kernel agrees; 1: it does
//! not; 2: the processor lacks AVX512-BF16. Built static and run under `scripts/emulate-avx512` where the machine
//! has no AVX-512 (`scripts/check-avx512-bf16`).

#[allow(dead_code)]
#[path = "../../../crates/foley-kernels/src/cpu_bf16"]
mod cpu_bf16 {
    pub mod blocked;
    pub mod lanes;
}

use cpu_bf16::blocked::{gemm_add, job, to_bf16, Job, Operand, Packed, Rhs};
use cpu_bf16::lanes::{Avx512Bf16, Emulated};

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn real(j: Job<'_, '_>) {
    job::<Avx512Bf16>(j)
}

unsafe fn emulated(j: Job<'_, '_>) {
    job::<Emulated>(j)
}

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn main() -> std::process::ExitCode {
    let (f, bf) = (is_x86_feature_detected!("avx512f"), is_x86_feature_detected!("avx512bf16"));
    println!("avx512f={f} avx512bf16={bf}");
    if !(f && bf) {
        return std::process::ExitCode::from(2);
    }
    let widen = |h: u16| cpu_bf16::blocked::bf16_to_f32(h) as f64;
    let mut seed = 11u64;
    let mut ok = true;
    // tile edges in m and n, odd k, k over several pair blocks, n over two column blocks, either operand bf16
    for &(m, n, k, rhs_bf16) in &[
        (1, 1, 1, true),
        (12, 32, 2, true),
        (13, 33, 3, false),
        (5, 70, 257, true),
        (40, 40, 64, false),
        (14, 1100, 6, true),
        (25, 31, 300, true),
        (3, 1100, 300, true),
    ] {
        let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
        let (a16, b16): (Vec<u16>, Vec<u16>) = (a.iter().map(|&x| to_bf16(x)).collect(), b.iter().map(|&x| to_bf16(x)).collect());
        let (lhs, rhs) = if rhs_bf16 {
            (Operand::F32(a.as_ptr(), k), Operand::Bf16(b16.as_ptr(), n))
        } else {
            (Operand::Bf16(a16.as_ptr(), k), Operand::F32(b.as_ptr(), n))
        };
        let init: Vec<f32> = (0..m * n).map(|_| lcg(&mut seed)).collect();
        let (mut got, mut emu, mut packed) = (init.clone(), init.clone(), init.clone());
        // SAFETY: the vectors hold the whole matrices; the features were checked above
        unsafe {
            gemm_add((m, n, k), (got.as_mut_ptr(), n), lhs, Rhs::Plain(rhs), real, 1);
            gemm_add((m, n, k), (emu.as_mut_ptr(), n), lhs, Rhs::Plain(rhs), emulated, 1);
            // the right operand packed once, as the networks hold their weights
            let once = Packed::new(rhs, k, n);
            gemm_add((m, n, k), (packed.as_mut_ptr(), n), lhs, Rhs::Packed(&once), real, 1);
        }
        let same_packed = packed == got;
        let (mut vs_f64, mut vs_emu) = (0f64, 0f64);
        for i in 0..m {
            for j in 0..n {
                let want = init[i * n + j] as f64 + (0..k).map(|p| widen(a16[i * k + p]) * widen(b16[p * n + j])).sum::<f64>();
                vs_f64 = vs_f64.max((got[i * n + j] as f64 - want).abs());
                vs_emu = vs_emu.max((got[i * n + j] - emu[i * n + j]).abs() as f64);
            }
        }
        let bound = 1e-6 * (k as f64).max(8.0);
        let pass = vs_f64 <= bound && vs_emu <= bound && same_packed;
        ok &= pass;
        println!("{m}x{n}x{k} rhs_bf16={rhs_bf16}: max |vdpbf16ps - f64| = {vs_f64:.2e}, max |vdpbf16ps - emulated| = {vs_emu:.2e} (bound {bound:.1e}), packed once identical: {same_packed} {}", if pass { "ok" } else { "FAIL" });
    }
    println!("{}", if ok { "all agree" } else { "MISMATCH" });
    std::process::ExitCode::from(if ok { 0 } else { 1 })
}

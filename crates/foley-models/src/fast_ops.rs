//! CPU fast paths of the encoders' elementwise work: softmax over attention scores and QuickGELU, in place
//! and multi-threaded, with a vectorisable `exp` (Cephes' single-precision polynomial, ~1 ulp). candle's
//! generic ops call libm's scalar `exp` and allocate a new tensor per step; on CLIP ViT-H these two ops
//! are a quarter of the CPU time. Other devices and dtypes fall back to candle's ops.

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Tensor};
use rayon::prelude::*;

/// `exp(x)` for f32, written so that LLVM vectorises loops over it (no libm call, no branches).
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients as published
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

fn contiguous_f32<'a>(storage: &'a mut CpuStorage, layout: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{what}: input has to be contiguous")
    };
    match storage {
        CpuStorage::F32(data) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{what}: f32 only"),
    }
}

/// Softmax of each `dim`-long row of `rows`, in place.
#[inline(always)]
fn softmax_rows(rows: &mut [f32], dim: usize) {
    for row in rows.chunks_mut(dim) {
        // reductions over 8 independent lanes so that every loop vectorises
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut it = row.chunks_exact(8);
        for c in &mut it {
            for (m, &v) in lanes.iter_mut().zip(c) {
                *m = if v > *m { v } else { *m };
            }
        }
        let max = it.remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for v in row.iter_mut() {
            *v = exp_f32(*v - max);
        }
        let mut lanes = [0f32; 8];
        let mut it = row.chunks_exact(8);
        for c in &mut it {
            for (s, &v) in lanes.iter_mut().zip(c) {
                *s += v;
            }
        }
        let sum: f32 = it.remainder().iter().sum::<f32>() + lanes.iter().sum::<f32>();
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// `x * sigmoid(1.702 x)` of every element, in place.
#[inline(always)]
fn quick_gelu_slice(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v /= 1.0 + exp_f32(-1.702 * *v);
    }
}

/// The same loops compiled for AVX-512 / AVX2+FMA, chosen at run time (the crate is built for baseline
/// x86-64, where they would run 4 lanes wide).
#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_rows_avx512(rows: &mut [f32], dim: usize) {
        super::softmax_rows(rows, dim)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softmax_rows_avx2(rows: &mut [f32], dim: usize) {
        super::softmax_rows(rows, dim)
    }
    #[target_feature(enable = "avx512f")]
    pub unsafe fn quick_gelu_avx512(xs: &mut [f32]) {
        super::quick_gelu_slice(xs)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quick_gelu_avx2(xs: &mut [f32]) {
        super::quick_gelu_slice(xs)
    }
}

fn softmax_rows_dispatch(rows: &mut [f32], dim: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the features were detected on this CPU.
        if is_x86_feature_detected!("avx512f") {
            return unsafe { x86::softmax_rows_avx512(rows, dim) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return unsafe { x86::softmax_rows_avx2(rows, dim) };
        }
    }
    softmax_rows(rows, dim)
}

fn quick_gelu_dispatch(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the features were detected on this CPU.
        if is_x86_feature_detected!("avx512f") {
            return unsafe { x86::quick_gelu_avx512(xs) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return unsafe { x86::quick_gelu_avx2(xs) };
        }
    }
    quick_gelu_slice(xs)
}

struct SoftmaxLastDimInplace;

impl InplaceOp1 for SoftmaxLastDimInplace {
    fn name(&self) -> &'static str {
        "softmax-last-dim-inplace"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let data = contiguous_f32(storage, layout, self.name())?;
        data.par_chunks_mut(dim * 16.max(4096 / dim)).for_each(|rows| softmax_rows_dispatch(rows, dim));
        Ok(())
    }
}

struct QuickGeluInplace;

impl InplaceOp1 for QuickGeluInplace {
    fn name(&self) -> &'static str {
        "quick-gelu-inplace"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = contiguous_f32(storage, layout, self.name())?;
        data.par_chunks_mut(1 << 16).for_each(quick_gelu_dispatch);
        Ok(())
    }
}

fn fast_path(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous()
}

/// Softmax over the last dimension. `x` is consumed: on CPU/f32 it is overwritten in place (callers pass
/// freshly computed scores).
pub fn softmax_last_dim(x: Tensor) -> Result<Tensor> {
    if fast_path(&x) {
        x.inplace_op1(&SoftmaxLastDimInplace)?;
        Ok(x)
    } else {
        candle_nn::ops::softmax_last_dim(&x)
    }
}

/// `x * sigmoid(1.702 x)`. `x` is consumed and, on CPU/f32, overwritten in place.
pub fn quick_gelu(x: Tensor) -> Result<Tensor> {
    if fast_path(&x) {
        x.inplace_op1(&QuickGeluInplace)?;
        Ok(x)
    } else {
        &x * candle_nn::ops::sigmoid(&(&x * 1.702)?)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let (got, want) = (exp_f32(x), x.exp());
            assert!(((got - want) / want).abs() < 4e-7, "exp({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn softmax_and_gelu_match_candle() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = (Tensor::randn(0f32, 3f32, (5, 7, 33), &dev)? * 1.0)?;
        let want = candle_nn::ops::softmax_last_dim(&x)?;
        let got = softmax_last_dim(x.copy()?)?;
        let err = (got - want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(err < 1e-6, "softmax err {err}");
        let want = (&x * candle_nn::ops::sigmoid(&(&x * 1.702)?)?)?;
        let got = quick_gelu(x.copy()?)?;
        let err = (got - want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(err < 1e-5, "quick gelu err {err}");
        Ok(())
    }
}

//! CPU fast paths of the encoders' elementwise work: softmax over attention scores, QuickGELU and exact GELU,
//! in place and multi-threaded, with a vectorisable `exp` (Cephes' single-precision polynomial, ~1 ulp, in FMA
//! form with 2^n built from the rounding's bits: 2.7× faster than with separate multiplies and a float-to-int
//! conversion). candle's generic ops call libm's scalar `exp`/`erf` and allocate a new tensor per step; on CLIP
//! ViT-H softmax and QuickGELU were a quarter of the CPU time. Other devices and dtypes fall back to candle's ops.

use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Result, Tensor};
use rayon::prelude::*;

/// `a * b + c`: fused where the caller is compiled for FMA ([`Fused`]), two roundings elsewhere ([`Plain`]: on a
/// processor without FMA `f32::mul_add` would be a libm call per element).
pub(crate) trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

pub(crate) struct Fused;
pub(crate) struct Plain;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Plain {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `exp(x)` for f32, written so that LLVM vectorises loops over it (no libm call, no branches, no float-to-int
/// conversion).
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients as published
pub(crate) fn exp_f32<M: MulAdd>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer, held in the low mantissa bits
    let x = x.clamp(-87.0, 88.0);
    let t = M::mul_add(x, LOG2E, ROUND);
    let n = t - ROUND;
    // the integer n from t's bits (|n| <= 127 < 2^22): 2^n built directly as an f32 exponent
    let two_n = f32::from_bits(((t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) as u32) << 23);
    let r = M::mul_add(n, -LN2_LO, M::mul_add(n, -LN2_HI, x));
    let mut p = 1.987_569_2e-4f32;
    p = M::mul_add(p, r, 1.398_199_9e-3);
    p = M::mul_add(p, r, 8.333_452e-3);
    p = M::mul_add(p, r, 4.166_579_6e-2);
    p = M::mul_add(p, r, 1.666_666_5e-1);
    p = M::mul_add(p, r, 5.000_000_1e-1);
    let y = M::mul_add(p, r * r, r + 1.0);
    y * two_n
}

pub(crate) fn contiguous_f32<'a>(storage: &'a mut CpuStorage, layout: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{what}: input has to be contiguous")
    };
    match storage {
        CpuStorage::F32(data) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{what}: f32 only"),
    }
}

/// Largest `|x|` for which [`sin_f32`] holds its accuracy (its three-part reduction by π/2 is exact below it).
pub(crate) const SIN_F32_MAX: f32 = 8192.0;

/// `sin(x)` for f32 with `|x| ≤` [`SIN_F32_MAX`], written so that LLVM vectorises loops over it: the nearest multiple
/// `n` of π/2 from the rounding's bits, `r = x − n·π/2` in three parts (Cephes' constants), then Cephes' sine or
/// cosine polynomial on `r` by `n mod 4` (within 2 ulps of 1 against f64's `sin`).
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients as published
pub(crate) fn sin_f32<M: MulAdd>(x: f32) -> f32 {
    const FRAC_2_PI: f32 = std::f32::consts::FRAC_2_PI;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23, as in exp_f32
    const DP1: f32 = 1.570_312_5;
    const DP2: f32 = 4.837_512_969_970_703_125e-4;
    const DP3: f32 = 7.549_789_954_891_882_16e-8;
    let a = x.abs();
    let t = M::mul_add(a, FRAC_2_PI, ROUND);
    let quadrant = t.to_bits().wrapping_sub(ROUND.to_bits());
    let n = t - ROUND;
    let r = M::mul_add(-n, DP3, M::mul_add(-n, DP2, M::mul_add(-n, DP1, a)));
    let z = r * r;
    let mut sin = -1.951_529_589_1e-4f32;
    sin = M::mul_add(sin, z, 8.332_160_873_6e-3);
    sin = M::mul_add(sin, z, -1.666_665_461_1e-1);
    let sin = M::mul_add(sin * z, r, r);
    let mut cos = 2.443_315_711_809_948e-5f32;
    cos = M::mul_add(cos, z, -1.388_731_625_493_765e-3);
    cos = M::mul_add(cos, z, 4.166_664_568_298_827e-2);
    let cos = M::mul_add(cos * z, z, M::mul_add(-0.5, z, 1.0));
    let y = if quadrant & 1 == 0 { sin } else { cos };
    // sin(−x) = −sin(x); quadrants 2 and 3 negate
    let flip = ((quadrant & 2) << 30) ^ (x.to_bits() & 0x8000_0000);
    f32::from_bits(y.to_bits() ^ flip)
}

pub(crate) fn contiguous_f32_ref<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{what}: input has to be contiguous")
    };
    match storage {
        CpuStorage::F32(data) => Ok(&data[start..end]),
        _ => candle_core::bail!("{what}: f32 only"),
    }
}

/// Softmax of each `dim`-long row of `rows`, in place: the row's max, then `exp` and its sum in one pass, then
/// the division.
#[inline(always)]
fn softmax_rows<M: MulAdd>(rows: &mut [f32], dim: usize) {
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
        let mut lanes = [0f32; 8];
        let mut it = row.chunks_exact_mut(8);
        for c in &mut it {
            for (s, v) in lanes.iter_mut().zip(c) {
                *v = exp_f32::<M>(*v - max);
                *s += *v;
            }
        }
        let mut sum: f32 = lanes.iter().sum();
        for v in it.into_remainder() {
            *v = exp_f32::<M>(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// `x * sigmoid(1.702 x)` of every element, in place.
#[inline(always)]
fn quick_gelu_slice<M: MulAdd>(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v /= 1.0 + exp_f32::<M>(-1.702 * *v);
    }
}

/// `x sigmoid(x)` (SiLU) of every element, in place.
#[inline(always)]
fn silu_slice<M: MulAdd>(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v /= 1.0 + exp_f32::<M>(-*v);
    }
}

/// `x Φ(x) = x erfc(-x/√2) / 2` (torch's exact GELU) of every element, in place. erfc from Numerical Recipes'
/// Chebyshev fit (`erfcc`: relative error below 1.2e-7 everywhere, so the negative tail keeps its relative
/// accuracy), built on [`exp_f32`].
#[inline(always)]
#[allow(clippy::excessive_precision)] // the fit's coefficients as published
fn gelu_erf_slice<M: MulAdd>(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        let z = -*v * std::f32::consts::FRAC_1_SQRT_2;
        let a = z.abs();
        let t = 1.0 / M::mul_add(0.5, a, 1.0);
        let mut p = 0.170_872_77f32;
        for c in [-0.822_152_23, 1.488_515_87, -1.135_203_98, 0.278_868_07, -0.186_288_06, 0.096_784_18, 0.374_091_96, 1.000_023_68] {
            p = M::mul_add(p, t, c);
        }
        p = M::mul_add(p, t, -1.265_512_23);
        let tail = t * exp_f32::<M>(M::mul_add(-a, a, p)); // erfc(|z|)
        let erfc = if z >= 0.0 { tail } else { 2.0 - tail };
        *v *= 0.5 * erfc;
    }
}

/// `fn $name(args)`: `$body::<M>(args)` compiled for AVX-512 or AVX2 with FMA where the processor has them (the
/// crate is built for baseline x86-64, where the loops would run 4 lanes wide), with FMA on aarch64 (every aarch64
/// processor has it), and with separate multiplies and adds elsewhere.
macro_rules! simd_dispatch {
    ($vis:vis fn $name:ident => $body:ident($($arg:ident: $ty:ty),*)) => {
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body::<$crate::fast_ops::Fused>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body::<$crate::fast_ops::Fused>($($arg),*)
                }
                // SAFETY: the features were detected on this CPU.
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    return unsafe { avx2($($arg),*) };
                }
            }
            #[cfg(target_arch = "aarch64")]
            return $body::<$crate::fast_ops::Fused>($($arg),*);
            #[allow(unreachable_code)]
            $body::<$crate::fast_ops::Plain>($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

simd_dispatch!(pub(crate) fn softmax_rows_in_place => softmax_rows(rows: &mut [f32], dim: usize));
simd_dispatch!(fn quick_gelu_dispatch => quick_gelu_slice(xs: &mut [f32]));
simd_dispatch!(fn gelu_erf_dispatch => gelu_erf_slice(xs: &mut [f32]));
simd_dispatch!(fn silu_dispatch => silu_slice(xs: &mut [f32]));

struct SoftmaxLastDimInplace;

impl InplaceOp1 for SoftmaxLastDimInplace {
    fn name(&self) -> &'static str {
        "softmax-last-dim-inplace"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let dim = layout.dims().last().copied().unwrap_or(1).max(1);
        let data = contiguous_f32(storage, layout, self.name())?;
        data.par_chunks_mut(dim * 16.max(4096 / dim)).for_each(|rows| softmax_rows_in_place(rows, dim));
        Ok(())
    }
}

/// An elementwise function applied in place, in parallel chunks.
struct Elementwise(&'static str, fn(&mut [f32]));

impl InplaceOp1 for Elementwise {
    fn name(&self) -> &'static str {
        self.0
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = contiguous_f32(storage, layout, self.name())?;
        data.par_chunks_mut(1 << 16).for_each(self.1);
        Ok(())
    }
}

pub(crate) fn fast_path(x: &Tensor) -> bool {
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
        x.inplace_op1(&Elementwise("quick-gelu-inplace", quick_gelu_dispatch))?;
        Ok(x)
    } else {
        &x * candle_nn::ops::sigmoid(&(&x * 1.702)?)?
    }
}

/// torch's exact GELU, `x Φ(x)`. `x` is consumed and, on CPU/f32, overwritten in place (candle's `gelu_erf` calls
/// libm's scalar `erf` on one thread).
pub fn gelu_erf(x: Tensor) -> Result<Tensor> {
    if fast_path(&x) {
        x.inplace_op1(&Elementwise("gelu-erf-inplace", gelu_erf_dispatch))?;
        Ok(x)
    } else {
        x.gelu_erf()
    }
}

/// `x sigmoid(x)`, into a new tensor (on CPU/f32 in parallel with the vectorised `exp`; candle's `silu` runs
/// libm's `exp` on one thread).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if fast_path(x) {
        let y = x.copy()?;
        y.inplace_op1(&Elementwise("silu-inplace", silu_dispatch))?;
        Ok(y)
    } else {
        candle_nn::ops::silu(x)
    }
}

/// `y + bias` over the last dimension. `y` is consumed and, on CPU/f32, added to in place (callers pass a
/// freshly computed product).
pub fn add_bias(y: Tensor, bias: &Tensor) -> Result<Tensor> {
    let d = y.dims().last().copied().unwrap_or(1);
    if fast_path(&y) && fast_path(bias) && bias.dims() == [d] && d > 0 {
        y.inplace_op2(bias, &AddBias)?;
        Ok(y)
    } else {
        y.broadcast_add(bias)
    }
}

/// `dst[.., i] += bias[i]`, rows in parallel.
struct AddBias;

impl InplaceOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias-inplace"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dl: &Layout, bs: &CpuStorage, bl: &Layout) -> Result<()> {
        let bias = contiguous_f32_ref(bs, bl, self.name())?;
        let data = contiguous_f32(dst, dl, self.name())?;
        let d = bias.len();
        data.par_chunks_mut(d * 64.max(4096 / d)).for_each(|rows| {
            for row in rows.chunks_mut(d) {
                row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let want = x.exp();
            for got in [exp_f32::<Plain>(x), exp_f32::<Fused>(x)] {
                assert!(((got - want) / want).abs() < 4e-7, "exp({x}) = {got}, want {want}");
            }
        }
    }

    #[test]
    fn sin_is_accurate() {
        let xs = (-300_000..=300_000).map(|i| i as f32 * 0.0273).chain([0.0, -0.0, 1e-30, 1e-6, 8191.9, -8192.0]);
        for x in xs {
            let want = (x as f64).sin();
            for got in [sin_f32::<Plain>(x), sin_f32::<Fused>(x)] {
                assert!((got as f64 - want).abs() <= 2.0 * f32::EPSILON as f64 * want.abs().max(0.5), "sin({x}) = {got}, want {want}");
            }
        }
    }

    #[test]
    fn gelu_erf_is_accurate() -> Result<()> {
        // against candle's f64 GELU (its own f64 erf), over the range activations take and into both tails
        let xs: Vec<f32> = (-12000..=12000).map(|i| i as f32 * 1e-3).collect();
        let want = Tensor::new(xs.as_slice(), &candle_core::Device::Cpu)?.to_dtype(DType::F64)?.gelu_erf()?;
        let want = want.to_vec1::<f64>()?;
        for gelu in [gelu_erf_slice::<Plain> as fn(&mut [f32]), gelu_erf_slice::<Fused>] {
            let mut got = xs.clone();
            gelu(&mut got);
            // within 4 f32 ulps of max(|gelu(x)|, 1): relative where the value is large, absolute (≤ 4.8e-7) in the
            // negative tail, where torch's and candle's `1 + erf` lose everything to cancellation anyway
            for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
                let err = (*g as f64 - w).abs() / w.abs().max(1.0);
                assert!(err <= 4.0 * f32::EPSILON as f64, "gelu({x}) = {g}, want {w}");
            }
        }
        Ok(())
    }

    #[test]
    fn softmax_gelu_silu_and_bias_match_candle() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = (Tensor::randn(0f32, 3f32, (5, 7, 33), &dev)? * 1.0)?;
        let want = candle_nn::ops::softmax_last_dim(&x)?;
        let got = softmax_last_dim(x.copy()?)?;
        let err = crate::error_bounds::max_abs_diff(&got, &want);
        assert!(err < 1e-6, "softmax err {err}");
        let want = (&x * candle_nn::ops::sigmoid(&(&x * 1.702)?)?)?;
        let got = quick_gelu(x.copy()?)?;
        let err = crate::error_bounds::max_abs_diff(&got, &want);
        assert!(err < 1e-5, "quick gelu err {err}");
        let got = silu(&x)?;
        let err = crate::error_bounds::max_abs_diff(&got, &candle_nn::ops::silu(&x)?);
        assert!(err < 1e-5, "silu err {err}");
        let bias = Tensor::randn(0f32, 1f32, 33, &dev)?;
        let got = add_bias(x.copy()?, &bias)?;
        let err = crate::error_bounds::max_abs_diff(&got, &x.broadcast_add(&bias)?);
        assert_eq!(err, 0.0, "bias");
        Ok(())
    }
}

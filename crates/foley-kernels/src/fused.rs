//! Fused elementwise passes of a diffusion transformer block on the CPU, each one parallel pass where candle
//! takes several: the adaLN `modulate(layer_norm(x))`, the gated residuals `x + y · gate`, SwiGLU's
//! `silu(a) · b`, and the attention inputs (q, k, v out of a fused projection, q and k RMS-normalised and
//! rotated by pairs). candle runs these as chains of broadcast ops, one new tensor each, and its unary ops and
//! `rms_norm` on one thread; in the MM-DiT at small_16k they were about a sixth of a sampler step, mostly on the
//! main thread between the GEMMs.
//!
//! Each function returns `None` where it does not apply (another device or dtype, a layout it does not read):
//! the caller then runs the generic candle ops. Only f32 on the CPU takes these paths; the CPU bf16 mode keeps
//! its activations in f32, so it does too.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, InplaceOp2, InplaceOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use crate::fast_ops::{exp_f32, simd_dispatch, MulAdd};

fn cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Rows handed to one parallel task: about 16k elements.
fn rows_per_task(d: usize) -> usize {
    (16384 / d.max(1)).max(1)
}

/// A `(B, N, D)` operand read by rows: unit stride along D, any stride along B and N, and a size-1 B or N
/// broadcast (the modulation of the global condition is `(B, 1, D)`).
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f32],
    stride: [usize; 2],
    d: usize,
}

impl<'a> Rows<'a> {
    /// `storage`/`layout` read as rows of `(b, n, d)`; `what` names the operand in errors.
    fn new(storage: &'a CpuStorage, layout: &Layout, (b, n, d): (usize, usize, usize), what: &str) -> Result<Self> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("{what}: f32 only")
        };
        let (dims, st) = (layout.dims(), layout.stride());
        if dims.len() != 3 || dims[2] != d || st[2] != 1 {
            candle_core::bail!("{what}: layout {layout:?} for rows of ({b}, {n}, {d})")
        }
        let axis = |i: usize, want: usize| match dims[i] {
            1 => Ok(0),
            x if x == want => Ok(st[i]),
            _ => candle_core::bail!("{what}: {dims:?} does not broadcast to ({b}, {n}, {d})"),
        };
        let stride = [axis(0, b)?, axis(1, n)?];
        let last = layout.start_offset() + (dims[0] - 1) * st[0] + (dims[1] - 1) * st[1] + d;
        if dims.contains(&0) || last > data.len() {
            candle_core::bail!("{what}: layout {layout:?} outside its storage ({})", data.len())
        }
        Ok(Self {
            data: &data[layout.start_offset()..],
            stride,
            d,
        })
    }

    fn row(&self, b: usize, n: usize) -> &'a [f32] {
        let at = b * self.stride[0] + n * self.stride[1];
        &self.data[at..at + self.d]
    }
}

/// Sum of `f(x)` over `xs` in 8 independent lanes (so that the loop vectorises).
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut it = xs.chunks_exact(8);
    for c in &mut it {
        for (s, &v) in lanes.iter_mut().zip(c) {
            *s += f(v);
        }
    }
    it.remainder().iter().map(|&v| f(v)).sum::<f32>() + lanes.iter().sum::<f32>()
}

// ---- modulate(layer_norm(x), shift, scale) ----

/// `LayerNorm(x) · (1 + scale) + shift` (no affine parameters; mean, then the variance around it).
struct NormModulate {
    eps: f32,
}

struct NormModulateArgs<'a> {
    x: Rows<'a>,
    shift: Rows<'a>,
    scale: Rows<'a>,
    n: usize,
    eps: f32,
}

#[inline(always)]
fn norm_modulate_rows<M: MulAdd>(out: &mut [f32], first_row: usize, a: &NormModulateArgs<'_>) {
    let d = a.x.d;
    for (i, o) in out.chunks_exact_mut(d).enumerate() {
        let (b, n) = ((first_row + i) / a.n, (first_row + i) % a.n);
        let x = a.x.row(b, n);
        let mean = lane_sum(x, |v| v) / d as f32;
        let var = lane_sum(x, |v| (v - mean) * (v - mean)) / d as f32;
        let inv = 1.0 / (var + a.eps).sqrt();
        for (((o, &x), &shift), &scale) in o.iter_mut().zip(x).zip(a.shift.row(b, n)).zip(a.scale.row(b, n)) {
            *o = M::mul_add((x - mean) * inv, 1.0 + scale, shift);
        }
    }
}

simd_dispatch!(fn norm_modulate_dispatch => norm_modulate_rows(out: &mut [f32], first_row: usize, a: &NormModulateArgs<'_>));

impl CustomOp3 for NormModulate {
    fn name(&self) -> &'static str {
        "norm-modulate-cpu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        shs: &CpuStorage,
        shl: &Layout,
        scs: &CpuStorage,
        scl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, n, d) = xl.shape().dims3()?;
        let a = NormModulateArgs {
            x: Rows::new(xs, xl, (b, n, d), "x")?,
            shift: Rows::new(shs, shl, (b, n, d), "shift")?,
            scale: Rows::new(scs, scl, (b, n, d), "scale")?,
            n,
            eps: self.eps,
        };
        let mut out = vec![0f32; b * n * d];
        let rows = rows_per_task(d);
        out.par_chunks_mut(rows * d)
            .enumerate()
            .for_each(|(t, o)| norm_modulate_dispatch(o, t * rows, &a));
        Ok((CpuStorage::F32(out), Shape::from((b, n, d))))
    }
}

/// `LayerNorm(x, eps) · (1 + scale) + shift` (DiT's adaLN modulation) for `x` `(B, N, D)` and `shift`, `scale`
/// `(B, N or 1, D)` (views into the adaLN output are read where they lie).
pub fn norm_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    match try_norm_modulate(x, shift, scale, eps)? {
        Some(y) => Ok(y),
        None => modulate(&layer_norm(x, eps)?, shift, scale),
    }
}

/// `x * (1 + scale) + shift` (DiT's adaLN modulation), broadcasting over tokens.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// `nn.LayerNorm(dim, elementwise_affine=False)` over the last dimension, computed in f32 (candle's fused
/// kernel with unit scale and zero shift).
fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x32 = x.to_dtype(DType::F32)?.contiguous()?;
    let ones = Tensor::ones(d, DType::F32, x.device())?;
    let zeros = Tensor::zeros(d, DType::F32, x.device())?;
    candle_nn::ops::layer_norm(&x32, &ones, &zeros, eps as f32)?.to_dtype(x.dtype())
}


fn try_norm_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, eps: f64) -> Result<Option<Tensor>> {
    if !(cpu_f32(x) && cpu_f32(shift) && cpu_f32(scale)) || x.rank() != 3 || x.elem_count() == 0 {
        return Ok(None);
    }
    let x = if x.stride()[2] == 1 { x.clone() } else { x.contiguous()? };
    Ok(Some(x.apply_op3_no_bwd(shift, scale, &NormModulate { eps: eps as f32 })?))
}

// ---- x + y · gate, in place on y ----

struct GatedResidual;

struct GatedArgs<'a> {
    x: Rows<'a>,
    gate: Rows<'a>,
    n: usize,
}

#[inline(always)]
fn gated_rows<M: MulAdd>(y: &mut [f32], first_row: usize, a: &GatedArgs<'_>) {
    for (i, y) in y.chunks_exact_mut(a.x.d).enumerate() {
        let (b, n) = ((first_row + i) / a.n, (first_row + i) % a.n);
        for ((y, &x), &g) in y.iter_mut().zip(a.x.row(b, n)).zip(a.gate.row(b, n)) {
            *y = M::mul_add(*y, g, x);
        }
    }
}

simd_dispatch!(fn gated_dispatch => gated_rows(y: &mut [f32], first_row: usize, a: &GatedArgs<'_>));

impl InplaceOp3 for GatedResidual {
    fn name(&self) -> &'static str {
        "gated-residual-cpu"
    }

    fn cpu_fwd(
        &self,
        ys: &mut CpuStorage,
        yl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<()> {
        let (b, n, d) = yl.shape().dims3()?;
        let a = GatedArgs {
            x: Rows::new(xs, xl, (b, n, d), "x")?,
            gate: Rows::new(gs, gl, (b, n, d), "gate")?,
            n,
        };
        let y = crate::fast_ops::contiguous_f32(ys, yl, self.name())?;
        let rows = rows_per_task(d);
        y.par_chunks_mut(rows * d).enumerate().for_each(|(t, y)| gated_dispatch(y, t * rows, &a));
        Ok(())
    }
}

/// `x + y · gate` (DiT's gated residual) for `x`, `y` `(B, N, D)` and `gate` `(B, N or 1, D)`. `y` is consumed and,
/// on the fast path, overwritten (callers pass a freshly computed projection).
pub fn gated_residual(x: &Tensor, y: Tensor, gate: &Tensor) -> Result<Tensor> {
    match try_gated_residual(x, y, gate)? {
        Ok(y) => Ok(y),
        Err(y) => x + y.broadcast_mul(gate)?,
    }
}

/// `Err(y)` where the fast path does not apply.
fn try_gated_residual(x: &Tensor, y: Tensor, gate: &Tensor) -> Result<std::result::Result<Tensor, Tensor>> {
    let fits = y.is_contiguous() && y.rank() == 3 && y.dims() == x.dims() && x.stride()[2] == 1;
    if !(cpu_f32(x) && cpu_f32(&y) && cpu_f32(gate) && fits) {
        return Ok(Err(y));
    }
    y.inplace_op3(x, gate, &GatedResidual)?;
    Ok(Ok(y))
}

// ---- silu(a) · b, in place on a ----

struct SiluMul;

#[inline(always)]
fn silu_mul_slice<M: MulAdd>(a: &mut [f32], b: &[f32]) {
    for (a, &b) in a.iter_mut().zip(b) {
        *a = *a / (1.0 + exp_f32::<M>(-*a)) * b;
    }
}

simd_dispatch!(fn silu_mul_dispatch => silu_mul_slice(a: &mut [f32], b: &[f32]));

impl InplaceOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul-cpu"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let b = crate::fast_ops::contiguous_f32_ref(s2, l2, self.name())?;
        let a = crate::fast_ops::contiguous_f32(s1, l1, self.name())?;
        if a.len() != b.len() {
            candle_core::bail!("{}: {} against {} elements", self.name(), a.len(), b.len())
        }
        a.par_chunks_mut(1 << 14)
            .zip(b.par_chunks(1 << 14))
            .for_each(|(a, b)| silu_mul_dispatch(a, b));
        Ok(())
    }
}

/// SwiGLU's `silu(a) · b`. `a` is consumed and, on the fast path, overwritten (callers pass a freshly computed
/// projection).
pub fn silu_mul(a: Tensor, b: &Tensor) -> Result<Tensor> {
    match try_silu_mul(a, b)? {
        Ok(y) => Ok(y),
        Err(a) => candle_nn::ops::silu(&a)? * b,
    }
}

/// `Err(a)` where the fast path does not apply.
fn try_silu_mul(a: Tensor, b: &Tensor) -> Result<std::result::Result<Tensor, Tensor>> {
    if !(cpu_f32(&a) && cpu_f32(b) && a.is_contiguous() && b.is_contiguous() && a.dims() == b.dims()) {
        return Ok(Err(a));
    }
    a.inplace_op2(b, &SiluMul)?;
    Ok(Ok(a))
}

// ---- q, k, v out of the fused projection ----

/// q, k and v of a fused `(B, N, H·d·3)` projection (q, k, v interleaved innermost, the reference's
/// `b n (h d j)`), as `(3, B, H, N, d)`: q and k RMS-normalised (`x / sqrt(mean(x²) + eps) · w`) and, where a
/// rotation table is given, rotated pairwise (`apply_rope`).
struct QkvHeads<'a> {
    heads: usize,
    eps: f32,
    q_norm: &'a [f32],
    k_norm: &'a [f32],
    /// `cos`, `sin`, each `(N, d / 2)`.
    rope: Option<(&'a [f32], &'a [f32])>,
}

impl QkvHeads<'_> {
    /// One output block `(N, d)`: stream `j` (q, k, v) of head `h`, from `src`, one batch element's `N` rows.
    fn block(&self, out: &mut [f32], src: &[f32], j: usize, h: usize, scratch: &mut [f32]) {
        let d = scratch.len();
        let row = 3 * self.heads * d;
        let norm = match j {
            0 => Some(self.q_norm),
            1 => Some(self.k_norm),
            _ => None,
        };
        for (n, o) in out.chunks_exact_mut(d).enumerate() {
            let seg = &src[n * row + h * d * 3..][..d * 3];
            for (s, v) in scratch.iter_mut().zip(seg.chunks_exact(3)) {
                *s = v[j];
            }
            let Some(w) = norm else {
                o.copy_from_slice(scratch);
                continue;
            };
            let inv = 1.0 / (lane_sum(scratch, |v| v * v) / d as f32 + self.eps).sqrt();
            match self.rope {
                Some((cos, sin)) => {
                    let (cos, sin) = (&cos[n * d / 2..][..d / 2], &sin[n * d / 2..][..d / 2]);
                    for ((((o, x), w), &c), &s) in
                        o.chunks_exact_mut(2).zip(scratch.chunks_exact(2)).zip(w.chunks_exact(2)).zip(cos).zip(sin)
                    {
                        let (x0, x1) = (x[0] * inv * w[0], x[1] * inv * w[1]);
                        o[0] = c * x0 - s * x1;
                        o[1] = s * x0 + c * x1;
                    }
                }
                None => {
                    for ((o, &x), &w) in o.iter_mut().zip(scratch.iter()).zip(w) {
                        *o = x * inv * w;
                    }
                }
            }
        }
    }
}

impl CustomOp1 for QkvHeads<'_> {
    fn name(&self) -> &'static str {
        "qkv-heads-cpu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, n, w) = l.shape().dims3()?;
        let h = self.heads;
        let d = w / (3 * h);
        let src = crate::fast_ops::contiguous_f32_ref(s, l, self.name())?;
        let mut out = vec![0f32; 3 * b * h * n * d];
        if out.is_empty() {
            return Ok((CpuStorage::F32(out), Shape::from((3, b, h, n, d))));
        }
        out.par_chunks_mut(n * d).enumerate().for_each_init(
            || vec![0f32; d],
            |scratch, (t, o)| {
                let (j, bi, hi) = (t / (b * h), t / h % b, t % h);
                self.block(o, &src[bi * n * w..][..n * w], j, hi, scratch);
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((3, b, h, n, d))))
    }
}

/// `SelfAttention`'s inputs from its fused projection `qkv` `(B, N, 3·H·d)`: `[q, k, v]`, each `(B, H, N, d)`
/// (views of one new tensor), with q and k RMS-normalised by `q_norm`/`k_norm` (`(d,)`) and rotated by
/// `rope` (`cos`, `sin`, each `(N, d/2)`) where given.
pub fn qkv_heads(
    qkv: &Tensor,
    heads: usize,
    q_norm: &Tensor,
    k_norm: &Tensor,
    eps: f32,
    rope: Option<(&Tensor, &Tensor)>,
) -> Result<Option<[Tensor; 3]>> {
    let ok = |t: &Tensor| cpu_f32(t) && t.is_contiguous();
    if !(ok(qkv) && ok(q_norm) && ok(k_norm) && rope.is_none_or(|(c, s)| ok(c) && ok(s))) || qkv.rank() != 3 {
        return Ok(None);
    }
    let (_, n, w) = qkv.dims3()?;
    let d = w / (3 * heads.max(1));
    if heads == 0 || w != 3 * heads * d || d % 2 != 0 || q_norm.dims() != [d] || k_norm.dims() != [d] {
        candle_core::bail!("qkv heads: {:?} for {heads} heads, norms {:?}", qkv.dims(), q_norm.dims())
    }
    if let Some((c, s)) = rope {
        if c.dims() != [n, d / 2] || s.dims() != [n, d / 2] {
            candle_core::bail!("qkv heads: rotations {:?} for {n} tokens of {d}", c.dims())
        }
    }
    let (q_norm, k_norm) = (q_norm.to_vec1::<f32>()?, k_norm.to_vec1::<f32>()?);
    let tables = match rope {
        Some((c, s)) => Some((c.flatten_all()?.to_vec1::<f32>()?, s.flatten_all()?.to_vec1::<f32>()?)),
        None => None,
    };
    let op = QkvHeads {
        heads,
        eps,
        q_norm: &q_norm,
        k_norm: &k_norm,
        rope: tables.as_ref().map(|(c, s)| (c.as_slice(), s.as_slice())),
    };
    let all = qkv.apply_op1_no_bwd(&op)?;
    Ok(Some([all.get(0)?, all.get(1)?, all.get(2)?]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        Ok(crate::error_bounds::max_abs_diff(a, b))
    }

    fn randn(dims: &[usize]) -> Result<Tensor> {
        Tensor::randn(0f32, 1.0, dims, &Device::Cpu)
    }

    /// Consecutive channel pairs of `x` `(B, H, N, d)` rotated by `cos`/`sin` `(N, d/2)`, as candle ops.
    fn generic_rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (b, h, n, d) = x.dims4()?;
        let xf = x.reshape((b, h, n, d / 2, 2))?;
        let (x0, x1) = (xf.narrow(4, 0, 1)?.squeeze(4)?, xf.narrow(4, 1, 1)?.squeeze(4)?);
        let o0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
        let o1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
        Tensor::stack(&[o0, o1], 4)?.reshape((b, h, n, d))
    }

    /// Against the generic candle ops, on per-token and broadcast modulations that are views of one adaLN output
    /// (as transformer blocks chunk it).
    #[test]
    fn norm_modulate_and_gated_residual_match_the_generic_ops() -> Result<()> {
        for &(b, n, d, per_token) in &[(2usize, 37usize, 48usize, true), (2, 5, 20, false), (1, 300, 448, true)] {
            let x = randn(&[b, n, d])?.affine(3.0, 0.5)?;
            let m = randn(&[b, if per_token { n } else { 1 }, 3 * d])?.chunk(3, D::Minus1)?;
            let want = modulate(&layer_norm(&x, 1e-5)?, &m[0], &m[1])?;
            let got = try_norm_modulate(&x, &m[0], &m[1], 1e-5)?.expect("cpu f32");
            assert!(max_diff(&got, &want)? < 2e-5, "norm_modulate {b} {n} {d}");

            let y = randn(&[b, n, d])?;
            let want = (&x + y.broadcast_mul(&m[2])?)?;
            let got = try_gated_residual(&x, y.copy()?, &m[2])?.ok().expect("cpu f32");
            assert!(max_diff(&got, &want)? < 1e-5, "gated residual {b} {n} {d}");
        }
        Ok(())
    }

    #[test]
    fn silu_mul_matches_candle() -> Result<()> {
        let (a, b) = ((randn(&[3, 41, 70])? * 4.0)?, randn(&[3, 41, 70])?);
        let want = (candle_nn::ops::silu(&a)? * &b)?;
        let got = try_silu_mul(a.copy()?, &b)?.ok().expect("cpu f32");
        assert!(max_diff(&got, &want)? < 1e-5);
        Ok(())
    }

    #[test]
    fn qkv_heads_match_the_generic_ops() -> Result<()> {
        for &(b, n, h, d, rotate) in &[(2usize, 19usize, 3usize, 8usize, true), (1, 7, 2, 64, false), (2, 250, 7, 64, true)] {
            let qkv = randn(&[b, n, 3 * h * d])?;
            let (qn, kn) = ((randn(&[d])? + 1.0)?, (randn(&[d])? + 1.0)?);
            // rotation angles of any positions and frequencies
            let angles = (randn(&[n, d / 2])? * 3.0)?;
            let (cos, sin) = (angles.cos()?, angles.sin()?);
            let eps = f32::EPSILON;
            // the generic path: split heads, RMS-normalise, rotate
            let heads = qkv.reshape((b, n, h, d, 3))?;
            let pick = |j: usize| heads.narrow(4, j, 1)?.squeeze(4)?.transpose(1, 2)?.contiguous();
            let mut want_q = candle_nn::ops::rms_norm(&pick(0)?, &qn, eps)?;
            let mut want_k = candle_nn::ops::rms_norm(&pick(1)?, &kn, eps)?;
            if rotate {
                want_q = generic_rotate(&want_q, &cos, &sin)?;
                want_k = generic_rotate(&want_k, &cos, &sin)?;
            }
            let [q, k, v] =
                qkv_heads(&qkv, h, &qn, &kn, eps, rotate.then_some((&cos, &sin)))?.expect("cpu f32");
            assert!(max_diff(&q, &want_q)? < 1e-5, "q {b} {n} {h} {d}");
            assert!(max_diff(&k, &want_k)? < 1e-5, "k {b} {n} {h} {d}");
            assert_eq!(max_diff(&v, &pick(2)?)?, 0.0);
        }
        Ok(())
    }

    #[test]
    fn other_dtypes_are_left_to_the_caller() -> Result<()> {
        let x = Tensor::zeros((1, 2, 4), DType::F64, &Device::Cpu)?;
        assert!(try_norm_modulate(&x, &x, &x, 1e-5)?.is_none());
        assert!(try_silu_mul(x.clone(), &x)?.is_err());
        assert!(try_gated_residual(&x, x.clone(), &x)?.is_err());
        Ok(())
    }
}

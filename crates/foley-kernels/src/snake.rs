//! CPU fast path of the anti-aliased Snake/SnakeBeta activation (BigVGAN's `Activation1d`: 2x polyphase
//! up-sampling with the 12-tap filter, activation, 12-tap stride-2 low-pass) fused into one pass per row, rows
//! spread over the cores. Same maths as the tensor path (which serves CUDA/Metal and other dtypes); as a chain
//! of small tensor ops the activation dominated BigVGAN's CPU time. Checked against the tensor path in the
//! tests below and end-to-end by the BigVGAN parity fixtures.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

use crate::fast_ops;

/// Filter taps of both resampling filters.
pub const TAPS: usize = 12;
const HALF: usize = TAPS / 2;

/// The fused op: per channel `alpha` and `1 / (beta + 1e-9)` (already exponentiated), and both filters.
#[derive(Debug, Clone)]
pub struct FusedActivation {
    pub alpha: Vec<f32>,
    pub inv_beta: Vec<f32>,
    pub up: [f32; TAPS],
    pub down: [f32; TAPS],
}

impl FusedActivation {
    /// One row of `T` samples → `T` samples; `buf` is scratch (grown as needed).
    fn row(&self, x: &[f32], out: &mut [f32], c: usize, buf: &mut Vec<f32>) {
        row_dispatch(self, x, out, c, buf)
    }
}

/// [`FusedActivation::row`]. Every loop runs over contiguous slices so that it vectorises: the up-sampler's two
/// phases tap by tap, the activated signal kept as its even and odd samples, the down-sampler tap by tap over
/// them (each output's sum in the same order as a plain dot product).
#[inline(always)]
fn row_kernel<M: fast_ops::MulAdd>(op: &FusedActivation, x: &[f32], out: &mut [f32], c: usize, buf: &mut Vec<f32>) {
    let t = x.len();
    let (alpha, inv_beta) = (op.alpha[c], op.inv_beta[c]);
    buf.clear();
    buf.resize(4 * t + 32, 0.0);
    let (xp, rest) = buf.split_at_mut(t + 2 * (HALF - 1));
    // replicate padding by K/2 - 1 = 5 on both sides
    for (i, v) in xp.iter_mut().enumerate() {
        *v = x[i.saturating_sub(HALF - 1).min(t - 1)];
    }
    // polyphase taps, the up-sampler's gain of 2 folded in (exact): the up-sampled signal u has
    // u[2s] = 2 Σ_k xp[s + 2 + k] up[2 (5 − k) + 1] and u[2s + 1] = 2 Σ_k xp[s + 3 + k] up[2 (5 − k)]
    let mut g0 = [0f32; HALF];
    let mut g1 = [0f32; HALF];
    for k in 0..HALF {
        g0[k] = 2.0 * op.up[2 * (HALF - 1 - k)];
        g1[k] = 2.0 * op.up[2 * (HALF - 1 - k) + 1];
    }
    // the activated signal v with the down-sampler's replicate padding (5 left, 6 right), v[5 + i] = act(u[i]),
    // held as even[i] = v[2i] (t + 6 of them) and odd[i] = v[2i + 1] (t + 5): u[2s] is odd[s + 2], u[2s + 1] even[s + 3]
    let (even, rest) = rest.split_at_mut(t + HALF);
    let (odd, _) = rest.split_at_mut(t + HALF - 1);
    for k in 0..HALF {
        let (e, o) = (&mut odd[2..2 + t], &mut even[3..3 + t]);
        for (v, &xv) in e.iter_mut().zip(&xp[2 + k..2 + k + t]) {
            *v += xv * g1[k];
        }
        for (v, &xv) in o.iter_mut().zip(&xp[3 + k..3 + k + t]) {
            *v += xv * g0[k];
        }
    }
    snake::<M>(&mut odd[2..2 + t], alpha, inv_beta);
    snake::<M>(&mut even[3..3 + t], alpha, inv_beta);
    let (first, last) = (odd[2], even[t + 2]);
    even[..3].fill(first);
    odd[..2].fill(first);
    even[t + 3..].fill(last);
    odd[t + 2..].fill(last);
    // out[j] = Σ_k v[2j + k] down[k], tap by tap
    out.fill(0.0);
    for (k, &d) in op.down.iter().enumerate() {
        let src = if k % 2 == 0 { &even[k / 2..k / 2 + t] } else { &odd[k / 2..k / 2 + t] };
        for (o, &v) in out.iter_mut().zip(src) {
            *o += v * d;
        }
    }
}

fast_ops::simd_dispatch!(fn row_dispatch => row_kernel(op: &FusedActivation, x: &[f32], out: &mut [f32], c: usize, buf: &mut Vec<f32>));

/// `u + sin²(α u) / β` of every element, in place, with the vectorised [`fast_ops::sin_f32`] (libm's scalar
/// `sinf` was a third of the activation's time) where every argument is within its range.
#[inline(always)]
fn snake<M: fast_ops::MulAdd>(us: &mut [f32], alpha: f32, inv_beta: f32) {
    if us.iter().all(|u| (u * alpha).abs() <= fast_ops::SIN_F32_MAX) {
        for u in us.iter_mut() {
            let s = fast_ops::sin_f32::<M>(*u * alpha);
            *u = M::mul_add(inv_beta * s, s, *u);
        }
    } else {
        for u in us.iter_mut() {
            let s = (*u * alpha).sin();
            *u += inv_beta * s * s;
        }
    }
}

impl CustomOp1 for FusedActivation {
    fn name(&self) -> &'static str {
        "bigvgan-anti-aliased-snake"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, t) = layout.shape().dims3()?;
        if c != self.alpha.len() || t == 0 {
            candle_core::bail!(
                "anti-aliased snake: {c} channels × {t} samples, op built for {}",
                self.alpha.len()
            )
        }
        let data = match storage {
            CpuStorage::F32(d) => d,
            _ => candle_core::bail!("anti-aliased snake: f32 only"),
        };
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => &data[start..end],
            None => candle_core::bail!("anti-aliased snake: contiguous input expected"),
        };
        let mut out = vec![0f32; b * c * t];
        let rows = b * c;
        // as many threads as candle's own CPU kernels use (RAYON_NUM_THREADS or all cores)
        let threads = candle_core::utils::get_num_threads().min(rows).max(1);
        let per = rows.div_ceil(threads);
        let run = |chunk_idx: usize, out_chunk: &mut [f32]| {
            let mut buf = Vec::new();
            for (r, o) in out_chunk.chunks_mut(t).enumerate() {
                let row = chunk_idx * per + r;
                self.row(&x[row * t..(row + 1) * t], o, row % c, &mut buf);
            }
        };
        if threads == 1 {
            run(0, &mut out);
        } else {
            std::thread::scope(|scope| {
                for (chunk_idx, out_chunk) in out.chunks_mut(per * t).enumerate() {
                    let run = &run;
                    scope.spawn(move || run(chunk_idx, out_chunk));
                }
            });
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

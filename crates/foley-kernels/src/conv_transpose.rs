//! `nn.ConvTranspose1d` (one group, dilation 1, no output padding) for the vocoders' up-sampling layers.
//!
//! On CPU/f32 it is a GEMM and a scatter: with the `(Ci, Co, K)` weight stored at load as `A = (Co·K, Ci)`,
//! `Z = A · x` holds every tap's contribution `Z[(co, j), t]` to output position `t·u + j − pad`, which are then
//! summed into the output (col2im), output channels in parallel. candle's CPU `conv_transpose1d` ran the 16 kHz
//! BigVGAN's six up-sampling layers at 8–42 GFLOP/s on a 2-core Zen 3 (0.80 s of its 9.8 s for 8 s of audio).
//! Other devices and dtypes use candle's op.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Shape, Tensor};
use rayon::prelude::*;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ConvTranspose1d {
    /// CPU/f32: `(Co·K, Ci)`; elsewhere the checkpoint's `(Ci, Co, K)`.
    w: Tensor,
    cpu: bool,
    bias: Option<Tensor>,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl ConvTranspose1d {
    /// `w: (Ci, Co, K)` as PyTorch stores it, `bias: (Co,)`.
    pub fn new(w: Tensor, bias: Option<Tensor>, stride: usize, padding: usize) -> candle_core::Result<Self> {
        let (_, co, k) = w.dims3()?;
        if stride == 0 || k == 0 {
            candle_core::bail!("conv_transpose1d: stride {stride}, kernel {k}")
        }
        let cpu = w.device().is_cpu() && w.dtype() == DType::F32;
        let w = if cpu { w.permute((1, 2, 0))?.contiguous()?.reshape((co * k, ()))? } else { w };
        Ok(Self {
            w,
            cpu,
            bias,
            out_channels: co,
            kernel: k,
            stride,
            padding,
        })
    }
}

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !self.cpu {
            let y = x.conv_transpose1d(&self.w, self.padding, 0, self.stride, 1, 1)?;
            return match &self.bias {
                Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
                None => Ok(y),
            };
        }
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            candle_core::bail!("conv_transpose1d: weights are f32 on the CPU, input is {:?}", x.dtype())
        }
        let bias = match &self.bias {
            Some(b) => b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; self.out_channels],
        };
        let op = Scatter {
            bias,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        };
        x.contiguous()?.apply_op2_no_bwd(&self.w, &op)
    }
}

/// The CPU path: `x (B, Ci, T)` and `A (Co·K, Ci)` → `(B, Co, (T − 1)·u − 2·pad + K)`.
struct Scatter {
    bias: Vec<f32>,
    kernel: usize,
    stride: usize,
    padding: usize,
}

/// Elements of `Z` per chunk of input positions: bounds the scratch at 16 MB.
const CHUNK_ELEMS: usize = 1 << 22;

impl CustomOp2 for Scatter {
    fn name(&self) -> &'static str {
        "conv-transpose1d-gemm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = crate::fast_ops::contiguous_f32_ref(xs, xl, self.name())?;
        let a = crate::fast_ops::contiguous_f32_ref(ws, wl, self.name())?;
        let (b, ci, t) = xl.shape().dims3()?;
        let (cok, wci) = wl.shape().dims2()?;
        let (k, u, p, co) = (self.kernel, self.stride, self.padding, self.bias.len());
        if wci != ci || cok != co * k {
            candle_core::bail!("{}: input has {ci} channels, the weight is ({cok}, {wci})", self.name())
        }
        let Some(t_out) = ((t.max(1) - 1) * u + k).checked_sub(2 * p).filter(|&n| n > 0 && t > 0) else {
            candle_core::bail!("{}: input of length {t} gives no output", self.name())
        };
        let mut out = vec![0f32; b * co * t_out];
        let chunk = (CHUNK_ELEMS / cok.max(1)).max(64).min(t);
        let mut z = vec![0f32; cok * chunk];
        for bi in 0..b {
            let xb = &x[bi * ci * t..(bi + 1) * ci * t];
            let ob = &mut out[bi * co * t_out..(bi + 1) * co * t_out];
            ob.par_chunks_mut(t_out).zip(&self.bias).for_each(|(row, &bias)| row.fill(bias));
            for t0 in (0..t).step_by(chunk) {
                let n = chunk.min(t - t0);
                z[..cok * n].fill(0.0);
                // SAFETY: A is cok×ci (row stride ci), xb's columns [t0, t0 + n) of ci rows (stride t), z cok×n
                unsafe {
                    crate::gemm::gemm_add(
                        (cok, n, ci),
                        (z.as_mut_ptr(), n),
                        (a.as_ptr(), ci),
                        (xb.as_ptr().add(t0), t),
                        crate::gemm::gemm_parallelism(),
                    )
                };
                // col2im: tap j of input position t0 + s lands on output (t0 + s)·u + j − p
                let z = &z[..cok * n];
                ob.par_chunks_mut(t_out).zip(z.par_chunks(k * n)).for_each(|(row, zc)| {
                    for (j, zj) in zc.chunks_exact(n).enumerate() {
                        for (s, &v) in zj.iter().enumerate() {
                            let pos = (t0 + s) * u + j;
                            if pos >= p && pos - p < t_out {
                                row[pos - p] += v;
                            }
                        }
                    }
                });
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, co, t_out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Equal to candle's `conv_transpose1d` plus bias for the vocoders' up-sampling shapes (kernel 2u, padding
    /// u/2) and edge cases: a kernel shorter than twice the stride, a padding that eats whole taps, batch 2, and
    /// inputs split over several chunks.
    #[test]
    fn matches_candle_conv_transpose1d() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for &(b, ci, co, t, k, u, p) in &[
            (1usize, 6usize, 5usize, 9usize, 8usize, 4usize, 2usize),
            (2, 4, 3, 17, 4, 2, 1),
            (1, 3, 2, 5, 3, 2, 0),
            (1, 2, 3, 7, 16, 8, 4),
            (1, 2, 2, 40000, 4, 2, 1),
            (1, 2, 600, 2000, 8, 4, 2),
            (2, 5, 4, 8, 5, 1, 3),
        ] {
            let x = Tensor::randn(0f32, 1.0, (b, ci, t), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (ci, co, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, co, &dev)?;
            let want = x.conv_transpose1d(&w, p, 0, u, 1, 1)?.broadcast_add(&bias.reshape((1, co, 1))?)?;
            let got = ConvTranspose1d::new(w.clone(), Some(bias.clone()), u, p)?.forward(&x)?;
            assert_eq!(got.dims(), want.dims(), "{:?}", (b, ci, co, t, k, u, p));
            // each output sums at most ci·⌈k/u⌉ products and the bias: two f32 sums of that many terms
            let mag = x.abs()?.conv_transpose1d(&w.abs()?, p, 0, u, 1, 1)?.broadcast_add(&bias.abs()?.reshape((1, co, 1))?)?;
            let case = (b, ci, co, t, k, u, p);
            crate::error_bounds::assert_within(&format!("{case:?}"), &got, &want, &crate::error_bounds::two_sums(ci * k.div_ceil(u) + 1, &mag));
        }
        Ok(())
    }
}

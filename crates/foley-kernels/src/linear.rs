//! `nn.Linear` with the weight kept the way the CPU GEMM reads it fastest.
//!
//! candle's `Linear` multiplies by the transpose of the `(out, in)` checkpoint weight. With few rows (77 text
//! tokens, the MM-DiT's conditioning vectors) gemm then spends most of its time packing that strided weight on
//! every call: 77×1024×4096 runs at ~100 GFLOP/s, against ~290 GFLOP/s with the weight stored as `(in, out)`
//! (2 threads, AVX-512). On CPU/f32 the weight is transposed once at load; elsewhere candle's `Linear` is used.
//! Built inside [`crate::cpu_bf16::with_bf16_weights`], the transposed weight is held in bf16.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

/// See the module docs.
#[derive(Debug, Clone)]
pub enum Linear {
    /// CPU/f32: `weight` is `(in, out)`, contiguous.
    Transposed { weight: Tensor, bias: Option<Tensor> },
    /// CPU/f32 activations with a bf16 weight `(in, out)`, held as the bf16 kernel reads it (see
    /// [`crate::cpu_bf16::Bf16Weight`]).
    Bf16 { weight: crate::cpu_bf16::Bf16Weight, bias: Option<Tensor> },
    /// Any other device or dtype.
    Candle(candle_nn::Linear),
}

impl Linear {
    /// `weight: (out, in)` as checkpoints store it; `bias: (out,)`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        weight.dims2()?;
        if weight.device().is_cpu() && weight.dtype() == DType::F32 && crate::cpu_bf16::bf16_weights() {
            Ok(Self::Bf16 {
                weight: crate::cpu_bf16::Bf16Weight::new(&transpose(&weight)?)?,
                bias,
            })
        } else if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            Ok(Self::Transposed {
                weight: transpose(&weight)?,
                bias,
            })
        } else {
            Ok(Self::Candle(candle_nn::Linear::new(weight, bias)))
        }
    }
}

/// A CPU f32 matrix transposed into a new contiguous one, in 32×32 tiles with bands of output rows in parallel:
/// candle's strided copy walks the source column by column on one thread (about 3 s of loading CLIP ViT-H alone
/// on a 2-core Zen 3).
fn transpose(w: &Tensor) -> candle_core::Result<Tensor> {
    use rayon::prelude::*;
    const TILE: usize = 32;
    let (rows, cols) = w.dims2()?;
    let w = w.contiguous()?;
    let (storage, layout) = w.storage_and_layout();
    let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    else {
        return w.t()?.contiguous();
    };
    let src = &data[start..end];
    let mut out = vec![0f32; rows * cols];
    if !out.is_empty() {
        out.par_chunks_mut(TILE * rows).enumerate().for_each(|(band, dst)| {
            let c0 = band * TILE;
            let width = dst.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                for c in 0..width {
                    let d = &mut dst[c * rows..(c + 1) * rows];
                    for r in r0..(r0 + TILE).min(rows) {
                        d[r] = src[r * cols + c0 + c];
                    }
                }
            }
        });
    }
    drop(storage);
    Tensor::from_vec(out, (cols, rows), w.device())
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Candle(l) => l.forward(x),
            Self::Bf16 { weight, bias } => {
                let y = weight.matmul(x)?;
                match bias {
                    Some(b) => crate::fast_ops::add_bias(y, b),
                    None => Ok(y),
                }
            }
            Self::Transposed { weight, bias } => {
                let dims = x.dims();
                let Some((&k, lead)) = dims.split_last() else {
                    candle_core::bail!("linear: scalar input")
                };
                let rows = lead.iter().product::<usize>();
                let y = x.reshape((rows, k))?.matmul(weight)?;
                let mut out = lead.to_vec();
                out.push(weight.dim(1)?);
                let y = y.reshape(out)?;
                match bias {
                    Some(b) => crate::fast_ops::add_bias(y, b),
                    None => Ok(y),
                }
            }
        }
    }
}

/// `nn.Linear(i, o)` from `vb` (`weight`, `bias`).
pub fn linear(i: usize, o: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    Linear::new(vb.get((o, i), "weight")?, Some(vb.get(o, "bias")?))
}

/// `nn.Linear(i, o, bias=False)` from `vb` (`weight`).
pub fn linear_no_bias(i: usize, o: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    Linear::new(vb.get((o, i), "weight")?, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `Σ|x·w| + |b|` per output element of `x @ wᵀ + b`: the magnitude the rounding bound scales with.
    fn magnitude(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let m = x.abs()?.broadcast_matmul(&w.abs()?.t()?)?;
        match b {
            Some(b) => m.broadcast_add(&b.abs()?),
            None => Ok(m),
        }
    }

    #[test]
    fn matches_candle_linear() -> candle_core::Result<()> {
        use crate::error_bounds::{assert_within, two_sums};
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (7, 5), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 7, &dev)?;
        for shape in [vec![3, 5], vec![2, 3, 5], vec![2, 2, 3, 5]] {
            let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev)?;
            let want = candle_nn::Linear::new(w.clone(), Some(b.clone())).forward(&x)?;
            let got = Linear::new(w.clone(), Some(b.clone()))?.forward(&x)?;
            // 5 products and the bias: two f32 sums of 6 terms
            let bound = two_sums(6, &magnitude(&x, &w, Some(&b))?);
            assert_within(&format!("linear {shape:?}"), &got, &want, &bound);
        }
        // a transposed (non-contiguous) input
        let x = Tensor::randn(0f32, 1.0, (5, 4), &dev)?.t()?;
        let want = candle_nn::Linear::new(w.clone(), None).forward(&x)?;
        let got = Linear::new(w.clone(), None)?.forward(&x)?;
        assert_within("linear, transposed input", &got, &want, &two_sums(5, &magnitude(&x, &w, None)?));
        Ok(())
    }

    #[test]
    fn transpose_matches_candle_across_tile_edges() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (r, c) in [(1, 1), (7, 5), (32, 32), (33, 65), (100, 31), (64, 1)] {
            let w = Tensor::randn(0f32, 1.0, (r, c), &dev)?;
            let got = transpose(&w)?;
            assert_eq!(got.dims(), &[c, r]);
            let want = w.t()?.contiguous()?;
            assert_eq!(got.flatten_all()?.to_vec1::<f32>()?, want.flatten_all()?.to_vec1::<f32>()?, "{r}x{c}");
        }
        // a view into a larger storage
        let w = Tensor::randn(0f32, 1.0, (10, 40), &dev)?.narrow(0, 3, 5)?;
        let got = transpose(&w)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(got, w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    }

    /// Built in the bf16 scope, the weight is held in bf16 and the layer computes with it (candle's linear of the
    /// bf16-rounded weight); outside it, f32 again.
    #[test]
    fn bf16_scope_holds_the_weight_in_bf16() -> candle_core::Result<()> {
        use crate::error_bounds::{assert_within, bf16_rounded, two_sums};
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (7, 40), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 7, &dev)?;
        let l = crate::cpu_bf16::with_bf16_weights(|| Linear::new(w.clone(), Some(b.clone())))?;
        let Linear::Bf16 { weight, .. } = &l else { panic!("not bf16: {l:?}") };
        assert_eq!(weight.dims(), (40, 7));
        // packed once for the blocked VDPBF16PS kernel (or its emulation), plain bf16 for widening
        let widen = crate::cpu_bf16::Kernel::get() == crate::cpu_bf16::Kernel::Widen;
        assert_eq!(weight.is_packed(), !widen);
        let x = Tensor::randn(0f32, 1.0, (2, 3, 40), &dev)?;
        let w16 = bf16_rounded(&w);
        // the widening kernel multiplies f32 x by the bf16 weight; VDPBF16PS rounds x to bf16 first (nearest
        // even). Either way the products are exact and only the f32 sums (40 products and the bias) differ.
        let x_seen = if widen { x.clone() } else { bf16_rounded(&x) };
        let want = candle_nn::Linear::new(w16.clone(), Some(b.clone())).forward(&x_seen)?;
        let bound = two_sums(41, &magnitude(&x_seen, &w16, Some(&b))?);
        assert_within(&format!("bf16 linear on {:?}", crate::cpu_bf16::Kernel::get()), &l.forward(&x)?, &want, &bound);
        assert!(matches!(Linear::new(w, None)?, Linear::Transposed { .. }));
        Ok(())
    }
}

//! Anti-aliased periodic activations of BigVGAN: Snake / SnakeBeta wrapped in 2x up-sampling and 2x
//! down-sampling with a Kaiser-windowed sinc low-pass filter (`Activation1d`). Ported from
//! `mmaudio/ext/bigvgan/{activations.py, alias_free_torch/}` and
//! `mmaudio/ext/bigvgan_v2/{activations.py, alias_free_activation/torch/}` (identical maths) of
//! github.com/hkchengrex/MMAudio at commit 974010a026c731054592d8f777218bd9d85a6c24.
//!
//! The filters are the checkpoint's own buffers (`upsample.filter`, `downsample.lowpass.filter`, `(1, 1, 12)`),
//! applied to every channel: the depthwise convolutions run as single-channel convolutions over `B * C` rows.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use foley_kernels::snake::{FusedActivation, TAPS};
use crate::error::Result;

const NO_DIV_BY_ZERO: f64 = 1e-9;

/// `Snake` (`x + 1/a * sin^2(a x)`) or `SnakeBeta` (`x + 1/b * sin^2(a x)`), parameters per channel; with
/// `alpha_logscale` the stored parameters are logs. Stored as `alpha` and `1 / (beta + 1e-9)`, `(1, C, 1)`.
#[derive(Debug, Clone)]
pub struct Snake {
    alpha: Tensor,
    inv_beta: Tensor,
}

impl Snake {
    /// `beta`: SnakeBeta (true) or Snake (false).
    pub fn new(channels: usize, beta: bool, logscale: bool, vb: VarBuilder) -> Result<Self> {
        let load = |name: &str| -> Result<Tensor> {
            let p = vb.get(channels, name)?.to_dtype(DType::F32)?;
            Ok(if logscale { p.exp()? } else { p })
        };
        let alpha = load("alpha")?;
        let b = if beta { load("beta")? } else { alpha.clone() };
        let inv_beta = (b + NO_DIV_BY_ZERO)?.recip()?;
        Ok(Self {
            alpha: alpha.reshape((1, channels, 1))?,
            inv_beta: inv_beta.reshape((1, channels, 1))?,
        })
    }
}

impl Module for Snake {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let alpha = self.alpha.to_dtype(x.dtype())?;
        let inv_beta = self.inv_beta.to_dtype(x.dtype())?;
        x + x.broadcast_mul(&alpha)?.sin()?.sqr()?.broadcast_mul(&inv_beta)?
    }
}

/// Kernel size of both filters (`up_kernel_size = down_kernel_size = 12` in `Activation1d`).
pub const FILTER_SIZE: usize = 12;

fn filter(vb: &VarBuilder, name: &str) -> Result<Tensor> {
    Ok(vb.get((1, 1, FILTER_SIZE), name)?)
}

/// `UpSample1d(ratio=2)`: replicate padding, transposed convolution with the low-pass filter (times the
/// ratio), then cropping back to `ratio * T` samples.
#[derive(Debug, Clone)]
pub struct UpSample1d {
    filter: Tensor,
    ratio: usize,
}

impl UpSample1d {
    pub fn new(ratio: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            filter: filter(&vb, "filter")?,
            ratio,
        })
    }
}

impl UpSample1d {
    /// The reference's transposed convolution (any ratio / kernel).
    fn forward_transposed(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let k = self.filter.dim(2)?;
        let r = self.ratio;
        let pad = k / r - 1;
        let pad_left = pad * r + (k - r) / 2;
        let x = x.reshape((b * c, 1, t))?.pad_with_same(2, pad, pad)?;
        let y = x.conv_transpose1d(&self.filter.to_dtype(x.dtype())?, 0, 0, r, 1, 1)?;
        (y.narrow(2, pad_left, r * t)? * r as f64)?.reshape((b, c, r * t))
    }

    /// The same for ratio 2 and the 12-tap filter, as two 6-tap polyphase correlations (one conv1d with two
    /// output channels) interleaved: with `xp` the padded input and `z_p[s] = sum_k xp[s + k] f[2 (5 - k) + p]`,
    /// the cropped output is `out[2s] = 2 z_1[s + 2]`, `out[2s + 1] = 2 z_0[s + 3]`.
    fn forward_polyphase(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let f = self.filter.to_dtype(x.dtype())?.flatten_all()?;
        let taps = |p: usize| -> candle_core::Result<Tensor> {
            let idx: Vec<u32> = (0..6).map(|k| (2 * (5 - k) + p) as u32).collect();
            f.index_select(&Tensor::new(idx, f.device())?, 0)
        };
        let g = Tensor::stack(&[taps(0)?, taps(1)?], 0)?.unsqueeze(1)?; // (2, 1, 6)
        let xp = x.reshape((b * c, 1, t))?.pad_with_same(2, 5, 5)?;
        let z = xp.conv1d(&g, 0, 1, 1, 1)?; // (B*C, 2, T + 5)
        let even = z.narrow(1, 1, 1)?.narrow(2, 2, t)?;
        let odd = z.narrow(1, 0, 1)?.narrow(2, 3, t)?;
        Tensor::stack(&[even, odd], 3)?.reshape((b, c, 2 * t))? * 2.0
    }
}

impl Module for UpSample1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.ratio == 2 && self.filter.dim(2)? == FILTER_SIZE {
            self.forward_polyphase(x)
        } else {
            self.forward_transposed(x)
        }
    }
}

/// `DownSample1d(ratio=2)` = `LowPassFilter1d(stride=ratio)`: replicate padding then the strided low-pass.
#[derive(Debug, Clone)]
pub struct DownSample1d {
    filter: Tensor,
    ratio: usize,
}

impl DownSample1d {
    pub fn new(ratio: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            filter: filter(&vb, "lowpass.filter")?,
            ratio,
        })
    }
}

impl Module for DownSample1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let k = self.filter.dim(2)?;
        let even = usize::from(k % 2 == 0);
        let x = x.reshape((b * c, 1, t))?.pad_with_same(2, k / 2 - even, k / 2)?;
        let y = x.conv1d(&self.filter.to_dtype(x.dtype())?, 0, self.ratio, 1, 1)?;
        let n = y.dim(2)?;
        y.reshape((b, c, n))
    }
}

/// `Activation1d`: up-sample, activate, down-sample. On CPU (f32) the three run fused in one pass
/// ([`foley_kernels::snake`]); elsewhere as tensor ops.
#[derive(Debug, Clone)]
pub struct Activation1d {
    up: UpSample1d,
    act: Snake,
    down: DownSample1d,
    fused: FusedActivation,
}

impl Activation1d {
    pub fn new(channels: usize, beta: bool, logscale: bool, vb: VarBuilder) -> Result<Self> {
        let up = UpSample1d::new(2, vb.pp("upsample"))?;
        let act = Snake::new(channels, beta, logscale, vb.pp("act"))?;
        let down = DownSample1d::new(2, vb.pp("downsample"))?;
        let taps = |f: &Tensor| -> Result<[f32; TAPS]> {
            let v = f.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            v.try_into()
                .map_err(|_| crate::Error::Weights("filter is not 12 taps".into()))
        };
        let fused = FusedActivation {
            alpha: act.alpha.flatten_all()?.to_vec1()?,
            inv_beta: act.inv_beta.flatten_all()?.to_vec1()?,
            up: taps(&up.filter)?,
            down: taps(&down.filter)?,
        };
        Ok(Self { up, act, down, fused })
    }

    /// The unfused tensor-op path (any device and dtype).
    pub fn forward_unfused(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.down.forward(&self.act.forward(&self.up.forward(x)?)?)
    }
}

impl Module for Activation1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            x.contiguous()?.apply_op1_no_bwd(&self.fused)
        } else {
            self.forward_unfused(x)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_cpu_activation_equals_tensor_ops() -> Result<()> {
        let dev = Device::Cpu;
        let mut m = std::collections::HashMap::new();
        let c = 5;
        m.insert(
            "upsample.filter".to_string(),
            Tensor::randn(0f32, 0.3, (1, 1, 12), &dev)?,
        );
        m.insert(
            "downsample.lowpass.filter".to_string(),
            Tensor::randn(0f32, 0.3, (1, 1, 12), &dev)?,
        );
        m.insert("act.alpha".to_string(), Tensor::randn(0f32, 0.5, c, &dev)?);
        m.insert("act.beta".to_string(), Tensor::randn(0f32, 0.5, c, &dev)?);
        let vb = VarBuilder::from_tensors(m, DType::F32, &dev);
        let act = Activation1d::new(c, true, true, vb)?;
        for t in [1, 2, 3, 50] {
            let x = Tensor::randn(0f32, 2.0, (3, c, t), &dev)?;
            let err = foley_kernels::error_bounds::max_abs_diff(&act.forward(&x)?, &act.forward_unfused(&x)?);
            assert!(err < 1e-5, "T={t}: {err}");
        }
        // amplitudes past the vectorised sine's range (|α u| > 8192) take libm's, relative to the output scale
        let x = (Tensor::randn(0f32, 2.0, (2, c, 40), &dev)? * 5000.0)?;
        let want = act.forward_unfused(&x)?;
        let scale = foley_kernels::error_bounds::max_abs_diff(&want, &want.zeros_like()?);
        let err = foley_kernels::error_bounds::max_abs_diff(&act.forward(&x)?, &want);
        assert!(scale > 8192.0 && err <= 1e-6 * scale, "large amplitudes: {err} of {scale}");
        Ok(())
    }

    #[test]
    fn polyphase_upsampling_equals_transposed_convolution() -> Result<()> {
        let dev = Device::Cpu;
        let filter = Tensor::randn(0f32, 1.0, (1, 1, FILTER_SIZE), &dev)?;
        let up = UpSample1d { filter, ratio: 2 };
        for t in [1, 2, 7, 64] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, t), &dev)?;
            let a = up.forward_polyphase(&x)?;
            let b = up.forward_transposed(&x)?;
            let err = foley_kernels::error_bounds::max_abs_diff(&a, &b);
            assert!(err < 1e-5, "T={t}: {err}");
        }
        Ok(())
    }
}

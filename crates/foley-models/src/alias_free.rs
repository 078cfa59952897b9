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

impl Module for UpSample1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let k = self.filter.dim(2)?;
        let r = self.ratio;
        let pad = k / r - 1;
        let pad_left = pad * r + (k - r) / 2;
        let x = x.reshape((b * c, 1, t))?.pad_with_same(2, pad, pad)?;
        let y = x.conv_transpose1d(&self.filter.to_dtype(x.dtype())?, 0, 0, r, 1, 1)?;
        (y.narrow(2, pad_left, r * t)? * r as f64)?.reshape((b, c, r * t))
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

/// `Activation1d`: up-sample, activate, down-sample.
#[derive(Debug, Clone)]
pub struct Activation1d {
    up: UpSample1d,
    act: Snake,
    down: DownSample1d,
}

impl Activation1d {
    pub fn new(channels: usize, beta: bool, logscale: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            up: UpSample1d::new(2, vb.pp("upsample"))?,
            act: Snake::new(channels, beta, logscale, vb.pp("act"))?,
            down: DownSample1d::new(2, vb.pp("downsample"))?,
        })
    }
}

impl Module for Activation1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.down.forward(&self.act.forward(&self.up.forward(x)?)?)
    }
}

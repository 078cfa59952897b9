//! BigVGAN neural vocoder (Lee et al., "BigVGAN: A Universal Neural Vocoder with Large-Scale Training",
//! ICLR 2023): log-mel → waveform. One implementation serves both vocoders MMAudio uses:
//! - 16 kHz: MMAudio's own BigVGAN (`mmaudio/ext/bigvgan/models.py`, config `bigvgan_vocoder.yml`,
//!   checkpoint `best_netG.pt`), 80 mels, hop 256;
//! - 44.1 kHz: NVIDIA BigVGAN-v2 `nvidia/bigvgan_v2_44khz_128band_512x` (`mmaudio/ext/bigvgan_v2/bigvgan.py`),
//!   128 mels, hop 512, no bias on the last convolution and a clamp instead of the final tanh.
//!
//! The two reference files differ only in those two options (`use_bias_at_final`, `use_tanh_at_final`), so
//! they are configuration here. Reference: github.com/hkchengrex/MMAudio at commit
//! 974010a026c731054592d8f777218bd9d85a6c24; the v2 hyper-parameters are the model's `config.json`
//! (also `configs/bigvgan_v2_44khz_128band_512x.json` of github.com/NVIDIA/BigVGAN).
//!
//! Load-time transform: every convolution is weight-normed in the checkpoints; `remove_weight_norm()` folds
//! `w = g * v / |v|`, which [`crate::weights::weight_norm_weight`] does here for either key spelling.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::mmaudio::alias_free::Activation1d;
use foley_kernels::conv::{ChannelAxis, Conv1d};
use foley_kernels::conv_transpose::ConvTranspose1d;
use crate::error::{Error, Result};
use crate::weights::weight_norm_weight;

fn default_true() -> bool {
    true
}

/// Hyper-parameters (the `h` of the reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// "1" (AMPBlock1, two convolutions per dilation) or "2" (AMPBlock2).
    pub resblock: String,
    pub num_mels: usize,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub upsample_initial_channel: usize,
    pub resblock_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    /// "snake" or "snakebeta".
    pub activation: String,
    pub snake_logscale: bool,
    #[serde(default = "default_true")]
    pub use_tanh_at_final: bool,
    #[serde(default = "default_true")]
    pub use_bias_at_final: bool,
}

impl Config {
    /// MMAudio's 16 kHz vocoder (`mmaudio/ext/bigvgan/bigvgan_vocoder.yml`).
    pub fn mmaudio_16k() -> Self {
        Self {
            resblock: "1".into(),
            num_mels: 80,
            upsample_rates: vec![4, 4, 2, 2, 2, 2],
            upsample_kernel_sizes: vec![8, 8, 4, 4, 4, 4],
            upsample_initial_channel: 1536,
            resblock_kernel_sizes: vec![3, 7, 11],
            resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            activation: "snakebeta".into(),
            snake_logscale: true,
            use_tanh_at_final: true,
            use_bias_at_final: true,
        }
    }
    /// NVIDIA BigVGAN-v2, 44.1 kHz, 128 mel bands, 512x up-sampling.
    pub fn v2_44khz_128band_512x() -> Self {
        Self {
            num_mels: 128,
            upsample_rates: vec![8, 4, 2, 2, 2, 2],
            upsample_kernel_sizes: vec![16, 8, 4, 4, 4, 4],
            use_tanh_at_final: false,
            use_bias_at_final: false,
            ..Self::mmaudio_16k()
        }
    }
    /// Waveform samples per mel frame.
    pub fn hop_length(&self) -> usize {
        self.upsample_rates.iter().product()
    }
}

/// A weight-normed `Conv1d` (bias optional), `padding = (k * d - d) / 2` unless given.
#[derive(Debug, Clone)]
struct WnConv1d(Conv1d);

impl WnConv1d {
    fn new(i: usize, o: usize, k: usize, dilation: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let w = weight_norm_weight(&vb, (o, i, k))?;
        let b = if bias { Some(vb.get(o, "bias")?) } else { None };
        Ok(Self(Conv1d::new(w, b, (k * dilation - dilation) / 2, dilation, ChannelAxis::First)?))
    }
}

impl Module for WnConv1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(x)
    }
}

/// A weight-normed `ConvTranspose1d(i, o, k, stride=u, padding=(k - u) / 2)` with bias.
#[derive(Debug, Clone)]
struct WnConvTranspose1d(ConvTranspose1d);

impl WnConvTranspose1d {
    fn new(i: usize, o: usize, k: usize, u: usize, vb: VarBuilder) -> Result<Self> {
        if k < u {
            return Err(Error::BadConfig(format!("bigvgan: upsample kernel {k} < rate {u}")));
        }
        let w = weight_norm_weight(&vb, (i, o, k))?;
        Ok(Self(ConvTranspose1d::new(w, Some(vb.get(o, "bias")?), u, (k - u) / 2)?))
    }
}

impl Module for WnConvTranspose1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(x)
    }
}

/// `AMPBlock1` (pairs of dilated / undilated convolutions) or `AMPBlock2` (dilated only), each convolution
/// preceded by an anti-aliased activation, with residual connections.
#[derive(Debug, Clone)]
struct AmpBlock {
    /// (activation, conv) steps; AMPBlock1 pairs them two by two into one residual unit.
    convs: Vec<(Activation1d, WnConv1d)>,
    per_residual: usize,
}

impl AmpBlock {
    fn new(cfg: &Config, ch: usize, k: usize, dilations: &[usize], vb: VarBuilder) -> Result<Self> {
        let beta = cfg.activation == "snakebeta";
        let act = |i: usize| Activation1d::new(ch, beta, cfg.snake_logscale, vb.pp(format!("activations.{i}")));
        let mut convs = Vec::new();
        match cfg.resblock.as_str() {
            "1" => {
                // activations[::2] go with convs1, activations[1::2] with convs2
                for (m, &d) in dilations.iter().enumerate() {
                    convs.push((
                        act(2 * m)?,
                        WnConv1d::new(ch, ch, k, d, true, vb.pp(format!("convs1.{m}")))?,
                    ));
                    convs.push((
                        act(2 * m + 1)?,
                        WnConv1d::new(ch, ch, k, 1, true, vb.pp(format!("convs2.{m}")))?,
                    ));
                }
                Ok(Self { convs, per_residual: 2 })
            }
            "2" => {
                for (m, &d) in dilations.iter().enumerate() {
                    convs.push((act(m)?, WnConv1d::new(ch, ch, k, d, true, vb.pp(format!("convs.{m}")))?));
                }
                Ok(Self { convs, per_residual: 1 })
            }
            other => Err(Error::BadConfig(format!("bigvgan: resblock {other:?}"))),
        }
    }
}

impl Module for AmpBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for unit in self.convs.chunks(self.per_residual) {
            let mut xt = x.clone();
            for (act, conv) in unit {
                xt = conv.forward(&act.forward(&xt)?)?;
            }
            x = (xt + x)?;
        }
        Ok(x)
    }
}

/// The generator (`BigVGANVocoder` / `BigVGAN`).
#[derive(Debug, Clone)]
pub struct BigVGAN {
    cfg: Config,
    conv_pre: WnConv1d,
    ups: Vec<WnConvTranspose1d>,
    resblocks: Vec<AmpBlock>,
    activation_post: Activation1d,
    conv_post: WnConv1d,
}

impl BigVGAN {
    /// `vb` is the root of the generator's state dict (the `'generator'` entry of the checkpoint).
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        if cfg.upsample_rates.len() != cfg.upsample_kernel_sizes.len()
            || cfg.resblock_kernel_sizes.len() != cfg.resblock_dilation_sizes.len()
            || cfg.resblock_kernel_sizes.is_empty()
        {
            return Err(Error::BadConfig(
                "bigvgan: inconsistent upsample / resblock lists".into(),
            ));
        }
        if !matches!(cfg.activation.as_str(), "snake" | "snakebeta") {
            return Err(Error::BadConfig(format!("bigvgan: activation {:?}", cfg.activation)));
        }
        let c0 = cfg.upsample_initial_channel;
        let conv_pre = WnConv1d::new(cfg.num_mels, c0, 7, 1, true, vb.pp("conv_pre"))?;
        let mut ups = Vec::new();
        let mut resblocks = Vec::new();
        let mut ch = c0;
        for (i, (&u, &k)) in cfg.upsample_rates.iter().zip(&cfg.upsample_kernel_sizes).enumerate() {
            ch = c0 >> (i + 1);
            ups.push(WnConvTranspose1d::new(c0 >> i, ch, k, u, vb.pp(format!("ups.{i}.0")))?);
            for (j, (&k, d)) in cfg
                .resblock_kernel_sizes
                .iter()
                .zip(&cfg.resblock_dilation_sizes)
                .enumerate()
            {
                let idx = i * cfg.resblock_kernel_sizes.len() + j;
                resblocks.push(AmpBlock::new(cfg, ch, k, d, vb.pp(format!("resblocks.{idx}")))?);
            }
        }
        let beta = cfg.activation == "snakebeta";
        Ok(Self {
            activation_post: Activation1d::new(ch, beta, cfg.snake_logscale, vb.pp("activation_post"))?,
            conv_post: WnConv1d::new(ch, 1, 7, 1, cfg.use_bias_at_final, vb.pp("conv_post"))?,
            cfg: cfg.clone(),
            conv_pre,
            ups,
            resblocks,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// `mel` `(B, num_mels, T)` → waveform `(B, 1, T * hop_length)` in [-1, 1].
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let (_, c, _) = mel.dims3()?;
        if c != self.cfg.num_mels {
            return Err(Error::BadInput(format!(
                "bigvgan: {c} mel bins, expected {}",
                self.cfg.num_mels
            )));
        }
        let nk = self.cfg.resblock_kernel_sizes.len();
        let mut x = self.conv_pre.forward(mel)?;
        for (i, up) in self.ups.iter().enumerate() {
            x = up.forward(&x)?;
            let mut xs = self.resblocks[i * nk].forward(&x)?;
            for block in &self.resblocks[i * nk + 1..(i + 1) * nk] {
                xs = (xs + block.forward(&x)?)?;
            }
            x = (xs / nk as f64)?;
        }
        let x = self.conv_post.forward(&self.activation_post.forward(&x)?)?;
        Ok(if self.cfg.use_tanh_at_final {
            x.tanh()?
        } else {
            x.clamp(-1f32, 1f32)?
        })
    }
}

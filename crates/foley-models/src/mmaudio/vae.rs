//! MMAudio's 1-D mel VAE: the decoder (audio latents → normalised log-mel → log-mel), which generation uses,
//! and the encoder (log-mel → latent Gaussian), for audio-side tools and completeness. Ported from
//! `mmaudio/ext/autoencoder/{vae.py, vae_modules.py, edm2_utils.py}` of github.com/hkchengrex/MMAudio at commit
//! 974010a026c731054592d8f777218bd9d85a6c24 (an EDM2-style magnitude-preserving network, Karras et al. 2024).
//!
//! Load-time transform (as `VAE.remove_weight_norm()` does after loading `v1-16.pth` / `v1-44.pth`): every
//! `MPConv1D` weight is replaced by `normalize(w) / sqrt(fan_in)` with EDM2's `normalize`
//! (`w / (1e-4 + |w_o| / sqrt(fan_in))` per output channel), and the decoder's last convolution is scaled by
//! `learnable_gain + 1`. Checkpoints store the raw weights; [`VaeDecoder::new`] applies the transform.
//! The encoder's last convolution is scaled by its own `learnable_gain + 1` likewise ([`VaeEncoder::new`]).

use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use foley_kernels::conv::{ChannelAxis, Conv1d};
use crate::error::{Error, Result};
use crate::mmaudio::mel::MelStats;

const NORM_EPS: f64 = 1e-4;
/// `mp_sum(a, b, t=0.3)` divisor `sqrt((1-t)^2 + t^2)`.
const MP_SUM_T: f64 = 0.3;

/// Hyper-parameters of `VAE` (`get_my_vae`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Mel bins: 80 (16 kHz) or 128 (44.1 kHz).
    pub data_dim: usize,
    /// Latent channels (the MM-DiT's `latent_dim`).
    pub embed_dim: usize,
    pub hidden_dim: usize,
    #[serde(default = "default_ch_mult")]
    pub ch_mult: Vec<usize>,
    #[serde(default = "default_num_res_blocks")]
    pub num_res_blocks: usize,
    #[serde(default = "default_attn_layers")]
    pub attn_layers: Vec<usize>,
    #[serde(default = "default_down_layers")]
    pub down_layers: Vec<usize>,
    #[serde(default = "default_clip_act")]
    pub clip_act: f64,
}

fn default_ch_mult() -> Vec<usize> {
    vec![1, 2, 4]
}
fn default_num_res_blocks() -> usize {
    2
}
fn default_attn_layers() -> Vec<usize> {
    vec![3]
}
fn default_down_layers() -> Vec<usize> {
    vec![0]
}
fn default_clip_act() -> f64 {
    256.0
}

impl Config {
    fn new(data_dim: usize, embed_dim: usize, hidden_dim: usize) -> Self {
        Self {
            data_dim,
            embed_dim,
            hidden_dim,
            ch_mult: default_ch_mult(),
            num_res_blocks: default_num_res_blocks(),
            attn_layers: default_attn_layers(),
            down_layers: default_down_layers(),
            clip_act: default_clip_act(),
        }
    }
    /// `VAE_16k` (`v1-16.pth`): 80 mel bins, 20 latent channels.
    pub fn vae_16k() -> Self {
        Self::new(80, 20, 384)
    }
    /// `VAE_44k` (`v1-44.pth`): 128 mel bins, 40 latent channels.
    pub fn vae_44k() -> Self {
        Self::new(128, 40, 512)
    }
    /// Mel frames per latent frame (2 for the released models).
    pub fn upsampling(&self) -> usize {
        1 << self.down_layers.len()
    }
}

/// EDM2 `normalize` over `dim` with `eps = 1e-4`: `x / (eps + |x| * sqrt(n_norm / n_x))`.
fn mp_normalize(x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let n = x.dim(dim)? as f64;
    let norm = x.to_dtype(DType::F32)?.sqr()?.sum_keepdim(dim)?.sqrt()?;
    let norm = ((norm / n.sqrt())? + NORM_EPS)?;
    x.broadcast_div(&norm.to_dtype(x.dtype())?)
}

fn mp_silu(x: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::silu(x)? / 0.596
}

fn mp_sum(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let l = (a + ((b - a)? * MP_SUM_T)?)?;
    l / ((1.0 - MP_SUM_T).powi(2) + MP_SUM_T.powi(2)).sqrt()
}

/// `MPConv1D` with the load-time normalisation folded in (`gain` multiplies the normalised weight).
#[derive(Debug, Clone)]
struct MpConv(Conv1d);

impl MpConv {
    fn new(i: usize, o: usize, k: usize, gain: Option<&Tensor>, vb: VarBuilder) -> Result<Self> {
        let raw = vb.get((o, i, k), "weight")?;
        let w = raw.to_dtype(DType::F32)?;
        let fan_in = (i * k) as f64;
        let norm = w
            .reshape((o, i * k))?
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .reshape((o, 1, 1))?;
        let norm = ((norm / fan_in.sqrt())? + NORM_EPS)?;
        let mut w = (w.broadcast_div(&norm)? / fan_in.sqrt())?;
        if let Some(g) = gain {
            w = w.broadcast_mul(&g.to_dtype(DType::F32)?)?;
        }
        Ok(Self(Conv1d::new(w.to_dtype(raw.dtype())?, None, k / 2, 1, ChannelAxis::First)?))
    }
}

impl Module for MpConv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(x)
    }
}

/// `ResnetBlock1D`: pixel norm, two (mp-SiLU, conv) layers, magnitude-preserving residual sum.
#[derive(Debug, Clone)]
struct ResnetBlock {
    conv1: MpConv,
    conv2: MpConv,
    shortcut: Option<MpConv>,
}

impl ResnetBlock {
    fn new(i: usize, o: usize, vb: VarBuilder) -> Result<Self> {
        let shortcut = if i != o {
            Some(MpConv::new(i, o, 1, None, vb.pp("nin_shortcut"))?)
        } else {
            None
        };
        Ok(Self {
            conv1: MpConv::new(i, o, 3, None, vb.pp("conv1"))?,
            conv2: MpConv::new(o, o, 3, None, vb.pp("conv2"))?,
            shortcut,
        })
    }
}

impl Module for ResnetBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = mp_normalize(x, 1)?;
        let h = self.conv2.forward(&mp_silu(&self.conv1.forward(&mp_silu(&x)?)?)?)?;
        let x = match &self.shortcut {
            Some(s) => s.forward(&x)?,
            None => x,
        };
        mp_sum(&x, &h)
    }
}

/// `AttnBlock1D` (one head): qkv projection, cosine attention (q, k, v normalised over channels).
#[derive(Debug, Clone)]
struct AttnBlock {
    qkv: MpConv,
    proj_out: MpConv,
}

impl AttnBlock {
    fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            qkv: MpConv::new(c, 3 * c, 1, None, vb.pp("qkv"))?,
            proj_out: MpConv::new(c, c, 1, None, vb.pp("proj_out"))?,
        })
    }
}

impl Module for AttnBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, l) = x.dims3()?;
        // (B, 3C, L) -> (B, C, 3, L): channel index = c * 3 + j
        let y = mp_normalize(&self.qkv.forward(x)?.reshape((b, c, 3, l))?, 1)?;
        let pick = |j: usize| y.narrow(2, j, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous(); // (B, L, C)
        let (q, k, v) = (pick(0)?, pick(1)?, pick(2)?);
        let att = (q.matmul(&k.t()?)? / (c as f64).sqrt())?;
        let h = candle_nn::ops::softmax_last_dim(&att)?.matmul(&v)?; // (B, L, C)
        let h = self.proj_out.forward(&h.transpose(1, 2)?.contiguous()?)?;
        mp_sum(x, &h)
    }
}

#[derive(Debug, Clone)]
struct UpLevel {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    upsample: Option<MpConv>,
}

/// `Decoder1D` followed by `VAE.unnormalize`.
#[derive(Debug, Clone)]
pub struct VaeDecoder {
    cfg: Config,
    conv_in: MpConv,
    mid_block_1: ResnetBlock,
    mid_attn_1: AttnBlock,
    mid_block_2: ResnetBlock,
    /// Indexed by level (0 = highest resolution), run from the last level down.
    up: Vec<UpLevel>,
    conv_out: MpConv,
    stats: MelStats,
}

impl VaeDecoder {
    /// `vb` is the root of a VAE checkpoint (keys `decoder.*`, `data_mean`, `data_std`).
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        if cfg.ch_mult.is_empty() {
            return Err(Error::BadConfig("vae: empty ch_mult".into()));
        }
        let dvb = vb.pp("decoder");
        let dim = cfg.hidden_dim;
        let n = cfg.ch_mult.len();
        let mut block_in = dim * cfg.ch_mult[n - 1];
        let conv_in = MpConv::new(cfg.embed_dim, block_in, 3, None, dvb.pp("conv_in"))?;
        let mid_block_1 = ResnetBlock::new(block_in, block_in, dvb.pp("mid.block_1"))?;
        let mid_attn_1 = AttnBlock::new(block_in, dvb.pp("mid.attn_1"))?;
        let mid_block_2 = ResnetBlock::new(block_in, block_in, dvb.pp("mid.block_2"))?;
        let up_layers: Vec<usize> = cfg.down_layers.iter().map(|i| i + 1).collect();
        let mut up: Vec<Option<UpLevel>> = (0..n).map(|_| None).collect();
        for level in (0..n).rev() {
            let lvb = dvb.pp(format!("up.{level}"));
            let block_out = dim * cfg.ch_mult[level];
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for b in 0..=cfg.num_res_blocks {
                blocks.push(ResnetBlock::new(block_in, block_out, lvb.pp(format!("block.{b}")))?);
                block_in = block_out;
                if cfg.attn_layers.contains(&level) {
                    attns.push(AttnBlock::new(block_in, lvb.pp(format!("attn.{b}")))?);
                }
            }
            let upsample = if up_layers.contains(&level) {
                Some(MpConv::new(block_in, block_in, 3, None, lvb.pp("upsample.conv"))?)
            } else {
                None
            };
            up[level] = Some(UpLevel {
                blocks,
                attns,
                upsample,
            });
        }
        let gain = (dvb.get((), "learnable_gain")? + 1.0)?;
        let conv_out = MpConv::new(block_in, cfg.data_dim, 3, Some(&gain), dvb.pp("conv_out"))?;
        let stats = MelStats::new(
            vb.get((1, cfg.data_dim, 1), "data_mean")?,
            vb.get((1, cfg.data_dim, 1), "data_std")?,
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            conv_in,
            mid_block_1,
            mid_attn_1,
            mid_block_2,
            up: up.into_iter().flatten().collect(),
            conv_out,
            stats,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The normalised mel (`Decoder1D.forward`): `z` `(B, embed_dim, L)` → `(B, data_dim, L * upsampling)`.
    pub fn decode_normalized(&self, z: &Tensor) -> Result<Tensor> {
        let (_, c, _) = z.dims3()?;
        if c != self.cfg.embed_dim {
            return Err(Error::BadInput(format!(
                "vae: {c} latent channels, expected {}",
                self.cfg.embed_dim
            )));
        }
        let clip = self.cfg.clip_act;
        let mut h = self.conv_in.forward(z)?;
        h = self.mid_block_1.forward(&h)?;
        h = self.mid_attn_1.forward(&h)?;
        h = self.mid_block_2.forward(&h)?.clamp(-clip, clip)?;
        for level in self.up.iter().rev() {
            for (i, block) in level.blocks.iter().enumerate() {
                h = block.forward(&h)?;
                if let Some(attn) = level.attns.get(i) {
                    h = attn.forward(&h)?;
                }
                h = h.clamp(-clip, clip)?;
            }
            if let Some(conv) = &level.upsample {
                // nearest-exact x2 == repeat every frame twice
                let (b, c, l) = h.dims3()?;
                h = h
                    .unsqueeze(D::Minus1)?
                    .broadcast_as((b, c, l, 2))?
                    .reshape((b, c, 2 * l))?;
                h = conv.forward(&h)?;
            }
        }
        Ok(self.conv_out.forward(&mp_silu(&h)?)?)
    }

    /// `VAE.decode`: latents `(B, embed_dim, L)` → log-mel `(B, data_dim, L * upsampling)`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.stats.unnormalize(&self.decode_normalized(z)?)
    }

    /// `FeaturesUtils.decode`: the sampler's (unnormalised) latents `(B, L, embed_dim)` → log-mel.
    pub fn decode_latents(&self, z_blc: &Tensor) -> Result<Tensor> {
        self.decode(&z_blc.transpose(1, 2)?.contiguous()?)
    }

    pub fn mel_stats(&self) -> &MelStats {
        &self.stats
    }
}

/// `Downsample1D` with convolution: 1x1 conv, average pooling by 2, 1x1 conv.
#[derive(Debug, Clone)]
struct Downsample {
    conv1: MpConv,
    conv2: MpConv,
}

impl Module for Downsample {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.conv1.forward(x)?;
        let (b, c, l) = x.dims3()?;
        // F.avg_pool1d(kernel 2, stride 2) drops an odd last frame
        let x = x.narrow(2, 0, l / 2 * 2)?.reshape((b, c, l / 2, 2))?.mean(3)?;
        self.conv2.forward(&x)
    }
}

#[derive(Debug, Clone)]
struct DownLevel {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    downsample: Option<Downsample>,
}

/// `VAE.normalize` then `Encoder1D`: log-mel `(B, data_dim, T)` → Gaussian moments `(B, 2 * embed_dim, T / 2)`.
#[derive(Debug, Clone)]
pub struct VaeEncoder {
    cfg: Config,
    conv_in: MpConv,
    down: Vec<DownLevel>,
    mid_block_1: ResnetBlock,
    mid_attn_1: AttnBlock,
    mid_block_2: ResnetBlock,
    conv_out: MpConv,
    stats: MelStats,
}

impl VaeEncoder {
    /// `vb` is the root of a VAE checkpoint (keys `encoder.*`, `data_mean`, `data_std`).
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let evb = vb.pp("encoder");
        let dim = cfg.hidden_dim;
        let conv_in = MpConv::new(cfg.data_dim, dim, 3, None, evb.pp("conv_in"))?;
        let mut down = Vec::new();
        let mut block_in = dim;
        for (level, &mult) in cfg.ch_mult.iter().enumerate() {
            let lvb = evb.pp(format!("down.{level}"));
            let block_out = dim * mult;
            let (mut blocks, mut attns) = (Vec::new(), Vec::new());
            for b in 0..cfg.num_res_blocks {
                blocks.push(ResnetBlock::new(block_in, block_out, lvb.pp(format!("block.{b}")))?);
                block_in = block_out;
                if cfg.attn_layers.contains(&level) {
                    attns.push(AttnBlock::new(block_in, lvb.pp(format!("attn.{b}")))?);
                }
            }
            let downsample = if cfg.down_layers.contains(&level) {
                Some(Downsample {
                    conv1: MpConv::new(block_in, block_in, 1, None, lvb.pp("downsample.conv1"))?,
                    conv2: MpConv::new(block_in, block_in, 1, None, lvb.pp("downsample.conv2"))?,
                })
            } else {
                None
            };
            down.push(DownLevel {
                blocks,
                attns,
                downsample,
            });
        }
        let gain = (evb.get((), "learnable_gain")? + 1.0)?;
        let stats = MelStats::new(
            vb.get((1, cfg.data_dim, 1), "data_mean")?,
            vb.get((1, cfg.data_dim, 1), "data_std")?,
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            conv_in,
            down,
            mid_block_1: ResnetBlock::new(block_in, block_in, evb.pp("mid.block_1"))?,
            mid_attn_1: AttnBlock::new(block_in, evb.pp("mid.attn_1"))?,
            mid_block_2: ResnetBlock::new(block_in, block_in, evb.pp("mid.block_2"))?,
            conv_out: MpConv::new(block_in, 2 * cfg.embed_dim, 3, Some(&gain), evb.pp("conv_out"))?,
            stats,
        })
    }

    /// `Encoder1D.forward` on an already normalised mel.
    pub fn moments_normalized(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, _) = x.dims3()?;
        if c != self.cfg.data_dim {
            return Err(Error::BadInput(format!(
                "vae: {c} mel bins, expected {}",
                self.cfg.data_dim
            )));
        }
        let clip = self.cfg.clip_act;
        let mut h = self.conv_in.forward(x)?;
        for level in &self.down {
            for (i, block) in level.blocks.iter().enumerate() {
                h = block.forward(&h)?;
                if let Some(attn) = level.attns.get(i) {
                    h = attn.forward(&h)?;
                }
                h = h.clamp(-clip, clip)?;
            }
            if let Some(ds) = &level.downsample {
                h = ds.forward(&h)?;
            }
        }
        h = self.mid_block_1.forward(&h)?;
        h = self.mid_attn_1.forward(&h)?;
        h = self.mid_block_2.forward(&h)?.clamp(-clip, clip)?;
        Ok(self.conv_out.forward(&mp_silu(&h)?)?)
    }

    /// `VAE.encode`: log-mel → (mean, logvar) of the latent Gaussian, each `(B, embed_dim, T / 2)`; logvar is
    /// clamped to [-30, 20] as `DiagonalGaussianDistribution` does. The mode (the mean) is the latent.
    pub fn encode(&self, mel: &Tensor) -> Result<(Tensor, Tensor)> {
        let m = self.moments_normalized(&self.stats.normalize(mel)?)?;
        let e = self.cfg.embed_dim;
        Ok((m.narrow(1, 0, e)?, m.narrow(1, e, e)?.clamp(-30f32, 20f32)?))
    }
}

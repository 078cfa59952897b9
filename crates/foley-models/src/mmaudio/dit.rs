//! MMAudio's MM-DiT flow network ("MMAudio: Taming Multimodal Joint Training for High-Quality Video-to-Audio
//! Synthesis", Cheng et al., CVPR 2025), ported from `mmaudio/model/networks.py` of
//! github.com/hkchengrex/MMAudio at commit 974010a026c731054592d8f777218bd9d85a6c24.
//!
//! The network predicts the flow (velocity) of the audio latents at time `t`, conditioned on CLIP frame
//! features (8 fps), Synchformer features (24 fps after grouping, upsampled to the latent rate and added to the
//! per-token adaLN condition) and CLIP text tokens. `depth - fused_depth` joint blocks attend over
//! [audio; clip; text] together (the last one only feeds the audio stream), then `fused_depth` audio-only blocks
//! follow. RoPE is applied to the audio latents and an *aligned* RoPE, stretched by `latent_len / clip_len`,
//! to the clip tokens. Learned empty features stand in for missing conditions (classifier-free guidance).
//! All sequence lengths come from the inputs, so any duration works (see [`crate::mmaudio::sequence`]).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use foley_kernels::linear::{self, Linear};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mmaudio::layers::{
    selu, ChannelLastConv1d, FinalBlock, JointBlock, Rope, SingleBlock, SwiGlu, TimestepEmbedder,
};

/// Synchformer yields 8 feature frames per 16-frame segment; `sync_pos_emb` is per position in a segment.
pub const SYNC_FRAMES_PER_SEGMENT: usize = 8;

fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_text_seq_len() -> usize {
    77
}

/// Hyper-parameters of the network (`MMAudio.__init__`). The sequence lengths are the training ones (8 s);
/// the forward pass accepts other lengths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub latent_dim: usize,
    pub clip_dim: usize,
    pub sync_dim: usize,
    pub text_dim: usize,
    pub hidden_dim: usize,
    pub depth: usize,
    pub fused_depth: usize,
    pub num_heads: usize,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    pub latent_seq_len: usize,
    pub clip_seq_len: usize,
    pub sync_seq_len: usize,
    #[serde(default = "default_text_seq_len")]
    pub text_seq_len: usize,
    /// `large_44k_v2`: SiLU instead of SELU in the input projections, extra SiLU after the clip/text linears,
    /// and a timestep embedding of width `hidden_dim` with `max_period = 1`.
    #[serde(default)]
    pub v2: bool,
}

impl Config {
    fn base(num_heads: usize, depth: usize, fused_depth: usize, latent_dim: usize, latent_seq_len: usize) -> Self {
        Self {
            latent_dim,
            clip_dim: 1024,
            sync_dim: 768,
            text_dim: 1024,
            hidden_dim: 64 * num_heads,
            depth,
            fused_depth,
            num_heads,
            mlp_ratio: 4.0,
            latent_seq_len,
            clip_seq_len: 64,
            sync_seq_len: 192,
            text_seq_len: 77,
            v2: false,
        }
    }
    pub fn small_16k() -> Self {
        Self::base(7, 12, 8, 20, 250)
    }
    pub fn small_44k() -> Self {
        Self::base(7, 12, 8, 40, 345)
    }
    pub fn medium_44k() -> Self {
        Self::base(14, 12, 8, 40, 345)
    }
    pub fn large_44k() -> Self {
        Self::base(14, 21, 14, 40, 345)
    }
    pub fn large_44k_v2() -> Self {
        Self {
            v2: true,
            ..Self::base(14, 21, 14, 40, 345)
        }
    }
    /// The variant of a released checkpoint by name (`small_16k`, ..., `large_44k_v2`).
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "small_16k" => Self::small_16k(),
            "small_44k" => Self::small_44k(),
            "medium_44k" => Self::medium_44k(),
            "large_44k" => Self::large_44k(),
            "large_44k_v2" => Self::large_44k_v2(),
            _ => return None,
        })
    }
    pub fn head_dim(&self) -> usize {
        self.hidden_dim / self.num_heads
    }
}

/// Condition features after the cacheable part of the network (`PreprocessedConditions`): projected clip,
/// sync (already upsampled to the latent length) and text tokens, and the pooled clip/text vectors.
#[derive(Debug, Clone)]
pub struct Conditions {
    pub clip_f: Tensor,
    pub sync_f: Tensor,
    pub text_f: Tensor,
    pub clip_f_c: Tensor,
    pub text_f_c: Tensor,
}

impl Conditions {
    /// Concatenates two condition sets along the batch (cond + uncond evaluated as one batch).
    pub fn cat(a: &Self, b: &Self) -> Result<Self> {
        let c = |x: &Tensor, y: &Tensor| Tensor::cat(&[x, y], 0);
        Ok(Self {
            clip_f: c(&a.clip_f, &b.clip_f)?,
            sync_f: c(&a.sync_f, &b.sync_f)?,
            text_f: c(&a.text_f, &b.text_f)?,
            clip_f_c: c(&a.clip_f_c, &b.clip_f_c)?,
            text_f_c: c(&a.text_f_c, &b.text_f_c)?,
        })
    }
    pub fn batch_size(&self) -> Result<usize> {
        Ok(self.clip_f.dim(0)?)
    }
}

/// An input projection: `Linear` or kernel-7 conv, then (v2) SiLU / (v1 audio, sync) SELU, then a SwiGLU.
#[derive(Debug, Clone)]
enum First {
    Linear(Linear),
    Conv(ChannelLastConv1d),
}

#[derive(Debug, Clone, Copy)]
enum Act {
    None,
    Selu,
    Silu,
}

#[derive(Debug, Clone)]
struct InputProj {
    first: First,
    act: Act,
    mlp: SwiGlu,
}

impl Module for InputProj {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = match &self.first {
            First::Linear(l) => l.forward(x)?,
            First::Conv(c) => c.forward(x)?,
        };
        let x = match self.act {
            Act::None => x,
            Act::Selu => selu(&x)?,
            Act::Silu => candle_nn::ops::silu(&x)?,
        };
        self.mlp.forward(&x)
    }
}

/// Nearest-exact (`F.interpolate(mode='nearest-exact')`) indices from `src` to `dst` positions:
/// `min(floor((i + 0.5) * (src / dst)), src - 1)` in f32 as torch computes it. Checked against torch 2.15 for
/// every (sync, latent) length pair of 3-20 s clips at 16 and 44.1 kHz.
pub fn nearest_exact_indices(src: usize, dst: usize) -> Vec<u32> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|i| (((i as f32 + 0.5) * scale).floor() as usize).min(src.saturating_sub(1)) as u32)
        .collect()
}

/// The MM-DiT (`MMAudio` in networks.py).
#[derive(Debug, Clone)]
pub struct MMAudio {
    cfg: Config,
    audio_input_proj: InputProj,
    clip_input_proj: InputProj,
    sync_input_proj: InputProj,
    text_input_proj: InputProj,
    clip_cond_proj: Linear,
    text_cond_proj: Linear,
    global_cond_mlp: SwiGlu,
    sync_pos_emb: Tensor,
    final_layer: FinalBlock,
    t_embed: TimestepEmbedder,
    joint_blocks: Vec<JointBlock>,
    fused_blocks: Vec<SingleBlock>,
    latent_mean: Tensor,
    latent_std: Tensor,
    empty_string_feat: Tensor,
    empty_clip_feat: Tensor,
    empty_sync_feat: Tensor,
}

impl MMAudio {
    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace supports 1.85
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        if cfg.num_heads == 0 || cfg.hidden_dim % cfg.num_heads != 0 || cfg.head_dim() % 2 != 0 {
            return Err(Error::BadConfig(format!(
                "hidden_dim {} / heads {}",
                cfg.hidden_dim, cfg.num_heads
            )));
        }
        if cfg.fused_depth > cfg.depth {
            return Err(Error::BadConfig(format!(
                "fused_depth {} > depth {}",
                cfg.fused_depth, cfg.depth
            )));
        }
        let h = cfg.hidden_dim;
        let (act, lin_act, lin_mlp) = if cfg.v2 {
            (Act::Silu, Act::Silu, "2")
        } else {
            (Act::Selu, Act::None, "1")
        };
        // CPU bf16 (foley_kernels::cpu_bf16) keeps f32 weights where they cost next to nothing: the layers at the
        // network's edges, whose other side is the `latent_dim` channels of the sampler's state (the input
        // projection's first convolution, the final layer), and the once-per-step global conditioning (timestep
        // embedder, global MLP: one row per batch item). Their rounding would reach every output token; together
        // they are under 1 % of a step's work.
        use foley_kernels::cpu_bf16::with_f32_weights as f32_weights;
        let conv_proj = |i: usize, k_mlp: usize, vb: VarBuilder| -> Result<InputProj> {
            Ok(InputProj {
                first: First::Conv(f32_weights(|| ChannelLastConv1d::new(i, h, 7, 3, true, vb.pp("0")))?),
                act,
                mlp: SwiGlu::conv(h, 4 * h, k_mlp, k_mlp / 2, vb.pp("2"))?,
            })
        };
        // the conditioning projections run once per generation, not per step: f32 weights even in CPU bf16
        let (clip_input_proj, text_input_proj, sync_input_proj, clip_cond_proj, text_cond_proj) =
            foley_kernels::cpu_bf16::with_f32_weights(|| -> Result<_> {
                Ok((
                    InputProj {
                        first: First::Linear(linear::linear(cfg.clip_dim, h, vb.pp("clip_input_proj.0"))?),
                        act: lin_act,
                        mlp: SwiGlu::conv(h, 4 * h, 3, 1, vb.pp("clip_input_proj").pp(lin_mlp))?,
                    },
                    InputProj {
                        first: First::Linear(linear::linear(cfg.text_dim, h, vb.pp("text_input_proj.0"))?),
                        act: lin_act,
                        mlp: SwiGlu::mlp(h, 4 * h, vb.pp("text_input_proj").pp(lin_mlp))?,
                    },
                    conv_proj(cfg.sync_dim, 3, vb.pp("sync_input_proj"))?,
                    linear::linear(h, h, vb.pp("clip_cond_proj"))?,
                    linear::linear(h, h, vb.pp("text_cond_proj"))?,
                ))
            })?;
        let t_embed = f32_weights(|| {
            if cfg.v2 {
                TimestepEmbedder::new(h, h, 1.0, vb.pp("t_embed"))
            } else {
                TimestepEmbedder::new(h, 256, 10000.0, vb.pp("t_embed"))
            }
        })?;
        let n_joint = cfg.depth - cfg.fused_depth;
        let joint_blocks = (0..n_joint)
            .map(|i| {
                JointBlock::new(
                    h,
                    cfg.num_heads,
                    cfg.mlp_ratio,
                    i + 1 == n_joint,
                    vb.pp(format!("joint_blocks.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let fused_blocks = (0..cfg.fused_depth)
            .map(|i| {
                SingleBlock::new(
                    h,
                    cfg.num_heads,
                    cfg.mlp_ratio,
                    false,
                    3,
                    vb.pp(format!("fused_blocks.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            audio_input_proj: conv_proj(cfg.latent_dim, 7, vb.pp("audio_input_proj"))?,
            clip_input_proj,
            sync_input_proj,
            text_input_proj,
            clip_cond_proj,
            text_cond_proj,
            global_cond_mlp: f32_weights(|| SwiGlu::mlp(h, 4 * h, vb.pp("global_cond_mlp")))?,
            sync_pos_emb: vb.get((1, 1, SYNC_FRAMES_PER_SEGMENT, cfg.sync_dim), "sync_pos_emb")?,
            final_layer: f32_weights(|| FinalBlock::new(h, cfg.latent_dim, vb.pp("final_layer")))?,
            t_embed,
            joint_blocks,
            fused_blocks,
            latent_mean: vb.get((1, 1, cfg.latent_dim), "latent_mean")?,
            latent_std: vb.get((1, 1, cfg.latent_dim), "latent_std")?,
            empty_string_feat: vb.get((cfg.text_seq_len, cfg.text_dim), "empty_string_feat")?,
            empty_clip_feat: vb.get((1, cfg.clip_dim), "empty_clip_feat")?,
            empty_sync_feat: vb.get((1, cfg.sync_dim), "empty_sync_feat")?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn check(&self, what: &str, x: &Tensor, width: usize) -> Result<(usize, usize)> {
        let (b, n, c) = x
            .dims3()
            .map_err(|_| Error::BadInput(format!("{what}: expected (B, N, C), got {:?}", x.dims())))?;
        if c != width {
            return Err(Error::BadInput(format!(
                "{what}: width {c}, the network expects {width}"
            )));
        }
        Ok((b, n))
    }

    /// The cacheable part (`preprocess_conditions`): `clip_f` `(B, Nc, clip_dim)`, `sync_f` `(B, Ns, sync_dim)`
    /// with `Ns` a multiple of 8, `text_f` `(B, Nt, text_dim)`; the sync tokens are upsampled to `latent_len`.
    pub fn preprocess_conditions(
        &self,
        clip_f: &Tensor,
        sync_f: &Tensor,
        text_f: &Tensor,
        latent_len: usize,
    ) -> Result<Conditions> {
        let (b, _) = self.check("clip_f", clip_f, self.cfg.clip_dim)?;
        let (bs, ns) = self.check("sync_f", sync_f, self.cfg.sync_dim)?;
        let (bt, _) = self.check("text_f", text_f, self.cfg.text_dim)?;
        if bs != b || bt != b {
            return Err(Error::BadInput(format!(
                "batch sizes differ: clip {b}, sync {bs}, text {bt}"
            )));
        }
        if ns == 0 || ns % SYNC_FRAMES_PER_SEGMENT != 0 {
            return Err(Error::BadInput(format!(
                "sync length {ns} is not a positive multiple of 8"
            )));
        }
        let sync_f = sync_f
            .reshape((
                b,
                ns / SYNC_FRAMES_PER_SEGMENT,
                SYNC_FRAMES_PER_SEGMENT,
                self.cfg.sync_dim,
            ))?
            .broadcast_add(&self.sync_pos_emb)?
            .reshape((b, ns, self.cfg.sync_dim))?;
        let clip_f = self.clip_input_proj.forward(clip_f)?;
        let sync_f = self.sync_input_proj.forward(&sync_f)?;
        let text_f = self.text_input_proj.forward(text_f)?;
        // upsample the sync features to the audio latent rate
        let idx = Tensor::new(nearest_exact_indices(ns, latent_len), sync_f.device())?;
        let sync_f = sync_f.index_select(&idx, 1)?;
        let clip_f_c = self.clip_cond_proj.forward(&clip_f.mean(1)?)?;
        let text_f_c = self.text_cond_proj.forward(&text_f.mean(1)?)?;
        Ok(Conditions {
            clip_f,
            sync_f,
            text_f,
            clip_f_c,
            text_f_c,
        })
    }

    /// RoPE of the audio latents and the aligned RoPE of the clip tokens for these lengths.
    pub fn rotations(&self, latent_len: usize, clip_len: usize, dev: &candle_core::Device) -> Result<(Rope, Rope)> {
        let hd = self.cfg.head_dim();
        let latent = Rope::new(latent_len, hd, 1.0, dev)?;
        let clip = Rope::new(clip_len, hd, latent_len as f64 / clip_len.max(1) as f64, dev)?;
        Ok((latent, clip))
    }

    /// The per-step part (`predict_flow`): `latent` `(B, N, latent_dim)`, `t` `(B,)` → flow `(B, N, latent_dim)`.
    pub fn predict_flow(&self, latent: &Tensor, t: &Tensor, c: &Conditions) -> Result<Tensor> {
        let (_, n) = self.check("latent", latent, self.cfg.latent_dim)?;
        if c.sync_f.dim(1)? != n {
            return Err(Error::BadInput(format!(
                "conditions prepared for {} latents, got {n}",
                c.sync_f.dim(1)?
            )));
        }
        let (latent_rot, clip_rot) = self.rotations(n, c.clip_f.dim(1)?, latent.device())?;
        let mut latent = self.audio_input_proj.forward(latent)?;
        let global_c = self.global_cond_mlp.forward(&(&c.clip_f_c + &c.text_f_c)?)?;
        let global_c = self
            .t_embed
            .forward(t)?
            .unsqueeze(1)?
            .broadcast_add(&global_c.unsqueeze(1)?)?; // (B, 1, D)
        let extended_c = c.sync_f.broadcast_add(&global_c)?; // (B, N, D)
        let (mut clip_f, mut text_f) = (c.clip_f.clone(), c.text_f.clone());
        for block in &self.joint_blocks {
            (latent, clip_f, text_f) = block.forward(
                &latent,
                &clip_f,
                &text_f,
                &global_c,
                &extended_c,
                &latent_rot,
                &clip_rot,
            )?;
        }
        for block in &self.fused_blocks {
            latent = block.forward(&latent, &extended_c, Some(&latent_rot))?;
        }
        // the reference conditions the final layer on global_c (not extended_c; its issue #55)
        Ok(self.final_layer.forward(&latent, &global_c)?)
    }

    /// Both parts at once (`forward`).
    pub fn forward(
        &self,
        latent: &Tensor,
        clip_f: &Tensor,
        sync_f: &Tensor,
        text_f: &Tensor,
        t: &Tensor,
    ) -> Result<Tensor> {
        let c = self.preprocess_conditions(clip_f, sync_f, text_f, latent.dim(1)?)?;
        self.predict_flow(latent, t, &c)
    }

    /// The learned empty text condition, `(B, text_seq_len, text_dim)`.
    pub fn empty_string_sequence(&self, bs: usize) -> Result<Tensor> {
        Ok(self.empty_string_feat.unsqueeze(0)?.repeat((bs, 1, 1))?)
    }
    /// The learned empty clip condition, `(B, len, clip_dim)`.
    pub fn empty_clip_sequence(&self, bs: usize, len: usize) -> Result<Tensor> {
        Ok(self.empty_clip_feat.unsqueeze(0)?.repeat((bs, len, 1))?)
    }
    /// The learned empty sync condition, `(B, len, sync_dim)`.
    pub fn empty_sync_sequence(&self, bs: usize, len: usize) -> Result<Tensor> {
        Ok(self.empty_sync_feat.unsqueeze(0)?.repeat((bs, len, 1))?)
    }

    /// The unconditional branch of CFG (`get_empty_conditions`): empty clip and sync features, and the empty
    /// string or the negative prompt's text features `(B, Nt, text_dim)`.
    pub fn empty_conditions(
        &self,
        bs: usize,
        latent_len: usize,
        clip_len: usize,
        sync_len: usize,
        negative_text_f: Option<&Tensor>,
    ) -> Result<Conditions> {
        let clip = self.empty_clip_sequence(1, clip_len)?;
        let sync = self.empty_sync_sequence(1, sync_len)?;
        let expand = |x: Tensor| -> Result<Tensor> {
            let mut dims = x.dims().to_vec();
            dims[0] = bs;
            Ok(x.broadcast_as(dims)?.contiguous()?)
        };
        match negative_text_f {
            None => {
                let c = self.preprocess_conditions(&clip, &sync, &self.empty_string_sequence(1)?, latent_len)?;
                Ok(Conditions {
                    clip_f: expand(c.clip_f)?,
                    sync_f: expand(c.sync_f)?,
                    text_f: expand(c.text_f)?,
                    clip_f_c: expand(c.clip_f_c)?,
                    text_f_c: expand(c.text_f_c)?,
                })
            }
            Some(neg) => {
                if neg.dim(0)? != bs {
                    return Err(Error::BadInput(format!(
                        "{} negative prompts for a batch of {bs}",
                        neg.dim(0)?
                    )));
                }
                // clip/sync from the single empty sequence, text from the batch of negative prompts
                let c = self.preprocess_conditions(&clip, &sync, &neg.narrow(0, 0, 1)?, latent_len)?;
                let text_f = self.text_input_proj.forward(neg)?;
                let text_f_c = self.text_cond_proj.forward(&text_f.mean(1)?)?;
                Ok(Conditions {
                    clip_f: expand(c.clip_f)?,
                    sync_f: expand(c.sync_f)?,
                    text_f,
                    clip_f_c: expand(c.clip_f_c)?,
                    text_f_c,
                })
            }
        }
    }

    /// `(x - latent_mean) / latent_std` over the last dimension of `(B, N, latent_dim)`.
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_sub(&self.latent_mean)?.broadcast_div(&self.latent_std)?)
    }
    /// `x * latent_std + latent_mean`: sampler output → VAE latents.
    pub fn unnormalize(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(&self.latent_std)?.broadcast_add(&self.latent_mean)?)
    }

    pub fn latent_dim(&self) -> usize {
        self.cfg.latent_dim
    }
}

impl crate::sampler::FlowModel for MMAudio {
    type Conditions = Conditions;

    fn predict_flow(&self, x: &Tensor, t: &Tensor, cond: &Conditions) -> Result<Tensor> {
        MMAudio::predict_flow(self, x, t, cond)
    }

    fn batch_size(cond: &Conditions) -> Result<usize> {
        cond.batch_size()
    }

    /// Batched where both branches have the same token counts (always, with CLIP's 77 text tokens).
    fn cat_conditions(cond: &Conditions, uncond: &Conditions) -> Result<Option<Conditions>> {
        let same = cond.clip_f.dims() == uncond.clip_f.dims() && cond.text_f.dims() == uncond.text_f.dims();
        if same { Conditions::cat(cond, uncond).map(Some) } else { Ok(None) }
    }
}

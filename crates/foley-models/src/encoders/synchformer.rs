//! Synchformer's visual encoder as MMAudio uses it for its synchronisation features.
//!
//! Reference: `mmaudio/ext/synchformer/` (`synchformer.py`, `motionformer.py`, `video_model_builder.py`,
//! `vit_helper.py`, `divided_224_16x4.yaml`) and `FeaturesUtils.encode_video_with_sync` in
//! `mmaudio/model/utils/features_utils.py`, github.com/hkchengrex/MMAudio commit 974010a.
//! Paper: Iashin et al., "Synchformer: Efficient Synchronization from Sparse Cues" (ICASSP 2024); the encoder
//! is a MotionFormer (Patrick et al., 2021) with divided space-time attention.
//!
//! 25 fps frames (224x224, normalised with mean = std = 0.5) are cut into segments of 16 frames every 8
//! frames. Each segment: tubelet embedding (2x16x16 Conv3d) -> 8x14x14 tokens + a class token, separate
//! spatial and temporal position embeddings, 12 blocks of (time attention, space attention, MLP), the class
//! token attending everywhere; then the patch tokens are normalised and a spatial aggregation layer (a
//! pre-norm `nn.TransformerEncoderLayer` with its own class token) pools each of the 8 time steps into one
//! 768-d feature. A clip of T frames gives `((T - 16) / 8 + 1) * 8` tokens.

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use foley_kernels::linear::{self, Linear};
use crate::encoders::vit_layers::{attention, layer_norm, merge_heads, split_qkv, Activation, Mlp, PatchEmbed};

/// Synchformer visual-encoder hyper-parameters (MotionFormer's `divided_224_16x4.yaml` as MMAudio patches it).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Config {
    pub embed_dim: usize,
    pub num_heads: usize,
    pub depth: usize,
    pub patch_size: usize,
    pub image_size: usize,
    /// Frames per tubelet (Conv3d temporal kernel and stride).
    pub temporal_patch: usize,
    pub frames_per_segment: usize,
    pub segment_stride: usize,
    pub mlp_ratio: usize,
    pub layer_norm_eps: f64,
}

impl Config {
    /// The encoder in `synchformer_state_dict.pth` (ViT-B/16, 224 px, 16-frame segments, stride 8).
    pub fn synchformer() -> Self {
        Self {
            embed_dim: 768,
            num_heads: 12,
            depth: 12,
            patch_size: 16,
            image_size: 224,
            temporal_patch: 2,
            frames_per_segment: 16,
            segment_stride: 8,
            mlp_ratio: 4,
            layer_norm_eps: 1e-6,
        }
    }

    /// Token frames per segment (`TEMPORAL_RESOLUTION`).
    pub fn time_steps(&self) -> usize {
        self.frames_per_segment / self.temporal_patch
    }

    /// Patches per frame (`PatchEmbed(img_size=224).num_patches`).
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// Segments a clip of `frames` frames is cut into (`encode_video_with_sync`).
    pub fn segments(&self, frames: usize) -> usize {
        if frames < self.frames_per_segment {
            0
        } else {
            (frames - self.frames_per_segment) / self.segment_stride + 1
        }
    }
}

/// `vit_helper.DividedAttention`: one qkv projection; the class token attends to every token, the other
/// tokens attend, with the class token, within their group (same patch across time, or same frame).
#[derive(Debug, Clone)]
struct DividedAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    scale: f64,
}

impl DividedAttention {
    fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            qkv: linear::linear(dim, 3 * dim, vb.pp("qkv"))?,
            proj: linear::linear(dim, dim, vb.pp("proj"))?,
            heads,
            scale: 1.0 / ((dim / heads) as f64).sqrt(),
        })
    }

    /// `x`: `[N, 1 + F * P, D]` (class token, then frames x patches). `over_time`: groups are patches
    /// (attention across the F frames), else frames (attention across the P patches).
    fn forward(&self, x: &Tensor, frames: usize, patches: usize, over_time: bool) -> Result<Tensor> {
        let (q, k, v) = split_qkv(&self.qkv.forward(x)?, self.heads)?; // [N, H, L, d]
        let q = (q * self.scale)?;
        let (n, h, l, d) = q.dims4()?;
        let cls_out = attention(&q.narrow(2, 0, 1)?, &k, &v, None)?; // [N, H, 1, d]
        // [N, H, F, P, d] -> groups [N, H, G, S, d]
        let group = |t: &Tensor| -> Result<Tensor> {
            let t = t.narrow(2, 1, l - 1)?.reshape((n, h, frames, patches, d))?;
            if over_time {
                t.transpose(2, 3)?.contiguous()
            } else {
                Ok(t)
            }
        };
        let (groups, size) = if over_time { (patches, frames) } else { (frames, patches) };
        let with_cls = |t: &Tensor| -> Result<Tensor> {
            let cls = t.narrow(2, 0, 1)?.unsqueeze(2)?.broadcast_as((n, h, groups, 1, d))?;
            Tensor::cat(&[&cls, &group(t)?], 3)?.contiguous()
        };
        let out = attention(&group(&q)?, &with_cls(&k)?, &with_cls(&v)?, None)?; // [N, H, G, S, d]
        let out = if over_time { out.transpose(2, 3)? } else { out };
        let out = out.reshape((n, h, groups * size, d))?;
        let out = Tensor::cat(&[&cls_out, &out], 2)?;
        self.proj.forward(&merge_heads(&out)?)
    }
}

/// `vit_helper.DividedSpaceTimeBlock`: time attention (norm3), space attention (norm1), MLP (norm2).
#[derive(Debug, Clone)]
struct DividedSpaceTimeBlock {
    norm1: LayerNorm,
    attn: DividedAttention,
    norm3: LayerNorm,
    timeattn: DividedAttention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl DividedSpaceTimeBlock {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (d, eps) = (cfg.embed_dim, cfg.layer_norm_eps);
        Ok(Self {
            norm1: layer_norm(d, eps, vb.pp("norm1"))?,
            attn: DividedAttention::new(d, cfg.num_heads, vb.pp("attn"))?,
            norm3: layer_norm(d, eps, vb.pp("norm3"))?,
            timeattn: DividedAttention::new(d, cfg.num_heads, vb.pp("timeattn"))?,
            norm2: layer_norm(d, eps, vb.pp("norm2"))?,
            mlp: Mlp::new(d, d * cfg.mlp_ratio, Activation::GeluErf, vb.pp("mlp"), ("fc1", "fc2"))?,
        })
    }

    fn forward(&self, x: &Tensor, frames: usize, patches: usize) -> Result<Tensor> {
        let x = (x + self.timeattn.forward(&self.norm3.forward(x)?, frames, patches, true)?)?;
        let x = (&x + self.attn.forward(&self.norm1.forward(&x)?, frames, patches, false)?)?;
        &x + self.mlp.forward(&self.norm2.forward(&x)?)?
    }
}

/// `motionformer.SpatialTransformerEncoderLayer`: a pre-norm `nn.TransformerEncoderLayer` (GELU) over the
/// patches of one frame with a learned class token prepended; returns the class token. Only the class token's
/// row is computed (the layer's other outputs are discarded by the reference).
#[derive(Debug, Clone)]
struct SpatialAggregation {
    cls_token: Tensor,
    norm1: LayerNorm,
    in_proj: Linear,
    out_proj: Linear,
    norm2: LayerNorm,
    ff: Mlp,
    heads: usize,
    scale: f64,
}

impl SpatialAggregation {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (d, eps) = (cfg.embed_dim, cfg.layer_norm_eps);
        let sa = vb.pp("self_attn");
        Ok(Self {
            cls_token: vb.get((1, 1, d), "cls_token")?,
            norm1: layer_norm(d, eps, vb.pp("norm1"))?,
            in_proj: Linear::new(sa.get((3 * d, d), "in_proj_weight")?, Some(sa.get(3 * d, "in_proj_bias")?))?,
            out_proj: linear::linear(d, d, sa.pp("out_proj"))?,
            norm2: layer_norm(d, eps, vb.pp("norm2"))?,
            ff: Mlp::new(d, d * cfg.mlp_ratio, Activation::GeluErf, vb.clone(), ("linear1", "linear2"))?,
            heads: cfg.num_heads,
            scale: 1.0 / ((d / cfg.num_heads) as f64).sqrt(),
        })
    }

    /// `x`: `[M, P, D]` (M = segments x time steps) -> `[M, D]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (m, _, d) = x.dims3()?;
        let x = Tensor::cat(&[&self.cls_token.broadcast_as((m, 1, d))?.to_dtype(x.dtype())?, x], 1)?;
        let (q, k, v) = split_qkv(&self.in_proj.forward(&self.norm1.forward(&x)?)?, self.heads)?;
        let q_cls = (q.narrow(2, 0, 1)? * self.scale)?;
        let sa = self.out_proj.forward(&merge_heads(&attention(&q_cls, &k, &v, None)?)?)?; // [M, 1, D]
        let cls = (x.narrow(1, 0, 1)? + sa)?;
        let cls = (&cls + self.ff.forward(&self.norm2.forward(&cls)?)?)?;
        cls.squeeze(1)
    }
}

/// MMAudio's `Synchformer` (its `vfeat_extractor`, a feature-extracting MotionFormer). Build it from the
/// root of `synchformer_state_dict.pth`; only `vfeat_extractor.*` is read, as MMAudio's `load_state_dict`
/// filters it.
#[derive(Debug, Clone)]
pub struct Synchformer {
    patch_embed_3d: PatchEmbed,
    cls_token: Tensor,
    /// Class-token position plus tiled spatial + repeated temporal embeddings: `[1, 1 + F * P, D]`.
    pos_embed: Tensor,
    blocks: Vec<DividedSpaceTimeBlock>,
    norm: LayerNorm,
    spatial_attn_agg: SpatialAggregation,
    cfg: Config,
}

impl Synchformer {
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = vb.pp("vfeat_extractor");
        let (d, p, tp) = (cfg.embed_dim, cfg.patch_size, cfg.temporal_patch);
        let (frames, patches) = (cfg.time_steps(), cfg.patches());
        let pe = vb.pp("patch_embed_3d").pp("proj");
        let patch_embed_3d = PatchEmbed::new(pe.get((d, 3, tp, p, p), "weight")?, Some(pe.get(d, "bias")?))?;
        // "separate" position embeddings (video_model_builder.VisionTransformer.forward_features)
        let pos = vb.get((1, patches + 1, d), "pos_embed")?;
        let temp = vb.get((1, frames, d), "temp_embed")?;
        let tiled = pos.narrow(1, 1, patches)?.repeat((1, frames, 1))?;
        let temporal = temp.unsqueeze(2)?.broadcast_as((1, frames, patches, d))?.reshape((1, frames * patches, d))?;
        let pos_embed = Tensor::cat(&[&pos.narrow(1, 0, 1)?, &(tiled + temporal)?], 1)?;
        let blocks = (0..cfg.depth)
            .map(|i| DividedSpaceTimeBlock::new(cfg, vb.pp("blocks").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Self {
            patch_embed_3d,
            cls_token: vb.get((1, 1, d), "cls_token")?,
            pos_embed,
            blocks,
            norm: layer_norm(d, cfg.layer_norm_eps, vb.pp("norm"))?,
            spatial_attn_agg: SpatialAggregation::new(cfg, vb.pp("spatial_attn_agg"))?,
            cfg: cfg.clone(),
        })
    }

    /// Segments `[N, frames_per_segment, 3, S, S]` (normalised) -> `[N, time_steps, D]`.
    pub fn forward_segments(&self, x: &Tensor) -> Result<Tensor> {
        let (n, t, c, h, w) = x.dims5()?;
        let s = self.cfg.image_size;
        if t != self.cfg.frames_per_segment || c != 3 || h != s || w != s {
            candle_core::bail!("synchformer: expected [N, {}, 3, {s}, {s}] segments, got {:?}",
                self.cfg.frames_per_segment, x.dims())
        }
        let (frames, patches, d) = (self.cfg.time_steps(), self.cfg.patches(), self.cfg.embed_dim);
        let x = self.patch_embed_3d.forward(&x.permute((0, 2, 1, 3, 4))?)?; // [N, F * P, D]
        let cls = self.cls_token.broadcast_as((n, 1, d))?.to_dtype(x.dtype())?;
        let mut x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.pos_embed)?;
        for block in &self.blocks {
            x = block.forward(&x, frames, patches)?;
        }
        let x = self.norm.forward(&x.i((.., 1..))?.contiguous()?)?; // without the class token
        let x = self.spatial_attn_agg.forward(&x.reshape((n * frames, patches, d))?)?;
        x.reshape((n, frames, d))
    }

    /// `encode_video_with_sync`: frames `[B, T, 3, S, S]` (normalised) -> `[B, segments * time_steps, D]`,
    /// segments encoded at most `chunk` at a time (0: all at once).
    pub fn encode_video(&self, x: &Tensor, chunk: usize) -> Result<Tensor> {
        let (b, t, _, _, _) = x.dims5()?;
        let segs = self.cfg.segments(t);
        if segs == 0 {
            candle_core::bail!("synchformer: {t} frames, need at least {}", self.cfg.frames_per_segment)
        }
        let (len, stride) = (self.cfg.frames_per_segment, self.cfg.segment_stride);
        let segments: Vec<Tensor> = (0..segs).map(|i| x.narrow(1, i * stride, len)).collect::<Result<_>>()?;
        let x = Tensor::stack(&segments, 1)?.flatten(0, 1)?; // [(B S), len, 3, S, S]
        let n = b * segs;
        let chunk = if chunk == 0 { n } else { chunk };
        let parts =
            (0..n).step_by(chunk).map(|s| self.forward_segments(&x.narrow(0, s, chunk.min(n - s))?)).collect::<Result<Vec<_>>>()?;
        let out = Tensor::cat(&parts, 0)?; // [(B S), F, D]
        out.reshape((b, segs * self.cfg.time_steps(), self.cfg.embed_dim))
    }
}

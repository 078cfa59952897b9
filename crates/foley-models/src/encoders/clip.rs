//! CLIP (open_clip) vision and text towers, as MMAudio uses Apple's DFN5B-CLIP-ViT-H-14-384 for conditioning.
//!
//! Reference: open_clip 3.3.0 `model.py` (`CLIP`), `transformer.py` (`VisionTransformer`,
//! `ResidualAttentionBlock`), and MMAudio's `mmaudio/model/utils/features_utils.py` at
//! github.com/hkchengrex/MMAudio commit 974010a, which
//! - encodes every video frame (384x384, CLIP-normalised) with `encode_image(normalize=True)`: the class token
//!   after `ln_post`, projected by `proj`, L2-normalised -> `[T, 1024]` ([`ClipVisionTransformer::forward`]);
//! - encodes the prompt with a patched `encode_text(normalize=True)` that stops before pooling: every token
//!   after `ln_final`, L2-normalised -> `[77, 1024]` ([`ClipTextTransformer::forward`]).
//!
//! Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision" (2021);
//! DFN: Fang et al., "Data Filtering Networks" (2023).

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::encoders::vit_layers::{l2_normalize, layer_norm, Activation, Mlp, MultiheadAttention, PatchEmbed};

/// open_clip's `LayerNorm` eps (torch default).
const LN_EPS: f64 = 1e-5;

/// CLIP hyper-parameters (open_clip `CLIPVisionCfg` / `CLIPTextCfg`, flattened).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Config {
    pub embed_dim: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub vision_width: usize,
    pub vision_heads: usize,
    pub vision_layers: usize,
    pub context_length: usize,
    pub vocab_size: usize,
    pub text_width: usize,
    pub text_heads: usize,
    pub text_layers: usize,
    pub mlp_ratio: f64,
    pub quick_gelu: bool,
}

impl Config {
    /// `apple/DFN5B-CLIP-ViT-H-14-384` (its open_clip_config.json: open_clip `ViT-H-14-378-quickgelu` at
    /// 384 px): 27x27 patches of 14 px (the last 6 pixel rows/columns are not seen by the stride-14 conv).
    pub fn dfn5b_vit_h_14_384() -> Self {
        Self {
            embed_dim: 1024,
            image_size: 384,
            patch_size: 14,
            vision_width: 1280,
            vision_heads: 16,
            vision_layers: 32,
            context_length: 77,
            vocab_size: 49408,
            text_width: 1024,
            text_heads: 16,
            text_layers: 24,
            mlp_ratio: 4.0,
            quick_gelu: true,
        }
    }

    fn act(&self) -> Activation {
        if self.quick_gelu {
            Activation::QuickGelu
        } else {
            Activation::GeluErf
        }
    }

    /// Patches per side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }
}

/// open_clip `ResidualAttentionBlock`: pre-norm attention and MLP.
#[derive(Debug, Clone)]
struct ResidualAttentionBlock {
    ln_1: LayerNorm,
    attn: MultiheadAttention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl ResidualAttentionBlock {
    fn new(width: usize, heads: usize, cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let hidden = (width as f64 * cfg.mlp_ratio) as usize;
        Ok(Self {
            ln_1: layer_norm(width, LN_EPS, vb.pp("ln_1"))?,
            attn: MultiheadAttention::new(width, heads, vb.pp("attn"))?,
            ln_2: layer_norm(width, LN_EPS, vb.pp("ln_2"))?,
            mlp: Mlp::new(width, hidden, cfg.act(), vb.pp("mlp"), ("c_fc", "c_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, mask)?)?;
        &x + self.mlp.forward(&self.ln_2.forward(&x)?)?
    }

    /// The block's output for the class token only, `[B, 1, D]` (the last vision block: nothing else is
    /// pooled), without a mask.
    fn forward_cls(&self, x: &Tensor) -> Result<Tensor> {
        let cls = (x.narrow(1, 0, 1)? + self.attn.forward_first(&self.ln_1.forward(x)?, 1)?)?;
        &cls + self.mlp.forward(&self.ln_2.forward(&cls)?)?
    }
}

/// open_clip `Transformer`: `resblocks.{i}`.
#[derive(Debug, Clone)]
struct Transformer {
    resblocks: Vec<ResidualAttentionBlock>,
}

impl Transformer {
    fn new(width: usize, heads: usize, layers: usize, cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("resblocks");
        let resblocks =
            (0..layers).map(|i| ResidualAttentionBlock::new(width, heads, cfg, vb.pp(i))).collect::<Result<_>>()?;
        Ok(Self { resblocks })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.clone();
        for block in &self.resblocks {
            x = block.forward(&x, mask)?;
        }
        Ok(x)
    }

    /// The class token after the last block, `[B, D]`: the last block is computed for that token only.
    fn forward_cls(&self, x: &Tensor) -> Result<Tensor> {
        let Some((last, rest)) = self.resblocks.split_last() else {
            return x.narrow(1, 0, 1)?.squeeze(1);
        };
        let mut x = x.clone();
        for block in rest {
            x = block.forward(&x, None)?;
        }
        last.forward_cls(&x)?.squeeze(1)
    }
}

/// open_clip `VisionTransformer` (class-token pooling, `ln_post` before pooling, `proj`), weights under
/// `visual.` in the checkpoint.
#[derive(Debug, Clone)]
pub struct ClipVisionTransformer {
    conv1: PatchEmbed,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    transformer: Transformer,
    ln_post: LayerNorm,
    proj: Tensor,
    image_size: usize,
}

impl ClipVisionTransformer {
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let w = cfg.vision_width;
        let (p, g) = (cfg.patch_size, cfg.grid_size());
        Ok(Self {
            conv1: PatchEmbed::new(vb.get((w, 3, p, p), "conv1.weight")?, None)?,
            class_embedding: vb.get(w, "class_embedding")?,
            positional_embedding: vb.get((g * g + 1, w), "positional_embedding")?,
            ln_pre: layer_norm(w, LN_EPS, vb.pp("ln_pre"))?,
            transformer: Transformer::new(w, cfg.vision_heads, cfg.vision_layers, cfg, vb.pp("transformer"))?,
            ln_post: layer_norm(w, LN_EPS, vb.pp("ln_post"))?,
            proj: vb.get((w, cfg.embed_dim), "proj")?,
            image_size: cfg.image_size,
        })
    }

    /// `encode_image(x, normalize=True)`: `x` `[N, 3, S, S]` CLIP-normalised frames -> `[N, embed_dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if c != 3 || h != self.image_size || w != self.image_size {
            candle_core::bail!("clip vision: expected [N, 3, {s}, {s}] frames, got {:?}", x.dims(), s = self.image_size)
        }
        let x = self.conv1.forward(x)?; // [N, grid², width]
        let width = self.class_embedding.dim(0)?;
        let cls = self.class_embedding.reshape((1, 1, width))?.broadcast_as((n, 1, width))?.to_dtype(x.dtype())?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.positional_embedding)?;
        // class-token pooling: ln_post is per token, so it is applied to the class token alone
        let cls = self.transformer.forward_cls(&self.ln_pre.forward(&x)?)?;
        let pooled = self.ln_post.forward(&cls.contiguous()?)?;
        l2_normalize(&pooled.matmul(&self.proj)?)
    }

    /// [`Self::forward`] over at most `chunk` frames at a time (bounds the attention memory on long clips).
    pub fn forward_chunked(&self, x: &Tensor, chunk: usize) -> Result<Tensor> {
        let n = x.dim(0)?;
        if chunk == 0 || n <= chunk {
            return self.forward(x);
        }
        let parts = (0..n)
            .step_by(chunk)
            .map(|s| self.forward(&x.narrow(0, s, chunk.min(n - s))?))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }
}

/// The text side of open_clip `CLIP` (`token_embedding`, `positional_embedding`, `transformer` with a causal
/// mask, `ln_final`, `text_projection`), top-level keys of the checkpoint.
#[derive(Debug, Clone)]
pub struct ClipTextTransformer {
    token_embedding: Embedding,
    positional_embedding: Tensor,
    transformer: Transformer,
    ln_final: LayerNorm,
    text_projection: Tensor,
    context_length: usize,
}

impl ClipTextTransformer {
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let w = cfg.text_width;
        Ok(Self {
            token_embedding: candle_nn::embedding(cfg.vocab_size, w, vb.pp("token_embedding"))?,
            positional_embedding: vb.get((cfg.context_length, w), "positional_embedding")?,
            transformer: Transformer::new(w, cfg.text_heads, cfg.text_layers, cfg, vb.pp("transformer"))?,
            ln_final: layer_norm(w, LN_EPS, vb.pp("ln_final"))?,
            text_projection: vb.get((w, cfg.embed_dim), "text_projection")?,
            context_length: cfg.context_length,
        })
    }

    fn causal_mask(l: usize, device: &Device) -> Result<Tensor> {
        let mask: Vec<f32> =
            (0..l).flat_map(|i| (0..l).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
        Tensor::from_vec(mask, (l, l), device)
    }

    /// Every token after `ln_final`: `[B, context]` ids -> `[B, context, width]`.
    fn hidden(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, l) = ids.dims2()?;
        if l != self.context_length {
            candle_core::bail!("clip text: expected {} token ids, got {l}", self.context_length)
        }
        let x = self.token_embedding.forward(ids)?.broadcast_add(&self.positional_embedding)?;
        let mask = Self::causal_mask(l, x.device())?.to_dtype(x.dtype())?;
        self.ln_final.forward(&self.transformer.forward(&x, Some(&mask))?)
    }

    /// MMAudio's patched `encode_text(normalize=True)`: `[B, context]` ids -> `[B, context, width]`, every
    /// token L2-normalised (the text condition of the MM-DiT).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.hidden(ids)?)
    }

    /// open_clip's unpatched `encode_text(normalize=True)`: the end-of-text token (the largest id) projected
    /// into the joint space, `[B, embed_dim]` (not used by MMAudio; CLIP image-text similarity).
    pub fn forward_pooled(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.hidden(ids)?;
        let eot = ids.to_dtype(DType::F32)?.argmax(D::Minus1)?; // [B]
        let rows = (0..x.dim(0)?)
            .map(|b| x.i(b)?.i(eot.i(b)?.to_scalar::<u32>()? as usize))
            .collect::<Result<Vec<_>>>()?;
        l2_normalize(&Tensor::stack(&rows, 0)?.matmul(&self.text_projection)?)
    }
}

/// The whole open_clip `CLIP` as the DFN5B checkpoint stores it (every key is read).
#[derive(Debug, Clone)]
pub struct ClipModel {
    pub vision: ClipVisionTransformer,
    pub text: ClipTextTransformer,
    /// `logit_scale` (log of the similarity temperature), kept for completeness.
    pub logit_scale: Tensor,
}

impl ClipModel {
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self {
            vision: ClipVisionTransformer::new(vb.pp("visual"), cfg)?,
            text: ClipTextTransformer::new(vb.clone(), cfg)?,
            logit_scale: vb.get((), "logit_scale")?,
        })
    }
}

//! Building blocks of the MM-DiT: channel-last convolutions and SwiGLU MLPs (`mmaudio/model/low_level.py`),
//! the timestep embedder (`mmaudio/model/embeddings.py`), rotary position embeddings
//! (`mmaudio/ext/rotary_embeddings.py`) and the single / joint / final transformer blocks
//! (`mmaudio/model/transformer_layers.py`), all at github.com/hkchengrex/MMAudio commit 974010a.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;

use foley_kernels::conv::{self, ChannelAxis};
use crate::error::Result;
use foley_kernels::linear::{self, Linear};
use foley_kernels::{fast_ops, fused};

/// torch's `nn.SELU` constants.
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

pub(crate) fn selu(x: &Tensor) -> candle_core::Result<Tensor> {
    let neg = (x.minimum(0f64)?.exp()? - 1.0)? * SELU_ALPHA;
    (x.maximum(0f64)? + neg)? * SELU_SCALE
}

/// `ChannelLastConv1d`: a Conv1d applied to `(B, N, C)` tensors (the reference transposes around it; here
/// the convolution reads the token layout directly, see [`foley_kernels::conv`]).
#[derive(Debug, Clone)]
pub(crate) struct ChannelLastConv1d(conv::Conv1d);

impl ChannelLastConv1d {
    pub fn new(i: usize, o: usize, k: usize, pad: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let b = if bias { Some(vb.get(o, "bias")?) } else { None };
        Ok(Self(conv::Conv1d::new(vb.get((o, i, k), "weight")?, b, pad, 1, ChannelAxis::Last)?))
    }
}

impl Module for ChannelLastConv1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(x)
    }
}

/// Hidden width of the SwiGLU MLPs: `256 * ceil(int(2 * hidden / 3) / 256)`.
pub(crate) fn swiglu_hidden(hidden: usize) -> usize {
    let h = 2 * hidden / 3;
    256 * h.div_ceil(256)
}

/// `MLP` / `ConvMLP`: `w2(silu(w1(x)) * w3(x))`, with linears (kernel 1) or channel-last convolutions.
#[derive(Debug, Clone)]
pub(crate) enum SwiGlu {
    Linear(Linear, Linear, Linear),
    Conv(ChannelLastConv1d, ChannelLastConv1d, ChannelLastConv1d),
}

impl SwiGlu {
    /// `MLP(dim, hidden)` of the reference.
    pub fn mlp(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let h = swiglu_hidden(hidden);
        Ok(Self::Linear(
            linear::linear_no_bias(dim, h, vb.pp("w1"))?,
            linear::linear_no_bias(h, dim, vb.pp("w2"))?,
            linear::linear_no_bias(dim, h, vb.pp("w3"))?,
        ))
    }

    /// `ConvMLP(dim, hidden, kernel_size=k, padding=pad)` of the reference.
    pub fn conv(dim: usize, hidden: usize, k: usize, pad: usize, vb: VarBuilder) -> Result<Self> {
        let h = swiglu_hidden(hidden);
        Ok(Self::Conv(
            ChannelLastConv1d::new(dim, h, k, pad, false, vb.pp("w1"))?,
            ChannelLastConv1d::new(h, dim, k, pad, false, vb.pp("w2"))?,
            ChannelLastConv1d::new(dim, h, k, pad, false, vb.pp("w3"))?,
        ))
    }
}

impl Module for SwiGlu {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Linear(w1, w2, w3) => w2.forward(&fused::silu_mul(w1.forward(x)?, &w3.forward(x)?)?),
            Self::Conv(w1, w2, w3) => w2.forward(&fused::silu_mul(w1.forward(x)?, &w3.forward(x)?)?),
        }
    }
}

/// `TimestepEmbedder`: sinusoidal features of t (cos then sin) through a two-layer SiLU MLP.
#[derive(Debug, Clone)]
pub(crate) struct TimestepEmbedder {
    freqs: Tensor,
    /// The MLP's dtype: the sinusoids are computed in f32 from an f32 (or any) `t` and cast to it, as the
    /// reference does (`t` rounded to bf16 first would move v2's 10000-scaled arguments by whole radians).
    dtype: DType,
    mlp0: Linear,
    mlp2: Linear,
}

impl TimestepEmbedder {
    pub fn new(dim: usize, freq_size: usize, max_period: f64, vb: VarBuilder) -> Result<Self> {
        let scale = (10000.0 / max_period) as f32;
        let freqs: Vec<f32> = (0..freq_size)
            .step_by(2)
            .map(|i| scale * (1.0f32 / 10000f32.powf(i as f32 / freq_size as f32)))
            .collect();
        let n = freqs.len();
        Ok(Self {
            freqs: Tensor::from_vec(freqs, (1, n), vb.device())?,
            dtype: vb.dtype(),
            mlp0: linear::linear(freq_size, dim, vb.pp("mlp.0"))?,
            mlp2: linear::linear(dim, dim, vb.pp("mlp.2"))?,
        })
    }

    /// `t`: `(B,)` (best in f32, whatever the network's dtype) → `(B, dim)`.
    pub fn forward(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        let args = t.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_mul(&self.freqs)?;
        let emb = Tensor::cat(&[args.cos()?, args.sin()?], 1)?.to_dtype(self.dtype)?;
        self.mlp2.forward(&candle_nn::ops::silu(&self.mlp0.forward(&emb)?)?)
    }
}

/// Rotary embedding tables of `compute_rope_rotations` as `cos` / `sin`, each `(N, head_dim / 2)` (f32).
#[derive(Debug, Clone)]
pub struct Rope {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rope {
    /// Rotations for `len` positions with base 10000 and the given frequency scaling (the aligned clip RoPE
    /// uses `latent_len / clip_len`, so that clip tokens and audio latents share one time axis).
    pub fn new(len: usize, head_dim: usize, freq_scaling: f64, dev: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| (1.0f32 / 10000f32.powf((2 * i) as f32 / head_dim as f32)) * freq_scaling as f32)
            .collect();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in 0..len {
            for f in &freqs {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (len, half), dev)?,
            sin: Tensor::from_vec(sin, (len, half), dev)?,
        })
    }

    /// `apply_rope`: rotates consecutive channel pairs of `x` `(B, H, N, head_dim)` (computed in f32).
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, h, n, d) = x.dims4()?;
        let xf = x.to_dtype(DType::F32)?.reshape((b, h, n, d / 2, 2))?;
        let x0 = xf.narrow(4, 0, 1)?.squeeze(4)?;
        let x1 = xf.narrow(4, 1, 1)?.squeeze(4)?;
        let (cos, sin) = (&self.cos, &self.sin);
        let o0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
        let o1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
        Tensor::stack(&[o0, o1], 4)?.reshape((b, h, n, d))?.to_dtype(x.dtype())
    }
}

/// `F.scaled_dot_product_attention` then `b h n d -> b n (h d)`.
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
    let (b, h, n, d) = q.dims4()?;
    let scale = 1.0 / (d as f64).sqrt();
    if let Some(out) = foley_kernels::attention::attention(q, k, v, scale, None)? {
        return Ok(out);
    }
    // the 1/sqrt(d) scale on q (N×d) rather than on the N×N scores; softmax in place on CPU (foley_kernels::fast_ops)
    let q = (q * scale)?;
    let att = foley_kernels::fast_ops::softmax_last_dim(q.matmul(&k.t()?)?)?;
    att.matmul(v)?.transpose(1, 2)?.reshape((b, n, h * d))
}

/// `SelfAttention` (projection + per-head RMSNorm of q and k; the attention itself is done by the caller).
#[derive(Debug, Clone)]
pub(crate) struct SelfAttention {
    qkv: Linear,
    q_norm: Tensor,
    k_norm: Tensor,
    heads: usize,
}

impl SelfAttention {
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let hd = dim / heads;
        Ok(Self {
            qkv: linear::linear(dim, 3 * dim, vb.pp("qkv"))?,
            q_norm: vb.get(hd, "q_norm.weight")?,
            k_norm: vb.get(hd, "k_norm.weight")?,
            heads,
        })
    }

    /// q, k, v as `(B, H, N, head_dim)`; `rot` is applied to q and k when given.
    pub fn pre_attention(&self, x: &Tensor, rot: Option<&Rope>) -> candle_core::Result<[Tensor; 3]> {
        let (b, n, dim) = x.dims3()?;
        let hd = dim / self.heads;
        // 'b n (h d j) -> b h n d j': q, k, v are interleaved in the last position.
        let qkv = self.qkv.forward(x)?;
        // nn.RMSNorm(eps=None) uses the machine epsilon of the input's dtype.
        let eps = match x.dtype() {
            DType::BF16 => 0.0078125,
            DType::F16 => 0.000_976_562_5,
            _ => f32::EPSILON,
        };
        let rope = rot.map(|r| (&r.cos, &r.sin));
        if let Some(heads) = fused::qkv_heads(&qkv, self.heads, &self.q_norm, &self.k_norm, eps, rope)? {
            return Ok(heads);
        }
        let qkv = qkv.reshape((b, n, self.heads, hd, 3))?;
        let pick = |j: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(4, j, 1)?.squeeze(4)?.transpose(1, 2)?.contiguous()
        };
        let mut q = candle_nn::ops::rms_norm(&pick(0)?, &self.q_norm, eps)?;
        let mut k = candle_nn::ops::rms_norm(&pick(1)?, &self.k_norm, eps)?;
        if let Some(rot) = rot {
            q = rot.apply(&q)?;
            k = rot.apply(&k)?;
        }
        Ok([q, k, pick(2)?])
    }
}

/// `linear1` of a single block: a Linear (kernel 1) or a channel-last convolution.
#[derive(Debug, Clone)]
enum Proj {
    Linear(Linear),
    Conv(ChannelLastConv1d),
}

impl Module for Proj {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Linear(l) => l.forward(x),
            Self::Conv(c) => c.forward(x),
        }
    }
}

/// Modulation kept between `pre_attention` and `post_attention`: gate_msa, shift_mlp, scale_mlp, gate_mlp.
pub(crate) type PostMod = Option<[Tensor; 4]>;

/// `MMDitSingleBlock`: adaLN-modulated self-attention + (conv) SwiGLU, or only the attention inputs
/// (`pre_only`, the last joint block's clip/text streams).
#[derive(Debug, Clone)]
pub(crate) struct SingleBlock {
    attn: SelfAttention,
    ada_ln: Linear,
    post: Option<(Proj, SwiGlu)>,
}

impl SingleBlock {
    pub fn new(
        dim: usize,
        heads: usize,
        mlp_ratio: f64,
        pre_only: bool,
        kernel: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let attn = SelfAttention::new(dim, heads, vb.pp("attn"))?;
        let n_mod = if pre_only { 2 } else { 6 };
        let ada_ln = linear::linear(dim, n_mod * dim, vb.pp("adaLN_modulation.1"))?;
        let post = if pre_only {
            None
        } else {
            let hidden = (dim as f64 * mlp_ratio) as usize;
            let pad = kernel / 2;
            if kernel == 1 {
                Some((
                    Proj::Linear(linear::linear(dim, dim, vb.pp("linear1"))?),
                    SwiGlu::mlp(dim, hidden, vb.pp("ffn"))?,
                ))
            } else {
                Some((
                    Proj::Conv(ChannelLastConv1d::new(dim, dim, kernel, pad, true, vb.pp("linear1"))?),
                    SwiGlu::conv(dim, hidden, kernel, pad, vb.pp("ffn"))?,
                ))
            }
        };
        Ok(Self { attn, ada_ln, post })
    }

    /// `c`: `(B, 1, D)` (global) or `(B, N, D)` (per token).
    pub fn pre_attention(
        &self,
        x: &Tensor,
        c: &Tensor,
        rot: Option<&Rope>,
    ) -> candle_core::Result<([Tensor; 3], PostMod)> {
        let m = self.ada_ln.forward(&fast_ops::silu(c)?)?;
        let parts = m.chunk(if self.post.is_some() { 6 } else { 2 }, D::Minus1)?;
        let x = fused::norm_modulate(x, &parts[0], &parts[1], 1e-5)?;
        let qkv = self.attn.pre_attention(&x, rot)?;
        let post = if self.post.is_some() {
            Some([parts[2].clone(), parts[3].clone(), parts[4].clone(), parts[5].clone()])
        } else {
            None
        };
        Ok((qkv, post))
    }

    pub fn post_attention(&self, x: &Tensor, attn_out: &Tensor, m: &PostMod) -> candle_core::Result<Tensor> {
        let (Some((linear1, ffn)), Some([gate_msa, shift_mlp, scale_mlp, gate_mlp])) = (&self.post, m) else {
            return Ok(x.clone());
        };
        let x = fused::gated_residual(x, linear1.forward(attn_out)?, gate_msa)?;
        let r = fused::norm_modulate(&x, shift_mlp, scale_mlp, 1e-5)?;
        fused::gated_residual(&x, ffn.forward(&r)?, gate_mlp)
    }

    pub fn forward(&self, x: &Tensor, c: &Tensor, rot: Option<&Rope>) -> candle_core::Result<Tensor> {
        let ([q, k, v], m) = self.pre_attention(x, c, rot)?;
        self.post_attention(x, &attention(&q, &k, &v)?, &m)
    }
}

/// `JointBlock`: one attention over [audio latents; clip tokens; text tokens], each stream with its own
/// adaLN block (audio modulated per token by the sync-extended condition, clip/text by the global one).
#[derive(Debug, Clone)]
pub(crate) struct JointBlock {
    latent_block: SingleBlock,
    clip_block: SingleBlock,
    text_block: SingleBlock,
}

impl JointBlock {
    pub fn new(dim: usize, heads: usize, mlp_ratio: f64, pre_only: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            latent_block: SingleBlock::new(dim, heads, mlp_ratio, false, 3, vb.pp("latent_block"))?,
            clip_block: SingleBlock::new(dim, heads, mlp_ratio, pre_only, 3, vb.pp("clip_block"))?,
            text_block: SingleBlock::new(dim, heads, mlp_ratio, pre_only, 1, vb.pp("text_block"))?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        latent: &Tensor,
        clip_f: &Tensor,
        text_f: &Tensor,
        global_c: &Tensor,
        extended_c: &Tensor,
        latent_rot: &Rope,
        clip_rot: &Rope,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (x_qkv, x_mod) = self.latent_block.pre_attention(latent, extended_c, Some(latent_rot))?;
        let (c_qkv, c_mod) = self.clip_block.pre_attention(clip_f, global_c, Some(clip_rot))?;
        let (t_qkv, t_mod) = self.text_block.pre_attention(text_f, global_c, None)?;
        let (nl, nc, nt) = (latent.dim(1)?, clip_f.dim(1)?, text_f.dim(1)?);
        let cat = |i: usize| Tensor::cat(&[&x_qkv[i], &c_qkv[i], &t_qkv[i]], 2);
        let out = attention(&cat(0)?, &cat(1)?, &cat(2)?)?;
        let latent = self
            .latent_block
            .post_attention(latent, &out.narrow(1, 0, nl)?, &x_mod)?;
        let clip_f = self
            .clip_block
            .post_attention(clip_f, &out.narrow(1, nl, nc)?, &c_mod)?;
        let text_f = self
            .text_block
            .post_attention(text_f, &out.narrow(1, nl + nc, nt)?, &t_mod)?;
        Ok((latent, clip_f, text_f))
    }
}

/// `FinalBlock`: adaLN (shift, scale) then a kernel-7 channel-last convolution to the latent width.
#[derive(Debug, Clone)]
pub(crate) struct FinalBlock {
    ada_ln: Linear,
    conv: ChannelLastConv1d,
}

impl FinalBlock {
    pub fn new(dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            ada_ln: linear::linear(dim, 2 * dim, vb.pp("adaLN_modulation.1"))?,
            conv: ChannelLastConv1d::new(dim, out_dim, 7, 3, true, vb.pp("conv"))?,
        })
    }

    pub fn forward(&self, latent: &Tensor, c: &Tensor) -> candle_core::Result<Tensor> {
        let m = self.ada_ln.forward(&fast_ops::silu(c)?)?.chunk(2, D::Minus1)?;
        self.conv.forward(&fused::norm_modulate(latent, &m[0], &m[1], 1e-5)?)
    }
}

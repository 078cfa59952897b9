//! Transformer pieces shared by the conditioning encoders (CLIP towers, Synchformer): torch's
//! `nn.MultiheadAttention` weight layout with one fused qkv projection, pre-norm MLPs, non-overlapping patch
//! embeddings as one matmul, and the single attention kernel every encoder calls.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{LayerNorm, VarBuilder};

use foley_kernels::fast_ops;
use foley_kernels::linear::{self, Linear};

/// Activation of an MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP, open_clip `QuickGELU`).
    QuickGelu,
    /// `nn.GELU()` (erf form).
    GeluErf,
}

impl Activation {
    /// Applies the activation; `x` is consumed (overwritten in place on the CPU fast path).
    pub fn apply(self, x: Tensor) -> Result<Tensor> {
        match self {
            Self::QuickGelu => fast_ops::quick_gelu(x),
            Self::GeluErf => fast_ops::gelu_erf(x),
        }
    }
}

/// `nn.LayerNorm(dim, eps)` with `weight`/`bias`.
pub fn layer_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    candle_nn::layer_norm(dim, eps, vb)
}

/// `softmax(q k^T) v` over `[..., L, d]` tensors, `q` already scaled; `mask` is added to the scores.
/// The one attention path of the encoders; on the CPU in f32 it runs on [`foley_kernels::attention`].
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    // batch dimensions flattened to one: candle's CPU matmul takes at most two of them
    let dims = q.dims().to_vec();
    let rank = dims.len();
    let flat = |t: &Tensor| -> Result<Tensor> {
        let d = t.dims();
        t.reshape((d[..rank - 2].iter().product::<usize>(), d[rank - 2], d[rank - 1]))
    };
    let mut out_dims = dims;
    out_dims[rank - 1] = v.dim(rank - 1)?;
    // CPU f32 without a mask or with an [Lq, Lk] one: each flattened batch entry is one task of the in-place
    // kernel (as one head)
    if mask.is_none_or(|m| m.rank() == 2) {
        let one_head = |t: &Tensor| flat(t)?.unsqueeze(1);
        if let Some(out) = foley_kernels::attention::attention(&one_head(q)?, &one_head(k)?, &one_head(v)?, 1.0, mask)? {
            return out.reshape(out_dims);
        }
    }
    let scores = flat(q)?.matmul(&flat(k)?.t()?)?;
    let scores = match mask {
        Some(m) => scores.broadcast_add(m)?,
        None => scores,
    };
    let out = fast_ops::softmax_last_dim(scores)?.matmul(&flat(v)?)?;
    out.reshape(out_dims)
}

/// Splits a fused `[B, L, 3 * H * d]` projection into contiguous `q, k, v` of `[B, H, L, d]`.
pub fn split_qkv(qkv: &Tensor, heads: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, l, three_dim) = qkv.dims3()?;
    let hd = three_dim / (3 * heads);
    let qkv = qkv.reshape((b, l, 3, heads, hd))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
    Ok((qkv.get(0)?, qkv.get(1)?, qkv.get(2)?))
}

/// `[B, H, L, d]` -> `[B, L, H * d]`.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, l, d) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, l, h * d))
}

/// torch `nn.MultiheadAttention` (self-attention, batch first): `in_proj_weight`/`in_proj_bias` fused qkv,
/// `out_proj`.
#[derive(Debug, Clone)]
pub struct MultiheadAttention {
    in_proj: Linear,
    out_proj: Linear,
    heads: usize,
    scale: f64,
}

impl MultiheadAttention {
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let w = vb.get((3 * dim, dim), "in_proj_weight")?;
        let b = vb.get(3 * dim, "in_proj_bias")?;
        Ok(Self {
            in_proj: Linear::new(w, Some(b))?,
            out_proj: linear::linear(dim, dim, vb.pp("out_proj"))?,
            heads,
            scale: 1.0 / ((dim / heads) as f64).sqrt(),
        })
    }

    /// `x`: `[B, L, D]`; `mask`: additive `[L, L]` (e.g. causal), broadcast over batch and heads.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.forward_queries(x, None, mask)
    }

    /// The outputs of the first `n` queries only (all tokens still serve as keys and values): `[B, n, D]`.
    pub fn forward_first(&self, x: &Tensor, n: usize) -> Result<Tensor> {
        self.forward_queries(x, Some(n), None)
    }

    fn forward_queries(&self, x: &Tensor, first: Option<usize>, mask: Option<&Tensor>) -> Result<Tensor> {
        let qkv = self.in_proj.forward(x)?;
        let (b, l, three_dim) = qkv.dims3()?;
        let n = first.unwrap_or(l);
        // CPU f32: the heads read in place from the projection ([B, H, L, d] views), merged on output
        let heads = qkv.reshape((b, l, 3, self.heads, three_dim / (3 * self.heads)))?.permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (heads.get(0)?.narrow(2, 0, n)?, heads.get(1)?, heads.get(2)?);
        if let Some(out) = foley_kernels::attention::attention(&q, &k, &v, self.scale, mask)? {
            return self.out_proj.forward(&out);
        }
        let (q, k, v) = split_qkv(&qkv, self.heads)?;
        let out = attention(&(q.narrow(2, 0, n)? * self.scale)?, &k, &v, mask)?;
        self.out_proj.forward(&merge_heads(&out)?)
    }
}

/// Two linears around an activation (`c_fc`/`c_proj` in CLIP, `fc1`/`fc2` in timm, `linear1`/`linear2` in
/// torch's encoder layer).
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl Mlp {
    pub fn new(dim: usize, hidden: usize, act: Activation, vb: VarBuilder, names: (&str, &str)) -> Result<Self> {
        Ok(Self {
            fc1: linear::linear(dim, hidden, vb.pp(names.0))?,
            fc2: linear::linear(hidden, dim, vb.pp(names.1))?,
            act,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.act.apply(self.fc1.forward(x)?)?)
    }
}

/// A convolution whose stride equals its kernel (ViT patch embedding, 2-D or 3-D) as one matmul:
/// `x` `[N, C, (T,) H, W]` is cut into patches (a right/bottom remainder is dropped, as the convolution
/// does) and multiplied by the flattened kernel. Returns `[N, patches, out]`, patches in (t, h, w) order.
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    /// `[out, C * kt * kh * kw]`
    weight: Tensor,
    bias: Option<Tensor>,
    kernel: Vec<usize>,
}

impl PatchEmbed {
    /// `weight`: `[out, C, k...]` as torch stores a Conv2d/Conv3d kernel.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let dims = weight.dims().to_vec();
        let kernel = dims[2..].to_vec();
        let weight = weight.flatten_from(1)?;
        Ok(Self { weight, bias, kernel })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (n, c) = (dims[0], dims[1]);
        let spatial = &dims[2..];
        if spatial.len() != self.kernel.len() {
            candle_core::bail!("patch embed: input {:?} for a kernel {:?}", dims, self.kernel)
        }
        let grid: Vec<usize> = spatial.iter().zip(&self.kernel).map(|(s, k)| s / k).collect();
        let mut x = x.clone();
        for (i, (g, k)) in grid.iter().zip(&self.kernel).enumerate() {
            if g * k != spatial[i] {
                x = x.narrow(2 + i, 0, g * k)?;
            }
        }
        let x = x.contiguous()?;
        let patches: usize = grid.iter().product();
        let x = match (grid.as_slice(), self.kernel.as_slice()) {
            ([gh, gw], [kh, kw]) => x.reshape((n, c, *gh, *kh, *gw, *kw))?.permute((0, 2, 4, 1, 3, 5))?,
            ([gt, gh, gw], [kt, kh, kw]) => x
                .reshape(vec![n, c, *gt, *kt, *gh, *kh, *gw, *kw])?
                .permute(vec![0, 2, 4, 6, 1, 3, 5, 7])?,
            _ => candle_core::bail!("patch embed: unsupported kernel {:?}", self.kernel),
        };
        let x = x.contiguous()?.reshape((n * patches, ()))?.matmul(&self.weight.t()?)?;
        let x = match &self.bias {
            Some(b) => x.broadcast_add(b)?,
            None => x,
        };
        x.reshape((n, patches, ()))
    }
}

/// `F.normalize(x, dim=-1)` (eps 1e-12).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    x.broadcast_div(&norm)
}

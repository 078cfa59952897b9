//! Stride-1 `conv1d` for the generation networks, computed on CPU as one GEMM per kernel tap, read straight
//! from the input: out[t] = bias + Σ_j W[:, :, j] · x[t + j·d − p]. No im2col buffer, no padded copy and, for
//! the MM-DiT's channel-last activations, none of the transposes that candle's channel-first `conv1d` needs.
//! Taps whose window falls in the zero padding are simply skipped for those output positions.
//! Channel-last with dilation 1 (every MM-DiT convolution) is instead one GEMM over overlapping windows of a
//! zero-padded copy of the input (`windows_gemm`): at batch 2 the per-tap products were six small GEMMs
//! per call, each packing its slice of the weight again.
//! Other devices and dtypes go through candle's `conv1d`. Built inside [`crate::cpu_bf16::with_bf16_weights`], the
//! per-tap weight is held in bf16 and the taps run on [`crate::cpu_bf16`]'s GEMM.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_bf16::{self, Operand};
use crate::gemm::{gemm_add, gemm_parallelism};

/// Which axis of the activations holds channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAxis {
    /// `(B, C, T)`, PyTorch's `Conv1d` layout.
    First,
    /// `(B, T, C)`, the MM-DiT's token layout.
    Last,
}

/// A stride-1 `nn.Conv1d` (PyTorch weight layout `(O, C, K)` on load), applied to activations laid out as
/// `axis` says. On CPU/f32 the weight is kept once, re-laid out per tap in the order the GEMM packs fastest:
/// `(K, O, C)` for channel-first, `(K, C, O)` for channel-last; elsewhere it stays `(O, C, K)` for candle.
#[derive(Debug, Clone)]
pub struct Conv1d {
    w: Weights,
    bias: Option<Tensor>,
    padding: usize,
    dilation: usize,
    axis: ChannelAxis,
}

/// A convolution's weight, as the path that computes it reads it.
#[derive(Debug, Clone)]
enum Weights {
    /// `(O, C, K)` for candle's `conv1d` (other devices and dtypes).
    Candle(Tensor),
    /// CPU: per tap, `(K, O, C)` channel-first or `(K, C, O)` channel-last, in f32 or bf16.
    Taps(Tensor),
    /// CPU bf16, channel-last, dilation 1: `(K·C, O)` as the bf16 kernel reads it (pre-packed for VDPBF16PS), and K.
    Bf16Windows(cpu_bf16::Bf16Weight, usize),
}

impl Conv1d {
    /// `w: (O, C, K)`, `bias: (O,)`.
    pub fn new(
        w: Tensor,
        bias: Option<Tensor>,
        padding: usize,
        dilation: usize,
        axis: ChannelAxis,
    ) -> candle_core::Result<Self> {
        let (o, c, k) = w.dims3()?;
        if let Some(b) = &bias {
            if b.dims() != [o] {
                candle_core::bail!("conv1d: bias {:?} for {o} output channels", b.dims())
            }
        }
        let taps = w.device().is_cpu() && w.dtype() == DType::F32;
        let bf16 = taps && cpu_bf16::bf16_weights();
        let w = match (taps, axis) {
            (true, ChannelAxis::First) => w.permute((2, 0, 1))?.contiguous()?,
            (true, ChannelAxis::Last) => w.permute((2, 1, 0))?.contiguous()?,
            (false, _) => w,
        };
        let w = match (taps, bf16) {
            (false, _) => Weights::Candle(w),
            (true, true) if axis == ChannelAxis::Last && dilation <= 1 => {
                Weights::Bf16Windows(cpu_bf16::Bf16Weight::new(&w.reshape((k * c, o))?)?, k)
            }
            (true, true) => Weights::Taps(w.to_dtype(DType::BF16)?),
            (true, false) => Weights::Taps(w),
        };
        Ok(Self {
            w,
            bias,
            padding,
            dilation: dilation.max(1),
            axis,
        })
    }
}

impl candle_core::Module for Conv1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // the CPU layouts of the weight are read by the CPU f32 path only
        let cpu_input = || {
            if !x.device().is_cpu() || x.dtype() != DType::F32 {
                candle_core::bail!(
                    "conv1d: weights are f32 on the CPU, input is {:?} on {:?}",
                    x.dtype(),
                    x.device().location()
                )
            }
            x.contiguous()
        };
        let y = match &self.w {
            Weights::Candle(w) => return self.candle_forward(x, w),
            Weights::Taps(w) => cpu_input()?.apply_op2_no_bwd(
                w,
                &TapGemm {
                    padding: self.padding,
                    dilation: self.dilation,
                    axis: self.axis,
                    bias: self.cpu_bias()?,
                },
            )?,
            Weights::Bf16Windows(w, k) => cpu_input()?.apply_op1_no_bwd(&HeldWindows {
                w,
                k: *k,
                padding: self.padding,
                bias: self.cpu_bias()?,
            })?,
        };
        Ok(y)
    }
}

impl Conv1d {
    /// The bias for the CPU paths, which start their output with it.
    fn cpu_bias(&self) -> candle_core::Result<Option<Vec<f32>>> {
        self.bias.as_ref().map(|b| b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()).transpose()
    }

    /// Other devices and dtypes: candle's channel-first `conv1d` on the `(O, C, K)` weight.
    fn candle_forward(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        let xf = match self.axis {
            ChannelAxis::First => x.clone(),
            ChannelAxis::Last => x.transpose(1, 2)?.contiguous()?,
        };
        let mut y = xf.conv1d(w, self.padding, 1, self.dilation, 1)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.reshape((1, (), 1))?)?;
        }
        match self.axis {
            ChannelAxis::First => Ok(y),
            ChannelAxis::Last => y.transpose(1, 2)?.contiguous(),
        }
    }
}

/// The per-tap weight as stored: f32, or bf16 bits.
#[derive(Clone, Copy)]
enum Weight<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

impl<'a> Weight<'a> {
    fn slice(self, a: usize, b: usize) -> Self {
        match self {
            Weight::F32(w) => Weight::F32(&w[a..b]),
            Weight::Bf16(w) => Weight::Bf16(&w[a..b]),
        }
    }
}

struct TapGemm {
    padding: usize,
    dilation: usize,
    axis: ChannelAxis,
    /// Starts the output (the products are added to it), so no separate pass adds it.
    bias: Option<Vec<f32>>,
}

/// Output length of a stride-1 convolution of `t` samples (padding `p`, dilation `d`, `k` taps, `k ≥ 1`); an error
/// where the input is shorter than the kernel's reach.
fn out_len(what: &str, t: usize, p: usize, d: usize, k: usize) -> candle_core::Result<usize> {
    match (t + 2 * p).checked_sub(d * (k - 1)).filter(|&n| n > 0) {
        Some(n) => Ok(n),
        None => candle_core::bail!("{what}: input of length {t} is shorter than the kernel"),
    }
}

/// A new `(b, rows, cols)` buffer holding `bias` along the channel axis (rows for channel-first, columns for
/// channel-last), or zeros.
fn init_out(b: usize, (rows, cols): (usize, usize), axis: ChannelAxis, bias: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0f32; b * rows * cols];
    let Some(bias) = bias else { return out };
    match axis {
        ChannelAxis::First => out.par_chunks_mut(cols).enumerate().for_each(|(r, row)| row.fill(bias[r % rows])),
        ChannelAxis::Last => out.par_chunks_mut(cols).for_each(|row| row.copy_from_slice(bias)),
    }
    out
}

impl CustomOp2 for TapGemm {
    fn name(&self) -> &'static str {
        "conv1d-tap-gemm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = match (xs, ws) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => (x.as_slice(), Weight::F32(w.as_slice())),
            // SAFETY: half's bf16 is a transparent u16
            (CpuStorage::F32(x), CpuStorage::BF16(w)) => (x.as_slice(), Weight::Bf16(unsafe {
                std::slice::from_raw_parts(w.as_ptr().cast::<u16>(), w.len())
            })),
            _ => candle_core::bail!("{}: f32 activations, f32 or bf16 weights only", self.name()),
        };
        let (Some((x0, x1)), Some((w0, w1))) = (xl.contiguous_offsets(), wl.contiguous_offsets()) else {
            candle_core::bail!("{}: inputs have to be contiguous", self.name())
        };
        let (x, w) = (&x[x0..x1], w.slice(w0, w1));
        // without AVX512-BF16 the bf16 weight is widened once per call, not once per tap and batch element
        let widened;
        let w = match w {
            Weight::Bf16(h) if cpu_bf16::Kernel::get() == cpu_bf16::Kernel::Widen => {
                widened = cpu_bf16::widen(h);
                Weight::F32(&widened)
            }
            w => w,
        };
        let (b, d1, d2) = xl.shape().dims3()?;
        let (k, o, c) = match self.axis {
            ChannelAxis::First => wl.shape().dims3()?,
            ChannelAxis::Last => {
                let (k, c, o) = wl.shape().dims3()?;
                (k, o, c)
            }
        };
        let (ci, t) = match self.axis {
            ChannelAxis::First => (d1, d2),
            ChannelAxis::Last => (d2, d1),
        };
        if k == 0 || ci != c {
            candle_core::bail!("{}: input has {ci} channels, the kernel expects {c} (k = {k})", self.name())
        }
        let (p, d) = (self.padding, self.dilation.max(1));
        let t_out = out_len(self.name(), t, p, d, k)?;
        // a bf16 channel-last dilation-1 weight is held as `Weights::Bf16Windows` instead, and widened ones are f32
        if let (ChannelAxis::Last, 1, Weight::F32(w)) = (self.axis, d, w) {
            // SAFETY: windows_gemm passes the shape of the matrices it addresses; w is the (k·c, o) weight
            let out = windows_gemm(x, (b, t, c), (k, o), p, t_out, self.bias.as_deref(), |mnk, dst, (lhs, rs)| unsafe {
                gemm_add(mnk, dst, (lhs, rs), (w.as_ptr(), o), gemm_parallelism())
            });
            return Ok((CpuStorage::F32(out), Shape::from((b, t_out, o))));
        }
        let mut out = match self.axis {
            ChannelAxis::First => init_out(b, (o, t_out), self.axis, self.bias.as_deref()),
            ChannelAxis::Last => init_out(b, (t_out, o), self.axis, self.bias.as_deref()),
        };
        let par = gemm_parallelism();
        for bi in 0..b {
            let xb = &x[bi * c * t..(bi + 1) * c * t];
            let ob = &mut out[bi * o * t_out..(bi + 1) * o * t_out];
            for j in 0..k {
                // output positions whose input index t + j·d − p lies inside [0, t)
                let shift = j * d;
                let lo = p.saturating_sub(shift);
                let hi = (t + p).saturating_sub(shift).min(t_out);
                if lo >= hi {
                    continue;
                }
                let n = hi - lo;
                let src = lo + shift - p; // first input position read
                // SAFETY: every pointer/row-stride pair below addresses only elements of `xb`, `w` and `ob`:
                // rows/columns run over [0, o) × [0, c) × [lo, hi) with src + n <= t, as computed above.
                unsafe {
                    match (self.axis, w) {
                        // ob[:, lo..hi] += W_j (O×C, row-major in the (K, O, C) weight) · xb[:, src..src+n] (C×n)
                        (ChannelAxis::First, Weight::F32(w)) => gemm_add(
                            (o, n, c),
                            (ob.as_mut_ptr().add(lo), t_out),
                            (w.as_ptr().add(j * o * c), c),
                            (xb.as_ptr().add(src), t),
                            par,
                        ),
                        (ChannelAxis::First, Weight::Bf16(w)) => cpu_bf16::gemm_add(
                            (o, n, c),
                            (ob.as_mut_ptr().add(lo), t_out),
                            Operand::Bf16(w.as_ptr().add(j * o * c), c),
                            Operand::F32(xb.as_ptr().add(src), t),
                        ),
                        // ob[lo..hi, :] += xb[src..src+n, :] (n×C) · W_jᵀ (C×O, row-major in the (K, C, O) weight)
                        (ChannelAxis::Last, Weight::F32(w)) => gemm_add(
                            (n, o, c),
                            (ob.as_mut_ptr().add(lo * o), o),
                            (xb.as_ptr().add(src * c), c),
                            (w.as_ptr().add(j * c * o), o),
                            par,
                        ),
                        (ChannelAxis::Last, Weight::Bf16(w)) => cpu_bf16::gemm_add(
                            (n, o, c),
                            (ob.as_mut_ptr().add(lo * o), o),
                            Operand::F32(xb.as_ptr().add(src * c), c),
                            Operand::Bf16(w.as_ptr().add(j * c * o), o),
                        ),
                    }
                }
            }
        }
        let shape = match self.axis {
            ChannelAxis::First => Shape::from((b, o, t_out)),
            ChannelAxis::Last => Shape::from((b, t_out, o)),
        };
        Ok((CpuStorage::F32(out), shape))
    }
}

/// [`Weights::Bf16Windows`]: `x` `(B, T, C)` f32 → `(B, T_out, O)`.
struct HeldWindows<'a> {
    w: &'a cpu_bf16::Bf16Weight,
    k: usize,
    padding: usize,
    bias: Option<Vec<f32>>,
}

impl CustomOp1 for HeldWindows<'_> {
    fn name(&self) -> &'static str {
        "conv1d-windows-bf16"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = crate::fast_ops::contiguous_f32_ref(xs, xl, self.name())?;
        let (b, t, ci) = xl.shape().dims3()?;
        let (kc, o) = self.w.dims();
        let (k, p) = (self.k, self.padding);
        if k == 0 || kc != k * ci {
            candle_core::bail!("{}: input has {ci} channels, the kernel expects {}", self.name(), kc / k.max(1))
        }
        let t_out = out_len(self.name(), t, p, 1, k)?;
        // SAFETY: windows_gemm passes the shape of the matrices it addresses (see there)
        let out = windows_gemm(x, (b, t, ci), (k, o), p, t_out, self.bias.as_deref(), |mnk, dst, (lhs, rs)| unsafe {
            self.w.gemm_add(mnk, dst, Operand::F32(lhs, rs))
        });
        Ok((CpuStorage::F32(out), Shape::from((b, t_out, o))))
    }
}

/// A channel-last, dilation-1 convolution as one GEMM. With `p` zero rows around each batch element's `t` token
/// rows (`tp = t + 2p` rows each), the `k·c` inputs of output row `i` are the `k` consecutive rows from padded row
/// `i`: a `(rows, k·c)` matrix of overlapping windows, row stride `c`, read in place (im2col without the copy),
/// against the `(k, c, o)` weight read whole as `(k·c, o)`. One product per call, not one per tap and batch
/// element: the weight is packed once, the sums run over `k·c`, and the output is written once. Windows that
/// straddle two batch elements are computed and dropped (`2p` rows per element). `product((m, n, kk), dst,
/// lhs)` adds `lhs (m×kk) · W (kk×n)` into `dst`, each a (pointer, row stride) addressing exactly that matrix;
/// `dst` starts as `bias` on every row.
fn windows_gemm(
    x: &[f32],
    (b, t, c): (usize, usize, usize),
    (k, o): (usize, usize),
    p: usize,
    t_out: usize,
    bias: Option<&[f32]>,
    product: impl FnOnce((usize, usize, usize), (*mut f32, usize), (*const f32, usize)),
) -> Vec<f32> {
    let tp = t + 2 * p;
    let mut padded = vec![0f32; b * tp * c];
    for bi in 0..b {
        padded[(bi * tp + p) * c..][..t * c].copy_from_slice(&x[bi * t * c..][..t * c]);
    }
    // every window that lies inside the buffer; for one batch element exactly the output rows
    let rows = b * tp - (k - 1);
    let mut full = init_out(1, (rows, o), ChannelAxis::Last, bias);
    // window r reads padded[r·c .. (r + k)·c] ⊂ padded (r + k ≤ b·tp); full is rows×o
    product((rows, o, k * c), (full.as_mut_ptr(), o), (padded.as_ptr(), c));
    if b == 1 {
        return full;
    }
    let mut out = vec![0f32; b * t_out * o];
    for bi in 0..b {
        out[bi * t_out * o..][..t_out * o].copy_from_slice(&full[bi * tp * o..][..t_out * o]);
    }
    out
}


#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    /// Equal to candle's own conv1d (im2col) for every padding/dilation/kernel combination the networks use,
    /// including inputs shorter than the receptive field on one side.
    #[test]
    fn matches_candle_conv1d() -> candle_core::Result<()> {
        use crate::error_bounds::{assert_within, two_sums};
        let dev = Device::Cpu;
        for &(b, c, o, t, k, p, d) in &[
            (2, 5, 7, 13, 3, 1, 1),
            (1, 4, 3, 9, 7, 3, 1),
            (1, 6, 6, 40, 11, 25, 5),
            (1, 3, 2, 4, 7, 3, 1),
            (2, 8, 16, 1, 3, 1, 1),
            (1, 3, 5, 10, 1, 0, 1),
            (1, 2, 2, 12, 3, 0, 2),
            (3, 4, 6, 5, 3, 4, 1),
        ] {
            let x = Tensor::randn(0f32, 1.0, (b, c, t), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (o, c, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, o, &dev)?;
            let want = x.conv1d(&w, p, 1, d, 1)?.broadcast_add(&bias.reshape((1, o, 1))?)?;
            let conv = |axis| Conv1d::new(w.clone(), Some(bias.clone()), p, d, axis);
            let got = conv(ChannelAxis::First)?.forward(&x)?;
            assert_eq!(got.dims(), want.dims());
            // c·k products and the bias per output: two f32 sums of c·k + 1 terms
            let mag = x.abs()?.conv1d(&w.abs()?, p, 1, d, 1)?.broadcast_add(&bias.abs()?.reshape((1, o, 1))?)?;
            let bound = two_sums(c * k + 1, &mag);
            let case = (b, c, o, t, k, p, d);
            assert_within(&format!("channel-first {case:?}"), &got, &want, &bound);
            let got = conv(ChannelAxis::Last)?.forward(&x.transpose(1, 2)?.contiguous()?)?;
            assert_within(&format!("channel-last {case:?}"), &got.transpose(1, 2)?, &want, &bound);
        }
        Ok(())
    }

    /// Built in the bf16 scope, the taps hold a bf16 weight and compute candle's conv1d of the bf16-rounded
    /// weight, in both layouts.
    #[test]
    fn bf16_scope_matches_conv_of_the_rounded_weight() -> candle_core::Result<()> {
        use crate::error_bounds::{assert_within, bf16_rounded, two_sums};
        let dev = Device::Cpu;
        let (b, c, o, t, k, p) = (2, 24, 40, 30, 3, 1);
        let x = Tensor::randn(0f32, 1.0, (b, c, t), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (o, c, k), &dev)?;
        let w16 = bf16_rounded(&w);
        // both layouts run the selected bf16 kernel: widening keeps x in f32, VDPBF16PS rounds it to bf16
        // (nearest even). The products are exact either way and only the f32 sums of c·k terms differ.
        let vdp = crate::cpu_bf16::Kernel::get() != crate::cpu_bf16::Kernel::Widen;
        let x_seen = if vdp { bf16_rounded(&x) } else { x.clone() };
        for axis in [ChannelAxis::First, ChannelAxis::Last] {
            let want = x_seen.conv1d(&w16, p, 1, 1, 1)?;
            let bound = two_sums(c * k, &x_seen.abs()?.conv1d(&w16.abs()?, p, 1, 1, 1)?);
            let conv = crate::cpu_bf16::with_bf16_weights(|| Conv1d::new(w.clone(), None, p, 1, axis))?;
            match (&conv.w, axis) {
                (Weights::Taps(w), ChannelAxis::First) => assert_eq!(w.dtype(), DType::BF16),
                (Weights::Bf16Windows(w, 3), ChannelAxis::Last) => assert_eq!(w.dims(), (3 * c, o)),
                (w, _) => panic!("{axis:?}: {w:?}"),
            }
            let got = match axis {
                ChannelAxis::First => conv.forward(&x)?,
                ChannelAxis::Last => conv.forward(&x.transpose(1, 2)?.contiguous()?)?.transpose(1, 2)?,
            };
            assert_within(&format!("bf16 conv {axis:?} on {:?}", crate::cpu_bf16::Kernel::get()), &got, &want, &bound);
        }
        Ok(())
    }

    #[test]
    fn too_short_input_is_an_error() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, 3), DType::F32, &dev)?;
        let w = Tensor::zeros((2, 2, 7), DType::F32, &dev)?;
        assert!(Conv1d::new(w.clone(), None, 0, 1, ChannelAxis::First)?.forward(&x).is_err());
        // an input of another dtype than the CPU-layout weight is refused, not misread
        let x64 = Tensor::zeros((1, 2, 9), DType::F64, &dev)?;
        assert!(Conv1d::new(w, None, 0, 1, ChannelAxis::First)?.forward(&x64).is_err());
        Ok(())
    }
}

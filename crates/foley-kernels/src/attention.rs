//! Multi-head attention on the CPU in f32, one head at a time: `softmax(scale · q kᵀ + mask) v`.
//!
//! The generic path (`q.matmul(&k.t())`, softmax, `matmul(v)`, then merging the heads) copies q, k and v into
//! per-head contiguous tensors first, runs every head's small GEMMs with both threads in turn, and copies the
//! result back into `[B, N, H·d]`. Here each (batch, head) pair is one task: its scores are computed by a
//! single-threaded GEMM that reads q and k where they lie (any row stride: the heads of a fused qkv projection,
//! RoPE's output), softmaxed in place while they are still in cache, and multiplied by v straight into that
//! head's columns of the `[B, Nq, H·d]` output. The tasks run in parallel.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `softmax(scale · q kᵀ + mask) v` for `q` `[B, H, Nq, d]`, `k`, `v` `[B, H, Nk, d]` (any strides), with an
/// optional additive `mask` `[Nq, Nk]`, as `[B, Nq, H·d]` (heads merged). `None` where this kernel does not
/// apply (another device or dtype): the caller runs the generic path.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !(cpu_f32(q) && cpu_f32(k) && cpu_f32(v)) {
        return Ok(None);
    }
    let (b, h, nq, d) = q.dims4()?;
    let (bk, hk, nk, dk) = k.dims4()?;
    if (bk, hk, dk) != (b, h, d) || v.dims4()? != (b, h, nk, d) {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )
    }
    let mask = match mask {
        Some(m) => {
            if m.dims2()? != (nq, nk) {
                candle_core::bail!("attention: mask {:?} for {nq}×{nk} scores", m.dims())
            }
            Some(m.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        }
        None => None,
    };
    // the kernel reads rows with unit stride along d
    let unit = |t: &Tensor| {
        if t.stride()[3] == 1 {
            Ok(t.clone())
        } else {
            t.contiguous()
        }
    };
    let op = Attention {
        scale: scale as f32,
        mask,
    };
    Ok(Some(unit(q)?.apply_op3_no_bwd(
        &unit(k)?,
        &unit(v)?,
        &op,
    )?))
}

struct Attention {
    scale: f32,
    mask: Option<Vec<f32>>,
}

/// A `[B, H, N, d]` operand: its data from the start offset and its batch, head and row strides.
struct Heads<'a> {
    data: &'a [f32],
    stride: [usize; 3],
}

impl<'a> Heads<'a> {
    fn new(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<Self> {
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("attention: {what} must be f32")
        };
        let st = l.stride();
        if st.len() != 4 || st[3] != 1 {
            candle_core::bail!("attention: {what} strides {st:?}")
        }
        // the last element read: every index at its largest
        let dims = l.dims();
        let last = l.start_offset() + (0..4).map(|i| (dims[i].max(1) - 1) * st[i]).sum::<usize>();
        if dims.iter().all(|&n| n > 0) && last >= data.len() {
            candle_core::bail!(
                "attention: {what} layout {l:?} past its storage ({})",
                data.len()
            )
        }
        Ok(Self {
            data: &data[l.start_offset()..],
            stride: [st[0], st[1], st[2]],
        })
    }

    /// The first element of head `h` of batch `b`.
    fn head(&self, b: usize, h: usize) -> *const f32 {
        self.data[b * self.stride[0] + h * self.stride[1]..].as_ptr()
    }
}

/// The output pointer, shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes only its own head's columns of the output (see cpu_fwd)
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The element `offset` places in (a method, so that closures capture the whole `Send` wrapper).
    ///
    /// # Safety
    /// `offset` is within the output.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attention-cpu"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, h, nq, d) = ql.shape().dims4()?;
        let nk = kl.dims()[2];
        let (q, k, v) = (
            Heads::new(qs, ql, "q")?,
            Heads::new(ks, kl, "k")?,
            Heads::new(vs, vl, "v")?,
        );
        let mut out = vec![0f32; b * nq * h * d];
        if out.is_empty() || nk == 0 {
            return Ok((CpuStorage::F32(out), Shape::from((b, nq, h * d))));
        }
        let dst = Out(out.as_mut_ptr());
        let row = h * d;
        (0..b * h).into_par_iter().for_each_init(
            || vec![0f32; nq * nk],
            |scores, bh| {
                let (bi, hi) = (bh / h, bh % h);
                let (qp, kp, vp) = (q.head(bi, hi), k.head(bi, hi), v.head(bi, hi));
                // SAFETY: q, k, v address nq resp. nk rows of d elements under their row strides (checked in
                // Heads::new); scores is nq×nk; this task alone writes columns hi·d..(hi+1)·d of batch bi's rows
                unsafe {
                    gemm::gemm(
                        nq,
                        nk,
                        d,
                        scores.as_mut_ptr(),
                        1,
                        nk as isize,
                        false,
                        qp,
                        1,
                        q.stride[2] as isize,
                        kp,
                        k.stride[2] as isize,
                        1,
                        0.0,
                        self.scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                    if let Some(m) = &self.mask {
                        scores.iter_mut().zip(m).for_each(|(s, m)| *s += m);
                    }
                    crate::fast_ops::softmax_rows_in_place(scores, nk);
                    gemm::gemm(
                        nq,
                        d,
                        nk,
                        dst.at(bi * nq * row + hi * d),
                        1,
                        row as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        nk as isize,
                        vp,
                        1,
                        v.stride[2] as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, nq, row))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The generic path: scaled q, matmul, candle's softmax, matmul, heads merged.
    fn reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, h, nq, d) = q.dims4()?;
        let s = (q.contiguous()? * scale)?.matmul(&k.contiguous()?.t()?)?;
        let s = match mask {
            Some(m) => s.broadcast_add(m)?,
            None => s,
        };
        let o = candle_nn::ops::softmax_last_dim(&s)?.matmul(&v.contiguous()?)?;
        o.transpose(1, 2)?.reshape((b, nq, h * d))
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        Ok(crate::error_bounds::max_abs_diff(a, b))
    }

    #[test]
    fn matches_the_generic_path_on_strided_views() -> Result<()> {
        let dev = Device::Cpu;
        for &(b, h, n, d) in &[
            (2usize, 3usize, 17usize, 8usize),
            (1, 16, 77, 64),
            (3, 2, 5, 12),
        ] {
            // a fused qkv projection [B, N, 3·H·d]: q, k, v are strided views into it
            let qkv = Tensor::randn(0f32, 1.0, (b, n, 3 * h * d), &dev)?;
            let heads = qkv.reshape((b, n, 3, h, d))?.permute((2, 0, 3, 1, 4))?;
            let (q, k, v) = (heads.get(0)?, heads.get(1)?, heads.get(2)?);
            let scale = 1.0 / (d as f64).sqrt();
            let got = attention(&q, &k, &v, scale, None)?.expect("cpu f32");
            assert!(max_diff(&got, &reference(&q, &k, &v, scale, None)?)? < 1e-5);
            // the first queries only, and a causal mask
            let nq = n.div_ceil(2);
            let mask: Vec<f32> = (0..nq * n)
                .map(|i| {
                    if i % n > i / n {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            let mask = Tensor::from_vec(mask, (nq, n), &dev)?;
            let qf = q.narrow(2, 0, nq)?;
            let got = attention(&qf, &k, &v, scale, Some(&mask))?.expect("cpu f32");
            assert!(max_diff(&got, &reference(&qf, &k, &v, scale, Some(&mask))?)? < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn other_dtypes_are_left_to_the_caller() -> Result<()> {
        let q = Tensor::zeros((1, 1, 2, 4), DType::F64, &Device::Cpu)?;
        assert!(attention(&q, &q, &q, 1.0, None)?.is_none());
        Ok(())
    }
}

//! bf16 on the CPU: weights held in bf16 (half the memory), activations in f32, and every product of the two
//! accumulated in f32.
//!
//! Networks built inside [`with_bf16_weights`] keep the weights of their [`Linear`](crate::linear::Linear)s and
//! [`Conv1d`](crate::conv::Conv1d)s in bf16; everything else (norms, biases, embeddings, attention, the
//! elementwise work) stays f32. The products run on one of two [`Kernel`]s, chosen once per process:
//! - [`Kernel::Avx512Bf16`], where the processor has AVX512F and AVX512-BF16 and the kernel passes a self-test
//!   against the other: a blocked GEMM on VDPBF16PS ([`blocked`]), the f32 activations rounded to bf16 as they are
//!   packed (as the reference's bf16 activations are), the weights packed once at load ([`Bf16Weight`]);
//! - [`Kernel::Widen`] elsewhere: the bf16 operand is widened to f32 for each product and gemm's f32 kernels run
//!   (exact products of the bf16 weights, f32 speed minus the widening). One log line says which runs.
//!
//! `FOLEY_CPU_BF16=widen` forces the second (to compare the two on one machine); `FOLEY_CPU_BF16=emulate` runs the
//! first's blocked GEMM with VDPBF16PS emulated in plain Rust ([`Kernel::Emulated`]: the AVX512-BF16 kernel's
//! numerics on any processor, slowly — for the parity tests, not for use).

mod blocked;
mod lanes;
pub mod peak;

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

pub(crate) use blocked::Operand;
use blocked::{Packed, Rhs};

thread_local! {
    static BF16_WEIGHTS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `build` with the GEMM weights of the CPU f32 networks it constructs (on this thread) held in bf16 (see
/// the module docs). Networks built outside it keep f32 weights.
pub fn with_bf16_weights<R>(build: impl FnOnce() -> R) -> R {
    scoped(true, build)
}

/// Runs `build` with f32 weights even inside [`with_bf16_weights`]: for layers whose work is negligible (the
/// MM-DiT's conditioning projections, once per generation; its timestep and global conditioning, one row per batch
/// item; its first and last layers, facing the latent's few channels), where bf16 would save no time or memory
/// worth its rounding.
pub fn with_f32_weights<R>(build: impl FnOnce() -> R) -> R {
    scoped(false, build)
}

fn scoped<R>(bf16: bool, build: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BF16_WEIGHTS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(BF16_WEIGHTS.with(|c| c.replace(bf16)));
    build()
}

/// Whether a GEMM weight built now on this thread, on the CPU in f32, is to be held in bf16.
pub(crate) fn bf16_weights() -> bool {
    BF16_WEIGHTS.with(Cell::get)
}

/// How bf16 products run on this processor (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// VDPBF16PS, f32 accumulation.
    Avx512Bf16,
    /// The bf16 operand widened to f32, gemm's f32 kernels.
    Widen,
    /// [`Kernel::Avx512Bf16`]'s blocked GEMM with the instruction emulated (same numerics; slow).
    Emulated,
}

impl Kernel {
    /// The kernel of this process: chosen, logged and self-tested on first use.
    pub fn get() -> Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        *KERNEL.get_or_init(select)
    }

    /// A short name for reports (`avx512-bf16`, `widen` or `emulated-avx512-bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512Bf16 => "avx512-bf16",
            Kernel::Widen => "widen",
            Kernel::Emulated => "emulated-avx512-bf16",
        }
    }
}

/// Whether the processor has AVX512F and AVX512-BF16.
pub fn has_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn select() -> Kernel {
    match std::env::var("FOLEY_CPU_BF16").as_deref().map(str::trim) {
        Ok("widen") => {
            tracing::info!("CPU bf16: FOLEY_CPU_BF16=widen: bf16 weights are widened to f32 for each product");
            return Kernel::Widen;
        }
        Ok("emulate") => {
            tracing::warn!("CPU bf16: FOLEY_CPU_BF16=emulate: VDPBF16PS emulated in plain Rust (slow; for tests)");
            return Kernel::Emulated;
        }
        _ => {}
    }
    if has_avx512_bf16() {
        match self_test() {
            Ok(()) => {
                tracing::info!("CPU bf16: products on AVX512-BF16 (VDPBF16PS) with f32 accumulation");
                return Kernel::Avx512Bf16;
            }
            Err(e) => tracing::error!(
                "CPU bf16: the AVX512-BF16 kernel failed its self-test ({e}); bf16 weights are widened to f32 instead"
            ),
        }
    } else {
        tracing::warn!(
            "CPU bf16: this processor has no AVX512-BF16, so bf16 weights are widened to f32 for each product \
             (half the weight memory; no bf16 speed-up)"
        );
    }
    Kernel::Widen
}

/// The VDPBF16PS kernel against the widened f32 product, on shapes with every kind of tile edge, and with its
/// weight packed once against packed on the call.
fn self_test() -> Result<(), String> {
    for &(m, n, k) in &[(37, 45, 70), (200, 70, 300), (1, 33, 5)] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect();
        let w: Vec<u16> = (0..k * n).map(|i| blocked::to_bf16(((i * 53 % 97) as f32 - 48.0) / 32.0)).collect();
        let (mut got, mut want, mut packed) = (vec![0f32; m * n], vec![0f32; m * n], vec![0f32; m * n]);
        let lhs = Operand::F32(a.as_ptr(), k);
        let rhs = Operand::Bf16(w.as_ptr(), n);
        // SAFETY: the vectors hold the whole matrices; the caller checked the processor's features
        unsafe {
            avx512_gemm_add((m, n, k), (got.as_mut_ptr(), n), lhs, Rhs::Plain(rhs));
            widen_gemm_add((m, n, k), (want.as_mut_ptr(), n), lhs, rhs);
            avx512_gemm_add((m, n, k), (packed.as_mut_ptr(), n), lhs, Rhs::Packed(&Packed::new(rhs, k, n)));
        }
        if packed != got {
            return Err(format!("{m}x{n}x{k}: the weight packed once gives other sums"));
        }
        // the kernel also rounds the f32 operand to bf16: relative 2^-9 per product, k products of size ≤ 1.2
        let bound = 4e-3 * k as f32;
        let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
        if !(worst <= bound) {
            return Err(format!("{m}x{n}x{k}: max error {worst:e} > {bound:e}"));
        }
    }
    Ok(())
}

/// `dst (m×n, row stride) += lhs (m×k) · rhs (k×n)`, either operand f32 or bf16, on this process's [`Kernel`].
///
/// # Safety
/// The operands address their whole matrices and `dst` an `m×n` matrix under its stride that nothing else
/// touches meanwhile.
pub(crate) unsafe fn gemm_add(mnk: (usize, usize, usize), dst: (*mut f32, usize), lhs: Operand, rhs: Operand) {
    match Kernel::get() {
        Kernel::Widen => widen_gemm_add(mnk, dst, lhs, rhs),
        Kernel::Avx512Bf16 | Kernel::Emulated => blocked_gemm_add(mnk, dst, lhs, Rhs::Plain(rhs)),
    }
}

/// [`gemm_add`] on the blocked GEMM of this process's kernel (VDPBF16PS, or its emulation).
///
/// # Safety
/// As [`gemm_add`]; the kernel is [`Kernel::Avx512Bf16`] or [`Kernel::Emulated`].
unsafe fn blocked_gemm_add(mnk: (usize, usize, usize), dst: (*mut f32, usize), lhs: Operand, rhs: Rhs<'_>) {
    match Kernel::get() {
        Kernel::Avx512Bf16 => avx512_gemm_add(mnk, dst, lhs, rhs),
        _ => {
            unsafe fn run(j: blocked::Job<'_, '_>) {
                blocked::job::<lanes::Emulated>(j)
            }
            blocked::gemm_add(mnk, dst, lhs, rhs, run, rayon::current_num_threads())
        }
    }
}

/// [`gemm_add`] on VDPBF16PS.
///
/// # Safety
/// As [`gemm_add`], on a processor with AVX512F and AVX512-BF16.
unsafe fn avx512_gemm_add(mnk: (usize, usize, usize), dst: (*mut f32, usize), lhs: Operand, rhs: Rhs<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bf16")]
        unsafe fn run(j: blocked::Job<'_, '_>) {
            blocked::job::<lanes::Avx512Bf16>(j)
        }
        blocked::gemm_add(mnk, dst, lhs, rhs, run, rayon::current_num_threads());
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (mnk, dst, lhs, rhs);
        unreachable!("AVX512-BF16 is an x86-64 extension")
    }
}

/// bf16 bits widened to f32, in parallel.
pub(crate) fn widen(h: &[u16]) -> Vec<f32> {
    let mut out = Vec::with_capacity(h.len());
    // SAFETY: every element is written by the parallel loop below before the vector is read
    let spare = &mut out.spare_capacity_mut()[..h.len()];
    spare.par_chunks_mut(1 << 16).zip(h.par_chunks(1 << 16)).for_each(|(d, s)| {
        for (d, &v) in d.iter_mut().zip(s) {
            d.write(blocked::bf16_to_f32(v));
        }
    });
    // SAFETY: all h.len() elements were initialised above
    unsafe { out.set_len(h.len()) };
    out
}

/// An operand as f32: the f32 one as it is, a bf16 one widened into `buf` (rows in parallel).
///
/// # Safety
/// `op` addresses a `rows × cols` matrix.
unsafe fn as_f32(op: Operand, rows: usize, cols: usize, buf: &mut Vec<f32>) -> (*const f32, usize) {
    match op {
        Operand::F32(p, rs) => (p, rs),
        Operand::Bf16(p, rs) if rs == cols => {
            // contiguous rows: one flat widening
            *buf = widen(std::slice::from_raw_parts(p, rows * cols));
            (buf.as_ptr(), cols)
        }
        Operand::Bf16(p, rs) => {
            *buf = Vec::with_capacity(rows * cols);
            for r in 0..rows {
                let from = std::slice::from_raw_parts(p.add(r * rs), cols);
                buf.extend(from.iter().map(|&h| blocked::bf16_to_f32(h)));
            }
            (buf.as_ptr(), cols)
        }
    }
}

/// [`gemm_add`] with the bf16 operands widened to f32 and gemm's f32 kernels.
///
/// # Safety
/// As [`gemm_add`].
unsafe fn widen_gemm_add((m, n, k): (usize, usize, usize), dst: (*mut f32, usize), lhs: Operand, rhs: Operand) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let (mut lbuf, mut rbuf) = (Vec::new(), Vec::new());
    let (l, l_rs) = as_f32(lhs, m, k, &mut lbuf);
    let (r, r_rs) = as_f32(rhs, k, n, &mut rbuf);
    crate::gemm::gemm_add((m, n, k), dst, (l, l_rs), (r, r_rs), crate::gemm::gemm_parallelism());
}

/// A GEMM weight `(k, n)` held in bf16 the way this process's [`Kernel`] reads it: a bf16 tensor that
/// [`Kernel::Widen`] widens for each product, or, for the blocked VDPBF16PS kernel (and its emulation), the same
/// bf16 values packed once at load into the kernel's panels, so that no product packs the weight again.
#[derive(Clone)]
pub struct Bf16Weight {
    repr: Repr,
    k: usize,
    n: usize,
}

#[derive(Clone)]
enum Repr {
    Bf16(Tensor),
    Packed(Arc<Packed>),
}

impl std::fmt::Debug for Bf16Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.is_packed() { "packed" } else { "bf16" };
        write!(f, "Bf16Weight({}×{}, {how})", self.k, self.n)
    }
}

impl Bf16Weight {
    /// From a CPU `(k, n)` weight of any float dtype: rounded to bf16 (nearest-even), then packed where the
    /// kernel is the blocked one.
    pub fn new(w: &Tensor) -> candle_core::Result<Self> {
        let (k, n) = w.dims2()?;
        if !w.device().is_cpu() {
            candle_core::bail!("bf16 weight: CPU only")
        }
        let w = w.to_dtype(DType::BF16)?.contiguous()?;
        let repr = match Kernel::get() {
            Kernel::Widen => Repr::Bf16(w),
            Kernel::Avx512Bf16 | Kernel::Emulated => {
                let (storage, layout) = w.storage_and_layout();
                let (candle_core::Storage::Cpu(CpuStorage::BF16(data)), Some((a, b))) =
                    (&*storage, layout.contiguous_offsets())
                else {
                    candle_core::bail!("bf16 weight: not a contiguous CPU bf16 tensor")
                };
                let bits = &data[a..b];
                // SAFETY: half's bf16 is a transparent u16; `bits` holds the whole k×n matrix
                let packed = unsafe { Packed::new(Operand::Bf16(bits.as_ptr().cast::<u16>(), n), k, n) };
                Repr::Packed(Arc::new(packed))
            }
        };
        Ok(Self { repr, k, n })
    }

    /// `(k, n)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// Whether the weight is held pre-packed for the blocked kernel.
    pub fn is_packed(&self) -> bool {
        matches!(self.repr, Repr::Packed(_))
    }

    /// `x (…, k) · w` for f32 activations on the CPU, in f32.
    pub fn matmul(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let Some((&k, lead)) = dims.split_last() else { candle_core::bail!("bf16 matmul: scalar input") };
        let rows = lead.iter().product::<usize>();
        let x = x.reshape((rows, k))?.contiguous()?;
        let y = x.apply_op1_no_bwd(&MatMul(self))?;
        let mut out = lead.to_vec();
        out.push(self.n);
        y.reshape(out)
    }

    /// `dst (m×n) += lhs (m×k) · w`.
    ///
    /// # Safety
    /// As [`gemm_add`], with `(k, n)` this weight's shape.
    pub(crate) unsafe fn gemm_add(&self, (m, n, k): (usize, usize, usize), dst: (*mut f32, usize), lhs: Operand) {
        assert_eq!((k, n), (self.k, self.n), "bf16 weight of another shape");
        match &self.repr {
            Repr::Packed(p) => blocked_gemm_add((m, n, k), dst, lhs, Rhs::Packed(p)),
            Repr::Bf16(w) => {
                let (storage, layout) = w.storage_and_layout();
                let (candle_core::Storage::Cpu(CpuStorage::BF16(data)), Some((a, _))) =
                    (&*storage, layout.contiguous_offsets())
                else {
                    unreachable!("built contiguous on the CPU in bf16 (Bf16Weight::new)")
                };
                gemm_add((m, n, k), dst, lhs, Operand::Bf16(data[a..].as_ptr().cast::<u16>(), n))
            }
        }
    }
}

/// [`Bf16Weight::matmul`]: `(m, k)` f32 → `(m, n)` f32, on either form of the weight.
struct MatMul<'a>(&'a Bf16Weight);

impl CustomOp1 for MatMul<'_> {
    fn name(&self) -> &'static str {
        "bf16-weight-matmul"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = crate::fast_ops::contiguous_f32_ref(xs, xl, self.name())?;
        let (m, k) = xl.shape().dims2()?;
        let (kw, n) = self.0.dims();
        if k != kw {
            candle_core::bail!("{}: ({m}, {k}) × ({kw}, {n})", self.name())
        }
        let mut out = vec![0f32; m * n];
        // SAFETY: x is m×k, contiguous; out is m×n
        unsafe { self.0.gemm_add((m, n, k), (out.as_mut_ptr(), n), Operand::F32(x.as_ptr(), k)) };
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn scope_is_per_thread_and_restored() {
        assert!(!bf16_weights());
        let inner = with_bf16_weights(|| {
            let other = std::thread::spawn(bf16_weights).join().unwrap();
            (bf16_weights(), other)
        });
        assert_eq!(inner, (true, false));
        assert!(!bf16_weights());
        assert_eq!(with_bf16_weights(|| (with_f32_weights(bf16_weights), bf16_weights())), (false, true));
        let _ = std::panic::catch_unwind(|| with_bf16_weights(|| panic!("build failed")));
        assert!(!bf16_weights(), "restored after a panic");
    }

    /// The product of f32 activations and a bf16 weight equals candle's f32 matmul of the same (bf16-valued)
    /// weight with, on VDPBF16PS, the activations rounded to bf16 (nearest even) as that kernel rounds them: the
    /// products are exact, so only the order of the f32 sums may differ (`error_bounds`).
    #[test]
    fn matmul_matches_f32_product_of_the_bf16_weight() -> candle_core::Result<()> {
        use crate::error_bounds::{assert_within, bf16_rounded, two_sums};
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (96, 70), &dev)?;
        let wf = bf16_rounded(&w);
        let weight = Bf16Weight::new(&w)?;
        assert_eq!(weight.is_packed(), Kernel::get() != Kernel::Widen);
        for shape in [vec![5, 96], vec![2, 3, 96], vec![300, 96]] {
            let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev)?;
            let got = weight.matmul(&x)?;
            let x_seen = if Kernel::get() == Kernel::Widen { x.clone() } else { bf16_rounded(&x) };
            let want = x_seen.broadcast_matmul(&wf)?;
            let bound = two_sums(96, &x_seen.abs()?.broadcast_matmul(&wf.abs()?)?);
            assert_within(&format!("{shape:?} on {:?}", Kernel::get()), &got, &want, &bound);
        }
        Ok(())
    }

    #[test]
    fn self_test_passes_on_this_processor() {
        if has_avx512_bf16() {
            self_test().unwrap();
        } else {
            eprintln!("no AVX512-BF16 here: the VDPBF16PS kernel is covered by the emulated tests only");
        }
    }
}

//! The bf16 GEMM on VDPBF16PS, blocked as BLIS does. The left operand is packed once per call into `MR`-row
//! panels of bf16 pairs over the whole `k` (panels in parallel); then for each `NC`-column, `KCP`-pair slice the
//! right operand is packed once into `NR`-column panels (shared by all threads), and each task runs the `MR`×`NR`
//! micro-kernel over the tiles of an `MC`-row block, accumulating in f32 straight into the destination. f32
//! operands are rounded to bf16 (nearest-even) while they are packed, bf16 ones are copied, so either side may be
//! the weight. An odd `k` is padded with a zero pair half. A right-hand weight can be packed once ([`Packed`])
//! instead of on every call: for the MM-DiT's products (about 500 rows) that packing costs 7–11 % of an f32 GEMM
//! of the same shape, so about twice that share of a bf16 one. Packing the left operand once rather than in every
//! task (once per column block and panel split) cut its cost at CLIP's and the MM-DiT's shapes from 17–65 % of the
//! expected bf16 GEMM time to a few per cent (benches/RESULTS.md).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::lanes::{Lanes, LANES};

/// Rows per micro-tile (12 × 2 accumulators, 2 right-operand vectors and 1 broadcast: 27 of 32 registers).
pub(crate) const MR: usize = 12;
/// Columns per micro-tile (two vectors).
pub(crate) const NR: usize = 2 * LANES;
/// k pairs per block: an `MR` and an `NR` panel (6 + 16 KiB) stay in L1.
const KCP: usize = 128;
/// Rows per left-operand block (96 KiB packed).
const MC: usize = MR * 16;
/// Columns per right-operand block (512 KiB packed, for L2).
const NC: usize = NR * 32;

/// A matrix operand, row-major with a row stride, of f32 or of bf16 bits. It only points: whoever builds one
/// guarantees that `rows × cols` elements are readable under the stride for as long as it is used.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Operand {
    F32(*const f32, usize),
    Bf16(*const u16, usize),
}

// SAFETY: an Operand is only read, and its builder guarantees the memory outlives every use (see above)
unsafe impl Send for Operand {}
unsafe impl Sync for Operand {}

/// f32 → bf16 bits, rounding to nearest-even (a NaN stays a quiet NaN), as `half` and VCVTNEPS2BF16 do.
#[inline(always)]
pub(crate) fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        ((b >> 16) | 0x40) as u16
    } else {
        ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
    }
}

/// Two bf16 values as one pair: `lo` (even k) in the low half, `hi` (odd k) in the high half.
#[inline(always)]
fn pair(lo: u16, hi: u16) -> u32 {
    ((hi as u32) << 16) | lo as u32
}

/// bf16 bits as f32 (exact).
#[inline(always)]
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// An operand's element type: f32 (rounded to bf16 when packed) or bf16 bits (copied).
trait Elem: Copy {
    fn bits(self) -> u16;

    /// `src` (consecutive elements of one row) as pairs into `out[..src.len().div_ceil(2)]`, an odd last element
    /// paired with zero. One pass of independent lanes, so that it vectorises.
    #[inline(always)]
    fn pairs(src: &[Self], out: &mut [u32]) {
        let full = src.chunks_exact(2);
        let (n, rest) = (full.len(), full.remainder());
        for (d, two) in out.iter_mut().zip(full) {
            *d = pair(two[0].bits(), two[1].bits());
        }
        if let [last] = rest {
            out[n] = pair(last.bits(), 0);
        }
    }
}

impl Elem for u16 {
    #[inline(always)]
    fn bits(self) -> u16 {
        self
    }
}

impl Elem for f32 {
    #[inline(always)]
    fn bits(self) -> u16 {
        to_bf16(self)
    }
}

impl Operand {
    /// Packs pairs `[p0, p0 + np)` of the columns `[c0, c0 + cols)` of this `k`-row matrix: pair `p` of column
    /// `c0 + j` goes to `out[p * stride + j]`; the odd-k half past the last row is zero.
    ///
    /// # Safety
    /// Those rows and columns lie inside the matrix; `out` holds `np` rows of `stride ≥ cols`.
    unsafe fn pack_cols(self, k: usize, pairs: (usize, usize), cols: (usize, usize), out: &mut [u32], stride: usize) {
        match self {
            Operand::F32(ptr, rs) => pack_cols(ptr, rs, k, pairs, cols, out, stride),
            Operand::Bf16(ptr, rs) => pack_cols(ptr, rs, k, pairs, cols, out, stride),
        }
    }

    /// Packs the rows `[r0, r0 + rows)` (`rows ≤ MR`) of this `k`-column matrix, all of their pairs, into one
    /// `MR`-row panel: pair `p` of row `r0 + r` goes to `out[p * MR + r]`. Every element of `out` is written:
    /// the rows past `rows` and the odd-k half past the last column are zero.
    ///
    /// # Safety
    /// Those rows lie inside the matrix; `out` holds `k.div_ceil(2) · MR` elements.
    #[inline(always)]
    unsafe fn pack_panel(self, k: usize, rows: (usize, usize), out: &mut [MaybeUninit<u32>]) {
        match self {
            Operand::F32(ptr, rs) => pack_panel(ptr, rs, k, rows, out),
            Operand::Bf16(ptr, rs) => pack_panel(ptr, rs, k, rows, out),
        }
    }
}

/// [`Operand::pack_cols`] for one element type (`ptr`, row stride `rs`).
#[inline(always)]
unsafe fn pack_cols<T: Elem>(
    ptr: *const T,
    rs: usize,
    k: usize,
    (p0, np): (usize, usize),
    (c0, cols): (usize, usize),
    out: &mut [u32],
    stride: usize,
) {
    for p in 0..np {
        let (even, odd) = (2 * (p0 + p), 2 * (p0 + p) + 1);
        let dst = &mut out[p * stride..p * stride + cols];
        let lo = std::slice::from_raw_parts(ptr.add(even * rs + c0), cols);
        if odd < k {
            let hi = std::slice::from_raw_parts(ptr.add(odd * rs + c0), cols);
            for ((d, &l), &h) in dst.iter_mut().zip(lo).zip(hi) {
                *d = pair(l.bits(), h.bits());
            }
        } else {
            for (d, &l) in dst.iter_mut().zip(lo) {
                *d = pair(l.bits(), 0);
            }
        }
    }
}

/// [`Operand::pack_panel`] for one element type (`ptr`, row stride `rs`): in chunks of `CH` pairs, each row's
/// pairs are made in a row of a staging tile (contiguous, so that the rounding vectorises), then the tile is
/// written out transposed.
#[inline(always)]
unsafe fn pack_panel<T: Elem>(
    ptr: *const T,
    rs: usize,
    k: usize,
    (r0, rows): (usize, usize),
    out: &mut [MaybeUninit<u32>],
) {
    /// Pairs per chunk: the staging tile (`MR` × 64 pairs, 3 KiB) and its slice of the panel stay in L1.
    const CH: usize = 64;
    let kp = k.div_ceil(2);
    assert!(rows <= MR && out.len() == kp * MR, "panel of another shape");
    // rows past `rows` stay zero
    let mut stage = [[0u32; CH]; MR];
    for p0 in (0..kp).step_by(CH) {
        let np = CH.min(kp - p0);
        let len = (2 * np).min(k - 2 * p0);
        for (r, row) in stage.iter_mut().enumerate().take(rows) {
            T::pairs(std::slice::from_raw_parts(ptr.add((r0 + r) * rs + 2 * p0), len), &mut row[..np]);
        }
        let dst = &mut out[p0 * MR..(p0 + np) * MR];
        for (q, to) in dst.chunks_exact_mut(MR).enumerate() {
            for (d, row) in to.iter_mut().zip(&stage) {
                d.write(row[q]);
            }
        }
    }
}

/// Packs the block of columns `[jc, jc + nc)` and pairs `[pc, pc + kcp)` of the `k×n` right operand into
/// `NR`-column panels of `kcp` pairs (`out`: `nc.div_ceil(NR) · kcp · NR`, zero where a panel runs past `n`),
/// panels in parallel.
///
/// # Safety
/// `rhs` addresses its whole `k×n` matrix; the block lies inside it.
unsafe fn pack_block(
    rhs: Operand,
    (k, n): (usize, usize),
    jc: usize,
    (pc, kcp): (usize, usize),
    out: &mut [u32],
) {
    out.par_chunks_mut(kcp * NR).enumerate().for_each(|(jp, panel)| {
        let j0 = jc + jp * NR;
        // SAFETY: columns [j0, j0 + cols) ⊂ [0, n), pairs [pc, pc + kcp) ⊂ [0, k/2); panel is kcp × NR
        unsafe { rhs.pack_cols(k, (pc, kcp), (j0, NR.min(n - j0)), panel, NR) };
    });
}

/// A `k×n` right operand (a weight) packed once: every (column block, pair block) as [`gemm_add`] packs it on each
/// call, one after the other. The same bytes as the bf16 matrix, `n` rounded up to `NR` and `k` to even.
pub(crate) struct Packed {
    data: Vec<u32>,
    k: usize,
    n: usize,
}

impl Packed {
    /// # Safety
    /// `rhs` addresses a whole `k×n` matrix.
    pub(crate) unsafe fn new(rhs: Operand, k: usize, n: usize) -> Self {
        let kp = k.div_ceil(2);
        let mut data = vec![0u32; n.div_ceil(NR) * NR * kp];
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..kp).step_by(KCP) {
                let kcp = KCP.min(kp - pc);
                let at = Self::offset(kp, jc, nc, pc);
                pack_block(rhs, (k, n), jc, (pc, kcp), &mut data[at..at + nc.div_ceil(NR) * kcp * NR]);
            }
        }
        Self { data, k, n }
    }

    /// Where block (`jc`, `pc`) starts: the earlier column blocks (`jc / NR` panels of all `kp` pairs), then this
    /// block's earlier pair blocks.
    fn offset(kp: usize, jc: usize, nc: usize, pc: usize) -> usize {
        jc * kp + nc.div_ceil(NR) * pc * NR
    }

    /// `(k, n)`.
    pub(crate) fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// The right operand of [`gemm_add`]: a matrix to pack on this call, or one packed before.
#[derive(Clone, Copy)]
pub(crate) enum Rhs<'a> {
    Plain(Operand),
    Packed(&'a Packed),
}

thread_local! {
    /// [`gemm_add`]'s packing buffers (left operand, right-operand block), kept between calls on a thread: a fresh
    /// allocation of that size is a fresh mapping, and its page faults cost more than the packing itself (at
    /// CLIP's widest product, 24 MB of left panels: about 2× the packing). A nested call on the same thread (a
    /// rayon worker that picks up another product while it waits) finds them taken and allocates its own.
    static BUFFERS: std::cell::Cell<(Vec<u32>, Vec<u32>)> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// The destination: row-major f32 with a row stride.
#[derive(Clone, Copy)]
struct Dst(*mut f32, usize);
// SAFETY: tasks write disjoint tiles of it (see `gemm_add`)
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

/// One task: rows `[i0, i0 + mc)` against right-operand panels `[p0, p1)` of the packed block.
pub(crate) struct Task<'a> {
    m: usize,
    n: usize,
    /// The left operand's panels, `kp` pairs each.
    apack: &'a [u32],
    kp: usize,
    bpack: &'a [u32],
    dst: Dst,
    jc: usize,
    pc: usize,
    kcp: usize,
    i0: usize,
    mc: usize,
    p0: usize,
    p1: usize,
}

/// One piece of [`gemm_add`]'s work.
pub(crate) enum Job<'a, 'b> {
    /// Pack the rows `rows` of the `k`-column left operand into the panel `out` ([`Operand::pack_panel`]).
    Pack { lhs: Operand, k: usize, rows: (usize, usize), out: &'a mut [MaybeUninit<u32>] },
    /// Run the micro-kernel over a task's tiles.
    Tiles(&'a Task<'b>),
}

/// Runs one [`Job`] (see [`job`]) with the lanes of the caller's choice: a `#[target_feature]` wrapper for the real
/// ones, so that the packing is compiled for the same vectors as the micro-kernel.
pub(crate) type JobFn = unsafe fn(Job<'_, '_>);

/// `dst (m×n) += lhs (m×k) · rhs (k×n)` in bf16 products with f32 accumulation; `run` does each [`Job`] and
/// `threads` is how many run at once.
///
/// # Safety
/// The operands address their whole matrices, `dst` an `m×n` matrix under its row stride that nothing else
/// touches meanwhile, and `run` may run on this processor.
pub(crate) unsafe fn gemm_add(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    lhs: Operand,
    rhs: Rhs<'_>,
    run: JobFn,
    threads: usize,
) {
    if let Rhs::Packed(p) = rhs {
        assert_eq!(p.dims(), (k, n), "packed weight of another shape");
    }
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let kp = k.div_ceil(2);
    let (mut abuf, mut bpack) = BUFFERS.take();
    // the left operand, once: an MR-row panel of all kp pairs per job
    let alen = m.div_ceil(MR) * kp * MR;
    abuf.clear();
    abuf.reserve(alen);
    abuf.spare_capacity_mut()[..alen].par_chunks_mut(kp * MR).enumerate().for_each(|(ip, out)| {
        let r0 = ip * MR;
        // SAFETY: the caller's contract; rows [r0, r0 + rows) ⊂ [0, m) and out is one whole panel
        unsafe { run(Job::Pack { lhs, k, rows: (r0, MR.min(m - r0)), out }) }
    });
    // SAFETY: every panel was written whole above (pack_panel writes every element)
    unsafe { abuf.set_len(alen) };
    let apack = &abuf[..];
    let dst = Dst(dst, dst_rs);
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let panels = nc.div_ceil(NR);
        for pc in (0..kp).step_by(KCP) {
            let kcp = KCP.min(kp - pc);
            let bpack: &[u32] = match rhs {
                Rhs::Packed(p) => {
                    let at = Packed::offset(kp, jc, nc, pc);
                    &p.data[at..at + panels * kcp * NR]
                }
                Rhs::Plain(op) => {
                    bpack.clear();
                    bpack.resize(panels * kcp * NR, 0);
                    // SAFETY: the caller's contract; the block lies inside the k×n operand
                    unsafe { pack_block(op, (k, n), jc, (pc, kcp), &mut bpack) };
                    &bpack
                }
            };
            // tasks: every row block, its panels split so that all threads have work even for few rows
            let mblocks = m.div_ceil(MC);
            let splits = (2 * threads).div_ceil(mblocks).clamp(1, panels);
            (0..mblocks * splits).into_par_iter().for_each(|t| {
                let (ib, s) = (t / splits, t % splits);
                let i0 = ib * MC;
                let task = Task {
                    m,
                    n,
                    apack,
                    kp,
                    bpack,
                    dst,
                    jc,
                    pc,
                    kcp,
                    i0,
                    mc: MC.min(m - i0),
                    p0: panels * s / splits,
                    p1: panels * (s + 1) / splits,
                };
                if task.p0 < task.p1 {
                    // SAFETY: the caller's contract; tasks cover disjoint (row block, panel range) tiles
                    unsafe { run(Job::Tiles(&task)) }
                }
            });
        }
    }
    BUFFERS.set((abuf, bpack));
}

/// Does one [`Job`] with the lanes `L`.
///
/// # Safety
/// As [`gemm_add`]; `L` may run on this processor.
#[inline(always)]
pub(crate) unsafe fn job<L: Lanes>(j: Job<'_, '_>) {
    match j {
        Job::Pack { lhs, k, rows, out } => lhs.pack_panel(k, rows, out),
        Job::Tiles(t) => task::<L>(t),
    }
}

/// Runs the micro-kernel over a task's tiles.
///
/// # Safety
/// As [`gemm_add`]; `L` may run on this processor.
#[inline(always)]
unsafe fn task<L: Lanes>(t: &Task) {
    let panels = t.mc.div_ceil(MR);
    // this block's panels, at pair block pc
    let apack = t.apack.as_ptr().add((t.i0 / MR) * t.kp * MR + t.pc * MR);
    let mut edge = [0f32; MR * NR];
    for jp in t.p0..t.p1 {
        let j0 = t.jc + jp * NR;
        let cols = NR.min(t.n - j0);
        let b = t.bpack.as_ptr().add(jp * t.kcp * NR);
        for ip in 0..panels {
            let r0 = t.i0 + ip * MR;
            let rows = MR.min(t.m - r0);
            let a = apack.add(ip * t.kp * MR);
            let c = t.dst.0.add(r0 * t.dst.1 + j0);
            if rows == MR && cols == NR {
                micro::<L>(t.kcp, a, b, c, t.dst.1);
            } else {
                // a partial tile goes through a full-size copy
                for r in 0..rows {
                    for j in 0..cols {
                        edge[r * NR + j] = *c.add(r * t.dst.1 + j);
                    }
                }
                micro::<L>(t.kcp, a, b, edge.as_mut_ptr(), NR);
                for r in 0..rows {
                    for j in 0..cols {
                        *c.add(r * t.dst.1 + j) = edge[r * NR + j];
                    }
                }
            }
        }
    }
}

/// `c (MR×NR) += a-panel · b-panel` over `kcp` pairs.
#[inline(always)]
unsafe fn micro<L: Lanes>(kcp: usize, a: *const u32, b: *const u32, c: *mut f32, rs: usize) {
    let mut acc: [[L; 2]; MR] = std::array::from_fn(|r| [L::load(c.add(r * rs)), L::load(c.add(r * rs + LANES))]);
    for p in 0..kcp {
        let b0 = L::load_pairs(b.add(p * NR));
        let b1 = L::load_pairs(b.add(p * NR + LANES));
        for (r, row) in acc.iter_mut().enumerate() {
            let av = L::splat_pair(*a.add(p * MR + r));
            row[0] = row[0].dot(av, b0);
            row[1] = row[1].dot(av, b1);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        row[0].store(c.add(r * rs));
        row[1].store(c.add(r * rs + LANES));
    }
}

#[cfg(test)]
mod tests {
    use super::super::lanes::Emulated;
    use super::*;

    /// The emulated run of the blocked GEMM: the packing, tiling and edges every real run uses.
    unsafe fn emulated(j: Job<'_, '_>) {
        job::<Emulated>(j)
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn bf(x: f32) -> f64 {
        bf16_to_f32(to_bf16(x)) as f64
    }

    /// Every shape class (tile edges in m and n, odd k, k across several pair blocks, n across column blocks,
    /// a destination with a wider row stride that already holds values), either operand in bf16, against the
    /// f64 product of the bf16-rounded operands: only the f32 accumulation may differ.
    #[test]
    fn blocked_gemm_matches_bf16_products() {
        let mut seed = 7u64;
        for &(m, n, k) in &[
            (1, 1, 1),
            (12, 32, 2),
            (13, 33, 3),
            (5, 70, 257),
            (200, 40, 64),
            (30, 1100, 20),
            (25, 31, 300),
            (3, 1100, 300),
        ] {
            for rhs_bf16 in [true, false] {
                let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
                let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
                let b16: Vec<u16> = b.iter().map(|&x| to_bf16(x)).collect();
                let a16: Vec<u16> = a.iter().map(|&x| to_bf16(x)).collect();
                let rs = n + 3;
                let mut dst: Vec<f32> = (0..m * rs).map(|_| lcg(&mut seed)).collect();
                let before = dst.clone();
                let (lhs, rhs) = if rhs_bf16 {
                    (Operand::F32(a.as_ptr(), k), Operand::Bf16(b16.as_ptr(), n))
                } else {
                    (Operand::Bf16(a16.as_ptr(), k), Operand::F32(b.as_ptr(), n))
                };
                let mut packed_dst = dst.clone();
                // SAFETY: the vectors hold the whole matrices
                unsafe {
                    gemm_add((m, n, k), (dst.as_mut_ptr(), rs), lhs, Rhs::Plain(rhs), emulated, 2);
                    let packed = Packed::new(rhs, k, n);
                    gemm_add((m, n, k), (packed_dst.as_mut_ptr(), rs), lhs, Rhs::Packed(&packed), emulated, 2);
                }
                // the weight packed once gives the very same sums
                assert_eq!(packed_dst, dst, "{m}x{n}x{k} rhs_bf16={rhs_bf16}: packed once");
                let mut worst = 0f64;
                for i in 0..m {
                    for j in 0..n {
                        let want = before[i * rs + j] as f64
                            + (0..k).map(|p| bf(a[i * k + p]) * bf(b[p * n + j])).sum::<f64>();
                        worst = worst.max((dst[i * rs + j] as f64 - want).abs());
                    }
                    for j in n..rs {
                        assert_eq!(dst[i * rs + j], before[i * rs + j], "wrote past column n");
                    }
                }
                // f32 accumulation of k terms of size ≤ 1: a few ulps of the running sum
                let bound = 1e-6 * (k as f64).max(8.0);
                assert!(worst <= bound, "{m}x{n}x{k} rhs_bf16={rhs_bf16}: {worst:e} > {bound:e}");
            }
        }
    }

    #[test]
    fn rounding_to_bf16_is_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1)
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3F80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6)
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(to_bf16(f32::INFINITY), 0x7F80);
        assert_eq!(to_bf16(f32::MAX), 0x7F80, "rounds up to infinity");
        assert!(bf16_to_f32(to_bf16(f32::NAN)).is_nan());
        assert_eq!(to_bf16(-2.5), 0xC020);
    }
}

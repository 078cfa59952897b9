//! Sixteen f32 accumulators and the one step the bf16 GEMM needs on them, VDPBF16PS: each lane adds the dot
//! product of a pair of bf16 values from each operand. [`Avx512Bf16`] is the instruction itself; [`Emulated`] is
//! the same arithmetic in plain Rust, so that the blocked GEMM's packing and tiling are tested on any processor.

/// f32 lanes per vector.
pub(crate) const LANES: usize = 16;

/// Sixteen f32 lanes and their VDPBF16PS step. Every method is `unsafe`: the AVX-512 implementation may only run
/// where the processor has AVX512F and AVX512-BF16, and the pointers must address 16 elements.
pub(crate) trait Lanes: Copy {
    /// Sixteen bf16 pairs, one per lane: the even-k element in the low half, the odd-k one in the high half.
    type Pairs: Copy;
    /// Loads 16 f32.
    unsafe fn load(p: *const f32) -> Self;
    /// Stores 16 f32.
    unsafe fn store(self, p: *mut f32);
    /// Loads 16 pairs.
    unsafe fn load_pairs(p: *const u32) -> Self::Pairs;
    /// One pair in every lane.
    unsafe fn splat_pair(pair: u32) -> Self::Pairs;
    /// `self[i] += a[i].hi · b[i].hi + a[i].lo · b[i].lo` (VDPBF16PS).
    unsafe fn dot(self, a: Self::Pairs, b: Self::Pairs) -> Self;
}

/// A bf16 value (low 16 bits of `h`) as f32, denormals read as zero (as VDPBF16PS reads its inputs).
#[inline(always)]
fn bf16_daz(h: u32) -> f32 {
    let bits = (h & 0xffff) << 16;
    if bits & 0x7f80_0000 == 0 {
        f32::from_bits(bits & 0x8000_0000)
    } else {
        f32::from_bits(bits)
    }
}

/// [`Lanes`] in plain Rust, following the instruction's definition: the odd-k product is added first, then the
/// even-k one, each sum rounded to f32 (a product of two bf16 values is exact in f32).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Emulated(pub [f32; LANES]);

impl Lanes for Emulated {
    type Pairs = [u32; LANES];
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(std::ptr::read_unaligned(p.cast()))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p.cast(), self.0)
    }
    #[inline(always)]
    unsafe fn load_pairs(p: *const u32) -> Self::Pairs {
        std::ptr::read_unaligned(p.cast())
    }
    #[inline(always)]
    unsafe fn splat_pair(pair: u32) -> Self::Pairs {
        [pair; LANES]
    }
    #[inline(always)]
    unsafe fn dot(mut self, a: Self::Pairs, b: Self::Pairs) -> Self {
        for i in 0..LANES {
            let hi = bf16_daz(a[i] >> 16) * bf16_daz(b[i] >> 16);
            let lo = bf16_daz(a[i]) * bf16_daz(b[i]);
            self.0[i] = (self.0[i] + hi) + lo;
        }
        self
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::Avx512Bf16;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lanes;
    use std::arch::x86_64::{
        __m512, __m512bh, __m512i, _mm512_dpbf16_ps, _mm512_loadu_ps, _mm512_set1_epi32, _mm512_storeu_ps,
    };

    /// [`Lanes`] on AVX512F + AVX512-BF16. Its methods inline into the `#[target_feature]` functions that use
    /// them (`super::super::blocked`); nowhere else may they run.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512Bf16(__m512);

    impl Lanes for Avx512Bf16 {
        type Pairs = __m512bh;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Self(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
        #[inline(always)]
        unsafe fn load_pairs(p: *const u32) -> Self::Pairs {
            // SAFETY: 64 bytes are readable at p (the caller's contract); __m512i and __m512bh are both 64 bytes
            std::mem::transmute::<__m512i, __m512bh>(std::ptr::read_unaligned(p.cast::<__m512i>()))
        }
        #[inline(always)]
        unsafe fn splat_pair(pair: u32) -> Self::Pairs {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair as i32))
        }
        #[inline(always)]
        unsafe fn dot(self, a: Self::Pairs, b: Self::Pairs) -> Self {
            Self(_mm512_dpbf16_ps(self.0, a, b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_dot_is_the_pairwise_product_sum() {
        // 1.5·2 + (−0.5)·4 = 1, plus the accumulator's 0.25; bf16 bits of 1.5 = 0x3FC0, 2 = 0x4000, −0.5 = 0xBF00,
        // 4 = 0x4080
        let a = (0xBF00u32 << 16) | 0x3FC0;
        let b = (0x4080u32 << 16) | 0x4000;
        let acc = Emulated([0.25; LANES]);
        // SAFETY: Emulated is plain Rust
        let r = unsafe { acc.dot(Emulated::splat_pair(a), Emulated::splat_pair(b)) };
        assert!(r.0.iter().all(|&v| v == 1.25), "{:?}", r.0);
        // a denormal bf16 input counts as zero
        let tiny = 0x0001u32;
        let r = unsafe { Emulated([0.0; LANES]).dot(Emulated::splat_pair(tiny), Emulated::splat_pair(0x4000)) };
        assert!(r.0.iter().all(|&v| v == 0.0));
    }
}

//! The f32 GEMM every CPU kernel here shares: gemm's kernels (AVX-512 or AVX2 chosen at run time) on raw
//! row-major matrices, accumulating into the destination, parallel over rayon's pool.

/// gemm's parallelism for rayon's thread count.
pub fn gemm_parallelism() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// `dst += lhs · rhs` for row-major f32 matrices given as (pointer, row stride), columns contiguous; `(m, n, k)`:
/// dst is m×n, lhs m×k, rhs k×n.
///
/// # Safety
/// Each pointer must address its whole matrix under its row stride.
pub unsafe fn gemm_add(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    (lhs, lhs_rs): (*const f32, usize),
    (rhs, rhs_rs): (*const f32, usize),
    par: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        true,
        lhs,
        1,
        lhs_rs as isize,
        rhs,
        1,
        rhs_rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        par,
    )
}

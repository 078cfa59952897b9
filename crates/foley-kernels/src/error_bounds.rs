//! For tests: the rounding error a product kernel can make, derived instead of guessed, so that kernel tests hold
//! each kernel to what its arithmetic allows.
//!
//! A sum of `k` products computed in f32 in any order is within `γ_k · Σ|aᵢ·bᵢ|` of the exact sum, with
//! `γ_k = k·u / (1 − k·u)` and `u = 2⁻²⁴` (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1). Two
//! such sums of the same products in different orders (the kernel under test and candle's reference) are then
//! within `2·γ_k · Σ|aᵢ·bᵢ|` of each other, element by element. Products of two bf16 values are exact in f32, so
//! the VDPBF16PS kernel is held to the same bound against candle's product of the bf16-rounded operands.

use candle_core::{DType, Tensor};

/// `γ_k` for f32.
pub fn gamma(k: usize) -> f64 {
    let ku = k as f64 * 2f64.powi(-24);
    ku / (1.0 - ku)
}

/// The bound `2·γ_k · magnitude` of two f32 sums of the `k` products whose absolute values sum to `magnitude`
/// (element by element, e.g. `|x| @ |w|`).
pub fn two_sums(k: usize, magnitude: &Tensor) -> Tensor {
    (magnitude * (2.0 * gamma(k))).expect("scaling a bound")
}

/// `t` rounded to bf16 (nearest even, as the kernels round f32 operands) and back to f32.
pub fn bf16_rounded(t: &Tensor) -> Tensor {
    t.to_dtype(DType::BF16).and_then(|t| t.to_dtype(DType::F32)).expect("bf16 rounding")
}

/// The elements of `t` in f32, row-major.
fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1::<f32>()).expect("values")
}

/// Asserts `|got − want| ≤ bound` element by element (and that nothing is NaN) and returns the largest
/// `|got − want| / bound`, printed with `what` so that a test's margin can be read.
pub fn assert_within(what: &str, got: &Tensor, want: &Tensor, bound: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let bound = bound.broadcast_as(want.shape()).and_then(|b| b.contiguous()).expect("bound shape");
    let (g, w, b) = (values(got), values(want), values(&bound));
    let mut worst = (0f32, 0usize);
    for (i, ((g, w), b)) in g.iter().zip(&w).zip(&b).enumerate() {
        assert!(g.is_finite() && w.is_finite(), "{what}: non-finite value at {i} (got {g}, want {w})");
        let ratio = (g - w).abs() / b.max(f32::MIN_POSITIVE);
        assert!(ratio <= 1.0, "{what}: element {i} off by {:.3e}, above its derived bound {b:.3e}", (g - w).abs());
        if ratio > worst.0 {
            worst = (ratio, i);
        }
    }
    eprintln!("{what}: worst error {:.2} of the derived bound (element {})", worst.0, worst.1);
    worst.0
}

/// max |a − b| over all elements; panics on a shape mismatch and on any NaN or infinity in either tensor (a max
/// over a tensor passes a NaN over, so it must be refused before).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes");
    let (a, b) = (values(a), values(b));
    a.iter().zip(&b).enumerate().fold(0f32, |m, (i, (x, y))| {
        assert!(x.is_finite() && y.is_finite(), "non-finite value at element {i}: {x} against {y}");
        m.max((x - y).abs())
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn a_nan_past_the_first_element_is_refused() {
        let a = Tensor::new(&[1f32, f32::NAN, 3.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| max_abs_diff(&a, &b)));
        assert!(caught.is_err());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| assert_within("x", &a, &b, &b)));
        assert!(caught.is_err());
        assert_eq!(max_abs_diff(&b, &b), 0.0);
    }

    #[test]
    fn gamma_is_k_units_of_roundoff_to_first_order() {
        assert!((gamma(100) / (100.0 * 2f64.powi(-24)) - 1.0).abs() < 1e-5);
    }
}

//! The comparison of an output with the reference's: max-abs and RMS error, refusing non-finite values.

use candle_core::{DType, Device, Tensor};

use crate::checked::count_comparison;
use crate::Error;

/// How far an output is from the reference's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diff {
    /// max |got − want| over all elements.
    pub max_abs: f32,
    /// sqrt(mean (got − want)²), accumulated in f64.
    pub rms: f32,
    /// Elements compared.
    pub elements: usize,
}

/// The values of `t` on the host as f32, row-major.
fn host_values(what: &str, t: &Tensor) -> Result<Vec<f32>, Error> {
    let wrap = |source| Error::Tensor { what: what.to_string(), source };
    t.to_device(&Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(wrap)
}

/// The multi-dimensional index of flat element `i` in a row-major tensor of `dims`.
fn unflatten(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for (slot, &d) in idx.iter_mut().zip(dims).rev() {
        if d > 0 {
            *slot = i % d;
            i /= d;
        }
    }
    idx
}

/// Fails when `values` hold a NaN or an infinity: counts them and names the first.
fn all_finite(what: &str, side: &'static str, values: &[f32], dims: &[usize]) -> Result<(), Error> {
    let count = values.iter().filter(|v| !v.is_finite()).count();
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(first) => Err(Error::NonFinite {
            what: what.to_string(),
            side,
            count,
            total: values.len(),
            value: values[first],
            index: unflatten(first, dims),
        }),
    }
}

/// Compares `got` with the reference output `want` (any device and float dtype; on the host in f32, errors
/// summed in f64). An error when the shapes differ or when either tensor holds a non-finite value; counted as one
/// comparison for [`crate::Checked`].
pub fn compare(what: &str, got: &Tensor, want: &Tensor) -> Result<Diff, Error> {
    if got.dims() != want.dims() {
        return Err(Error::Shape { what: what.to_string(), got: got.dims().to_vec(), want: want.dims().to_vec() });
    }
    let (g, w) = (host_values(what, got)?, host_values(what, want)?);
    all_finite(what, "the output", &g, got.dims())?;
    all_finite(what, "the reference", &w, want.dims())?;
    let (mut max_abs, mut sq) = (0f32, 0f64);
    for (a, b) in g.iter().zip(&w) {
        let d = (a - b).abs();
        max_abs = max_abs.max(d);
        sq += f64::from(d) * f64::from(d);
    }
    count_comparison();
    let elements = g.len();
    let rms = if elements == 0 { 0.0 } else { (sq / elements as f64).sqrt() as f32 };
    Ok(Diff { max_abs, rms, elements })
}

/// max |t| (0 for an empty tensor); an error on any non-finite value. Not counted as a comparison.
pub fn max_abs(what: &str, t: &Tensor) -> Result<f32, Error> {
    let v = host_values(what, t)?;
    all_finite(what, "the tensor", &v, t.dims())?;
    Ok(v.iter().fold(0f32, |m, x| m.max(x.abs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], dims: &[usize]) -> Tensor {
        Tensor::from_slice(v, dims, &Device::Cpu).unwrap()
    }

    #[test]
    fn measures_max_abs_and_rms() {
        let d = compare("x", &t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]), &t(&[1.0, 2.5, 3.0, 2.0], &[2, 2])).unwrap();
        assert_eq!(d.max_abs, 2.0);
        assert!((d.rms - ((0.25f32 + 4.0) / 4.0).sqrt()).abs() < 1e-7);
        assert_eq!(d.elements, 4);
    }

    #[test]
    fn a_nan_anywhere_fails_with_its_index() {
        // candle's CPU max compares with `<`, which a NaN never wins: a NaN past the first element was passed over
        let mut v = vec![0.5f32; 24];
        v[17] = f32::NAN;
        v[20] = f32::INFINITY;
        let err = compare("flow", &t(&v, &[2, 3, 4]), &t(&[0.5; 24], &[2, 3, 4])).unwrap_err().to_string();
        assert_eq!(err, "flow: 2 non-finite values in the output (of 24), the first NaN at index [1, 1, 1]");
        let err = compare("flow", &t(&[0.5; 24], &[2, 3, 4]), &t(&v, &[2, 3, 4])).unwrap_err().to_string();
        assert!(err.contains("in the reference"), "{err}");
        assert!(max_abs("peak", &t(&v, &[24])).unwrap_err().to_string().contains("non-finite"));
    }

    #[test]
    fn shapes_must_match() {
        let err = compare("mel", &t(&[0.0; 6], &[2, 3]), &t(&[0.0; 6], &[3, 2])).unwrap_err().to_string();
        assert_eq!(err, "mel: shapes differ, got [2, 3], the reference has [3, 2]");
    }
}

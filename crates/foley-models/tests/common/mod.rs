//! Shared machinery of the parity tests: the test device and dtype, and the tolerances (one place, never
//! loosened to make a failure pass). Fixtures are produced by `scripts/gen_parity.py` (format in
//! `scripts/parity/common.py`); loading them and comparing with them is `foley_parity`'s: a missing file, a
//! broken `meta.json`, an empty set, fewer fixtures than committed, a fixture that compares nothing and any
//! non-finite value fail the test with a sentence. `FOLEY_PARITY_DIR` runs the same assertions on another set
//! (at least one fixture per test: select the tests its modules have with a name filter).
//!
//! Device and dtype: `FOLEY_TEST_DEVICE` (`cpu`, the default, or `cuda`: a `--features cuda` build) and
//! `FOLEY_TEST_DTYPE` (`f32`, the default, `bf16` or `f16`). The networks are built on that device in that dtype
//! (float inputs converted, the f32 reference outputs compared on the host). f32 is held to the CPU tolerances on
//! every device: cuBLAS is kept from TF32 (`set_gemm_reduced_precision_f32(false)`, asserted). The half dtypes
//! are compared with the same f32 reference outputs, within a bound relative to the output's scale (below).
//!
//! bf16 on the CPU is foley's CPU bf16 path (`foley_kernels::cpu_bf16`): networks built through [`build`] hold their
//! GEMM weights in bf16 and compute in f32. Its bound, output by output ([`Fixture::check`]), is the reference's own
//! bf16 error on that output (`reference_bf16` in the fixture's meta.json, written by `scripts/gen_parity.py
//! --bf16-errors`: MMAudio run in bf16 as `demo.py` runs it, compared with its f32 output): foley in bf16 must be at
//! least as close to the f32 reference as the reference in bf16 is, or within the f32 tolerance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// Max-abs error allowed for a single module's forward (f32, CPU).
pub const MODULE_TOL: f32 = 1e-4;
/// Max-abs error allowed for a multi-step sampler output (f32, CPU).
pub const SAMPLER_TOL: f32 = 1e-3;

/// Half precision: the max-abs error allowed, as a fraction of `max(1, max |reference|)`, for a module
/// (`[0]`) and for a multi-step sampler or a whole chain (`[1]`). bf16 keeps 8 significant bits (relative
/// rounding 2^-9 ≈ 2e-3 per value), f16 11 (2^-12 ≈ 2.4e-4); deep stacks of GEMMs and norms compound it.
/// These bounds are set before any GPU run (no GPU was lent when they were written): `scripts/device-check`
/// prints the measured errors of each fixture, which are what they must be set from, never loosened to pass.
pub const BF16_REL: [f32; 2] = [5e-2, 1.5e-1];
pub const F16_REL: [f32; 2] = [1e-2, 5e-2];

/// The device the parity tests run on (`FOLEY_TEST_DEVICE`: cpu or cuda), one per process (candle tells CUDA
/// devices apart by instance). On CUDA, f32 GEMMs are kept from TF32.
pub fn device() -> Device {
    static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEVICE.get_or_init(open_device).clone()
}

fn open_device() -> Device {
    match std::env::var("FOLEY_TEST_DEVICE").as_deref() {
        Err(_) | Ok("") | Ok("cpu") => Device::Cpu,
        Ok("cuda") => {
            let dev = Device::new_cuda(0).expect("FOLEY_TEST_DEVICE=cuda needs a GPU and a --features cuda build");
            candle_core::cuda::set_gemm_reduced_precision_f32(false);
            assert!(!candle_core::cuda::gemm_reduced_precision_f32(), "cuBLAS must not use TF32 for f32");
            dev
        }
        Ok(other) => panic!("FOLEY_TEST_DEVICE={other}: use cpu or cuda"),
    }
}

/// The dtype the networks run in (`FOLEY_TEST_DTYPE`: f32, bf16 or f16).
pub fn dtype() -> DType {
    match std::env::var("FOLEY_TEST_DTYPE").as_deref() {
        Err(_) | Ok("") | Ok("f32") => DType::F32,
        Ok("bf16") => DType::BF16,
        Ok("f16") => DType::F16,
        Ok(other) => panic!("FOLEY_TEST_DTYPE={other}: use f32, bf16 or f16"),
    }
}

/// Whether the networks run as foley's CPU bf16 path: bf16 GEMM weights, f32 activations (see the module docs).
pub fn cpu_bf16() -> bool {
    dtype() == DType::BF16 && device().is_cpu()
}

/// The dtype of the activations and of the VarBuilder: the test dtype, except f32 for bf16 on the CPU.
pub fn compute_dtype() -> DType {
    if cpu_bf16() { DType::F32 } else { dtype() }
}

/// Builds a network as the engine does in the test dtype: on the CPU in bf16, inside
/// `foley_kernels::cpu_bf16::with_bf16_weights`.
pub fn build<T>(f: impl FnOnce() -> T) -> T {
    if cpu_bf16() { foley_kernels::cpu_bf16::with_bf16_weights(f) } else { f() }
}

/// `t` on the test device; f32/f16/bf16 tensors in the [`compute_dtype`] (f64 and integers as they are).
pub fn on_device(t: &Tensor) -> Tensor {
    let t = t.to_device(&device()).expect("to device");
    let float = matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16);
    if float { t.to_dtype(compute_dtype()).expect("to dtype") } else { t }
}

/// Root of the fixture tree: `$FOLEY_PARITY_DIR` or the repository's `tests/fixtures/parity`.
pub fn parity_dir() -> PathBuf {
    foley_parity::parity_root()
}

/// One fixture directory, loaded.
pub struct Fixture {
    pub dir: PathBuf,
    pub meta: serde_json::Value,
    /// As stored (host, f32): [`Fixture::vb`] and [`Fixture::weight`] put them on the test device.
    pub weights: HashMap<String, Tensor>,
    /// On the test device, floats in the test dtype ([`Fixture::input_cpu`]: as stored).
    pub inputs: HashMap<String, Tensor>,
    pub inputs_cpu: HashMap<String, Tensor>,
    /// As stored (host): the reference's f32 results.
    pub outputs: HashMap<String, Tensor>,
}

impl Fixture {
    /// A VarBuilder over the fixture's weights, on the test device in the test dtype.
    pub fn vb(&self) -> VarBuilder<'static> {
        let dev = device();
        let w = self.weights.iter().map(|(k, v)| (k.clone(), v.to_device(&dev).expect("to device"))).collect();
        VarBuilder::from_tensors(w, compute_dtype(), &dev)
    }
    /// One weight on the test device in the test dtype.
    pub fn weight(&self, name: &str) -> Tensor {
        on_device(self.weights.get(name).unwrap_or_else(|| panic!("{}: no weight {name}", self.dir.display())))
    }
    pub fn input(&self, name: &str) -> &Tensor {
        self.inputs.get(name).unwrap_or_else(|| panic!("{}: no input {name}", self.dir.display()))
    }
    pub fn input_cpu(&self, name: &str) -> &Tensor {
        self.inputs_cpu.get(name).unwrap_or_else(|| panic!("{}: no input {name}", self.dir.display()))
    }
    pub fn output(&self, name: &str) -> &Tensor {
        self.outputs.get(name).unwrap_or_else(|| panic!("{}: no output {name}", self.dir.display()))
    }
    /// The tolerance the fixture asks for (`"module"` or `"sampler"`).
    pub fn tolerance(&self) -> f32 {
        match self.meta["tolerance"].as_str() {
            Some("sampler") => SAMPLER_TOL,
            _ => MODULE_TOL,
        }
    }
    /// Asserts `got` matches the reference output `name` and returns the max-abs error: within `tol` in f32; on the
    /// CPU in bf16, no further from the f32 output than the reference's own bf16 run is, both in max-abs error and in
    /// RMS error (or within `tol`, where that is larger; see the module docs; a fixture without that record falls
    /// back to [`tolerance_for`]); elsewhere within [`tolerance_for`].
    pub fn check(&self, what: &str, got: &Tensor, name: &str, tol: f32) -> f32 {
        let want = self.output(name);
        let reference = &self.meta["reference_bf16"];
        let (ref_max, ref_rms) = (reference["max_abs_err"][name].as_f64(), reference["rms_err"][name].as_f64());
        let foley_parity::Diff { max_abs: err, rms, .. } = diff(what, got, want);
        let (dev, dt) = (if got.device().is_cpu() { "cpu" } else { "gpu" }, dtype().as_str());
        match (cpu_bf16(), ref_max, ref_rms) {
            (true, Some(ref_max), Some(ref_rms)) => {
                let (max_bound, rms_bound) = ((ref_max as f32).max(tol), (ref_rms as f32).max(tol));
                eprintln!(
                    "parity [{dev} {dt}] {what}: max_abs_err = {err:.3e} (reference bf16 {ref_max:.3e}), rms = {rms:.3e} \
                     (reference bf16 {ref_rms:.3e})"
                );
                assert!(err <= max_bound, "{what}: max-abs error {err:.3e} exceeds the reference's bf16 {max_bound:.3e}");
                assert!(rms <= rms_bound, "{what}: RMS error {rms:.3e} exceeds the reference's bf16 {rms_bound:.3e}");
            }
            _ => {
                let bound = tolerance_for(tol, want);
                eprintln!("parity [{dev} {dt}] {what}: max_abs_err = {err:.3e} (tol {bound:.1e}), rms = {rms:.3e}");
                assert!(err <= bound, "{what}: max-abs error {err:.3e} exceeds {bound:.1e}");
            }
        }
        err
    }

    /// The fixture's folder name.
    pub fn name(&self) -> String {
        self.dir.file_name().map_or_else(|| self.dir.display().to_string(), |n| n.to_string_lossy().into_owned())
    }

    pub fn config<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.meta["config"].clone())
            .unwrap_or_else(|e| panic!("{}: bad config: {e}", self.dir.display()))
    }
}

impl From<foley_parity::RawFixture> for Fixture {
    fn from(raw: foley_parity::RawFixture) -> Self {
        let inputs = raw.inputs.iter().map(|(k, v)| (k.clone(), on_device(v))).collect();
        Fixture { inputs, inputs_cpu: raw.inputs, weights: raw.weights, outputs: raw.outputs, meta: raw.meta, dir: raw.dir }
    }
}

/// Every fixture under the parity dir whose `meta.json` names `module`, as a walk that fails the test unless
/// there are at least as many as the repository commits (one for a `FOLEY_PARITY_DIR` set) and each compares
/// at least one output ([`foley_parity::Checked`]). Any broken fixture folder fails it too.
pub fn fixtures(module: &str) -> foley_parity::Checked<Fixture> {
    let root = parity_dir();
    foley_parity::load_module(&root, module)
        .and_then(|raw| foley_parity::Checked::new(&root, module, raw, Fixture::from))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The fixtures of `module` as loaded, for a test that is not a parity check (no count is kept).
pub fn fixtures_unchecked(module: &str) -> Vec<Fixture> {
    foley_parity::load_module(&parity_dir(), module).unwrap_or_else(|e| panic!("{e}")).into_iter().map(Fixture::from).collect()
}

/// The comparison of `got` with `want` ([`foley_parity::compare`]): fails the test on a shape mismatch and on any
/// NaN or infinity in either tensor.
pub fn diff(what: &str, got: &Tensor, want: &Tensor) -> foley_parity::Diff {
    foley_parity::compare(what, got, want).unwrap_or_else(|e| panic!("{e}"))
}

/// Max |got - want| over all elements (on the host); fails on a shape mismatch or a non-finite value.
pub fn max_abs_diff(got: &Tensor, want: &Tensor) -> f32 {
    diff("max_abs_diff", got, want).max_abs
}

/// max |t|; fails on a non-finite value (not a comparison).
pub fn max_abs(what: &str, t: &Tensor) -> f32 {
    foley_parity::max_abs(what, t).unwrap_or_else(|e| panic!("{e}"))
}

/// The max-abs error allowed for an f32 tolerance `tol` ([`MODULE_TOL`] or [`SAMPLER_TOL`]) in the test dtype,
/// against a reference output `want`: `tol` itself in f32; in bf16/f16 the dtype's relative bound (above) times
/// `max(1, max |want|)`.
pub fn tolerance_for(tol: f32, want: &Tensor) -> f32 {
    let rel = match dtype() {
        DType::BF16 => BF16_REL,
        DType::F16 => F16_REL,
        _ => return tol,
    };
    let scale = max_abs("the reference output", want).max(1.0);
    rel[usize::from(tol >= SAMPLER_TOL)] * scale
}

/// Asserts `got` matches `want` within `tol` (an f32 tolerance, scaled by [`tolerance_for`] in half precision)
/// and returns the measured max-abs error (printed for notes, with device and dtype).
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) -> f32 {
    let tol = tolerance_for(tol, want);
    let err = diff(what, got, want).max_abs;
    let (dev, dt) = (if got.device().is_cpu() { "cpu" } else { "gpu" }, got.dtype().as_str());
    eprintln!("parity [{dev} {dt}] {what}: max_abs_err = {err:.3e} (tol {tol:.1e})");
    assert!(err <= tol, "{what}: max-abs error {err:.3e} exceeds {tol:.1e}");
    err
}

//! Shared machinery of the parity tests: fixture discovery, loading and the tolerances (one place, never
//! loosened to make a failure pass). Fixtures are produced by `scripts/gen_parity.py`; see
//! `scripts/parity/common.py` for the format.
//!
//! Device and dtype: `FOLEY_TEST_DEVICE` (`cpu`, the default, or `cuda`: a `--features cuda` build) and
//! `FOLEY_TEST_DTYPE` (`f32`, the default, `bf16` or `f16`). The networks are built on that device in that dtype
//! (float inputs converted, the f32 reference outputs compared on the host). f32 is held to the CPU tolerances on
//! every device: cuBLAS is kept from TF32 (`set_gemm_reduced_precision_f32(false)`, asserted). The half dtypes
//! are compared with the same f32 reference outputs, within a bound relative to the output's scale (below).
//!
//! bf16 on the CPU is foley's CPU bf16 path (`foley_models::cpu_bf16`): networks built through [`build`] hold their
//! GEMM weights in bf16 and compute in f32. Its bound, output by output ([`Fixture::check`]), is the reference's own
//! bf16 error on that output (`reference_bf16` in the fixture's meta.json, written by `scripts/gen_parity.py
//! --bf16-errors`: MMAudio run in bf16 as `demo.py` runs it, compared with its f32 output): foley in bf16 must be at
//! least as close to the f32 reference as the reference in bf16 is, or within the f32 tolerance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
/// `foley_models::cpu_bf16::with_bf16_weights`.
pub fn build<T>(f: impl FnOnce() -> T) -> T {
    if cpu_bf16() { foley_models::cpu_bf16::with_bf16_weights(f) } else { f() }
}

/// `t` on the test device; f32/f16/bf16 tensors in the [`compute_dtype`] (f64 and integers as they are).
pub fn on_device(t: &Tensor) -> Tensor {
    let t = t.to_device(&device()).expect("to device");
    let float = matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16);
    if float { t.to_dtype(compute_dtype()).expect("to dtype") } else { t }
}

/// Root of the fixture tree: `$FOLEY_PARITY_DIR` or the repository's `tests/fixtures/parity`.
pub fn parity_dir() -> PathBuf {
    std::env::var_os("FOLEY_PARITY_DIR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity")
    })
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
        let err = max_abs_diff(got, want);
        let rms = rms_diff(got, want);
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

    pub fn config<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.meta["config"].clone())
            .unwrap_or_else(|e| panic!("{}: bad config: {e}", self.dir.display()))
    }
}

fn load_st(path: &Path) -> HashMap<String, Tensor> {
    if !path.exists() {
        return HashMap::new();
    }
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every fixture under the parity dir whose `meta.json` names `module`, sorted by directory.
pub fn fixtures(module: &str) -> Vec<Fixture> {
    let root = parity_dir();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .filter_map(|dir| {
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).ok()?).ok()?;
            (meta["module"] == module).then(|| {
                let inputs_cpu = load_st(&dir.join("inputs.safetensors"));
                Fixture {
                    weights: load_st(&dir.join("weights.safetensors")),
                    inputs: inputs_cpu.iter().map(|(k, v)| (k.clone(), on_device(v))).collect(),
                    inputs_cpu,
                    outputs: load_st(&dir.join("outputs.safetensors")),
                    meta,
                    dir,
                }
            })
        })
        .collect()
}

/// `a - b` on the host in f32; panics on a shape mismatch.
fn host_diff(a: &Tensor, b: &Tensor) -> Tensor {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
    let b = b.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
    (a - b).unwrap()
}

/// Max |a - b| over all elements (on the host, in f32); panics on a shape mismatch.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    host_diff(a, b).abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Root-mean-square of `a - b` (on the host, in f32).
pub fn rms_diff(a: &Tensor, b: &Tensor) -> f32 {
    host_diff(a, b).sqr().unwrap().flatten_all().unwrap().mean(0).unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap()
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
    let scale = max_abs_diff(want, &want.zeros_like().unwrap()).max(1.0);
    rel[usize::from(tol >= SAMPLER_TOL)] * scale
}

/// Asserts `got` matches `want` within `tol` (an f32 tolerance, scaled by [`tolerance_for`] in half precision)
/// and returns the measured max-abs error (printed for notes, with device and dtype).
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) -> f32 {
    let tol = tolerance_for(tol, want);
    let err = max_abs_diff(got, want);
    let (dev, dt) = (if got.device().is_cpu() { "cpu" } else { "gpu" }, got.dtype().as_str());
    eprintln!("parity [{dev} {dt}] {what}: max_abs_err = {err:.3e} (tol {tol:.1e})");
    assert!(err <= tol, "{what}: max-abs error {err:.3e} exceeds {tol:.1e}");
    err
}

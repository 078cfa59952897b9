//! Shared machinery of the parity tests: fixture discovery, loading and the tolerances (one place, never
//! loosened to make a failure pass). Fixtures are produced by `scripts/gen_parity.py`; see
//! `scripts/parity/common.py` for the format.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// Max-abs error allowed for a single module's forward (f32, CPU).
pub const MODULE_TOL: f32 = 1e-4;
/// Max-abs error allowed for a multi-step sampler output (f32, CPU).
pub const SAMPLER_TOL: f32 = 1e-3;

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
    pub weights: HashMap<String, Tensor>,
    pub inputs: HashMap<String, Tensor>,
    pub outputs: HashMap<String, Tensor>,
}

impl Fixture {
    /// A VarBuilder over the fixture's weights (f32, CPU).
    pub fn vb(&self) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.weights.clone(), DType::F32, &Device::Cpu)
    }
    pub fn input(&self, name: &str) -> &Tensor {
        self.inputs.get(name).unwrap_or_else(|| panic!("{}: no input {name}", self.dir.display()))
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
            (meta["module"] == module).then(|| Fixture {
                weights: load_st(&dir.join("weights.safetensors")),
                inputs: load_st(&dir.join("inputs.safetensors")),
                outputs: load_st(&dir.join("outputs.safetensors")),
                meta,
                dir,
            })
        })
        .collect()
}

/// Max |a - b| over all elements; panics on a shape mismatch.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Asserts `got` matches `want` within `tol` and returns the measured max-abs error (printed for notes).
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) -> f32 {
    let err = max_abs_diff(got, want);
    eprintln!("parity {what}: max_abs_err = {err:.3e} (tol {tol:.0e})");
    assert!(err <= tol, "{what}: max-abs error {err:.3e} exceeds {tol:.0e}");
    err
}

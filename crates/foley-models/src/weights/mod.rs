//! Loading of the official checkpoints: PyTorch `.pth` / `.pt` (candle's pickle reader, optionally a nested
//! state dict such as `{'generator': ...}`) or safetensors (memory-mapped); a one-time `.pth → .safetensors`
//! conversion; weight-norm folding; and key/shape manifests of the real checkpoints
//! (`models/manifests/*.json`, written by `scripts/gen_parity.py`) with a check that a network requests
//! exactly the manifest's tensors. [`checked`]: files verified by size and hash as they are opened; [`random`]:
//! random weights at a variant's real shapes (benchmarks).
//!
//! Checkpoints are kept as the reference stores them; load-time transforms (VAE EDM2 normalisation, BigVGAN
//! weight norm) are applied by the network constructors, so `.pth` and converted safetensors load alike.

pub mod checked;
pub mod random;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Buffers that some MMAudio checkpoints carry but the network recomputes (`MMAudio.load_weights` drops them).
pub const RECOMPUTED_KEYS: [&str; 3] = ["t_embed.freqs", "latent_rot", "clip_rot"];

/// Keys under which a `.pth` may nest its state dict, tried in this order before the top level.
const NESTED_KEYS: [&str; 3] = ["generator", "state_dict", "model"];

pub(crate) fn is_pth(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("pth" | "pt" | "bin" | "ckpt")
    )
}

pub(crate) fn pth_tensors(path: &Path) -> Result<candle_core::pickle::PthTensors> {
    for key in NESTED_KEYS {
        if let Ok(t) = candle_core::pickle::PthTensors::new(path, Some(key)) {
            if !t.tensor_infos().is_empty() {
                return Ok(t);
            }
        }
    }
    let t = candle_core::pickle::PthTensors::new(path, None)?;
    if t.tensor_infos().is_empty() {
        return Err(Error::Weights(format!("{}: no tensors found", path.display())));
    }
    Ok(t)
}

/// Every tensor of a `.pth` checkpoint (nested state dicts are found under `generator`, `state_dict` or
/// `model`), without the recomputed buffers of [`RECOMPUTED_KEYS`].
pub fn load_pth(path: impl AsRef<Path>, device: &Device) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    let pth = pth_tensors(path)?;
    let mut out = HashMap::new();
    for name in pth.tensor_infos().keys() {
        if RECOMPUTED_KEYS.contains(&name.as_str()) {
            continue;
        }
        if let Some(t) = pth.get(name)? {
            out.insert(name.clone(), t.to_device(device)?);
        }
    }
    Ok(out)
}

/// A VarBuilder over a checkpoint: safetensors are memory-mapped, `.pth`/`.pt` read lazily through the
/// pickle reader. Tensors are converted to `dtype` on `device` when requested.
pub fn var_builder(path: impl AsRef<Path>, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(Error::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint"),
        });
    }
    if is_pth(path) {
        Ok(VarBuilder::from_backend(
            Box::new(pth_tensors(path)?),
            dtype,
            device.clone(),
        ))
    } else {
        // SAFETY: the file is mapped read-only; foley never writes checkpoints while they are in use.
        Ok(unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, device)? })
    }
}

/// Converts a `.pth` checkpoint to safetensors once (tensors unchanged: dtype and values as stored, no
/// transform applied), so later runs can memory-map it. Returns the number of tensors written.
pub fn convert_pth_to_safetensors(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<usize> {
    let tensors = load_pth(src.as_ref(), &Device::Cpu)?;
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.contiguous()?)))
        .collect::<Result<_>>()?;
    let n = tensors.len();
    let dst = dst.as_ref();
    let tmp = dst.with_extension("safetensors.partial");
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, dst).map_err(|source| Error::Io {
        path: dst.to_owned(),
        source,
    })?;
    Ok(n)
}

/// `torch.nn.utils.weight_norm` folded: `w = g * v / |v|`, the norm taken over every dimension but the first.
pub fn fold_weight_norm(g: &Tensor, v: &Tensor) -> Result<Tensor> {
    let dtype = v.dtype();
    let v32 = v.to_dtype(DType::F32)?;
    let o = v32.dim(0)?;
    let norm = v32.reshape((o, ()))?.sqr()?.sum_keepdim(1)?.sqrt()?;
    let mut shape = vec![o];
    shape.extend(std::iter::repeat_n(1, v32.rank() - 1));
    let scale = (g.to_dtype(DType::F32)?.reshape(shape.clone())? / norm.reshape(shape)?)?;
    Ok(v32.broadcast_mul(&scale)?.to_dtype(dtype)?)
}

/// The weight of a weight-normed layer of shape `shape`, from whichever spelling the checkpoint uses:
/// `parametrizations.weight.original0/1` (torch ≥ 2.1), legacy `weight_g`/`weight_v`, or an already folded
/// `weight`.
pub fn weight_norm_weight<S: Into<Shape>>(vb: &VarBuilder, shape: S) -> Result<Tensor> {
    let shape: Shape = shape.into();
    let dims = shape.dims().to_vec();
    let mut g_shape = vec![dims[0]];
    g_shape.extend(std::iter::repeat_n(1, dims.len() - 1));
    for (g, v) in [
        ("parametrizations.weight.original0", "parametrizations.weight.original1"),
        ("weight_g", "weight_v"),
    ] {
        if vb.contains_tensor(v) {
            let v = vb.get(dims.clone(), v)?;
            let g = vb.get(g_shape.clone(), g)?;
            return fold_weight_norm(&g, &v);
        }
    }
    Ok(vb.get(dims, "weight")?)
}

/// One tensor of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// `models/manifests/<name>.json`: every key → shape → dtype of an official checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub checkpoint: String,
    pub config: serde_json::Value,
    pub tensors: BTreeMap<String, TensorSpec>,
}

impl Manifest {
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
    }
}

/// What a network requested from a manifest-shaped checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestReport {
    /// Requested but not in the manifest.
    pub missing: Vec<String>,
    /// In the manifest but never requested.
    pub unused: Vec<String>,
    /// Requested with another shape: (key, requested, manifest).
    pub mismatched: Vec<ShapeMismatch>,
}

impl ManifestReport {
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unused.is_empty() && self.mismatched.is_empty()
    }
}

/// A key requested with another shape: (key, requested shape, manifest shape).
pub type ShapeMismatch = (String, Vec<usize>, Vec<usize>);

/// A backend that serves zero tensors (broadcast views: nothing is allocated) of the manifest's shapes and
/// records what is asked for.
struct Recorder {
    tensors: BTreeMap<String, TensorSpec>,
    requested: Mutex<BTreeSet<String>>,
    missing: Mutex<Vec<String>>,
    mismatched: Mutex<Vec<ShapeMismatch>>,
}

impl Recorder {
    fn zeros(&self, dims: &[usize], dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        Tensor::zeros((), dtype, dev)?.broadcast_as(dims)
    }
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        Self::lock(&self.requested).insert(name.to_string());
        match self.tensors.get(name) {
            None => {
                Self::lock(&self.missing).push(name.to_string());
                self.zeros(s.dims(), dtype, dev)
            }
            Some(spec) => {
                if spec.shape != s.dims() {
                    Self::lock(&self.mismatched).push((name.to_string(), s.dims().to_vec(), spec.shape.clone()));
                }
                self.zeros(s.dims(), dtype, dev)
            }
        }
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        Self::lock(&self.requested).insert(name.to_string());
        match self.tensors.get(name) {
            Some(spec) => self.zeros(&spec.shape, dtype, dev),
            None => {
                Self::lock(&self.missing).push(name.to_string());
                candle_core::bail!("{name} not in the manifest")
            }
        }
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Builds a network with `build` over zero weights shaped like `manifest` and reports which keys it missed,
/// left unused or requested with another shape. Keys starting with one of `ignore_prefixes` are not counted as
/// unused (e.g. the VAE encoder, which generation does not need).
pub fn check_manifest(
    manifest: &Manifest,
    ignore_prefixes: &[&str],
    build: impl FnOnce(VarBuilder) -> Result<()>,
) -> Result<ManifestReport> {
    let rec = std::sync::Arc::new(Recorder {
        tensors: manifest.tensors.clone(),
        requested: Mutex::default(),
        missing: Mutex::default(),
        mismatched: Mutex::default(),
    });
    struct Shared(std::sync::Arc<Recorder>);
    impl SimpleBackend for Shared {
        fn get(&self, s: Shape, n: &str, h: candle_nn::Init, d: DType, dev: &Device) -> candle_core::Result<Tensor> {
            self.0.get(s, n, h, d, dev)
        }
        fn get_unchecked(&self, n: &str, d: DType, dev: &Device) -> candle_core::Result<Tensor> {
            self.0.get_unchecked(n, d, dev)
        }
        fn contains_tensor(&self, n: &str) -> bool {
            self.0.contains_tensor(n)
        }
    }
    let vb = VarBuilder::from_backend(Box::new(Shared(rec.clone())), DType::F32, Device::Cpu);
    build(vb)?;
    let requested = Recorder::lock(&rec.requested).clone();
    let unused = manifest
        .tensors
        .keys()
        .filter(|k| !requested.contains(*k) && !ignore_prefixes.iter().any(|p| k.starts_with(p)))
        .cloned()
        .collect();
    let mut missing = Recorder::lock(&rec.missing).clone();
    missing.sort();
    missing.dedup();
    let mismatched = Recorder::lock(&rec.mismatched).clone();
    Ok(ManifestReport {
        missing,
        unused,
        mismatched,
    })
}

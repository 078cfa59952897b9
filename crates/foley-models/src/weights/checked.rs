//! Checked loading: a [`VarBuilder`] over a checkpoint that refuses bad weights with one sentence naming the file
//! and what is wrong — a key the network needs and the file lacks, a tensor of the wrong shape, a tensor holding
//! NaN or ±inf (checked after conversion to the dtype the network runs in, so an f32 value too large for f16 is
//! caught too), keys the file holds that the network never asks for, or a file that cannot be read at all
//! (truncated, not a checkpoint).
//!
//! The key/shape rule is the one the manifests state: `tests/manifests_*.rs` prove that each network asks for
//! exactly the keys and shapes of `models/manifests/*.json` (the reference's own state dicts, loaded strictly by
//! the reference), so checking a file against what the network asks for is checking it against the manifest, and
//! works for bundles that have no manifest (tiny-test) too.
//!
//! Cost: every tensor is read once anyway to build the network; the finiteness check is one pass over it (a
//! branch-free scan of the bits on the CPU, a fused reduction on GPUs).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::weights::RECOMPUTED_KEYS;

/// Whether every value of `t` is finite (no NaN, no ±inf). CPU f32 tensors are scanned in place; other dtypes
/// and devices compute `sum(t - t)` (NaN exactly when some value is not finite) in f32.
pub fn all_finite(t: &Tensor) -> Result<bool> {
    if t.device().is_cpu() && t.dtype() == DType::F32 {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            let data = cpu.as_slice::<f32>()?;
            return Ok(finite_f32(&data[start..end]));
        }
    }
    let t = t.to_dtype(DType::F32)?;
    let s = (&t - &t)?.sum_all()?.to_scalar::<f32>()?;
    Ok(s.is_finite())
}

/// Branch-free over each chunk so that it vectorises: a value is non-finite when its exponent bits are all set.
fn finite_f32(data: &[f32]) -> bool {
    data.chunks(4096).all(|c| c.iter().fold(0u32, |acc, v| acc | u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000)) == 0)
}

/// The keys and shapes a checkpoint holds, read from its header (nothing is loaded).
fn file_shapes(path: &Path) -> Result<(Box<dyn SimpleBackend>, HashMap<String, Vec<usize>>)> {
    if crate::weights::is_pth(path) {
        let pth = crate::weights::pth_tensors(path)?;
        let shapes = pth
            .tensor_infos()
            .iter()
            .map(|(k, i)| (k.clone(), i.layout.shape().dims().to_vec()))
            .collect();
        Ok((Box::new(pth), shapes))
    } else {
        // SAFETY: the file is mapped read-only; foley never writes checkpoints while they are in use.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path)? };
        let shapes = st.tensors().into_iter().map(|(k, v)| (k, v.shape().to_vec())).collect();
        Ok((Box::new(st), shapes))
    }
}

/// What a [`Checked`] backend saw: every key requested and the first problem met.
#[derive(Default)]
struct Seen {
    requested: BTreeSet<String>,
    problem: Option<String>,
}

struct Checked {
    inner: Box<dyn SimpleBackend>,
    shapes: HashMap<String, Vec<usize>>,
    path: PathBuf,
    seen: Arc<Mutex<Seen>>,
}

impl Checked {
    fn refuse(&self, sentence: String) -> candle_core::Error {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.problem.is_none() {
            seen.problem = Some(sentence.clone());
        }
        candle_core::Error::Msg(sentence)
    }

    fn load(&self, want: Option<&Shape>, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let file = self.path.display();
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).requested.insert(name.to_string());
        let Some(has) = self.shapes.get(name) else {
            return Err(self.refuse(format!("{file}: key {name} is missing")));
        };
        if let Some(want) = want {
            if want.dims() != has.as_slice() {
                return Err(self.refuse(format!("{file}: {name} has shape {has:?}, expected {:?}", want.dims())));
            }
        }
        let t = match want {
            Some(s) => self.inner.get(s.clone(), name, candle_nn::Init::Const(0.), dtype, dev),
            None => self.inner.get_unchecked(name, dtype, dev),
        }
        .map_err(|e| self.refuse(format!("{file}: {name} cannot be read ({e}); the file may be truncated or corrupt")))?;
        match all_finite(&t) {
            Ok(true) => Ok(t),
            Ok(false) => Err(self.refuse(format!(
                "{file}: {name} holds non-finite values (NaN or inf{})",
                if t.dtype() == DType::F32 { String::new() } else { format!(" as {}", t.dtype().as_str()) }
            ))),
            Err(e) => Err(self.refuse(format!("{file}: {name}: checking its values failed: {e}"))),
        }
    }
}

impl SimpleBackend for Checked {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(Some(&s), name, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(None, name, dtype, dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }
}

/// A checkpoint opened for checked loading: give [`Self::var_builder`] to the network's constructor, then
/// call [`Self::finish`] with the constructor's result.
pub struct CheckedFile {
    path: PathBuf,
    seen: Arc<Mutex<Seen>>,
    keys: Vec<String>,
    vb: VarBuilder<'static>,
}

impl CheckedFile {
    /// Opens `path` (`.pth`/`.pt`/`.bin`/`.ckpt` through the pickle reader, anything else as safetensors); the
    /// tensors are converted to `dtype` on `device` as the network asks for them, whatever the file stores.
    pub fn open(path: impl AsRef<Path>, dtype: DType, device: &Device) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(Error::Weights(format!("{}: no such checkpoint file", path.display())));
        }
        let (inner, shapes) = file_shapes(&path).map_err(|e| {
            Error::Weights(format!(
                "{}: cannot be read as a checkpoint ({}); the file may be truncated or corrupt",
                path.display(),
                one_line(&e.to_string())
            ))
        })?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut keys: Vec<String> = shapes.keys().cloned().collect();
        keys.sort();
        let backend = Checked { inner, shapes, path: path.clone(), seen: seen.clone() };
        let vb = VarBuilder::from_backend(Box::new(backend), dtype, device.clone());
        Ok(Self { path, seen, keys, vb })
    }

    /// The builder the network is constructed from.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        self.vb.clone()
    }

    /// The network built from [`Self::var_builder`], or the sentence saying what is wrong with the file: the first
    /// refused tensor, else the constructor's own error, else the keys the file holds that the network never
    /// asked for (except [`RECOMPUTED_KEYS`] and keys under `ignore_prefixes`, parts of the checkpoint that
    /// generation does not use, e.g. the VAE's encoder).
    pub fn finish<T, E: std::fmt::Display>(self, built: std::result::Result<T, E>, ignore_prefixes: &[&str]) -> Result<T> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = &seen.problem {
            return Err(Error::Weights(p.clone()));
        }
        let net = built.map_err(|e| Error::Weights(format!("{}: {}", self.path.display(), one_line(&e.to_string()))))?;
        let unexpected: Vec<&str> = self
            .keys
            .iter()
            .filter(|k| !seen.requested.contains(*k))
            .filter(|k| !RECOMPUTED_KEYS.contains(&k.as_str()) && !ignore_prefixes.iter().any(|p| k.starts_with(p)))
            .map(String::as_str)
            .collect();
        if !unexpected.is_empty() {
            let more = if unexpected.len() > 3 { format!(" and {} more", unexpected.len() - 3) } else { String::new() };
            return Err(Error::Weights(format!(
                "{}: unexpected keys {}{more} (a checkpoint of another network or variant?)",
                self.path.display(),
                unexpected.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(net)
    }
}

/// candle errors may carry a backtrace on further lines; the first line is the reason.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finiteness_of_every_dtype_and_layout() {
        let dev = Device::Cpu;
        let ok = Tensor::new(&[1f32, -2.0, 3.0e38, 0.0], &dev).unwrap();
        assert!(all_finite(&ok).unwrap());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let t = Tensor::new(&[1f32, bad, 0.0, 2.0], &dev).unwrap();
            assert!(!all_finite(&t).unwrap(), "{bad}");
            assert!(!all_finite(&t.to_dtype(DType::F16).unwrap()).unwrap(), "{bad} f16");
            assert!(!all_finite(&t.to_dtype(DType::BF16).unwrap()).unwrap(), "{bad} bf16");
            // a strided view
            assert!(!all_finite(&t.reshape((2, 2)).unwrap().t().unwrap()).unwrap(), "{bad} transposed");
        }
        // finite in f32, inf in f16
        assert!(!all_finite(&ok.to_dtype(DType::F16).unwrap()).unwrap());
        assert!(all_finite(&ok.to_dtype(DType::BF16).unwrap()).unwrap());
    }
}

//! Fixture discovery and loading: a fixture is a folder holding `meta.json` (with a `module` field),
//! `weights.safetensors`, `inputs.safetensors` and `outputs.safetensors` (`scripts/parity/common.py`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::Error;

/// The files every fixture holds beside `meta.json`.
const TENSOR_FILES: [&str; 3] = ["weights.safetensors", "inputs.safetensors", "outputs.safetensors"];

/// The fixture root: `$FOLEY_PARITY_DIR` or the repository's `tests/fixtures/parity`.
pub fn parity_root() -> PathBuf {
    std::env::var_os("FOLEY_PARITY_DIR").map(PathBuf::from).unwrap_or_else(crate::committed_root)
}

/// One fixture as stored, every tensor on the host.
#[derive(Debug)]
pub struct RawFixture {
    pub dir: PathBuf,
    pub meta: serde_json::Value,
    pub weights: HashMap<String, Tensor>,
    pub inputs: HashMap<String, Tensor>,
    pub outputs: HashMap<String, Tensor>,
}

impl RawFixture {
    /// The folder's name (the fixture's name in messages).
    pub fn name(&self) -> String {
        self.dir.file_name().map_or_else(|| self.dir.display().to_string(), |n| n.to_string_lossy().into_owned())
    }
}

/// The parsed `meta.json` of the fixture folder `dir`.
fn read_meta(dir: &Path) -> Result<serde_json::Value, Error> {
    let file = dir.join("meta.json");
    let text = std::fs::read_to_string(&file).map_err(|source| Error::UnreadableMeta { file: file.clone(), source })?;
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::BadMeta { file: file.clone(), source })?;
    if !meta["module"].is_string() {
        return Err(Error::NoModule { file });
    }
    Ok(meta)
}

fn load_tensors(dir: &Path, file: &'static str) -> Result<HashMap<String, Tensor>, Error> {
    let path = dir.join(file);
    if !path.is_file() {
        return Err(Error::MissingFile { dir: dir.to_path_buf(), file });
    }
    candle_core::safetensors::load(&path, &Device::Cpu).map_err(|source| Error::BadTensors { file: path, source })
}

/// Every fixture under `root` whose `meta.json` names `module`, sorted by folder, loaded. Every folder under
/// `root` must be a fixture with a readable `meta.json`; an error names the first one that is not, a missing
/// tensor file, or an empty result.
pub fn load_module(root: &Path, module: &str) -> Result<Vec<RawFixture>, Error> {
    let unreadable = |source| Error::UnreadableRoot { dir: root.to_path_buf(), source };
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    let mut found = Vec::new();
    for dir in dirs {
        let meta = read_meta(&dir)?;
        if meta["module"] != module {
            continue;
        }
        let [weights, inputs, outputs] = TENSOR_FILES.map(|f| load_tensors(&dir, f));
        found.push(RawFixture { weights: weights?, inputs: inputs?, outputs: outputs?, meta, dir });
    }
    if found.is_empty() {
        return Err(Error::NoFixtures { module: module.to_string(), dir: root.to_path_buf() });
    }
    Ok(found)
}

//! `foley models import`: takes weights people already have (an MMAudio checkout, a ComfyUI `models/mmaudio`
//! folder, a plain folder of the official files; see [`crate::layout`]), checks every file (the published md5
//! where the file is the official one; keys, shapes and finiteness by loading it as the engine would), and links
//! or copies the good ones into foley's store ([`crate::fetch::store_dir`]`/<variant>/`), where
//! `foley models list`, `generate` and `serve` find them.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::{ModelSpec, ROLES};
use crate::error::PipelineError;
use crate::fetch::{locate_role, store_dir, verify};
use crate::layout;

/// How a file reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A symbolic link to the file where it is (no copy; the original must stay).
    Link,
    /// A copy (the original may then be removed).
    Copy,
}

/// One file found for a role.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedFile {
    pub role: String,
    pub source: PathBuf,
    /// Where it was placed in the store (absent when refused).
    pub placed: Option<PathBuf>,
    /// The published checksum was checked (the file is the official one).
    pub checksum_verified: bool,
    /// Why it was refused (one sentence), if it was.
    pub refused: Option<String>,
}

/// What one variant got from an import.
#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    pub variant: String,
    pub files: Vec<ImportedFile>,
    /// Roles still without a file anywhere foley looks (store, shipped files, HF cache), with the file's name.
    pub missing: Vec<(String, String)>,
    /// Every role has a usable file.
    pub complete: bool,
    /// The command that fetches what is missing (absent when complete).
    pub fetch_command: Option<String>,
}

/// Imports from `source` for `variant` (or every built-in variant whose generator network is found there).
pub fn import(source: &Path, variant: Option<&str>, how: Placement) -> Result<Vec<VariantReport>, PipelineError> {
    if !source.is_dir() {
        return Err(PipelineError::invalid("path", format!("{} is not a directory", source.display())));
    }
    let source = std::fs::canonicalize(source).map_err(|e| PipelineError::Model(format!("{}: {e}", source.display())))?;
    let specs = match variant {
        Some(v) => vec![ModelSpec::find(v)?],
        None => ModelSpec::builtin()
            .into_iter()
            .filter(|s| layout::find(&source, s, "network").is_some())
            .collect(),
    };
    if specs.is_empty() {
        return Err(PipelineError::invalid(
            "path",
            format!(
                "no MMAudio generator checkpoint found in {} (looked for weights/mmaudio_<variant>.pth, \
                 mmaudio_<variant>[_fp16|_bf16|_fp32].safetensors and models/mmaudio/ inside it)",
                source.display()
            ),
        ));
    }
    specs.iter().map(|spec| import_variant(&source, spec, how)).collect()
}

fn import_variant(source: &Path, spec: &ModelSpec, how: Placement) -> Result<VariantReport, PipelineError> {
    let dest_dir = store_dir().join(&spec.name);
    let mut files = Vec::new();
    for role in ROLES {
        let Some(path) = layout::find(source, spec, role) else { continue };
        let mut file =
            ImportedFile { role: role.into(), source: path.clone(), placed: None, checksum_verified: false, refused: None };
        match check(spec, role, &path) {
            Ok(verified) => {
                file.checksum_verified = verified;
                file.placed = Some(place(&dest_dir, spec, role, &path, how)?);
            }
            Err(PipelineError::Model(why)) => file.refused = Some(why),
            Err(e) => file.refused = Some(e.to_string()),
        }
        files.push(file);
    }
    let mut missing = Vec::new();
    for role in ROLES {
        if locate_role(spec, role, None)?.is_none() {
            missing.push((role.to_string(), spec.files[role].name().to_string()));
        }
    }
    let complete = missing.is_empty();
    let fetch_command = (!complete).then(|| format!("foley models download {}", spec.name));
    Ok(VariantReport { variant: spec.name.clone(), files, missing, complete, fetch_command })
}

/// The md5/sha256 of an official file, then a full checked load; `Ok(true)` when a checksum was verified.
fn check(spec: &ModelSpec, role: &str, path: &Path) -> Result<bool, PipelineError> {
    let verified = if layout::is_official(spec, role, path) {
        verify(&spec.files[role], path).map_err(|_| {
            PipelineError::Model(format!(
                "{}: not the published file (its checksum differs from the one the reference publishes); \
                 corrupt or modified",
                path.display()
            ))
        })?
    } else {
        false
    };
    crate::engine::FoleyEngine::check_file(spec, role, path)?;
    Ok(verified)
}

/// Places `path` in `dir` under its own name, after removing whatever the store held for `role` before.
fn place(dir: &Path, spec: &ModelSpec, role: &str, path: &Path, how: Placement) -> Result<PathBuf, PipelineError> {
    let io = |p: &Path, e: std::io::Error| PipelineError::Model(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    for name in layout::candidates(spec, role) {
        let old = dir.join(name.rsplit('/').next().unwrap_or(&name));
        if old.symlink_metadata().is_ok() {
            std::fs::remove_file(&old).map_err(|e| io(&old, e))?;
        }
    }
    let name = path.file_name().ok_or_else(|| PipelineError::Model(format!("{}: no file name", path.display())))?;
    let dest = dir.join(name);
    match how {
        Placement::Link => link(path, &dest).map_err(|e| io(&dest, e))?,
        Placement::Copy => {
            let tmp = dest.with_extension("partial");
            std::fs::copy(path, &tmp).map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
        }
    }
    Ok(dest)
}

#[cfg(unix)]
fn link(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(src, dest)
}

#[cfg(not(unix))]
fn link(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::hard_link(src, dest)
}

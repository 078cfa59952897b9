//! Weights on disk: finding a bundle's checkpoints in the standard Hugging Face cache, downloading the missing
//! ones (hf-hub for Hub files; plain HTTPS into the same cache for the files the reference fetches from GitHub
//! releases), and verifying every download against its published checksum.
//!
//! Cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (what the Python hub client uses,
//! so a copied cache works offline). Hub files live in hf-hub's layout (`models--owner--name/snapshots/...`);
//! URL files under `foley-urls/<host>/<path>`. `HF_HUB_OFFLINE=1`: nothing is fetched; missing files are an error.
//! `HF_ENDPOINT` replaces `https://huggingface.co` (mirrors, and the loopback server of the tests).
//!
//! Where a checkpoint is looked for, in order ([`locate_role`]): the folder given with `--weights-dir` /
//! `FOLEY_WEIGHTS_DIR` (files used in place, in any layout of [`crate::layout`]); foley's store of imported
//! weights ([`store_dir`]`/<variant>/`, filled by `foley models import`); then the shipped files (tiny-test) or
//! the Hugging Face cache.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::bundle::{find_local, FileSpec, ModelSpec, ROLES};
use crate::error::PipelineError;

/// The cache directory in use (see the module docs).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("HF_HOME") {
        return PathBuf::from(d).join("hub");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/huggingface/hub")
}

/// Whether `HF_HUB_OFFLINE` asks for no network access.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
}

fn hub_repo(f: &FileSpec) -> Option<Repo> {
    let repo = f.repo.as_ref()?;
    Some(Repo::with_revision(repo.clone(), RepoType::Model, f.revision.clone().unwrap_or_else(|| "main".into())))
}

fn url_path(cache: &Path, url: &str) -> Result<PathBuf, PipelineError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| PipelineError::Model(format!("{url}: only http(s) URLs are supported")))?;
    let mut p = cache.join("foley-urls");
    for part in rest.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            continue;
        }
        p.push(part.replace(':', "_"));
    }
    Ok(p)
}

/// Where the file is on disk, if it is there (no checksum is computed).
pub fn locate(f: &FileSpec) -> Result<Option<PathBuf>, PipelineError> {
    if let Some(rel) = &f.local {
        return Ok(find_local(rel));
    }
    let cache = cache_dir();
    if let (Some(repo), Some(file)) = (hub_repo(f), &f.file) {
        return Ok(Cache::new(cache).repo(repo).get(file));
    }
    if let Some(url) = &f.url {
        let p = url_path(&cache, url)?;
        return Ok(p.is_file().then_some(p));
    }
    Ok(None)
}

/// foley's store of imported weights: `$FOLEY_HOME/weights`, `FOLEY_HOME` defaulting to `$XDG_DATA_HOME/foley`,
/// else `~/.local/share/foley`. `foley models import` places (links or copies) files under `<store>/<variant>/`.
pub fn store_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FOLEY_HOME") {
        return PathBuf::from(d).join("weights");
    }
    let data = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".local/share")
    });
    data.join("foley/weights")
}

/// Where checkpoint `role` of `spec` is, looking in `weights_dir` (when given), then foley's store, then the
/// shipped files / Hugging Face cache (see the module docs). No checksum is computed.
pub fn locate_role(spec: &ModelSpec, role: &str, weights_dir: Option<&Path>) -> Result<Option<PathBuf>, PipelineError> {
    if let Some(dir) = weights_dir {
        if let Some(p) = crate::layout::find(dir, spec, role) {
            return Ok(Some(p));
        }
    }
    if let Some(p) = crate::layout::find(&store_dir().join(&spec.name), spec, role) {
        return Ok(Some(p));
    }
    match spec.files.get(role) {
        Some(f) => locate(f),
        None => Ok(None),
    }
}

/// Every checkpoint of `spec`, by role (see [`resolve_in`]; no `--weights-dir`).
pub fn resolve(spec: &ModelSpec) -> Result<Vec<(String, PathBuf)>, PipelineError> {
    resolve_in(spec, None)
}

/// Every checkpoint of `spec`, by role, looked up as [`locate_role`] does; an error naming the missing files and
/// the command that fetches them.
pub fn resolve_in(spec: &ModelSpec, weights_dir: Option<&Path>) -> Result<Vec<(String, PathBuf)>, PipelineError> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for role in ROLES {
        let f = &spec.files[role];
        match locate_role(spec, role, weights_dir)? {
            Some(p) => found.push((role.to_string(), p)),
            None => missing.push(f.name().to_string()),
        }
    }
    if !missing.is_empty() {
        let how = if spec.files.values().all(|f| f.local.is_some()) {
            format!("the {} files are missing from the models directory (set FOLEY_MODELS_DIR)", spec.name)
        } else {
            format!(
                "run `foley models download {}` (or `foley models import` an MMAudio or ComfyUI folder, point \
                 --weights-dir at one, or copy a Hugging Face cache to {}), or use --model tiny-test for a \
                 self-check with noise",
                spec.name,
                cache_dir().display()
            )
        };
        return Err(PipelineError::Model(format!(
            "weights of {} not found ({}): {how}",
            spec.name,
            missing.join(", ")
        )));
    }
    Ok(found)
}

/// Checks `path` against the spec's sha256 (or md5); `Ok(false)` when the spec publishes no checksum.
pub fn verify(f: &FileSpec, path: &Path) -> Result<bool, PipelineError> {
    let (want, got) = if let Some(want) = &f.sha256 {
        (want, hex_digest::<Sha256>(path)?)
    } else if let Some(want) = &f.md5 {
        (want, hex_digest::<Md5>(path)?)
    } else {
        return Ok(false);
    };
    if !want.eq_ignore_ascii_case(&got) {
        return Err(PipelineError::Model(format!(
            "{}: checksum mismatch (expected {want}, got {got}); the download is corrupt and was removed",
            f.name()
        )));
    }
    Ok(true)
}

fn hex_digest<D: Digest>(path: &Path) -> Result<String, PipelineError> {
    let mut file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut h = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn io(path: &Path, e: std::io::Error) -> PipelineError {
    PipelineError::Model(format!("{}: {e}", path.display()))
}

/// What happened to one file in [`download`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fetched {
    pub role: String,
    pub path: PathBuf,
    /// It was already in the cache.
    pub cached: bool,
    /// A published checksum was checked.
    pub verified: bool,
}

/// Fetches every missing checkpoint of `spec` into the cache, verifying each download (a corrupt file is
/// removed and reported). `progress` is told about each transfer (e.g. an indicatif bar).
pub fn download<P: Progress + Clone>(spec: &ModelSpec, progress: P) -> Result<Vec<Fetched>, PipelineError> {
    let mut out = Vec::new();
    for role in ROLES {
        let f = &spec.files[role];
        if let Some(path) = locate_role(spec, role, None)? {
            out.push(Fetched { role: role.into(), path, cached: true, verified: false });
            continue;
        }
        if f.local.is_some() {
            return Err(PipelineError::Model(format!("{}: shipped file missing (set FOLEY_MODELS_DIR)", f.name())));
        }
        if offline() {
            return Err(PipelineError::Model(format!(
                "{} is not in {} and HF_HUB_OFFLINE is set",
                f.name(),
                cache_dir().display()
            )));
        }
        let path = if let (Some(repo), Some(file)) = (hub_repo(f), &f.file) {
            fetch_hub(repo, file, progress.clone())?
        } else if let Some(url) = &f.url {
            fetch_url(url, &url_path(&cache_dir(), url)?, progress.clone())?
        } else {
            return Err(PipelineError::Model(format!("{}: no source", f.name())));
        };
        match verify(f, &path) {
            Ok(verified) => out.push(Fetched { role: role.into(), path, cached: false, verified }),
            Err(e) => {
                remove_download(&path);
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Removes a downloaded file (and, for hub files, the blob the snapshot entry points to).
fn remove_download(path: &Path) {
    if let Ok(target) = std::fs::canonicalize(path) {
        if target != path {
            let _ = std::fs::remove_file(&target);
        }
    }
    let _ = std::fs::remove_file(path);
}

fn fetch_hub<P: Progress>(repo: Repo, file: &str, progress: P) -> Result<PathBuf, PipelineError> {
    let mut b = hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(cache_dir())).with_progress(false);
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        b = b.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = b.build().map_err(|e| PipelineError::Model(format!("hub client: {e}")))?;
    let name = repo.url();
    api.repo(repo)
        .download_with_progress(file, progress)
        .map_err(|e| PipelineError::Model(format!("downloading {file} from {name}: {e}")))
}

fn fetch_url<P: Progress>(url: &str, dest: &Path, mut progress: P) -> Result<PathBuf, PipelineError> {
    let err = |e: String| PipelineError::Model(format!("downloading {url}: {e}"));
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let resp = ureq::get(url).call().map_err(|e| err(e.to_string()))?;
    let size = resp.header("content-length").and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    progress.init(size, &name);
    let tmp = dest.with_extension("part");
    let mut out = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0usize;
    loop {
        let n = reader.read(&mut buf).map_err(|e| err(e.to_string()))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| io(&tmp, e))?;
        total += n;
        progress.update(n);
    }
    progress.finish();
    drop(out);
    if size != 0 && total != size {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(format!("truncated: {total} of {size} bytes")));
    }
    std::fs::rename(&tmp, dest).map_err(|e| io(dest, e))?;
    Ok(dest.to_path_buf())
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn init(&mut self, _size: usize, _filename: &str) {}
    fn update(&mut self, _size: usize) {}
    fn finish(&mut self) {}
}

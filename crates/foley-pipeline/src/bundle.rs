//! Model bundles: `models/<variant>.toml` describes where each checkpoint of a variant comes from (a Hugging Face
//! repo file, a plain HTTPS URL, or a file shipped in the repository), its checksum, and the networks' configs.
//! The TOMLs of the released variants and of `tiny-test` are compiled into the binary; `FOLEY_MODELS_DIR` (or
//! `./models`) may hold more, and holds the `tiny-test/` weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use foley_models::encoders::{clip, synchformer};
use foley_models::mmaudio::{self, bigvgan, vae};
use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::license::{BundleLicenses, FileLicense, License};

/// The variants whose TOMLs ship inside the binary, in the order `foley models list` shows them.
pub const BUILTIN: [(&str, &str); 5] = [
    ("large_44k_v2", include_str!("../../../models/large_44k_v2.toml")),
    ("medium_44k", include_str!("../../../models/medium_44k.toml")),
    ("small_44k", include_str!("../../../models/small_44k.toml")),
    ("small_16k", include_str!("../../../models/small_16k.toml")),
    ("tiny-test", include_str!("../../../models/tiny-test.toml")),
];

/// The checkpoints of a bundle, by role.
pub const ROLES: [&str; 5] = ["network", "vae", "vocoder", "synchformer", "clip"];

/// Where one checkpoint comes from and how it is verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Hugging Face repo id (`owner/name`) holding `file`.
    #[serde(default)]
    pub repo: Option<String>,
    /// Path of the file inside `repo`.
    #[serde(default)]
    pub file: Option<String>,
    /// Git revision of `repo` (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
    /// Plain HTTPS URL, for files that are not on the Hub (fetched into the same cache).
    #[serde(default)]
    pub url: Option<String>,
    /// Path relative to the models directory, for files shipped with foley (tiny-test).
    #[serde(default)]
    pub local: Option<String>,
    /// Expected SHA-256 (hex), checked after every download.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Expected MD5 (hex), as the reference's download list publishes it.
    #[serde(default)]
    pub md5: Option<String>,
    /// Size in bytes, when known (for `models list`).
    #[serde(default)]
    pub size: Option<u64>,
    /// The terms the file may be used under (`[files.<role>.license]`); every built-in bundle has one per file.
    #[serde(default)]
    pub license: Option<License>,
}

impl FileSpec {
    /// The file's name (last path component), for messages and the URL cache.
    pub fn name(&self) -> &str {
        let s = self.file.as_deref().or(self.url.as_deref()).or(self.local.as_deref()).unwrap_or("?");
        s.rsplit('/').next().unwrap_or(s)
    }
}

/// Network configs; absent sections take the released presets of the variant and mode.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSection {
    pub network: Option<mmaudio::Config>,
    pub vae: Option<vae::Config>,
    pub vocoder: Option<bigvgan::Config>,
    pub clip: Option<clip::Config>,
    pub synchformer: Option<synchformer::Config>,
}

/// `models/<variant>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    /// `16k` or `44k`.
    pub mode: String,
    /// Random weights: the audio is noise (tiny-test).
    #[serde(default)]
    pub noise: bool,
    #[serde(default)]
    pub description: String,
    /// Reference commit the config was checked against.
    #[serde(default)]
    pub reference_commit: Option<String>,
    pub files: BTreeMap<String, FileSpec>,
    #[serde(default)]
    pub config: ConfigSection,
}

/// A bundle's configs with presets filled in.
#[derive(Debug, Clone)]
pub struct Configs {
    pub network: mmaudio::Config,
    pub vae: vae::Config,
    pub vocoder: bigvgan::Config,
    pub clip: clip::Config,
    pub synchformer: synchformer::Config,
}

impl ModelSpec {
    /// Parses a TOML description.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PipelineError> {
        let spec: ModelSpec =
            toml::from_str(text).map_err(|e| PipelineError::Model(format!("{origin}: {}", e.message())))?;
        spec.check(origin)?;
        Ok(spec)
    }

    fn check(&self, origin: &str) -> Result<(), PipelineError> {
        if self.mode != "16k" && self.mode != "44k" {
            return Err(PipelineError::Model(format!("{origin}: mode must be 16k or 44k, not {}", self.mode)));
        }
        for role in ROLES {
            let f = self
                .files
                .get(role)
                .ok_or_else(|| PipelineError::Model(format!("{origin}: no [files.{role}]")))?;
            let sources = [f.repo.is_some() && f.file.is_some(), f.url.is_some(), f.local.is_some()];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(PipelineError::Model(format!(
                    "{origin}: [files.{role}] needs exactly one of repo+file, url, local"
                )));
            }
        }
        if let Some(extra) = self.files.keys().find(|k| !ROLES.contains(&k.as_str())) {
            return Err(PipelineError::Model(format!("{origin}: unknown file role {extra}")));
        }
        Ok(())
    }

    /// The bundle named `name`: `$FOLEY_MODELS_DIR/<name>.toml` or `./models/<name>.toml` if present, else the
    /// built-in description.
    pub fn find(name: &str) -> Result<Self, PipelineError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(PipelineError::invalid("model", format!("{name:?} is not a model name")));
        }
        for dir in models_dirs() {
            let p = dir.join(format!("{name}.toml"));
            if let Ok(text) = std::fs::read_to_string(&p) {
                return Self::parse(&text, &p.display().to_string());
            }
        }
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Self::parse(text, &format!("models/{n}.toml")),
            None => Err(PipelineError::invalid(
                "model",
                format!(
                    "unknown model {name:?}; known: {}",
                    BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// Every built-in bundle.
    pub fn builtin() -> Vec<Self> {
        BUILTIN.iter().filter_map(|(n, t)| Self::parse(t, n).ok()).collect()
    }

    /// Every file's license and the bundle's verdict on commercial use.
    pub fn licenses(&self) -> BundleLicenses {
        let files = ROLES
            .iter()
            .filter_map(|role| {
                let f = self.files.get(*role)?;
                Some(FileLicense { role: role.to_string(), file: f.name().to_string(), license: f.license.clone() })
            })
            .collect();
        BundleLicenses::new(&self.name, files)
    }

    /// Output sample rate of the vocoder.
    pub fn sample_rate(&self) -> u32 {
        if self.mode == "16k" {
            16_000
        } else {
            44_100
        }
    }

    /// The sequence config of this mode at `duration` seconds.
    pub fn sequence(&self, duration: f64) -> foley_models::mmaudio::sequence::SequenceConfig {
        if self.mode == "16k" {
            foley_models::mmaudio::sequence::SequenceConfig::mode_16k(duration)
        } else {
            foley_models::mmaudio::sequence::SequenceConfig::mode_44k(duration)
        }
    }

    /// The configs, presets filled in (`network` from the variant name).
    pub fn configs(&self) -> Result<Configs, PipelineError> {
        let c = &self.config;
        let network = match &c.network {
            Some(n) => n.clone(),
            None => mmaudio::Config::by_name(&self.name)
                .ok_or_else(|| PipelineError::Model(format!("{}: no [config.network] and no preset", self.name)))?,
        };
        let is16 = self.mode == "16k";
        Ok(Configs {
            network,
            vae: c.vae.clone().unwrap_or_else(|| if is16 { vae::Config::vae_16k() } else { vae::Config::vae_44k() }),
            vocoder: c.vocoder.clone().unwrap_or_else(|| {
                if is16 {
                    bigvgan::Config::mmaudio_16k()
                } else {
                    bigvgan::Config::v2_44khz_128band_512x()
                }
            }),
            clip: c.clip.clone().unwrap_or_else(clip::Config::dfn5b_vit_h_14_384),
            synchformer: c.synchformer.clone().unwrap_or_else(synchformer::Config::synchformer),
        })
    }
}

/// Directories searched for model TOMLs and shipped weights: `$FOLEY_MODELS_DIR`, `./models`, and the source
/// tree's `models/` (so tiny-test works from a build tree anywhere).
pub fn models_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("FOLEY_MODELS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("models"));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    dirs
}

/// A shipped file (`local = ...`) in the first models directory holding it.
pub fn find_local(rel: &str) -> Option<PathBuf> {
    models_dirs().into_iter().map(|d| d.join(rel)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_bundles_parse_and_fill_presets() {
        let all = ModelSpec::builtin();
        assert_eq!(all.len(), BUILTIN.len());
        for spec in &all {
            let c = spec.configs().unwrap();
            assert_eq!(c.vae.embed_dim, c.network.latent_dim, "{}", spec.name);
            assert_eq!(c.vae.data_dim, c.vocoder.num_mels, "{}", spec.name);
            assert_eq!(c.network.clip_dim, c.clip.embed_dim, "{}", spec.name);
            assert_eq!(c.network.text_dim, c.clip.text_width, "{}", spec.name);
            assert_eq!(c.network.sync_dim, c.synchformer.embed_dim, "{}", spec.name);
            let hop = if spec.mode == "16k" { 256 } else { 512 };
            assert_eq!(c.vocoder.hop_length(), hop, "{}", spec.name);
        }
        let large = ModelSpec::find("large_44k_v2").unwrap();
        assert!(large.configs().unwrap().network.v2);
    }

    /// Every TOML in the source tree's `models/` (where a new variant lands) and every built-in bundle records a
    /// complete license for each of its files, so no variant ships without one.
    #[test]
    fn every_file_of_every_variant_has_a_license() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
        let mut specs = ModelSpec::builtin();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                let origin = p.display().to_string();
                specs.push(ModelSpec::parse(&std::fs::read_to_string(&p).unwrap(), &origin).unwrap());
            }
        }
        assert!(specs.len() >= 2 * BUILTIN.len(), "the built-in bundles and their files in models/");
        for spec in &specs {
            for role in ROLES {
                let license = spec.files[role].license.as_ref();
                let license = license.unwrap_or_else(|| panic!("{}: [files.{role}.license] is missing", spec.name));
                assert_eq!(license.problem(), None, "{}: [files.{role}.license]", spec.name);
                if !spec.noise {
                    assert!(license.source.starts_with("https://"), "{}: {role}: source is a link", spec.name);
                }
            }
            let all = spec.licenses();
            assert_eq!(all.files.len(), ROLES.len(), "{}", spec.name);
            assert!(all.files.iter().all(|f| f.license.is_some()), "{}", spec.name);
        }
        // The MMAudio checkpoints are CC-BY-NC 4.0: the released variants must say so; tiny-test is foley's own.
        for name in ["large_44k_v2", "medium_44k", "small_44k", "small_16k"] {
            let l = ModelSpec::find(name).unwrap().licenses();
            assert_eq!(l.commercial, crate::license::Commercial::No, "{name}");
            assert_eq!(l.files[0].license.as_ref().map(|l| l.spdx.as_str()), Some("CC-BY-NC-4.0"), "{name}");
            assert!(l.condition.is_some_and(|c| c.contains("non-commercial use only")), "{name}");
        }
        let tiny = ModelSpec::find("tiny-test").unwrap().licenses();
        assert_eq!((tiny.commercial, tiny.condition), (crate::license::Commercial::Yes, None));
    }

    #[test]
    fn bad_names_are_user_errors() {
        assert!(ModelSpec::find("../etc/passwd").unwrap_err().is_user_error());
        assert!(ModelSpec::find("huge_96k").unwrap_err().is_user_error());
    }
}

//! The folder layouts in which people already keep MMAudio weights, and how a bundle's checkpoint is found in one:
//!
//! - the reference's checkout (`github.com/hkchengrex/MMAudio`): `weights/mmaudio_<variant>.pth` and
//!   `ext_weights/{v1-16.pth, v1-44.pth, best_netG.pt, synchformer_state_dict.pth}`;
//! - a plain folder of the official files (any of the above, flat), or their safetensors conversions
//!   (`foley models convert`: same stem, `.safetensors`);
//! - ComfyUI-MMAudio's `ComfyUI/models/mmaudio/` with the files of `huggingface.co/Kijai/MMAudio_safetensors`:
//!   `mmaudio_<variant>_<fp16|bf16|fp32>.safetensors`, `mmaudio_vae_<16k|44k>_<p>.safetensors`,
//!   `mmaudio_synchformer_<p>.safetensors`, `apple_DFN5B-CLIP-ViT-H-14-384_<p>.safetensors`, and BigVGAN-v2 as
//!   the Hub snapshot folder `nvidia/bigvgan_v2_44khz_128band_512x/` (`config.json` + `bigvgan_generator.pt`).
//!
//! What ComfyUI-MMAudio's `nodes.py` shows (github.com/kijai/ComfyUI-MMAudio at 8eaeb72): the MM-DiT, the
//! Synchformer and CLIP are built empty and every `named_parameters()` name is looked up in the loaded file
//! (`set_module_tensor_to_device(model, name, value=sd[name])`), so those files carry the official module keys
//! (MMAudio's `latent_mean`/`latent_std`/`empty_*` are `nn.Parameter`s, so they are there too; the recomputed
//! buffers may be absent, as foley never reads them); the VAE file is the VAE's own state dict, handed to
//! `AutoEncoderModule(vae_state_dict=...)` → `VAE.load_state_dict` (strict), i.e. the keys of `v1-*.pth`;
//! BigVGAN-v2 is `BigVGAN.from_pretrained(<that folder>)`, which reads `config.json` and `bigvgan_generator.pt`
//! (`{'generator': state_dict}`, the Hub file itself); the 16 kHz vocoder is `torch.load(path)['generator']`,
//! i.e. the official `best_netG.pt`. Only the dtype differs (fp16/bf16/fp32), which the loader converts.

use std::path::{Path, PathBuf};

use crate::bundle::ModelSpec;

/// Sub-folders searched, in order: the folder itself, a checkout's `weights/` and `ext_weights/`, and a ComfyUI
/// root's `models/mmaudio/`.
const SUBDIRS: [&str; 4] = ["", "weights", "ext_weights", "models/mmaudio"];

/// Precision suffixes of the ComfyUI files, most precise first (the first present wins).
const PRECISIONS: [&str; 3] = ["fp32", "bf16", "fp16"];

/// BigVGAN-v2's Hub snapshot folder as ComfyUI-MMAudio keeps it.
const BIGVGAN_V2_DIR: &str = "nvidia/bigvgan_v2_44khz_128band_512x";

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name)
}

/// The file names (relative to a sub-folder) under which `role` of `spec` may be kept, in order of preference:
/// the official name, its safetensors conversion, then the ComfyUI names.
pub fn candidates(spec: &ModelSpec, role: &str) -> Vec<String> {
    let Some(f) = spec.files.get(role) else { return Vec::new() };
    let official = f.name().to_string();
    let mut out = vec![official.clone(), format!("{}.safetensors", stem(&official))];
    let comfy = |base: &str| PRECISIONS.iter().map(|p| format!("{base}_{p}.safetensors")).collect::<Vec<_>>();
    match role {
        "network" => out.extend(comfy(stem(&official))),
        "vae" => out.extend(comfy(&format!("mmaudio_vae_{}", spec.mode))),
        "synchformer" => out.extend(comfy("mmaudio_synchformer")),
        "clip" => out.extend(comfy("apple_DFN5B-CLIP-ViT-H-14-384")),
        "vocoder" if spec.mode == "44k" => out.push(format!("{BIGVGAN_V2_DIR}/{official}")),
        _ => {}
    }
    out
}

/// The file holding `role` of `spec` in `dir` (any of [`SUBDIRS`], names from [`candidates`]), if one is there.
pub fn find(dir: &Path, spec: &ModelSpec, role: &str) -> Option<PathBuf> {
    let names = candidates(spec, role);
    for sub in SUBDIRS {
        let base = if sub.is_empty() { dir.to_path_buf() } else { dir.join(sub) };
        if !base.is_dir() {
            continue;
        }
        if let Some(p) = names.iter().map(|n| base.join(n)).find(|p| p.is_file()) {
            return Some(p);
        }
    }
    None
}

/// Whether `path` is the official file of `role` (same name), so that its published checksum applies.
pub fn is_official(spec: &ModelSpec, role: &str, path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    spec.files.get(role).is_some_and(|f| f.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_each_layout() {
        let large = ModelSpec::find("large_44k_v2").unwrap();
        assert_eq!(candidates(&large, "network")[..3], [
            "mmaudio_large_44k_v2.pth",
            "mmaudio_large_44k_v2.safetensors",
            "mmaudio_large_44k_v2_fp32.safetensors"
        ]);
        assert!(candidates(&large, "vae").contains(&"mmaudio_vae_44k_fp16.safetensors".to_string()));
        assert!(candidates(&large, "clip").contains(&"apple_DFN5B-CLIP-ViT-H-14-384_fp16.safetensors".to_string()));
        assert!(candidates(&large, "vocoder")
            .contains(&"nvidia/bigvgan_v2_44khz_128band_512x/bigvgan_generator.pt".to_string()));
        let small = ModelSpec::find("small_16k").unwrap();
        assert_eq!(candidates(&small, "vae")[0], "v1-16.pth");
        assert!(candidates(&small, "vae").contains(&"mmaudio_vae_16k_bf16.safetensors".to_string()));
        assert_eq!(candidates(&small, "vocoder"), ["best_netG.pt", "best_netG.safetensors"]);
    }
}

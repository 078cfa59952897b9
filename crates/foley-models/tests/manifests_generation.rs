//! The generation networks request exactly the tensors of the official checkpoints: for every variant, the
//! set of keys and shapes our loaders ask for equals `models/manifests/<checkpoint>.json` (written by
//! `scripts/gen_parity.py --manifests` from the reference on the meta device): nothing missing, nothing unused.
//! Also checks that our named configs equal the manifests' configs.

use std::path::PathBuf;

use foley_models::weights::{check_manifest, Manifest, ManifestReport};
use foley_models::mmaudio::{self, bigvgan, vae};

/// The reference commit the manifests (and fixtures) are generated from.
const REFERENCE_COMMIT: &str = "974010a026c731054592d8f777218bd9d85a6c24";

fn manifest(name: &str) -> Manifest {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/manifests").join(format!("{name}.json"));
    let m = Manifest::load(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.config["reference_commit"].as_str(), Some(REFERENCE_COMMIT), "{name}: from another commit");
    m
}

fn assert_exact(name: &str, report: ManifestReport, n_tensors: usize) {
    assert!(report.is_exact(), "{name}: {report:#?}");
    eprintln!("manifest {name}: {n_tensors} tensors, requested exactly");
}

#[test]
fn mmaudio_networks_match_manifests() {
    for variant in ["small_16k", "small_44k", "medium_44k", "large_44k", "large_44k_v2"] {
        let name = format!("mmaudio_{variant}");
        let m = manifest(&name);
        let cfg = mmaudio::Config::by_name(variant).unwrap();
        for (key, ours) in [
            ("latent_dim", cfg.latent_dim),
            ("hidden_dim", cfg.hidden_dim),
            ("num_heads", cfg.num_heads),
            ("depth", cfg.depth),
            ("fused_depth", cfg.fused_depth),
            ("latent_seq_len", cfg.latent_seq_len),
            ("clip_seq_len", cfg.clip_seq_len),
            ("sync_seq_len", cfg.sync_seq_len),
        ] {
            assert_eq!(m.config[key].as_u64(), Some(ours as u64), "{name}: config.{key}");
        }
        assert_eq!(m.config["v2"].as_bool(), Some(cfg.v2), "{name}: config.v2");
        let report = check_manifest(&m, &[], |vb| mmaudio::MMAudio::new(vb, &cfg).map(|_| ())).unwrap();
        assert_exact(&name, report, m.tensors.len());
    }
}

#[test]
fn vae_match_manifests() {
    for (name, cfg) in [("vae_16k", vae::Config::vae_16k()), ("vae_44k", vae::Config::vae_44k())] {
        let m = manifest(name);
        let report = check_manifest(&m, &[], |vb| {
            vae::VaeDecoder::new(vb.clone(), &cfg)?;
            vae::VaeEncoder::new(vb, &cfg).map(|_| ())
        })
        .unwrap();
        assert_exact(name, report, m.tensors.len());
    }
}

#[test]
fn vocoders_match_manifests() {
    for (name, cfg) in [
        ("bigvgan_16k", bigvgan::Config::mmaudio_16k()),
        ("bigvgan_v2_44k", bigvgan::Config::v2_44khz_128band_512x()),
    ] {
        let m = manifest(name);
        let from_manifest: bigvgan::Config = serde_json::from_value(m.config.clone()).unwrap();
        assert_eq!(from_manifest, cfg, "{name}: config");
        let report = check_manifest(&m, &[], |vb| bigvgan::BigVGAN::new(vb, &cfg).map(|_| ())).unwrap();
        assert_exact(name, report, m.tensors.len());
    }
}

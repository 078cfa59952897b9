//! The conditioning encoders request exactly the tensors of the official checkpoints: the keys and shapes our
//! loaders ask for equal `models/manifests/<checkpoint>.json` (written by `scripts/gen_parity.py --manifests`
//! from open_clip and MMAudio's Synchformer), and our named configs equal the manifests' configs.

use std::path::PathBuf;

use foley_models::weights::{check_manifest, Manifest};
use foley_models::encoders::{clip, synchformer};

fn manifest(name: &str) -> Manifest {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/manifests").join(format!("{name}.json"));
    Manifest::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn config_value<T: serde::de::DeserializeOwned>(m: &Manifest) -> T {
    serde_json::from_value(m.config.clone()).unwrap_or_else(|e| panic!("{}: config: {e}", m.checkpoint))
}

#[test]
fn clip_dfn5b_matches_manifest() {
    let m = manifest("clip_dfn5b_vit_h_14_384");
    let cfg = clip::Config::dfn5b_vit_h_14_384();
    assert_eq!(config_value::<clip::Config>(&m), cfg, "named config vs manifest config");
    // The whole open_clip checkpoint: vision tower under `visual.`, text tower, text_projection, logit_scale.
    let report = check_manifest(&m, &[], |vb| Ok(clip::ClipModel::new(vb, &cfg).map(|_| ())?)).unwrap();
    assert!(report.is_exact(), "{report:#?}");
    eprintln!("manifest clip_dfn5b_vit_h_14_384: {} tensors, requested exactly", m.tensors.len());
}

#[test]
fn synchformer_matches_manifest() {
    let m = manifest("synchformer");
    let cfg = synchformer::Config::synchformer();
    assert_eq!(config_value::<synchformer::Config>(&m), cfg, "named config vs manifest config");
    // MotionFormer keeps a 2-D `patch_embed` only to count patches (its forward uses `patch_embed_3d`): the
    // one part of the state dict MMAudio loads but never computes with.
    let unused = ["vfeat_extractor.patch_embed.proj."];
    let report = check_manifest(&m, &unused, |vb| Ok(synchformer::Synchformer::new(vb, &cfg).map(|_| ())?)).unwrap();
    assert!(report.is_exact(), "{report:#?}");
    assert_eq!(m.tensors.keys().filter(|k| k.starts_with(unused[0])).count(), 2);
    eprintln!("manifest synchformer: {} tensors, {} requested exactly, 2 unused by the reference", m.tensors.len(),
              m.tensors.len() - 2);
}

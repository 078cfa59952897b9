//! Loading official-format `.pth` checkpoints (torch.save output, as the released files are written):
//! the pickle reader finds nested state dicts (`{'generator': ...}`), drops the buffers the network
//! recomputes, the networks built from `.pth` or from the converted safetensors reproduce the reference.

mod common;

use candle_core::{DType, Device};
use common::{assert_close, fixtures_unchecked, Fixture};
use foley_models::weights::{convert_pth_to_safetensors, load_pth, var_builder, RECOMPUTED_KEYS};

/// The module's fixtures that carry a torch.save'd checkpoint (`meta.checkpoint.file`), as a walk that fails the
/// test when there is none or one compares nothing (`foley_parity::Checked`).
fn with_checkpoint(module: &str) -> foley_parity::Checked<(Fixture, std::path::PathBuf)> {
    let items = fixtures_unchecked(module)
        .into_iter()
        .filter_map(|f| {
            let file = f.meta["checkpoint"]["file"].as_str()?.to_string();
            let p = f.dir.join(file);
            Some((f.name(), (f, p)))
        })
        .collect();
    foley_parity::Checked::of(&format!("{module} checkpoints"), items).unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh directory under the system temp dir for this test process.
fn scratch_dir(what: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("foley-weights-test-{}-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check_same_tensors(f: &Fixture, pth: &std::path::Path) {
    let loaded = load_pth(pth, &Device::Cpu).unwrap();
    let mut a: Vec<_> = loaded.keys().cloned().collect();
    let mut b: Vec<_> = f.weights.keys().cloned().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "{}: keys of checkpoint.pth vs weights", f.dir.display());
    for k in RECOMPUTED_KEYS {
        assert!(!loaded.contains_key(k));
    }
    for (k, v) in &loaded {
        assert_close(&format!("pth {k}"), v, &f.weights[k], 0.0);
    }
}

#[test]
fn mmaudio_from_pth_and_converted_safetensors() {
    use foley_models::mmaudio::{Config, MMAudio};
    for (f, pth) in with_checkpoint("mmaudio") {
        check_same_tensors(&f, &pth);
        let dir = scratch_dir("mmaudio");
        let st = dir.join("mmaudio.safetensors");
        let n = convert_pth_to_safetensors(&pth, &st).unwrap();
        assert_eq!(n, f.weights.len());
        let cfg: Config = f.config();
        for path in [pth.clone(), st] {
            let vb = var_builder(&path, DType::F32, &Device::Cpu).unwrap();
            let net = MMAudio::new(vb, &cfg).unwrap();
            let flow = net
                .forward(
                    f.input("latent"),
                    f.input("clip_f"),
                    f.input("sync_f"),
                    f.input("text_f"),
                    f.input("t"),
                )
                .unwrap();
            assert_close(
                &format!("{} flow", path.display()),
                &flow,
                f.output("flow"),
                f.tolerance(),
            );
        }
    }
}

#[test]
fn bigvgan_from_nested_pth_and_converted_safetensors() {
    use foley_models::mmaudio::bigvgan::{BigVGAN, Config};
    for (f, pth) in with_checkpoint("bigvgan") {
        check_same_tensors(&f, &pth);
        let dir = scratch_dir("bigvgan");
        let st = dir.join("bigvgan.safetensors");
        convert_pth_to_safetensors(&pth, &st).unwrap();
        let cfg: Config = f.config();
        for path in [pth.clone(), st] {
            let vb = var_builder(&path, DType::F32, &Device::Cpu).unwrap();
            let audio = BigVGAN::new(vb, &cfg).unwrap().forward(f.input("mel")).unwrap();
            assert_close(
                &format!("{} audio", path.display()),
                &audio,
                f.output("audio"),
                f.tolerance(),
            );
        }
    }
}

#[test]
fn missing_checkpoint_is_a_clear_error() {
    let err = var_builder("/nonexistent/x.pth", DType::F32, &Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/x.pth"), "{err}");
}

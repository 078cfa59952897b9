//! Weights people already have (issue 15), built in the test from the shipped tiny-test bundle: an MMAudio
//! checkout (`weights/`, `ext_weights/`, official files) and a ComfyUI `models/mmaudio` folder with fp16 and fp32
//! safetensors under Kijai/MMAudio_safetensors' names (same keys; see crates/foley-pipeline/src/layout.rs).
//! Each is imported, listed and generated from (`--weights-dir` in place, and from foley's store); corrupted
//! files (truncated, a NaN planted, a renamed key, a wrong shape) are refused with their sentence; finite weights
//! large enough for the vocoder to overflow fail the generation with the stage named, in the CLI (exit 1) and
//! through the server (task failed with that sentence); every network loads from f32, f16 and bf16 safetensors.

#[path = "../crates/foley-server/tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use common::media::video;
use foley_models::weights::load_pth;
use foley_pipeline::{FoleyEngine, ModelSpec};

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-test").join(name)
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    load_pth(tiny(name), &Device::Cpu).unwrap()
}

fn save(tensors: &HashMap<String, Tensor>, dtype: DType, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let t: HashMap<String, Tensor> =
        tensors.iter().map(|(k, v)| (k.clone(), v.to_dtype(dtype).unwrap().contiguous().unwrap())).collect();
    candle_core::safetensors::save(&t, path).unwrap();
}

/// The reference checkout's layout: weights/ and ext_weights/ (CLIP, which the reference takes from the HF
/// cache, beside them).
fn checkout(dir: &Path) -> PathBuf {
    let root = dir.join("MMAudio");
    for (sub, name) in [
        ("weights", "mmaudio_tiny_16k.pth"),
        ("ext_weights", "v1-16.pth"),
        ("ext_weights", "best_netG.pt"),
        ("ext_weights", "synchformer_state_dict.pth"),
        ("", "open_clip_pytorch_model.bin"),
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
        std::fs::copy(tiny(name), root.join(sub).join(name)).unwrap();
    }
    root
}

/// ComfyUI/models/mmaudio with Kijai's file names in precision `p` (the 16 kHz vocoder stays best_netG.pt, the
/// file ComfyUI-MMAudio's vocoder loader reads with `torch.load(...)['generator']`).
fn comfyui(dir: &Path, p: &str, dtype: DType) -> PathBuf {
    let root = dir.join(format!("ComfyUI-{p}"));
    let mm = root.join("models/mmaudio");
    save(&tensors("mmaudio_tiny_16k.pth"), dtype, &mm.join(format!("mmaudio_tiny_16k_{p}.safetensors")));
    save(&tensors("v1-16.pth"), dtype, &mm.join(format!("mmaudio_vae_16k_{p}.safetensors")));
    save(&tensors("synchformer_state_dict.pth"), dtype, &mm.join(format!("mmaudio_synchformer_{p}.safetensors")));
    let clip = mm.join(format!("apple_DFN5B-CLIP-ViT-H-14-384_{p}.safetensors"));
    save(&tensors("open_clip_pytorch_model.bin"), dtype, &clip);
    std::fs::copy(tiny("best_netG.pt"), mm.join("best_netG.pt")).unwrap();
    root
}

fn foley(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_foley"))
        .args(args)
        .env("FOLEY_HOME", home)
        .env_remove("FOLEY_WEIGHTS_DIR")
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run foley")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `foley generate --json` from the tiny-test bundle; returns the role → file map it reports having loaded.
fn generate(dir: &Path, home: &Path, extra: &[&str]) -> HashMap<String, PathBuf> {
    let out = dir.join(format!("out-{}.mp4", extra.len() + rand_suffix()));
    let v = video("h264_mp4");
    let mut args = vec!["generate", v.to_str().unwrap(), "--model", "tiny-test", "--seed", "3", "--steps", "2"];
    args.extend(["--json", "-o", out.to_str().unwrap()]);
    args.extend(extra);
    let o = foley(&args, home);
    assert!(o.status.success(), "generate {extra:?}: {}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(out.is_file());
    serde_json::from_value(j["weights"].clone()).unwrap()
}

fn rand_suffix() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn checkout_and_comfyui_layouts_import_list_and_generate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let layouts = [
        ("checkout", checkout(d), "mmaudio_tiny_16k.pth"),
        ("comfyui-fp16", comfyui(d, "fp16", DType::F16), "mmaudio_tiny_16k_fp16.safetensors"),
        ("comfyui-fp32", comfyui(d, "fp32", DType::F32), "mmaudio_tiny_16k_fp32.safetensors"),
    ];
    for (name, root, network) in &layouts {
        // in place
        let home = d.join(format!("home-{name}"));
        let used = generate(d, &home, &["--weights-dir", root.to_str().unwrap()]);
        assert!(used["network"].ends_with(network), "{name}: {used:?}");
        for (role, p) in &used {
            assert!(p.starts_with(root), "{name}: {role} from {} (not from the weights dir)", p.display());
        }
        // imported (linked), then listed and generated from without --weights-dir
        let o = foley(&["models", "import", root.to_str().unwrap(), "--json"], &home);
        assert!(o.status.success(), "{name}: import: {}", text(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report.as_array().unwrap().len(), 1, "{name}: only tiny-test's network is there: {report}");
        assert_eq!((&report[0]["variant"], &report[0]["complete"]), (&"tiny-test".into(), &true.into()), "{report}");
        let files = report[0]["files"].as_array().unwrap();
        assert_eq!(files.len(), 5, "{name}: every role found: {report}");
        for f in files {
            assert!(f["refused"].is_null() && f["placed"].is_string(), "{name}: {f}");
            // the official files are the published ones (tiny-test publishes sha256 sums)
            assert_eq!(f["checksum_verified"], *name == "checkout" || f["role"] == "vocoder", "{name}: {f}");
        }
        let store = home.join("weights/tiny-test");
        let o = foley(&["models", "list", "--json"], &home);
        let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let tt = list.as_array().unwrap().iter().find(|r| r["name"] == "tiny-test").unwrap();
        assert_eq!(tt["present"], true);
        for f in tt["files"].as_array().unwrap() {
            let p = PathBuf::from(f["path"].as_str().unwrap());
            assert!(p.starts_with(&store), "{name}: list shows {} for {}", p.display(), f["role"]);
        }
        let used = generate(d, &home, &[]);
        assert!(used["network"].starts_with(&store) && used["network"].ends_with(network), "{name}: {used:?}");
    }
    // --copy: the store holds real files, and the originals may go
    let home = d.join("home-copy");
    let (_, root, _) = &layouts[1];
    let o = foley(&["models", "import", root.to_str().unwrap(), "--copy", "--variant", "tiny-test", "--json"], &home);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j[0]["complete"], true);
    let placed = PathBuf::from(j[0]["files"][0]["placed"].as_str().unwrap());
    assert!(!placed.symlink_metadata().unwrap().file_type().is_symlink());
    std::fs::remove_dir_all(root).unwrap();
    generate(d, &home, &[]);
}

fn refusal(spec: &ModelSpec, role: &str, path: &Path) -> String {
    FoleyEngine::check_file(spec, role, path).expect_err("refused").to_string()
}

#[test]
fn corrupted_files_are_refused_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = ModelSpec::find("tiny-test").unwrap();
    // truncated .pth and safetensors
    let bytes = std::fs::read(tiny("v1-16.pth")).unwrap();
    let cut = d.join("v1-16.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = refusal(&spec, "vae", &cut);
    assert!(e.contains("v1-16.pth: cannot be read as a checkpoint") && e.contains("truncated or corrupt"), "{e}");
    let st = d.join("vae.safetensors");
    save(&tensors("v1-16.pth"), DType::F32, &st);
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 100]).unwrap();
    let e = refusal(&spec, "vae", &st);
    assert!(e.contains("vae.safetensors: cannot be read as a checkpoint"), "{e}");

    // a NaN planted in one weight
    let mut t = tensors("mmaudio_tiny_16k.pth");
    let key = "final_layer.conv.weight";
    let w = t[key].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut w2 = w.clone();
    w2[5] = f32::NAN;
    t.insert(key.into(), Tensor::from_vec(w2, t[key].shape(), &Device::Cpu).unwrap());
    let p = d.join("nan.safetensors");
    save(&t, DType::F32, &p);
    let e = refusal(&spec, "network", &p);
    assert!(e.contains(&format!("nan.safetensors: {key} holds non-finite values (NaN or inf)")), "{e}");
    // an f32 value that is finite but overflows the f16 it is stored in
    let mut t = tensors("mmaudio_tiny_16k.pth");
    let big = (t[key].affine(0.0, 1e6).unwrap()).to_dtype(DType::F32).unwrap();
    t.insert(key.into(), big);
    let p = d.join("overflow_fp16.safetensors");
    save(&t, DType::F16, &p);
    assert!(refusal(&spec, "network", &p).contains("holds non-finite values"));

    // a renamed key: the missing one is named (and the stray one would be next)
    let mut t = tensors("synchformer_state_dict.pth");
    let (old, new) = ("vfeat_extractor.norm.weight", "vfeat_extractor.norm.scale");
    assert!(t.contains_key(old), "{:?}", t.keys().collect::<Vec<_>>());
    let v = t.remove(old).unwrap();
    t.insert(new.into(), v);
    let p = d.join("renamed.safetensors");
    save(&t, DType::F32, &p);
    let e = refusal(&spec, "synchformer", &p);
    assert!(e.contains(&format!("renamed.safetensors: key {old} is missing")), "{e}");
    // only an extra key: unexpected
    let mut t = tensors("synchformer_state_dict.pth");
    t.insert("head.extra.weight".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
    let p = d.join("extra.safetensors");
    save(&t, DType::F32, &p);
    let e = refusal(&spec, "synchformer", &p);
    assert!(e.contains("extra.safetensors: unexpected keys head.extra.weight"), "{e}");

    // a wrong shape
    let mut t = tensors("v1-16.pth");
    t.insert("data_mean".into(), Tensor::zeros((1, 81, 1), DType::F32, &Device::Cpu).unwrap());
    let p = d.join("shape.safetensors");
    save(&t, DType::F32, &p);
    let e = refusal(&spec, "vae", &p);
    assert!(e.contains("shape.safetensors: data_mean has shape [1, 81, 1], expected [1, 80, 1]"), "{e}");

    // through the CLI: generate (exit 1, the sentence) and import (refused, nothing placed, exit 1)
    let root = checkout(&d.join("cli"));
    let nan = root.join("weights/mmaudio_tiny_16k.pth");
    std::fs::remove_file(&nan).unwrap();
    std::fs::copy(d.join("nan.safetensors"), root.join("weights/mmaudio_tiny_16k.safetensors")).unwrap();
    let home = d.join("home");
    let v = video("h264_mp4");
    let out = d.join("o.mp4");
    let o = foley(
        &["generate", v.to_str().unwrap(), "--model", "tiny-test", "--weights-dir", root.to_str().unwrap(), "-o",
          out.to_str().unwrap()],
        &home,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the network checkpoint is refused") && err.contains("holds non-finite values"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let o = foley(&["models", "import", root.to_str().unwrap()], &home);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("REFUSED") && text(&o).contains("holds non-finite values"), "{}", text(&o));
    assert!(!home.join("weights/tiny-test/mmaudio_tiny_16k.safetensors").exists());
}

/// The official files with the vocoder's weight-norm gains (and unnormalised weights) scaled by 1e12: every
/// value is finite, but after a few layers the activations overflow f32 and the snake activations turn ±inf into
/// NaN.
fn overflowing_vocoder(dir: &Path) -> PathBuf {
    let root = checkout(dir);
    std::fs::remove_file(root.join("ext_weights/best_netG.pt")).unwrap();
    let t: HashMap<String, Tensor> = tensors("best_netG.pt")
        .into_iter()
        .map(|(k, v)| {
            let scale = k.ends_with("original0") || k.ends_with("weight_g") || k.ends_with("conv_post.weight");
            (k, if scale { v.affine(1e12, 0.0).unwrap() } else { v })
        })
        .collect();
    assert!(t.values().all(|v| foley_models::weights::checked::all_finite(v).unwrap()));
    save(&t, DType::F32, &root.join("ext_weights/best_netG.safetensors"));
    root
}

#[test]
fn vocoder_overflow_fails_the_generation_naming_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = overflowing_vocoder(d);
    let home = d.join("home");
    let v = video("h264_mp4");
    let out = d.join("o.mp4");
    let o = foley(
        &["generate", v.to_str().unwrap(), "--model", "tiny-test", "--weights-dir", root.to_str().unwrap(),
          "--steps", "2", "-o", out.to_str().unwrap()],
        &home,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let sentence = "the vocoder stage produced non-finite values (NaN or inf) in its audio";
    assert!(err.contains(sentence), "{err}");
    assert!(!err.contains("ffmpeg") && !out.exists(), "{err}");

    // the server: the task fails with that sentence
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(d.join("server.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_foley"))
        .args(["serve", "--model", "tiny-test", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(d.join("data"))
        .args(["--weights-dir", root.to_str().unwrap(), "--api-keys", common::KEY, "--signing-secret", common::SECRET])
        .env("FOLEY_HOME", &home)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start foley serve");
    common::wait_ready(&format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    let res = std::panic::catch_unwind(|| {
        common::py(&base, "failed.py", &[v.to_str().unwrap(), sentence], &[], Duration::from_secs(300))
    });
    let _ = child.kill();
    let _ = child.wait();
    let stdout = res.unwrap_or_else(|e| {
        let log = std::fs::read_to_string(d.join("server.log")).unwrap_or_default();
        panic!("{e:?}\nserver log:\n{log}")
    });
    assert!(stdout.contains(sentence), "{stdout}");
}

#[test]
fn every_network_loads_from_f32_f16_and_bf16_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec::find("tiny-test").unwrap();
    for (role, file) in [
        ("network", "mmaudio_tiny_16k.pth"),
        ("vae", "v1-16.pth"),
        ("vocoder", "best_netG.pt"),
        ("synchformer", "synchformer_state_dict.pth"),
        ("clip", "open_clip_pytorch_model.bin"),
    ] {
        FoleyEngine::check_file(&spec, role, &tiny(file)).unwrap_or_else(|e| panic!("{role} .pth: {e}"));
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let p = dir.path().join(format!("{role}_{}.safetensors", dtype.as_str()));
            save(&tensors(file), dtype, &p);
            FoleyEngine::check_file(&spec, role, &p).unwrap_or_else(|e| panic!("{role} {dtype:?}: {e}"));
        }
    }
}

//! The harness itself: a planted NaN, a missing file, a broken `meta.json`, an empty set, too few fixtures and a
//! fixture that compares nothing each fail with a sentence; the committed table matches the committed tree.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use foley_parity::{compare, load_module, Checked, Error, RawFixture};

fn tensor(v: &[f32]) -> Tensor {
    Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()
}

/// Writes a fixture folder `root/name` of `module` whose output `y` holds `y`.
fn write_fixture(root: &Path, name: &str, module: &str, y: &[f32]) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let one = |k: &str, v: &[f32]| HashMap::from([(k.to_string(), tensor(v))]);
    candle_core::safetensors::save(&one("w", &[1.0]), dir.join("weights.safetensors")).unwrap();
    candle_core::safetensors::save(&one("x", &[2.0]), dir.join("inputs.safetensors")).unwrap();
    candle_core::safetensors::save(&one("y", y), dir.join("outputs.safetensors")).unwrap();
    std::fs::write(dir.join("meta.json"), format!(r#"{{"module": "{module}", "tolerance": "module"}}"#)).unwrap();
}

fn panic_text(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("should have failed");
    err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

#[test]
fn a_planted_nan_in_a_reference_output_fails() {
    let root = tempfile::tempdir().unwrap();
    write_fixture(root.path(), "a", "toy", &[0.0, 1.0, f32::NAN, 3.0]);
    let fx = load_module(root.path(), "toy").unwrap();
    let err = compare("toy y", &tensor(&[0.0, 1.0, 2.0, 3.0]), &fx[0].outputs["y"]).unwrap_err();
    assert_eq!(err.to_string(), "toy y: 1 non-finite values in the reference (of 4), the first NaN at index [2]");
}

#[test]
fn a_missing_file_fails_and_names_it() {
    let root = tempfile::tempdir().unwrap();
    write_fixture(root.path(), "a", "toy", &[1.0]);
    std::fs::remove_file(root.path().join("a/weights.safetensors")).unwrap();
    let err = load_module(root.path(), "toy").unwrap_err();
    assert!(matches!(err, Error::MissingFile { file: "weights.safetensors", .. }), "{err}");
    assert!(err.to_string().contains("has no weights.safetensors"), "{err}");
}

#[test]
fn a_broken_or_missing_meta_json_fails_whatever_the_module() {
    let root = tempfile::tempdir().unwrap();
    write_fixture(root.path(), "a", "toy", &[1.0]);
    write_fixture(root.path(), "b", "other", &[1.0]);
    std::fs::write(root.path().join("b/meta.json"), "{\"module\": ").unwrap();
    let err = load_module(root.path(), "toy").unwrap_err();
    assert!(matches!(err, Error::BadMeta { .. }), "{err}");
    assert!(err.to_string().contains("b/meta.json is not valid JSON"), "{err}");
    std::fs::remove_file(root.path().join("b/meta.json")).unwrap();
    let err = load_module(root.path(), "toy").unwrap_err();
    assert!(matches!(err, Error::UnreadableMeta { .. }), "{err}");
    std::fs::write(root.path().join("b/meta.json"), "{\"seed\": 1}").unwrap();
    assert!(matches!(load_module(root.path(), "toy").unwrap_err(), Error::NoModule { .. }));
}

#[test]
fn an_empty_or_missing_set_fails() {
    let root = tempfile::tempdir().unwrap();
    let err = load_module(root.path(), "toy").unwrap_err();
    assert_eq!(err.to_string(), format!("no `toy` fixture under {}", root.path().display()));
    write_fixture(root.path(), "a", "other", &[1.0]);
    assert!(matches!(load_module(root.path(), "toy").unwrap_err(), Error::NoFixtures { .. }));
    let gone = root.path().join("nowhere");
    assert!(matches!(load_module(&gone, "toy").unwrap_err(), Error::UnreadableRoot { .. }));
}

#[test]
fn fewer_fixtures_than_committed_fail() {
    let root = tempfile::tempdir().unwrap();
    write_fixture(root.path(), "a", "mmaudio", &[1.0]);
    let one = load_module(root.path(), "mmaudio").unwrap();
    // the same single fixture presented as the committed tree's `mmaudio` set, of which 3 are committed
    let err = Checked::new(&foley_parity::committed_root(), "mmaudio", one, |f| f).err().expect("too few");
    assert!(err.to_string().contains("1 `mmaudio` fixtures under"), "{err}");
    assert!(err.to_string().contains("fewer than the 3 the repository commits"), "{err}");
}

#[test]
fn a_fixture_that_compares_nothing_fails() {
    let root = tempfile::tempdir().unwrap();
    write_fixture(root.path(), "a", "toy", &[1.0]);
    write_fixture(root.path(), "b", "toy", &[1.0]);
    let path = root.path().to_path_buf();
    let text = panic_text(move || {
        let walk = Checked::new(&path, "toy", load_module(&path, "toy").unwrap(), |f| f).unwrap();
        for f in walk {
            if f.name() == "a" {
                compare("toy y", &tensor(&[1.0]), &f.outputs["y"]).unwrap();
            }
        }
    });
    assert_eq!(text, "fixture b of `toy`: no output was compared with the reference");
    // and a walk that compares in every fixture passes, counting them
    let path = root.path().to_path_buf();
    let before = foley_parity::comparisons();
    for f in Checked::new(&path, "toy", load_module(&path, "toy").unwrap(), |f: RawFixture| f).unwrap() {
        compare("toy y", &tensor(&[1.0]), &f.outputs["y"]).unwrap();
    }
    assert_eq!(foley_parity::comparisons() - before, 2);
}

#[test]
fn the_committed_table_matches_the_committed_tree() {
    let root = foley_parity::committed_root();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for entry in std::fs::read_dir(&root).expect("the committed fixture tree") {
        let dir = entry.unwrap().path();
        if dir.is_dir() {
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
            *counts.entry(meta["module"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let table: HashMap<String, usize> = foley_parity::COMMITTED.iter().map(|(m, n)| (m.to_string(), *n)).collect();
    assert_eq!(counts, table, "foley_parity::COMMITTED must list the committed fixtures of each module");
    assert!(foley_parity::is_committed_root(&root.join("../parity")));
}

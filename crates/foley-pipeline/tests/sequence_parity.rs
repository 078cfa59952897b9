//! Durations other than 8 s against the reference (fixture `tests/fixtures/parity/sequence_lengths/`, written by
//! `scripts/gen_parity.py --only tinytest`): the sequence lengths `SequenceConfig` gives at 3–20 s for both sample
//! rates, and, at 5.37 s, the RoPE tables (positions) and the flow of the tiny-test network as the reference computes
//! them after `update_seq_lengths`. The engine derives every length from the clip's duration this way.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use foley_models::mmaudio::MMAudio;
use foley_pipeline::ModelSpec;

fn fixture_dir() -> PathBuf {
    std::env::var_os("FOLEY_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity"))
        .join("sequence_lengths")
}

fn meta() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir().join("meta.json")).expect("sequence_lengths fixture");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn lengths_match_the_reference_at_every_duration() {
    let m = meta();
    let rows = m["lengths"].as_array().unwrap();
    assert!(rows.len() >= 20);
    for r in rows {
        let d = r["duration"].as_f64().unwrap();
        let spec = ModelSpec::find(if r["mode"] == "16k" { "small_16k" } else { "small_44k" }).unwrap();
        let c = spec.sequence(d);
        let got = (c.latent_seq_len(), c.clip_seq_len(), c.sync_seq_len(), c.num_audio_frames());
        let want = (
            r["latent"].as_u64().unwrap() as usize,
            r["clip"].as_u64().unwrap() as usize,
            r["sync"].as_u64().unwrap() as usize,
            r["audio_frames"].as_u64().unwrap() as usize,
        );
        assert_eq!(got, want, "{} at {d} s", r["mode"]);
    }
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn positions_and_flow_match_the_reference_at_5_37_s() {
    let m = meta();
    let dir = fixture_dir();
    let dev = Device::Cpu;
    let inputs = candle_core::safetensors::load(dir.join("inputs.safetensors"), &dev).unwrap();
    let outputs = candle_core::safetensors::load(dir.join("outputs.safetensors"), &dev).unwrap();
    let spec = ModelSpec::find("tiny-test").unwrap();
    let c = spec.sequence(m["duration"].as_f64().unwrap());
    assert_eq!(c.latent_seq_len() as u64, m["seq_lens"]["latent"].as_u64().unwrap());
    assert_eq!(c.clip_seq_len() as u64, m["seq_lens"]["clip"].as_u64().unwrap());
    assert_eq!(c.sync_seq_len() as u64, m["seq_lens"]["sync"].as_u64().unwrap());

    let path = foley_pipeline::fetch::resolve(&spec).unwrap().into_iter().find(|(r, _)| r == "network").unwrap().1;
    let vb = foley_models::weights::var_builder(path, DType::F32, &dev).unwrap();
    let net = MMAudio::new(vb, &spec.configs().unwrap().network).unwrap();
    let (lrot, crot) = net.rotations(c.latent_seq_len(), c.clip_seq_len(), &dev).unwrap();
    // reference tables: (1, N, D/2, 2, 2) = [[cos, -sin], [sin, cos]]
    let part = |t: &Tensor, i: usize| t.narrow(3, i, 1).unwrap().narrow(4, 0, 1).unwrap().flatten_all().unwrap();
    for (name, ours) in [("latent_rot", &lrot), ("clip_rot", &crot)] {
        let want = &outputs[name];
        assert!(max_abs(&ours.cos.flatten_all().unwrap(), &part(want, 0)) < 1e-5, "{name} cos");
        assert!(max_abs(&ours.sin.flatten_all().unwrap(), &part(want, 1)) < 1e-5, "{name} sin");
    }
    let cond = net
        .preprocess_conditions(&inputs["clip_f"], &inputs["sync_f"], &inputs["text_f"], c.latent_seq_len())
        .unwrap();
    let flow = net.predict_flow(&inputs["latent"], &inputs["t"], &cond).unwrap();
    let err = max_abs(&flow, &outputs["flow"]);
    assert!(err < 1e-4, "flow max abs error {err}");
}

//! Durations other than 8 s against the reference (fixture `tests/fixtures/parity/sequence_lengths/`, written by
//! `scripts/gen_parity.py --only tinytest`): the sequence lengths `SequenceConfig` gives at 3–20 s for both sample
//! rates, and, at 5.37 s, the RoPE tables (positions) and the flow of the tiny-test network as the reference computes
//! them after `update_seq_lengths`. The engine derives every length from the clip's duration this way.

use candle_core::{DType, Device, Tensor};
use foley_models::mmaudio::MMAudio;
use foley_parity::{Checked, RawFixture};
use foley_pipeline::ModelSpec;

/// The `sequence` fixtures under the parity root (`FOLEY_PARITY_DIR` or the committed tree), as a walk that fails
/// on a broken or missing fixture and on one that compares nothing (`foley_parity`).
fn fixtures() -> Checked<RawFixture> {
    let root = foley_parity::parity_root();
    foley_parity::load_module(&root, "sequence")
        .and_then(|raw| Checked::new(&root, "sequence", raw, |f| f))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// max |got - want|; fails on a shape mismatch and on any non-finite value in either.
fn max_abs(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    foley_parity::compare(what, got, want).unwrap_or_else(|e| panic!("{e}")).max_abs
}

#[test]
fn lengths_match_the_reference_at_every_duration() {
    for f in fixtures() {
        let rows = f.meta["lengths"].as_array().expect("lengths");
        assert!(rows.len() >= 20, "{}: {} durations", f.name(), rows.len());
        let (mut got_all, mut want_all) = (Vec::new(), Vec::new());
        for r in rows {
            let d = r["duration"].as_f64().unwrap();
            let spec = ModelSpec::find(if r["mode"] == "16k" { "small_16k" } else { "small_44k" }).unwrap();
            let c = spec.sequence(d);
            let got = [c.latent_seq_len(), c.clip_seq_len(), c.sync_seq_len(), c.num_audio_frames()];
            let want = ["latent", "clip", "sync", "audio_frames"].map(|k| r[k].as_u64().unwrap() as usize);
            assert_eq!(got, want, "{} at {d} s", r["mode"]);
            got_all.extend(got.map(|v| v as f64));
            want_all.extend(want.map(|v| v as f64));
        }
        // once more through the harness (exact), so that the walk counts it
        let n = got_all.len();
        let (got, want) = (Tensor::from_vec(got_all, n, &Device::Cpu).unwrap(), Tensor::from_vec(want_all, n, &Device::Cpu).unwrap());
        assert_eq!(max_abs("sequence lengths", &got, &want), 0.0);
    }
}

#[test]
fn positions_and_flow_match_the_reference_at_5_37_s() {
    for f in fixtures() {
        let (m, inputs, outputs) = (&f.meta, &f.inputs, &f.outputs);
        let dev = Device::Cpu;
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
            let cos = max_abs(&format!("{name} cos"), &ours.cos.flatten_all().unwrap(), &part(want, 0));
            assert!(cos < 1e-5, "{name} cos: max abs error {cos}");
            let sin = max_abs(&format!("{name} sin"), &ours.sin.flatten_all().unwrap(), &part(want, 1));
            assert!(sin < 1e-5, "{name} sin: max abs error {sin}");
        }
        let cond = net
            .preprocess_conditions(&inputs["clip_f"], &inputs["sync_f"], &inputs["text_f"], c.latent_seq_len())
            .unwrap();
        let flow = net.predict_flow(&inputs["latent"], &inputs["t"], &cond).unwrap();
        let err = max_abs("flow", &flow, &outputs["flow"]);
        eprintln!("parity [cpu f32] sequence flow at {} s: max_abs_err = {err:.3e} (tol 1.0e-4)", m["duration"]);
        assert!(err < 1e-4, "flow max abs error {err}");
    }
}

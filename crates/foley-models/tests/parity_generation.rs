//! Parity of the generation side against the PyTorch reference (fixtures from `scripts/gen_parity.py`):
//! MM-DiT, sampler, VAE decoder, BigVGAN v1/v2, latent/mel normalisation and the latent → waveform chain.
//! Every fixture directory whose meta.json names a module below is checked; shapes and configs come from
//! meta.json, so other seeds and tiny shapes (`--seed`, `--config tiny2`) work unchanged.

mod common;

use candle_core::Device;
use common::{assert_close, fixtures, Fixture};
use foley_models::mmaudio::{Config as DitConfig, MMAudio};
use foley_models::sampler::FlowMatching;

/// The module's fixtures, as a walk that fails the test on nothing compared (see `common::fixtures`).
fn found(module: &str) -> foley_parity::Checked<Fixture> {
    fixtures(module)
}

fn name(f: &Fixture) -> String {
    f.dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn seq_len(f: &Fixture, which: &str) -> usize {
    f.meta["seq_lens"][which]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: no seq_lens.{which}", name(f))) as usize
}

#[test]
fn mmaudio_forward_matches_reference() {
    for f in found("mmaudio") {
        let cfg: DitConfig = f.config();
        let net = common::build(|| MMAudio::new(f.vb(), &cfg)).unwrap();
        let (tol, n) = (f.tolerance(), name(&f));
        let latent = f.input("latent");
        let lat_len = latent.dim(1).unwrap();
        let cond = net
            .preprocess_conditions(f.input("clip_f"), f.input("sync_f"), f.input("text_f"), lat_len)
            .unwrap();
        f.check(&format!("{n} cond.clip_f"), &cond.clip_f, "cond_clip_f", tol);
        f.check(&format!("{n} cond.sync_f"), &cond.sync_f, "cond_sync_f", tol);
        f.check(&format!("{n} cond.text_f"), &cond.text_f, "cond_text_f", tol);
        f.check(&format!("{n} cond.clip_f_c"), &cond.clip_f_c, "cond_clip_f_c", tol);
        f.check(&format!("{n} cond.text_f_c"), &cond.text_f_c, "cond_text_f_c", tol);

        let (lrot, crot) = net
            .rotations(lat_len, f.input("clip_f").dim(1).unwrap(), &common::device())
            .unwrap();
        // reference tables (1, N, D/2, 2, 2) = [[cos, -sin], [sin, cos]]: entry [i][0] is cos (i = 0) or sin (i = 1)
        let part = |t: &candle_core::Tensor, i: usize| t.narrow(3, i, 1).unwrap().narrow(4, 0, 1).unwrap().flatten_all().unwrap();
        for (table, ours) in [("latent_rot", &lrot), ("clip_rot", &crot)] {
            let want = f.output(table);
            let cos = ours.cos.flatten_all().unwrap();
            assert_close(&format!("{n} {table} cos"), &cos, &part(want, 0), tol);
            let sin = ours.sin.flatten_all().unwrap();
            assert_close(&format!("{n} {table} sin"), &sin, &part(want, 1), tol);
        }

        // t in f32 whatever the network's dtype, as the sampler and the reference pass it
        let t = &f.input_cpu("t").to_device(&common::device()).unwrap();
        let flow = net.predict_flow(latent, t, &cond).unwrap();
        f.check(&format!("{n} flow"), &flow, "flow", tol);
        let full = net
            .forward(latent, f.input("clip_f"), f.input("sync_f"), f.input("text_f"), t)
            .unwrap();
        f.check(&format!("{n} forward"), &full, "flow", tol);

        let bs = latent.dim(0).unwrap();
        let (nc, ns) = (seq_len(&f, "clip"), seq_len(&f, "sync"));
        let empty = net.empty_conditions(bs, lat_len, nc, ns, None).unwrap();
        let flow = net.predict_flow(latent, t, &empty).unwrap();
        f.check(&format!("{n} flow(empty)"), &flow, "flow_empty", tol);
        let neg = net
            .empty_conditions(bs, lat_len, nc, ns, Some(f.input("negative_text_f")))
            .unwrap();
        let flow = net.predict_flow(latent, t, &neg).unwrap();
        f.check(&format!("{n} flow(negative)"), &flow, "flow_negative", tol);
    }
}

#[test]
fn sampler_matches_reference() {
    for f in found("sampler") {
        let cfg: DitConfig = f.config();
        let net = common::build(|| MMAudio::new(f.vb(), &cfg)).unwrap();
        let n = name(&f);
        let steps = f.meta["num_steps"].as_u64().unwrap() as usize;
        let cfg_strength = f.meta["cfg_strength"].as_f64().unwrap();
        let x0 = f.input("x0");
        let (bs, lat_len) = (x0.dim(0).unwrap(), x0.dim(1).unwrap());
        let (clip_f, sync_f) = (f.input("clip_f"), f.input("sync_f"));
        let cond = net
            .preprocess_conditions(clip_f, sync_f, f.input("text_f"), lat_len)
            .unwrap();
        let neg = f.inputs.get("negative_text_f");
        let uncond = net
            .empty_conditions(bs, lat_len, clip_f.dim(1).unwrap(), sync_f.dim(1).unwrap(), neg)
            .unwrap();
        let mut seen = Vec::new();
        let x1 = FlowMatching::new(steps)
            .to_data(
                &net,
                x0,
                &cond,
                &uncond,
                cfg_strength,
                &mut |s| seen.push(s.step),
                &|| false,
            )
            .unwrap();
        assert_eq!(seen, (1..=steps).collect::<Vec<_>>(), "{n}: one progress call per step");
        f.check(&format!("{n} x1"), &x1, "x1", f.tolerance());
        // the reference's way: cond and uncond as two forwards
        let two = FlowMatching {
            batch_cfg: false,
            ..FlowMatching::new(steps)
        }
        .to_data(&net, x0, &cond, &uncond, cfg_strength, &mut |_| {}, &|| false)
        .unwrap();
        f.check(&format!("{n} x1 (two forwards)"), &two, "x1", f.tolerance());
        let audio_latent = net.unnormalize(&x1).unwrap();
        f.check(&format!("{n} unnormalized"), &audio_latent, "unnormalized", f.tolerance());

        // cancellation is checked before every step
        let calls = std::cell::Cell::new(0);
        let err = FlowMatching::new(steps)
            .to_data(&net, x0, &cond, &uncond, cfg_strength, &mut |_| {}, &|| {
                calls.set(calls.get() + 1);
                calls.get() > 1
            })
            .unwrap_err();
        assert!(matches!(err, foley_models::Error::Cancelled), "{n}: {err}");
    }
}

#[test]
fn latent_normalization_matches_reference() {
    for f in found("norm") {
        let n = name(&f);
        let (mean, std) = (&f.weight("latent_mean"), &f.weight("latent_std"));
        let x = f.input("latent");
        let latent = foley_models::mmaudio::mel::LatentStats::new(mean.clone(), std.clone()).unwrap();
        f.check(&format!("{n} latent normalize"), &latent.normalize(x).unwrap(), "normalized", f.tolerance());
        f.check(&format!("{n} latent unnormalize"), &latent.unnormalize(x).unwrap(), "unnormalized", f.tolerance());
        for mode in ["16k", "44k"] {
            let stats = foley_models::mmaudio::mel::MelStats::new(
                f.weight(&format!("vae_{mode}.data_mean")),
                f.weight(&format!("vae_{mode}.data_std")),
            )
            .unwrap();
            let m = f.input(&format!("mel_{mode}"));
            let want = f.output(&format!("mel_{mode}_normalized"));
            assert_close(
                &format!("{n} mel {mode} normalize"),
                &stats.normalize(m).unwrap(),
                want,
                f.tolerance(),
            );
            let want = f.output(&format!("mel_{mode}_unnormalized"));
            assert_close(
                &format!("{n} mel {mode} unnormalize"),
                &stats.unnormalize(m).unwrap(),
                want,
                f.tolerance(),
            );
        }
    }
}

#[test]
fn vae_decoder_matches_reference() {
    use foley_models::mmaudio::vae::{Config, VaeDecoder};
    for f in found("vae_decoder") {
        let n = name(&f);
        let cfg: Config = f.config();
        let vae = common::build(|| VaeDecoder::new(f.vb(), &cfg)).unwrap();
        let z = f.input("z");
        let got = vae.decode_normalized(z).unwrap();
        f.check(&format!("{n} decoder (normalised mel)"), &got, "mel_normalized", f.tolerance());
        f.check(&format!("{n} decode (mel)"), &vae.decode(z).unwrap(), "mel", f.tolerance());
        if let Some(mel_in) = f.inputs.get("mel_in") {
            let enc = common::build(|| foley_models::mmaudio::vae::VaeEncoder::new(f.vb(), &cfg)).unwrap();
            let (mean, logvar) = enc.encode(mel_in).unwrap();
            f.check(&format!("{n} encode mean"), &mean, "enc_mean", f.tolerance());
            f.check(&format!("{n} encode logvar"), &logvar, "enc_logvar", f.tolerance());
        }
    }
}

#[test]
fn bigvgan_matches_reference() {
    use foley_models::mmaudio::bigvgan::{BigVGAN, Config};
    for f in found("bigvgan") {
        let n = format!(
            "{} ({} keys)",
            name(&f),
            f.meta["weight_norm_keys"].as_str().unwrap_or("?")
        );
        let cfg: Config = f.config();
        let voc = common::build(|| BigVGAN::new(f.vb(), &cfg)).unwrap();
        let got = voc.forward(f.input("mel")).unwrap();
        f.check(&format!("{n} audio"), &got, "audio", f.tolerance());
    }
}

#[test]
fn latent_to_waveform_chain_matches_reference() {
    use foley_models::mmaudio::{bigvgan, mel::LatentStats, vae};
    for f in found("chain") {
        let n = name(&f);
        let vae_cfg: vae::Config = serde_json::from_value(f.meta["config"]["vae"].clone()).unwrap();
        let voc_cfg: bigvgan::Config = serde_json::from_value(f.meta["config"]["vocoder"].clone()).unwrap();
        let vb = f.vb();
        let stats = LatentStats::new(f.weight("latent_mean"), f.weight("latent_std")).unwrap();
        let decoder = common::build(|| vae::VaeDecoder::new(vb.pp("vae"), &vae_cfg)).unwrap();
        let vocoder = common::build(|| bigvgan::BigVGAN::new(vb.pp("vocoder"), &voc_cfg)).unwrap();
        let z = stats.unnormalize(f.input("x1")).unwrap();
        let mel = decoder.decode_latents(&z).unwrap();
        f.check(&format!("{n} mel"), &mel, "mel", f.tolerance());
        let audio = vocoder.forward(&mel).unwrap();
        f.check(&format!("{n} audio"), &audio, "audio", f.tolerance());
    }
}

#[test]
fn generate_matches_reference() {
    use foley_models::mmaudio::generate::{Features, Generator};
    use foley_models::mmaudio::{bigvgan, vae};
    for f in found("generate") {
        let n = name(&f);
        let c = &f.meta["config"];
        let net_cfg: DitConfig = serde_json::from_value(c["net"].clone()).unwrap();
        let vae_cfg: vae::Config = serde_json::from_value(c["vae"].clone()).unwrap();
        let voc_cfg: bigvgan::Config = serde_json::from_value(c["vocoder"].clone()).unwrap();
        let vb = f.vb();
        let net = common::build(|| MMAudio::new(vb.pp("net"), &net_cfg)).unwrap();
        let decoder = common::build(|| vae::VaeDecoder::new(vb.pp("vae"), &vae_cfg)).unwrap();
        let vocoder = common::build(|| bigvgan::BigVGAN::new(vb.pp("vocoder"), &voc_cfg)).unwrap();
        let g = Generator {
            net: &net,
            vae: &decoder,
            vocoder: &vocoder,
            fm: FlowMatching::new(f.meta["num_steps"].as_u64().unwrap() as usize),
            cfg_strength: f.meta["cfg_strength"].as_f64().unwrap(),
        };
        let (clip_len, sync_len) = (net_cfg.clip_seq_len, net_cfg.sync_seq_len);
        let full = Features {
            clip: Some(f.input("clip_f")),
            sync: Some(f.input("sync_f")),
            text: Some(f.input("text_f")),
            negative_text: Some(f.input("negative_text_f")),
        };
        let text_only = Features {
            text: Some(f.input("text_f")),
            ..Default::default()
        };
        for (case, feats) in [("full", full), ("text_only", text_only)] {
            let out = g
                .generate(&feats, f.input("x0"), clip_len, sync_len, &mut |_| {}, &|| false)
                .unwrap();
            let tol = f.tolerance();
            f.check(
                &format!("{n} {case} latents"),
                &out.latents,
                &format!("{case}_latents"),
                tol,
            );
            f.check(
                &format!("{n} {case} mel"),
                &out.mel,
                &format!("{case}_mel"),
                tol,
            );
            f.check(
                &format!("{n} {case} audio"),
                &out.audio,
                &format!("{case}_audio"),
                tol,
            );
        }
    }
}

/// Not a parity check (the reference fixtures are f32): the half-precision paths GPUs use (RMSNorm eps by
/// dtype, f32 LayerNorm/RoPE islands, unfused anti-aliased activation) run and stay close to the f32 result.
#[test]
fn half_precision_paths_run_and_stay_close() {
    use candle_core::DType;
    use foley_models::mmaudio::bigvgan::{BigVGAN, Config};
    for f in common::fixtures_unchecked("mmaudio").into_iter().take(1) {
        let cfg: DitConfig = f.config();
        let vb = f.vb().set_dtype(DType::BF16);
        let net = common::build(|| MMAudio::new(vb, &cfg)).unwrap();
        let bf = |t: &candle_core::Tensor| t.to_dtype(DType::BF16).unwrap();
        let flow = net
            .forward(
                &bf(f.input("latent")),
                &bf(f.input("clip_f")),
                &bf(f.input("sync_f")),
                &bf(f.input("text_f")),
                &bf(f.input("t")),
            )
            .unwrap();
        let want = f.output("flow");
        let scale = common::max_abs("flow", want);
        let err = common::max_abs_diff(&flow, want);
        eprintln!("bf16 {}: max_abs_err {err:.3e} (output scale {scale:.2})", name(&f));
        assert!(err < 0.1 * scale, "bf16 flow too far from f32: {err}");
    }
    for f in common::fixtures_unchecked("bigvgan").into_iter().take(1) {
        let cfg: Config = f.config();
        let voc = BigVGAN::new(f.vb().set_dtype(DType::BF16), &cfg).unwrap();
        let audio = voc.forward(&f.input("mel").to_dtype(DType::BF16).unwrap()).unwrap();
        let err = common::max_abs_diff(&audio, f.output("audio"));
        eprintln!("bf16 {}: max_abs_err {err:.3e}", name(&f));
        assert!(err < 0.1, "bf16 audio too far from f32: {err}");
    }
}

/// A toy 16 kHz chain (the shapes of `models/tiny-test.toml`) generates a waveform of the reference's length for a
/// 3 s clip (random weights: noise, but every sequence length is the real one).
#[test]
fn tiny_test_chain_generates_the_right_length() {
    use candle_core::{DType, Tensor};
    use candle_nn::{VarBuilder, VarMap};
    use foley_models::mmaudio::generate::{Features, Generator};
    use foley_models::mmaudio::{bigvgan, sequence::SequenceConfig, vae};
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let cfg = DitConfig {
        latent_dim: 8,
        clip_dim: 16,
        sync_dim: 32,
        text_dim: 16,
        hidden_dim: 16,
        num_heads: 2,
        depth: 2,
        fused_depth: 1,
        ..DitConfig::small_16k()
    };
    let vae_cfg = vae::Config { embed_dim: 8, hidden_dim: 8, ..vae::Config::vae_16k() };
    let voc_cfg = bigvgan::Config {
        upsample_rates: vec![8, 8, 4],
        upsample_kernel_sizes: vec![16, 16, 8],
        upsample_initial_channel: 16,
        resblock_kernel_sizes: vec![3],
        resblock_dilation_sizes: vec![vec![1, 3, 5]],
        ..bigvgan::Config::mmaudio_16k()
    };
    let net = MMAudio::new(vb.pp("net"), &cfg).unwrap();
    let dec = vae::VaeDecoder::new(vb.pp("vae"), &vae_cfg).unwrap();
    let voc = bigvgan::BigVGAN::new(vb.pp("vocoder"), &voc_cfg).unwrap();
    for v in vm.all_vars() {
        v.set(&Tensor::randn(0f32, 0.1, v.shape(), &dev).unwrap()).unwrap();
    }
    let seq = SequenceConfig::mode_16k(3.0);
    let text = Tensor::randn(0f32, 1.0, (1, 77, cfg.text_dim), &dev).unwrap();
    let x0 = Tensor::randn(0f32, 1.0, (1, seq.latent_seq_len(), cfg.latent_dim), &dev).unwrap();
    let g = Generator {
        net: &net,
        vae: &dec,
        vocoder: &voc,
        fm: FlowMatching::new(2),
        cfg_strength: 4.5,
    };
    let feats = Features {
        text: Some(&text),
        ..Default::default()
    };
    let mut steps = 0;
    let out = g
        .generate(
            &feats,
            &x0,
            seq.clip_seq_len(),
            seq.sync_seq_len(),
            &mut |_| steps += 1,
            &|| false,
        )
        .unwrap();
    assert_eq!(steps, 2);
    assert_eq!(out.mel.dims(), &[1, 80, 2 * seq.latent_seq_len()]);
    assert_eq!(out.audio.dims(), &[1, 1, seq.num_audio_frames()]);
    // every sample finite (the harness counts NaNs, which a max passes over), the peak within [-1, 1]
    let peak = common::max_abs("tiny-test audio", &out.audio);
    assert!(peak <= 1.0, "peak {peak}");
    let mel_peak = common::max_abs("tiny-test mel", &out.mel);
    assert!(mel_peak > 0.0, "an all-zero mel");
}

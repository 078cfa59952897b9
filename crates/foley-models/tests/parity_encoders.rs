//! Parity of the conditioning encoders against the PyTorch reference (fixtures of
//! `scripts/parity/encoders.py`): the CLIP tokenizer (ids exact), the CLIP text and vision towers, the
//! Synchformer and MMAudio's frame preprocessing.

mod common;

use candle_core::{DType, Tensor};
use foley_models::text::clip_tokenizer::ClipTokenizer;
use foley_models::encoders::{clip, preprocess, synchformer};
use foley_models::weights;

#[test]
fn clip_tokenizer_ids_match_open_clip() {
    let tok = ClipTokenizer::open_clip().expect("tokenizer");
    for fx in common::fixtures("clip_tokenizer") {
        let prompts: Vec<String> = serde_json::from_value(fx.meta["prompts"].clone()).expect("prompts");
        let want = fx.output("ids").to_dtype(DType::I64).unwrap().to_vec2::<i64>().unwrap();
        assert_eq!(prompts.len(), want.len());
        let ctx = fx.meta["config"]["context_length"].as_u64().expect("context_length") as usize;
        assert_eq!(ctx, tok.context_length, "{}", fx.dir.display());
        let mut bad = Vec::new();
        for (p, w) in prompts.iter().zip(&want) {
            let got: Vec<i64> = tok.tokenize(p).into_iter().map(i64::from).collect();
            if &got != w {
                bad.push(format!("{p:?}\n  got  {got:?}\n  want {w:?}"));
            }
        }
        eprintln!("parity clip_tokenizer {}: {}/{} prompts exact", fx.dir.display(), prompts.len() - bad.len(),
                  prompts.len());
        assert!(bad.is_empty(), "{} prompts differ:\n{}", bad.len(), bad.join("\n"));
        // the same ids once more through the harness (exact: ids < 2^24 are exact in f32), so that it is counted
        let got: Vec<f32> = prompts.iter().flat_map(|p| tok.tokenize(p)).map(|id| id as f32).collect();
        let got = Tensor::from_vec(got, (prompts.len(), ctx), &candle_core::Device::Cpu).unwrap();
        let d = common::diff("clip_tokenizer ids", &got, &fx.output("ids").to_dtype(DType::F32).unwrap());
        assert_eq!(d.max_abs, 0.0, "clip_tokenizer ids differ");
    }
}

/// `[B, T, ...]` -> `[B * T, ...]`.
fn flatten_bt(x: &Tensor) -> Tensor {
    x.flatten(0, 1).unwrap()
}

#[test]
fn clip_vision_matches_open_clip() {
    for fx in common::fixtures("clip_vision") {
        let cfg: clip::Config = fx.config();
        let model = common::build(|| clip::ClipVisionTransformer::new(fx.vb().pp("visual"), &cfg)).expect("load");
        let frames = fx.input("frames_u8");
        let (b, t) = (frames.dim(0).unwrap(), frames.dim(1).unwrap());
        let x = common::on_device(
            &preprocess::to_normalized(&flatten_bt(frames), preprocess::CLIP_MEAN, preprocess::CLIP_STD).unwrap(),
        );
        let got = model.forward(&x).unwrap().reshape((b, t, ())).unwrap();
        fx.check(&format!("clip_vision {}", fx.dir.display()), &got, "features", fx.tolerance());
        // chunked encoding gives the same features
        let chunked = model.forward_chunked(&x, 1).unwrap().reshape((b, t, ())).unwrap();
        fx.check("clip_vision chunked", &chunked, "features", fx.tolerance());
    }
}

#[test]
fn clip_text_matches_open_clip() {
    for fx in common::fixtures("clip_text") {
        let cfg: clip::Config = fx.config();
        let model = common::build(|| clip::ClipTextTransformer::new(fx.vb(), &cfg)).expect("load");
        let tokens = fx.input("tokens").to_dtype(DType::U32).unwrap();
        let got = model.forward(&tokens).unwrap();
        fx.check(&format!("clip_text {}", fx.dir.display()), &got, "features", fx.tolerance());
        if let Some(want) = fx.outputs.get("pooled") {
            common::assert_close("clip_text pooled", &model.forward_pooled(&tokens).unwrap(), want, fx.tolerance());
        }
    }
}

#[test]
fn synchformer_matches_reference() {
    for fx in common::fixtures("synchformer") {
        let cfg: synchformer::Config = fx.config();
        let model = common::build(|| synchformer::Synchformer::new(fx.vb(), &cfg)).expect("load");
        let frames = fx.input("frames_u8");
        let dims = frames.dims().to_vec();
        let x = preprocess::to_normalized(&flatten_bt(frames), preprocess::SYNC_MEAN, preprocess::SYNC_STD)
            .unwrap()
            .reshape(dims)
            .unwrap();
        let x = common::on_device(&x);
        let what = format!("synchformer {}", fx.dir.display());
        fx.check(&what, &model.encode_video(&x, 0).unwrap(), "features", fx.tolerance());
        let chunked = model.encode_video(&x, 1).unwrap();
        fx.check("synchformer chunked", &chunked, "features", fx.tolerance());
        // from a torch.save'd checkpoint holding other Synchformer parts too, as synchformer_state_dict.pth does
        if let Some(file) = fx.meta["checkpoint"].as_str() {
            let vb = weights::var_builder(fx.dir.join(file), common::compute_dtype(), &common::device()).unwrap();
            let model = common::build(|| synchformer::Synchformer::new(vb, &cfg)).expect("load from checkpoint");
            let got = model.encode_video(&x, 0).unwrap();
            fx.check("synchformer from .pth", &got, "features", fx.tolerance());
        }
    }
}

/// Exact comparison of u8 images (counted by the harness); returns (differing values, max difference).
fn u8_mismatch(what: &str, got: &Tensor, want: &Tensor) -> (usize, i32) {
    common::diff(what, got, want);
    let g = got.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let w = want.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    g.iter().zip(&w).fold((0, 0), |(n, m), (a, b)| {
        let d = (i32::from(*a) - i32::from(*b)).abs();
        (n + usize::from(d != 0), m.max(d))
    })
}

#[test]
fn preprocessing_matches_load_video() {
    for fx in common::fixtures("preprocess") {
        let name = fx.dir.display().to_string();
        let (clip_in, sync_in) = (fx.input_cpu("clip_chunk"), fx.input_cpu("sync_chunk"));
        for (what, got, want) in [
            ("clip resize", preprocess::clip_resize(clip_in).unwrap(), fx.output("clip_u8")),
            ("sync resize+crop", preprocess::sync_resize(sync_in).unwrap(), fx.output("sync_u8")),
        ] {
            let got = got.narrow(0, 0, want.dim(0).unwrap()).unwrap();
            let (n, max) = u8_mismatch(what, &got, want);
            eprintln!("parity preprocess {what} {name}: {n} of {} u8 values differ (max {max})", want.elem_count());
            assert_eq!(n, 0, "{what} {name}: {n} values differ, max {max}");
        }
        // f32 frames in [0, 1] give the same result
        let as_f32 = (clip_in.to_dtype(DType::F32).unwrap() / 255.0).unwrap();
        let (n, _) = u8_mismatch("f32 input", &preprocess::clip_resize(&as_f32).unwrap(), &preprocess::clip_resize(clip_in).unwrap());
        assert_eq!(n, 0, "f32 input");
        // the encoder half where the fixture has one (its config names the encoders; their weights must be there)
        if fx.meta["config"]["clip"].is_null() {
            eprintln!("parity preprocess {name}: resize only (the fixture configures no encoders)");
            continue;
        }
        // the same decoded frames through both encoders (preprocessed on the host, encoded on the test device)
        let vb = fx.vb();
        let ccfg: clip::Config = serde_json::from_value(fx.meta["config"]["clip"].clone()).unwrap();
        let clip_model = common::build(|| clip::ClipVisionTransformer::new(vb.pp("clip").pp("visual"), &ccfg)).unwrap();
        let feats = clip_model.forward(&common::on_device(&preprocess::clip_frames(clip_in).unwrap())).unwrap().unsqueeze(0).unwrap();
        fx.check(&format!("preprocess+clip {name}"), &feats, "clip_features", fx.tolerance());
        let scfg: synchformer::Config = serde_json::from_value(fx.meta["config"]["sync"].clone()).unwrap();
        let sync_model = common::build(|| synchformer::Synchformer::new(vb.pp("synchformer"), &scfg)).unwrap();
        let x = common::on_device(&preprocess::sync_frames(sync_in).unwrap().unsqueeze(0).unwrap());
        let feats = sync_model.encode_video(&x, 0).unwrap();
        fx.check(&format!("preprocess+synchformer {name}"), &feats, "sync_features", fx.tolerance());
    }
}

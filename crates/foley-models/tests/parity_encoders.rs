//! Parity of the conditioning encoders against the PyTorch reference (fixtures of
//! `scripts/parity/encoders.py`): the CLIP tokenizer (ids exact), the CLIP text and vision towers, the
//! Synchformer and MMAudio's frame preprocessing.

mod common;

use candle_core::{DType, Tensor};
use foley_models::clip_tokenizer::ClipTokenizer;

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
    }
}

#[allow(dead_code)]
fn u8_to_unit(x: &Tensor) -> Tensor {
    x.to_dtype(DType::F32).unwrap()
}

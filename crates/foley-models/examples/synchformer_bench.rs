//! CPU wall and process time of the Synchformer visual encoder at its real shape (random weights), per
//! 16-frame segment, to compare with MMAudio's (`scripts/bench_encoders.py --synchformer`).
//!
//! `cargo run --release -p foley-models --example synchformer_bench -- [segments] [repeats]`

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use foley_models::encoders::synchformer::{Config, Synchformer};

// Process CPU time, read from /proc as `foley bench` reads it.
#[path = "../../../src/cmd/bench/sysinfo.rs"]
#[allow(dead_code)]
mod sysinfo;
use sysinfo::cpu_seconds;

fn main() -> candle_core::Result<()> {
    foley_kernels::alloc::tune_for_inference();
    let mut args = std::env::args().skip(1);
    let segments: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let repeats: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let cfg = Config::synchformer();
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    Synchformer::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev), &cfg)?;
    let mut weights = HashMap::new();
    for (name, var) in varmap.data().lock().map_err(|e| candle_core::Error::Msg(e.to_string()))?.iter() {
        let mean = if name.contains("norm") && name.ends_with(".weight") { 1f32 } else { 0f32 };
        weights.insert(name.clone(), Tensor::randn(mean, 0.02f32, var.shape(), &dev)?);
    }
    drop(varmap);
    let model = Synchformer::new(VarBuilder::from_tensors(weights, DType::F32, &dev), &cfg)?;
    let frames = (segments - 1) * cfg.segment_stride + cfg.frames_per_segment;
    let x = Tensor::randn(0f32, 1f32, (1, frames, 3, cfg.image_size, cfg.image_size), &dev)?;
    for i in 0..repeats {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let y = model.encode_video(&x, 0)?;
        let (s, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        println!("candle synchformer: {segments} segments in {s:.2} s ({:.2} s/segment) cpu {cpu:.1} s run {i} out {:?}",
                 s / segments as f64, y.dims());
    }
    Ok(())
}

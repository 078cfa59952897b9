//! CPU wall time of the CLIP DFN5B vision tower at its real shape (random weights), to compare with
//! open_clip on the same machine (`scripts/bench_encoders.py` runs both).
//!
//! `cargo run --release -p foley-models --example clip_vision_bench -- [frames] [repeats]`

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use foley_models::encoders::clip::{ClipVisionTransformer, Config};

// Process CPU time, read from /proc as `foley bench` reads it.
#[path = "../../../src/cmd/bench/sysinfo.rs"]
#[allow(dead_code)]
mod sysinfo;
use sysinfo::cpu_seconds;

fn main() -> candle_core::Result<()> {
    foley_kernels::alloc::tune_for_inference();
    let mut args = std::env::args().skip(1);
    let frames: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let repeats: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let cfg = Config::dfn5b_vit_h_14_384();
    let dev = Device::Cpu;
    let t = Instant::now();
    // random weights of the checkpoint's shapes, every one N(0, 0.02) (LayerNorm gains N(1, 0.02)), handed over
    // as plain tensors as a checkpoint would be (a VarMap's variables would record a backprop graph)
    let varmap = VarMap::new();
    ClipVisionTransformer::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev).pp("visual"), &cfg)?;
    let mut weights = HashMap::new();
    for (name, var) in varmap
        .data()
        .lock()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?
        .iter()
    {
        let mean = if name.contains(".ln_") && name.ends_with(".weight") {
            1f32
        } else {
            0f32
        };
        weights.insert(name.clone(), Tensor::randn(mean, 0.02f32, var.shape(), &dev)?);
    }
    drop(varmap);
    let model = ClipVisionTransformer::new(VarBuilder::from_tensors(weights, DType::F32, &dev).pp("visual"), &cfg)?;
    eprintln!("init {:.1} s, rss {} MB", t.elapsed().as_secs_f64(), rss_mb());
    let x = Tensor::randn(0f32, 1f32, (frames, 3, cfg.image_size, cfg.image_size), &dev)?;
    for i in 0..repeats {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let y = model.forward(&x)?;
        let (s, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        println!(
            "candle clip vision: {frames} frames in {s:.2} s ({:.2} s/frame) cpu {cpu:.1} s run {i} out {:?}",
            s / frames as f64,
            y.dims()
        );
        eprintln!("rss {} MB", rss_mb());
    }
    Ok(())
}

/// Resident memory of this process (Linux), for the memory line of the bench.
fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

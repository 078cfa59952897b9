//! Wall time of one MM-DiT forward at real shapes (default small_16k, 8 s: 250 latents, 64 clip frames,
//! 192 sync tokens, 77 text tokens) with random weights, f32 on CPU. Prints one JSON line per measurement.
//!
//! `cargo run --release -p foley-models --example dit_forward_bench -- [variant] [runs]`
//! (scripts/bench_dit.py runs this next to the PyTorch reference in the same run). With `RAYON_NUM_THREADS=1`
//! the compute runs on the main thread and its CPU time is reported too (robust on a busy machine).

use std::time::Instant;

/// CPU time of the calling thread in seconds (Linux `/proc/thread-self/schedstat`), if readable.
fn thread_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
}

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use foley_models::mmaudio::{Config, MMAudio};

fn main() -> foley_models::Result<()> {
    foley_kernels::alloc::tune_for_inference();
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map(String::as_str).unwrap_or("small_16k");
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let cfg =
        Config::by_name(variant).ok_or_else(|| foley_models::Error::BadConfig(format!("unknown variant {variant}")))?;
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let net = MMAudio::new(vb, &cfg)?;
    for data in varmap.all_vars() {
        // random weights everywhere (some default initialisations are constants)
        let t = Tensor::randn(0f32, 0.02, data.shape(), &dev)?;
        data.set(&t)?;
    }
    for bs in [1usize, 2] {
        let latent = Tensor::randn(0f32, 1.0, (bs, cfg.latent_seq_len, cfg.latent_dim), &dev)?;
        let clip = Tensor::randn(0f32, 1.0, (bs, cfg.clip_seq_len, cfg.clip_dim), &dev)?;
        let sync = Tensor::randn(0f32, 1.0, (bs, cfg.sync_seq_len, cfg.sync_dim), &dev)?;
        let text = Tensor::randn(0f32, 1.0, (bs, cfg.text_seq_len, cfg.text_dim), &dev)?;
        let t = Tensor::full(0.5f32, bs, &dev)?;
        let cond = net.preprocess_conditions(&clip, &sync, &text, cfg.latent_seq_len)?;
        net.predict_flow(&latent, &t, &cond)?; // warm-up
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..runs {
            let (start, c0) = (Instant::now(), thread_cpu_s());
            let flow = net.predict_flow(&latent, &t, &cond)?;
            flow.sum_all()?.to_scalar::<f32>()?;
            times.push(start.elapsed().as_secs_f64());
            if let (Some(a), Some(b)) = (c0, thread_cpu_s()) {
                cpu.push(b - a);
            }
        }
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        let cpu_min = cpu.first().map(|c| format!("{c:.4}")).unwrap_or_else(|| "null".into());
        println!(
            "{{\"impl\": \"candle\", \"variant\": \"{variant}\", \"what\": \"predict_flow\", \"batch\": {bs}, \"median_s\": {:.4}, \"min_s\": {:.4}, \"main_thread_cpu_min_s\": {cpu_min}, \"threads\": {}, \"runs\": {runs}}}",
            times[times.len() / 2],
            times[0],
            candle_core::utils::get_num_threads()
        );
    }
    Ok(())
}

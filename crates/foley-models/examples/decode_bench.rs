//! Wall time of the latent → waveform chain at real shapes with random weights, f32 on CPU: VAE decode and the
//! BigVGAN vocoder for `seconds` of audio (default 8 s at 16 kHz: 250 latents → 500 mel frames → 128 000
//! samples). Prints one JSON line per stage.
//!
//! `cargo run --release -p foley-models --example decode_bench -- [16k|44k] [seconds]`

use std::time::Instant;

/// CPU time of the calling thread in seconds (Linux `/proc/thread-self/schedstat`); meaningful with
/// `RAYON_NUM_THREADS=1`, when all compute runs on the main thread.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns * 1e-9)
}

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use foley_models::mmaudio::{bigvgan, vae};

fn random_vb(dev: &Device) -> (VarMap, VarBuilder<'static>) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
    (varmap, vb)
}

fn randomize(varmap: &VarMap, dev: &Device) -> foley_models::Result<()> {
    for v in varmap.all_vars() {
        v.set(&Tensor::randn(0f32, 0.02, v.shape(), dev)?)?;
    }
    Ok(())
}

fn main() -> foley_models::Result<()> {
    foley_kernels::alloc::tune_for_inference();
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("16k");
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8.0);
    let dev = Device::Cpu;
    let (vae_cfg, voc_cfg, sr) = match mode {
        "44k" => (
            vae::Config::vae_44k(),
            bigvgan::Config::v2_44khz_128band_512x(),
            44_100.0,
        ),
        _ => (vae::Config::vae_16k(), bigvgan::Config::mmaudio_16k(), 16_000.0),
    };
    let hop = voc_cfg.hop_length() as f64;
    let latents = (seconds * sr / hop / 2.0).ceil() as usize;

    let (vm, vb) = random_vb(&dev);
    let decoder = vae::VaeDecoder::new(vb, &vae_cfg)?;
    randomize(&vm, &dev)?;
    let decoder_vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let decoder = vae::VaeDecoder::new(decoder_vb, &vae_cfg).unwrap_or(decoder);
    let z = Tensor::randn(0f32, 1.0, (1, vae_cfg.embed_dim, latents), &dev)?;
    let (start, c0) = (Instant::now(), thread_cpu_s());
    let mel = decoder.decode(&z)?;
    mel.sum_all()?.to_scalar::<f32>()?;
    let cpu = thread_cpu_s() - c0;
    println!(
        "{{\"stage\": \"vae_decode\", \"mode\": \"{mode}\", \"latents\": {latents}, \"s\": {:.3}, \"main_thread_cpu_s\": {cpu:.3}}}",
        start.elapsed().as_secs_f64()
    );

    let (vm, vb) = random_vb(&dev);
    let _ = bigvgan::BigVGAN::new(vb, &voc_cfg)?;
    randomize(&vm, &dev)?;
    let vocoder = bigvgan::BigVGAN::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), &voc_cfg)?;
    let mel = (mel.tanh()? * 0.1)?; // keep the random network in a sane range
    let (start, c0) = (Instant::now(), thread_cpu_s());
    let audio = vocoder.forward(&mel)?;
    audio.sum_all()?.to_scalar::<f32>()?;
    let cpu = thread_cpu_s() - c0;
    println!(
        "{{\"stage\": \"vocoder\", \"mode\": \"{mode}\", \"samples\": {}, \"s\": {:.3}, \"main_thread_cpu_s\": {cpu:.3}}}",
        audio.dim(2)?,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

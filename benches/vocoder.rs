//! Latents → waveform at real shapes: VAE decode and the BigVGAN vocoder (16 kHz) for `FOLEY_BENCH_SECONDS` of
//! audio (default 8 s: 250 latents → 500 mel frames → 128 000 samples).

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use foley_models::mmaudio::{bigvgan, vae};

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let secs = foley_benches::seconds();
    let (vae_cfg, voc_cfg) = (vae::Config::vae_16k(), bigvgan::Config::mmaudio_16k());
    let latents = (secs * 16_000.0 / voc_cfg.hop_length() as f64 / 2.0).ceil() as usize;
    let (vm, vb) = foley_benches::var_builder(&dev);
    let decoder = vae::VaeDecoder::new(vb, &vae_cfg).expect("VAE builds");
    foley_benches::randomize(&vm, &dev).expect("random weights");
    let (vm, vb) = foley_benches::var_builder(&dev);
    let vocoder = bigvgan::BigVGAN::new(vb, &voc_cfg).expect("BigVGAN builds");
    foley_benches::randomize(&vm, &dev).expect("random weights");
    let z = Tensor::randn(0f32, 1.0, (1, vae_cfg.embed_dim, latents), &dev).expect("randn");
    let mel = decoder.decode(&z).expect("decode");
    let mel = mel.tanh().and_then(|m| m * 0.1).expect("mel");

    let mut g = c.benchmark_group(format!("decode_16k_{secs}s"));
    g.sample_size(10);
    g.bench_function("vae_decode", |bn| {
        bn.iter(|| {
            let m = decoder.decode(&z).expect("decode");
            m.sum_all().and_then(|s| s.to_scalar::<f32>()).expect("sum")
        })
    });
    g.bench_function("vocoder", |bn| {
        bn.iter(|| {
            let a = vocoder.forward(&mel).expect("vocoder");
            a.sum_all().and_then(|s| s.to_scalar::<f32>()).expect("sum")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

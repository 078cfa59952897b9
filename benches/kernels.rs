//! The CPU kernels of `foley-kernels` one by one, at the shapes the MMAudio networks give them (small_16k, 8 s:
//! 250 latent tokens, batch 2 for classifier-free guidance; CLIP ViT-H/14-384 on 4 frames of 577 tokens): the
//! f32 and bf16 products through `Linear`, the MM-DiT's channel-last convolution, the vocoder's first
//! transposed convolution, attention, the fused adaLN pass and softmax. Compare a kernel change before and after
//! with `cargo bench -p foley-benches --bench kernels` (criterion keeps the previous run as its baseline).

use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use foley_kernels::conv::{ChannelAxis, Conv1d};
use foley_kernels::conv_transpose::ConvTranspose1d;
use foley_kernels::linear::Linear;
use foley_kernels::{attention, cpu_bf16, fast_ops, fused};

fn randn(dims: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, dims, &Device::Cpu).expect("randn")
}

fn sum(t: Tensor) -> f32 {
    t.sum_all().and_then(|s| s.to_scalar::<f32>()).expect("sum")
}

fn bench(c: &mut Criterion) {
    foley_kernels::alloc::tune_for_inference();
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10);

    // products: the MM-DiT's MLP input projection (500 rows) and CLIP's (2308 rows), f32 and bf16 weights
    for (name, rows, k, n) in [("dit_mlp_in", 500, 448, 1792), ("clip_mlp_fc1", 2308, 1280, 5120)] {
        let (x, w) = (randn(&[rows, k]), randn(&[n, k]));
        let f32_layer = Linear::new(w.clone(), None).expect("linear");
        let bf16_layer = cpu_bf16::with_bf16_weights(|| Linear::new(w.clone(), None)).expect("bf16 linear");
        g.bench_function(format!("linear_f32_{name}"), |b| b.iter(|| sum(f32_layer.forward(&x).expect("forward"))));
        let kernel = cpu_bf16::Kernel::get().name();
        g.bench_function(format!("linear_bf16_{kernel}_{name}"), |b| b.iter(|| sum(bf16_layer.forward(&x).expect("forward"))));
    }

    // the MM-DiT's kernel-3 channel-last convolution over (B=2, 250, 448)
    let conv = Conv1d::new(randn(&[448, 448, 3]), Some(randn(&[448])), 1, 1, ChannelAxis::Last).expect("conv");
    let x = randn(&[2, 250, 448]);
    g.bench_function("conv1d_channel_last_2x250x448_k3", |b| b.iter(|| sum(conv.forward(&x).expect("conv"))));

    // BigVGAN 16 kHz's first up-sampling after conv_pre, 8 s of mel: 1536 → 768 channels, stride 4, kernel 8
    let up = ConvTranspose1d::new(randn(&[1536, 768, 8]), Some(randn(&[768])), 4, 2).expect("conv_transpose");
    let x = randn(&[1, 1536, 500]);
    g.bench_function("conv_transpose1d_1536to768_x4_t500", |b| b.iter(|| sum(up.forward(&x).expect("up"))));

    // the MM-DiT's joint attention: batch 2, 7 heads of 64, 250 + 64 + 77 tokens
    let (q, k, v) = (randn(&[2, 7, 391, 64]), randn(&[2, 7, 391, 64]), randn(&[2, 7, 391, 64]));
    g.bench_function("attention_2x7x391x64", |b| {
        b.iter(|| sum(attention::attention(&q, &k, &v, 0.125, None).expect("attention").expect("cpu f32")))
    });

    // adaLN modulate(layer_norm(x)) over (2, 250, 448) with per-token modulation, and a CLIP-sized softmax
    let (x, shift, scale) = (randn(&[2, 250, 448]), randn(&[2, 250, 448]), randn(&[2, 250, 448]));
    g.bench_function("norm_modulate_2x250x448", |b| b.iter(|| sum(fused::norm_modulate(&x, &shift, &scale, 1e-5).expect("fused"))));
    let scores = randn(&[16, 577, 577]);
    g.bench_function("softmax_16x577x577", |b| {
        b.iter(|| sum(fast_ops::softmax_last_dim(scores.copy().expect("copy")).expect("softmax")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

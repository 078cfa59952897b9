//! MM-DiT: one `predict_flow` (batch 2: cond + uncond, as the sampler runs it) and one full Euler sampler step
//! with CFG, at the variant's real shapes (default small_16k, 8 s: 250 latents, 64 CLIP, 192 sync, 77 text).

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use foley_models::mmaudio::{Config, MMAudio};
use foley_models::sampler::FlowMatching;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let name = foley_benches::variant();
    let Some(cfg) = Config::by_name(&name) else { panic!("unknown FOLEY_BENCH_VARIANT {name}") };
    let (vm, vb) = foley_benches::var_builder(&dev);
    let net = MMAudio::new(vb, &cfg).expect("MM-DiT builds");
    foley_benches::randomize(&vm, &dev).expect("random weights");
    let rand = |dims: (usize, usize, usize)| Tensor::randn(0f32, 1.0, dims, &dev).expect("randn");
    let (n, b) = (cfg.latent_seq_len, 1);
    let clip = rand((b, cfg.clip_seq_len, cfg.clip_dim));
    let sync = rand((b, cfg.sync_seq_len, cfg.sync_dim));
    let text = rand((b, cfg.text_seq_len, cfg.text_dim));
    let cond = net.preprocess_conditions(&clip, &sync, &text, n).expect("conditions");
    let uncond = net.empty_conditions(b, n, cfg.clip_seq_len, cfg.sync_seq_len, None).expect("empty conditions");
    let x = rand((b, n, cfg.latent_dim));

    let mut g = c.benchmark_group(format!("dit_{name}"));
    g.sample_size(10);
    let both = foley_models::mmaudio::Conditions::cat(&cond, &uncond).expect("cat");
    let x2 = Tensor::cat(&[&x, &x], 0).expect("cat");
    let t2 = Tensor::full(0.5f32, 2, &dev).expect("t");
    g.bench_function("predict_flow_batch2", |bn| {
        bn.iter(|| {
            let f = net.predict_flow(&x2, &t2, &both).expect("forward");
            f.sum_all().and_then(|s| s.to_scalar::<f32>()).expect("sum")
        })
    });
    let fm = FlowMatching::new(1);
    g.bench_function("sampler_step_cfg", |bn| {
        bn.iter(|| {
            let y = fm.to_data(&net, &x, &cond, &uncond, 4.5, &mut |_| {}, &|| false).expect("step");
            y.sum_all().and_then(|s| s.to_scalar::<f32>()).expect("sum")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

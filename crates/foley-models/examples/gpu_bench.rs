//! The networks of one generation, timed per stage, without FFmpeg (it runs where `foley` cannot: the lent GPU
//! machine has no FFmpeg libraries). Random weights at a variant's real shapes (`RandomWeights`, as `foley bench`),
//! random preprocessed frames in place of a decoded clip; then the engine's own calls: CLIP vision over every 8 fps
//! frame (chunks of 16), Synchformer over every 25 fps frame (chunks of 8), the CLIP text tower for the prompt and
//! the empty negative prompt, the Euler sampler with CFG, VAE decode, vocoder (f32, as the engine).
//!
//! Every stage starts and ends with a device synchronisation; on CUDA, events recorded on candle's stream give the
//! GPU time of each stage and of each sampler step (`gpu_s`; wall − gpu is host time: launches, syncs, copies).
//! Peak GPU memory is the device's used memory (free/total from the driver, sampled every 2 ms by a thread) less
//! what was used before the weights were built. Prints the JSON of `foley bench --json` (plus `gpu_s`,
//! `step_wall_s`, `step_gpu_s`, `peak_gpu_mb`, `first_step_s`).
//!
//! ```text
//! cargo run --release -p foley-models --features cuda --example gpu_bench -- \
//!     [--model small_16k|large_44k_v2|...|tiny] [--duration 8] [--steps 25] [--device cuda|cpu] \
//!     [--dtype bf16|f16|f32] [--warmup 1] [--json]
//! ```
//! `--model tiny`: the tiny-test bundle's network sizes (scripts/device-check's CPU dry run).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use foley_models::mmaudio::bigvgan::{self, BigVGAN};
use foley_models::encoders::clip::{self, ClipModel};
use foley_models::text::clip_tokenizer::ClipTokenizer;
use foley_models::mmaudio::{self, MMAudio};
use foley_models::weights::random::RandomWeights;
use foley_models::sampler::FlowMatching;
use foley_models::mmaudio::sequence::SequenceConfig;
use foley_models::encoders::synchformer::{self, Synchformer};
use foley_models::mmaudio::vae::{self, VaeDecoder};

// Process CPU time and peak memory, read from /proc as `foley bench` reads them.
#[path = "../../../src/cmd/bench/sysinfo.rs"]
#[allow(dead_code)]
mod sysinfo;
use sysinfo::{cpu_seconds, peak_rss_mb};

const CLIP_CHUNK: usize = 16; // as foley-pipeline's engine
const SYNC_CHUNK: usize = 8;
const CFG_STRENGTH: f64 = 4.5;
const PROMPT: &str = "footsteps on gravel"; // as `foley bench`

const USAGE: &str = "gpu_bench: time one generation's networks per stage (random weights, real shapes)
usage: gpu_bench [--model small_16k|small_44k|medium_44k|large_44k|large_44k_v2|tiny] [--duration 3-20]
                 [--steps 1-200] [--device cuda|cpu] [--dtype bf16|f16|f32] [--warmup N] [--json]
defaults: --model small_16k --duration 8 --steps 25 --device cuda --warmup 1; --dtype: the device's default";

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    model: String,
    duration: f64,
    steps: usize,
    device: String,
    dtype: Option<String>,
    warmup: usize,
    json: bool,
}

fn parse_args() -> AnyResult<Args> {
    let mut a = Args {
        model: "small_16k".into(),
        duration: 8.0,
        steps: 25,
        device: "cuda".into(),
        dtype: None,
        warmup: 1,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => a.model = v,
            "--duration" => a.duration = v.parse().map_err(|e| format!("--duration {v}: {e}"))?,
            "--steps" => a.steps = v.parse().map_err(|e| format!("--steps {v}: {e}"))?,
            "--device" => a.device = v,
            "--dtype" => a.dtype = Some(v),
            "--warmup" => a.warmup = v.parse().map_err(|e| format!("--warmup {v}: {e}"))?,
            _ => return Err(format!("unknown argument {flag}").into()),
        }
    }
    if !(3.0..=20.0).contains(&a.duration) || a.steps == 0 || a.steps > 200 {
        return Err("--duration must be 3–20 s and --steps 1–200".into());
    }
    Ok(a)
}

/// The networks' configs of a variant; `tiny`: the tiny-test bundle's sizes (models/tiny-test.toml).
struct Configs {
    mode16: bool,
    net: mmaudio::Config,
    vae: vae::Config,
    vocoder: bigvgan::Config,
    clip: clip::Config,
    sync: synchformer::Config,
}

fn configs(model: &str) -> AnyResult<Configs> {
    if model == "tiny" {
        return Ok(Configs {
            mode16: true,
            net: mmaudio::Config {
                latent_dim: 8,
                clip_dim: 16,
                sync_dim: 32,
                text_dim: 16,
                hidden_dim: 16,
                num_heads: 2,
                depth: 2,
                fused_depth: 1,
                ..mmaudio::Config::small_16k()
            },
            vae: vae::Config { embed_dim: 8, hidden_dim: 8, ..vae::Config::vae_16k() },
            vocoder: bigvgan::Config {
                upsample_rates: vec![8, 8, 4],
                upsample_kernel_sizes: vec![16, 16, 8],
                upsample_initial_channel: 16,
                resblock_kernel_sizes: vec![3],
                resblock_dilation_sizes: vec![vec![1, 3, 5]],
                ..bigvgan::Config::mmaudio_16k()
            },
            clip: clip::Config {
                embed_dim: 16,
                patch_size: 32,
                vision_width: 32,
                vision_heads: 2,
                vision_layers: 1,
                text_width: 16,
                text_heads: 2,
                text_layers: 1,
                ..clip::Config::dfn5b_vit_h_14_384()
            },
            sync: synchformer::Config { embed_dim: 32, num_heads: 2, depth: 1, patch_size: 32, ..synchformer::Config::synchformer() },
        });
    }
    let net = mmaudio::Config::by_name(model).ok_or_else(|| format!("unknown model {model}"))?;
    let mode16 = model.ends_with("16k");
    Ok(Configs {
        mode16,
        net,
        vae: if mode16 { vae::Config::vae_16k() } else { vae::Config::vae_44k() },
        vocoder: if mode16 { bigvgan::Config::mmaudio_16k() } else { bigvgan::Config::v2_44khz_128band_512x() },
        clip: clip::Config::dfn5b_vit_h_14_384(),
        sync: synchformer::Config::synchformer(),
    })
}

/// Device synchronisation, wall clock and (CUDA) events around each span.
struct Clock {
    dev: Device,
    #[cfg(feature = "cuda")]
    stream: Option<std::sync::Arc<candle_core::cuda::cudarc::driver::CudaStream>>,
}

/// One started span.
struct Span {
    wall: Instant,
    #[cfg(feature = "cuda")]
    event: Option<candle_core::cuda::cudarc::driver::CudaEvent>,
}

impl Clock {
    fn new(dev: &Device) -> Self {
        Self {
            dev: dev.clone(),
            #[cfg(feature = "cuda")]
            stream: match dev {
                Device::Cuda(d) => Some(d.cuda_stream()),
                _ => None,
            },
        }
    }

    #[cfg(feature = "cuda")]
    fn event(&self) -> AnyResult<Option<candle_core::cuda::cudarc::driver::CudaEvent>> {
        use candle_core::cuda::cudarc::driver::sys::CUevent_flags;
        Ok(match &self.stream {
            Some(s) => Some(s.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?),
            None => None,
        })
    }

    fn start(&self) -> AnyResult<Span> {
        self.dev.synchronize()?;
        Ok(Span {
            wall: Instant::now(),
            #[cfg(feature = "cuda")]
            event: self.event()?,
        })
    }

    /// (wall seconds, GPU seconds where events exist) since `span`, after a synchronisation.
    fn stop(&self, span: &Span) -> AnyResult<(f64, Option<f64>)> {
        #[cfg(feature = "cuda")]
        let end = self.event()?;
        self.dev.synchronize()?;
        let wall = span.wall.elapsed().as_secs_f64();
        #[cfg(feature = "cuda")]
        if let (Some(a), Some(b)) = (&span.event, &end) {
            return Ok((wall, Some(f64::from(a.elapsed_ms(b)?) / 1e3)));
        }
        Ok((wall, None))
    }
}

/// Used device memory in bytes (CUDA; `None` elsewhere).
fn used_bytes(dev: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = dev {
        let (free, total) = d.cuda_stream().context().mem_get_info().ok()?;
        return Some((total - free) as u64);
    }
    let _ = dev;
    None
}

/// Samples the device's used memory every 2 ms until dropped; `peak()` is the highest seen.
struct MemWatch {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemWatch {
    fn start(dev: &Device) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let peak = std::sync::Arc::new(AtomicU64::new(used_bytes(dev).unwrap_or(0)));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let thread = (!dev.is_cpu()).then(|| {
            let (dev, peak, stop) = (dev.clone(), peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(u) = used_bytes(&dev) {
                        peak.fetch_max(u, Ordering::Relaxed);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        });
        Self { peak, stop, thread }
    }
    fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for MemWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loaded networks.
struct Nets {
    clip: ClipModel,
    sync: Synchformer,
    net: MMAudio,
    vae: VaeDecoder,
    vocoder: BigVGAN,
    tokenizer: ClipTokenizer,
}

fn load(c: &Configs, dev: &Device, dtype: DType) -> AnyResult<Nets> {
    let vb = |dt: DType| VarBuilder::from_backend(Box::new(RandomWeights), dt, dev.clone());
    Ok(Nets {
        net: MMAudio::new(vb(dtype), &c.net)?,
        vae: VaeDecoder::new(vb(dtype), &c.vae)?,
        // the vocoder runs in f32, as in the engine (the reference's bf16 path upcasts the mel)
        vocoder: BigVGAN::new(vb(DType::F32), &c.vocoder)?,
        clip: ClipModel::new(vb(dtype), &c.clip)?,
        sync: Synchformer::new(vb(dtype), &c.sync)?,
        tokenizer: ClipTokenizer::open_clip()?,
    })
}

#[derive(serde::Serialize)]
struct StageTime {
    stage: &'static str,
    wall_s: f64,
    cpu_s: Option<f64>,
    gpu_s: Option<f64>,
}

#[derive(serde::Serialize)]
struct Report {
    implementation: &'static str,
    model: String,
    device: String,
    dtype: String,
    threads: usize,
    duration_s: f64,
    steps: usize,
    load_s: f64,
    stages: Vec<StageTime>,
    sampler_per_step_s: f64,
    end_to_end_s: f64,
    end_to_end_cpu_s: f64,
    rtf: f64,
    peak_rss_mb: f64,
    peak_gpu_mb: Option<f64>,
    /// Wall (and GPU) seconds of each sampler step (the first one after warm-up included).
    step_wall_s: Vec<f64>,
    step_gpu_s: Vec<f64>,
    /// Wall seconds of the first (untimed) pass's first sampler step: PTX module loading, cuBLAS handles.
    first_step_s: Option<f64>,
}

/// Decoded, resized and normalised frames as the media path hands them over (f32 on the host): CLIP's (8 fps)
/// and Synchformer's (25 fps). Made before the timed span, as the reference's.
fn frames(c: &Configs, seq: &SequenceConfig) -> AnyResult<(Tensor, Tensor)> {
    let nclip = seq.clip_seq_len();
    let nsync = (seq.duration * seq.sync_frame_rate as f64) as usize;
    let clip_frames = Tensor::randn(0f32, 1.0, (nclip, 3, c.clip.image_size, c.clip.image_size), &Device::Cpu)?;
    let sync_frames = Tensor::randn(0f32, 1.0, (nsync, 3, c.sync.image_size, c.sync.image_size), &Device::Cpu)?;
    Ok((clip_frames, sync_frames))
}

/// One generation's stages; returns them and the per-step times.
#[allow(clippy::too_many_arguments)]
fn generate(n: &Nets, c: &Configs, seq: &SequenceConfig, (clip_frames, sync_frames): &(Tensor, Tensor),
            clock: &Clock, dev: &Device, dtype: DType, steps: usize)
    -> AnyResult<(Vec<StageTime>, Vec<f64>, Vec<f64>)> {
    let mut stages = Vec::new();
    let mut add = |stage, (wall_s, gpu_s): (f64, Option<f64>)| stages.push(StageTime { stage, wall_s, cpu_s: None, gpu_s });

    let s = clock.start()?;
    let x = clip_frames.to_dtype(dtype)?.to_device(dev)?;
    let clip_f = n.clip.vision.forward_chunked(&x, CLIP_CHUNK)?.unsqueeze(0)?;
    add("clip", clock.stop(&s)?);
    let s = clock.start()?;
    let x = sync_frames.to_dtype(dtype)?.to_device(dev)?.unsqueeze(0)?;
    let sync_f = n.sync.encode_video(&x, SYNC_CHUNK)?;
    add("synchformer", clock.stop(&s)?);
    let s = clock.start()?;
    let text = |p: &str| -> AnyResult<Tensor> {
        let ids = n.tokenizer.tokenize(p);
        let len = ids.len();
        Ok(n.clip.text.forward(&Tensor::from_vec(ids, (1, len), dev)?)?.to_dtype(dtype)?)
    };
    let (text_f, neg_f) = (text(PROMPT)?, text("")?);
    add("text", clock.stop(&s)?);

    let latent_len = seq.latent_seq_len();
    let x0 = Tensor::randn(0f32, 1.0, (1, latent_len, c.net.latent_dim), &Device::Cpu)?.to_dtype(dtype)?.to_device(dev)?;
    let s = clock.start()?;
    let cond = n.net.preprocess_conditions(&clip_f, &sync_f, &text_f, latent_len)?;
    let uncond = n.net.empty_conditions(1, latent_len, clip_f.dim(1)?, sync_f.dim(1)?, Some(&neg_f))?;
    let (mut step_wall, mut step_gpu) = (Vec::new(), Vec::new());
    let mut last = clock.start()?;
    let mut failed = None;
    let latents = FlowMatching::new(steps).to_data(&n.net, &x0, &cond, &uncond, CFG_STRENGTH, &mut |_| {
        // synchronising per step costs a little host time; it is what lets the table say where a step goes
        match clock.stop(&last).and_then(|t| Ok((t, clock.start()?))) {
            Ok(((w, g), next)) => {
                step_wall.push(w);
                step_gpu.extend(g);
                last = next;
            }
            Err(e) => failed = Some(e.to_string()),
        }
    }, &|| false)?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    add("sampling", clock.stop(&s)?);
    let s = clock.start()?;
    let mel = n.vae.decode_latents(&n.net.unnormalize(&latents)?)?.to_dtype(DType::F32)?;
    add("vae", clock.stop(&s)?);
    let s = clock.start()?;
    let audio = n.vocoder.forward(&mel)?.flatten_all()?.to_vec1::<f32>()?;
    add("vocoder", clock.stop(&s)?);
    if audio.len() != seq.num_audio_frames() {
        return Err(format!("vocoder gave {} samples, want {}", audio.len(), seq.num_audio_frames()).into());
    }
    Ok((stages, step_wall, step_gpu))
}

fn main() -> AnyResult<()> {
    foley_kernels::alloc::tune_for_inference();
    let args = parse_args()?;
    let dev = match args.device.as_str() {
        "cuda" => Device::new_cuda(0)?,
        "cpu" => Device::Cpu,
        d => return Err(format!("--device {d}: cpu or cuda").into()),
    };
    let dtype = match (args.dtype.as_deref(), dev.is_cpu()) {
        (None, true) => DType::F32,
        (None, false) => DType::BF16,
        (Some(d), _) => d.parse::<DType>().map_err(|e| format!("--dtype {d}: {e}"))?,
    };
    // f32 means f32: no TF32 in cuBLAS (candle's default, stated here so that no other code changes it unseen)
    #[cfg(feature = "cuda")]
    candle_core::cuda::set_gemm_reduced_precision_f32(false);
    let c = configs(&args.model)?;
    let seq = if c.mode16 { SequenceConfig::mode_16k(args.duration) } else { SequenceConfig::mode_44k(args.duration) };
    let used0 = used_bytes(&dev);
    let watch = MemWatch::start(&dev);
    let clock = Clock::new(&dev);
    let s = clock.start()?;
    let nets = load(&c, &dev, dtype)?;
    let load_s = clock.stop(&s)?.0;
    let mut first_step_s = None;
    let frames = frames(&c, &seq)?;
    for i in 0..args.warmup {
        let (_, steps, _) = generate(&nets, &c, &seq, &frames, &clock, &dev, dtype, args.steps.min(2))?;
        if i == 0 {
            first_step_s = steps.first().copied();
        }
    }
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    let (stages, step_wall_s, step_gpu_s) = generate(&nets, &c, &seq, &frames, &clock, &dev, dtype, args.steps)?;
    let end_to_end_s = t0.elapsed().as_secs_f64();
    let sampling = stages.iter().find(|s| s.stage == "sampling").map_or(0.0, |s| s.wall_s);
    let report = Report {
        implementation: "foley",
        model: args.model.clone(),
        device: args.device.clone(),
        dtype: dtype.as_str().to_string(),
        threads: candle_core::utils::get_num_threads(),
        duration_s: args.duration,
        steps: args.steps,
        load_s,
        stages,
        sampler_per_step_s: sampling / args.steps as f64,
        end_to_end_s,
        end_to_end_cpu_s: cpu_seconds() - cpu0,
        rtf: end_to_end_s / args.duration,
        peak_rss_mb: peak_rss_mb(),
        peak_gpu_mb: used0.map(|u| (watch.peak().saturating_sub(u)) as f64 / (1024.0 * 1024.0)),
        step_wall_s,
        step_gpu_s,
        first_step_s,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("gpu_bench: {} on {} ({}), {} s, {} steps, load {:.2} s", report.model, report.device,
                 report.dtype, report.duration_s, report.steps, report.load_s);
        for s in &report.stages {
            let gpu = s.gpu_s.map_or("-".into(), |g| format!("{g:.3}"));
            println!("{:<12} wall {:>9.3} s  gpu {:>9} s", s.stage, s.wall_s, gpu);
        }
        println!("sampler/step {:.4} s, end to end {:.3} s, peak GPU {:?} MB", report.sampler_per_step_s,
                 report.end_to_end_s, report.peak_gpu_mb);
    }
    Ok(())
}

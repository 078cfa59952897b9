//! `foley bench --gemm [--json]`: the processor's f32 FMA and bf16 dot-product peaks and the GEMM rate of each CPU
//! kernel (f32, bf16 widened, bf16 on AVX512-BF16) at the CLIP and MM-DiT shapes, and the bf16 kernel's
//! activation-packing time, in one run (see [`gemm`]).
//!
//! `foley bench [--model V] [--duration S] [--steps N] [--device cpu|cuda|metal] [--dtype f32|f16|bf16]
//! [--warmup N] [--json]`: one full generation on a generated test clip with the variant's networks built at
//! their real shapes from random weights (weights do not change speed; the audio is noise), timed per stage.
//!
//! Reported: wall seconds per stage (probe, decode + sample frames, CLIP, Synchformer, text, sampler total and
//! per step, VAE, vocoder, mix, mux), end to end, real-time factor (end-to-end seconds per second of audio),
//! process CPU seconds (on a shared machine wall time alone misleads), peak resident memory (VmHWM). The JSON
//! (`--json`) has the same fields as `scripts/bench_reference.py`'s, which `scripts/bench_compare` puts side by
//! side.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::DType;
use foley_pipeline::{CancelToken, Engine, FoleyEngine, ModelSpec, Progress, Request, Stage};
use serde::Serialize;

mod gemm;
mod sysinfo;

/// `foley bench` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model variant whose shapes are benchmarked (small_16k, small_44k, medium_44k, large_44k_v2, tiny-test).
    #[arg(long, default_value = "small_16k")]
    pub model: String,
    /// Clip duration in seconds (3–20).
    #[arg(long, default_value_t = 8.0)]
    pub duration: f64,
    /// Sampler steps.
    #[arg(long, default_value_t = 25)]
    pub steps: u32,
    /// Device: cpu, cuda (build with --features cuda) or metal (build with --features metal).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda", "metal"])]
    pub device: String,
    /// Networks' dtype: f32 (the CPU's default) or bf16 on the CPU (weights in bf16, products accumulated in
    /// f32); bf16 (the default), f16 or f32 on a GPU. The vocoder runs in f32 whatever this says.
    #[arg(long, value_parser = ["f32", "f16", "bf16"])]
    pub dtype: Option<String>,
    /// Full untimed generations before the timed one (kernel loading, allocator warm-up on GPUs).
    #[arg(long, default_value_t = 0)]
    pub warmup: u32,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Instead of a generation: the CPU's arithmetic peaks and its GEMM kernels' rates at the networks' shapes.
    #[arg(long)]
    pub gemm: bool,
}

/// One stage's times.
#[derive(Debug, Serialize)]
pub struct StageTime {
    pub stage: &'static str,
    pub wall_s: f64,
    /// Process CPU seconds over the same span, where the stage is a span of its own (else absent).
    pub cpu_s: Option<f64>,
}

/// What `foley bench --json` prints (the same fields as scripts/bench_reference.py).
#[derive(Debug, Serialize)]
pub struct Report {
    pub implementation: &'static str,
    pub model: String,
    pub device: String,
    pub dtype: String,
    /// How bf16 products ran on the CPU (`avx512-bf16` or `widen`, see foley_kernels::cpu_bf16); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_bf16_kernel: Option<&'static str>,
    /// The processor (model name, family/model, SIMD extensions).
    pub cpu: String,
    pub threads: usize,
    pub duration_s: f64,
    pub steps: u32,
    /// Building the networks (random weights) — not part of end to end.
    pub load_s: f64,
    pub stages: Vec<StageTime>,
    pub sampler_per_step_s: f64,
    pub end_to_end_s: f64,
    pub end_to_end_cpu_s: f64,
    /// End-to-end seconds per second of generated audio (below 1: faster than real time).
    pub rtf: f64,
    pub peak_rss_mb: f64,
}

fn device(name: &str) -> anyhow::Result<candle_core::Device> {
    Ok(match name {
        "cuda" => candle_core::Device::new_cuda(0).context("--device cuda (build foley with --features cuda)")?,
        "metal" => candle_core::Device::new_metal(0).context("--device metal (build foley with --features metal)")?,
        _ => candle_core::Device::Cpu,
    })
}

/// A testsrc2 clip (1280x720, 25 fps, h264, no audio) of `secs` seconds, written by the ffmpeg CLI.
fn test_clip(path: &Path, secs: f64) -> anyhow::Result<()> {
    let src = format!("testsrc2=size=1280x720:rate=25:duration={secs}");
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &src, "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p"])
        .arg(path)
        .output()
        .context("running ffmpeg to write the test clip (is ffmpeg installed? scripts/setup)")?;
    if !out.status.success() {
        bail!("ffmpeg could not write the test clip: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs the benchmark and prints the report.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.gemm {
        return gemm::run(args.json);
    }
    if !(3.0..=20.0).contains(&args.duration) {
        let why = format!("is {}; it must be 3–20 s", args.duration);
        bail!(foley_pipeline::PipelineError::invalid("--duration", why));
    }
    if args.steps == 0 || args.steps > 200 {
        bail!(foley_pipeline::PipelineError::invalid("--steps", format!("is {}; it must be 1–200", args.steps)));
    }
    let dev = device(&args.device)?;
    let dtype = super::dtype_arg(&dev, args.dtype.as_deref())?;
    let spec = ModelSpec::find(&args.model)?;
    let t = Instant::now();
    let engine = FoleyEngine::random_as(spec, dev, dtype)?;
    let engine_dtype = engine.dtype();
    let load_s = t.elapsed().as_secs_f64();

    let dir = tempfile::tempdir()?;
    let clip = dir.path().join("bench.mp4");
    test_clip(&clip, args.duration)?;
    let req = Request {
        video: clip,
        sound_effect_prompt: "footsteps on gravel".into(),
        num_steps: Some(args.steps),
        seed: Some(42),
        ..Request::default()
    };
    for i in 0..args.warmup {
        let out = dir.path().join(format!("warmup{i}"));
        std::fs::create_dir_all(&out)?;
        engine.generate(&req, &out, &|_| {}, &CancelToken::new())?;
    }
    // process CPU time at each stage change the engine reports
    let marks: Mutex<Vec<(Stage, f64)>> = Mutex::new(Vec::new());
    let on_progress = |p: Progress| {
        if let Ok(mut m) = marks.lock() {
            if m.last().map(|(s, _)| *s) != Some(p.stage) {
                m.push((p.stage, sysinfo::cpu_seconds()));
            }
        }
    };
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir)?;
    let (t, cpu0) = (Instant::now(), sysinfo::cpu_seconds());
    let out = engine.generate(&req, &out_dir, &on_progress, &CancelToken::new())?;
    let end_to_end_s = t.elapsed().as_secs_f64();
    let cpu1 = sysinfo::cpu_seconds();
    let marks = marks.into_inner().unwrap_or_default();
    // a stage that the progress reports bracket on its own: from its mark to the next one
    let cpu_of = |stage: Stage| -> Option<f64> {
        let i = marks.iter().position(|(s, _)| *s == stage)?;
        let end = marks.get(i + 1).map_or(cpu1, |(_, c)| *c);
        Some(end - marks[i].1)
    };
    let own_span = [Stage::Probe, Stage::Frames, Stage::Clip, Stage::Synchformer, Stage::Mix, Stage::Mux];
    let stages: Vec<StageTime> = out
        .timings
        .iter()
        .map(|s| StageTime {
            stage: s.stage.name(),
            wall_s: s.seconds,
            cpu_s: if own_span.contains(&s.stage) { cpu_of(s.stage) } else { None },
        })
        .collect();
    let sampling = out.timings.iter().find(|s| s.stage == Stage::Sampling).map_or(0.0, |s| s.seconds);
    let report = Report {
        implementation: "foley",
        model: args.model.clone(),
        device: args.device.clone(),
        dtype: engine_dtype.as_str().to_string(),
        cpu_bf16_kernel: (args.device == "cpu" && engine_dtype == DType::BF16)
            .then(|| foley_kernels::cpu_bf16::Kernel::get().name()),
        cpu: sysinfo::cpu_model(),
        threads: sysinfo::threads(),
        duration_s: out.duration_s,
        steps: args.steps,
        load_s,
        stages,
        sampler_per_step_s: sampling / f64::from(args.steps),
        end_to_end_s,
        end_to_end_cpu_s: cpu1 - cpu0,
        rtf: end_to_end_s / out.duration_s.max(1e-9),
        peak_rss_mb: sysinfo::peak_rss_mb(),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(r: &Report) -> anyhow::Result<()> {
    outln!(
        "foley bench: {} on {} ({}{}, {} threads), {:.2} s clip, {} steps, random weights (load {:.2} s)",
        r.model,
        r.device,
        r.dtype,
        r.cpu_bf16_kernel.map(|k| format!(" on {k}")).unwrap_or_default(),
        r.threads,
        r.duration_s,
        r.steps,
        r.load_s
    );
    if !r.cpu.is_empty() {
        outln!("cpu: {}", r.cpu);
    }
    outln!("{:<14} {:>10} {:>10}", "stage", "wall s", "cpu s");
    for s in &r.stages {
        let cpu = s.cpu_s.map_or("-".to_string(), |c| format!("{c:.2}"));
        outln!("{:<14} {:>10.3} {:>10}", s.stage, s.wall_s, cpu);
    }
    outln!("{:<14} {:>10.3} {:>10}", "sampler/step", r.sampler_per_step_s, "-");
    outln!("{:<14} {:>10.3} {:>10.2}", "end to end", r.end_to_end_s, r.end_to_end_cpu_s);
    outln!("real-time factor {:.2} (end-to-end s per s of audio), peak RSS {:.0} MB", r.rtf, r.peak_rss_mb);
    Ok(())
}

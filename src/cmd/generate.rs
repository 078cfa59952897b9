//! `foley generate VIDEO [--sfx ...] [--bgm ...] [--asmr] [--seed N] [--steps N] [--cfg X] [--model V]
//! [-o OUT.mp4|.mov] [--wav OUT.wav] [--json]`: one generation through the pipeline's Engine, with a progress
//! bar per stage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use foley_pipeline::{CancelToken, Engine, Output, OutputFormat, Progress, Request, Stage};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The input video (mp4/mov, 3–20 s).
    pub video: PathBuf,
    /// Sound effects to generate (the text condition of the video pass). Empty: video-only.
    #[arg(long, default_value = "")]
    pub sfx: String,
    /// Background music to generate under the effects (a second, text-only pass).
    #[arg(long, default_value = "")]
    pub bgm: String,
    /// Close-mic, detail-first ASMR profile (see the README for every setting it changes).
    #[arg(long)]
    pub asmr: bool,
    /// What to steer away from.
    #[arg(long, default_value = "")]
    pub negative: String,
    /// Random seed (default: a random one, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sampler steps (default 25; 40 in ASMR mode).
    #[arg(long)]
    pub steps: Option<u32>,
    /// Classifier-free guidance strength (default 4.5; 6 in ASMR mode).
    #[arg(long = "cfg")]
    pub cfg_strength: Option<f32>,
    /// Model variant: large_44k_v2 (default on GPU), medium_44k, small_44k, small_16k (default on CPU), or
    /// tiny-test (random weights shipped with foley: noise, for self-checks).
    #[arg(long, env = "FOLEY_MODEL")]
    pub model: Option<String>,
    /// Use the checkpoints in this folder in place (an MMAudio checkout, a ComfyUI models/mmaudio folder or a
    /// folder of the official files), before foley's imported store and the Hugging Face cache.
    #[arg(long, env = "FOLEY_WEIGHTS_DIR")]
    pub weights_dir: Option<PathBuf>,
    /// Networks' dtype: on the CPU f32 (default) or bf16 (weights held in bf16: half the memory; products
    /// accumulated in f32, on AVX512-BF16 where the processor has it); on a GPU bf16 (default), f16 or f32.
    #[arg(long, env = "FOLEY_DTYPE", value_parser = ["f32", "bf16", "f16"])]
    pub dtype: Option<String>,
    /// Output video (default: <input stem>.foley.<mp4|mov> beside the input). Same container as the input.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Also write the mix alone as a wav file here.
    #[arg(long)]
    pub wav: Option<PathBuf>,
    /// Keep the stems (sfx.wav, bgm.wav) in this directory.
    #[arg(long)]
    pub stems: Option<PathBuf>,
    /// Mix the video's own audio under the new audio instead of replacing it.
    #[arg(long)]
    pub keep_original_audio: bool,
    /// Print one JSON summary on stdout instead of text (no progress bar).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let model = args.model.clone().unwrap_or_else(|| foley_pipeline::default_model().to_string());
    let request = Request {
        video: args.video.clone(),
        sound_effect_prompt: args.sfx.clone(),
        bgm_prompt: args.bgm.clone(),
        asmr_mode: args.asmr,
        negative_prompt: args.negative.clone(),
        seed: args.seed,
        num_steps: args.steps,
        cfg_strength: args.cfg_strength,
        keep_original_audio: args.keep_original_audio,
        output_format: OutputFormat::Auto,
    };
    // bad fields and bad videos are refused before the (slow) model load
    request.check_fields()?;
    let info = foley_media::check(&args.video, &foley_media::Limits::default())?;
    let out_video = match &args.output {
        Some(p) => p.clone(),
        None => default_output(&args.video, info.container.extension()),
    };
    let ext = info.container.extension();
    let out_ext = out_video.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let ok = match out_ext.as_deref() {
        Some("mp4" | "m4v") => ext == "mp4",
        Some("mov" | "qt") => ext == "mov",
        _ => false,
    };
    if !ok {
        return Err(foley_pipeline::PipelineError::invalid(
            "output",
            format!("{} must end in .{ext}: a {ext} input is written back as {ext}", out_video.display()),
        )
        .into());
    }
    let out_dir = out_video.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let work = tempfile::Builder::new().prefix(".foley-").tempdir_in(&out_dir).with_context(|| {
        format!("creating a work directory in {}", out_dir.display())
    })?;

    let spec = foley_pipeline::ModelSpec::find(&model)?;
    let device = foley_pipeline::device_for(&model);
    let dtype = super::dtype_arg(&device, args.dtype.as_deref())?;
    if spec.noise && !args.json {
        eprintln!("note: model {model} has random weights; its audio is noise (a self-check of the whole pipeline)");
    }
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(100) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:>11} [{bar:30}] {pos:>3}% {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix("load");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let engine = foley_pipeline::FoleyEngine::load_from(spec.clone(), device, dtype, args.weights_dir.as_deref())?;
    let weights: std::collections::BTreeMap<String, PathBuf> = engine.files().iter().cloned().collect();
    let last = Mutex::new(None::<Stage>);
    let progress = |p: Progress| {
        let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
        if *l != Some(p.stage) {
            *l = Some(p.stage);
            bar.set_prefix(p.stage.name());
        }
        bar.set_position(p.percent.round() as u64);
    };
    let cancel = CancelToken::new();
    let result = engine.generate(&request, work.path(), &progress, &cancel);
    bar.finish_and_clear();
    let output = result?;

    // move the outputs into place
    std::fs::rename(&output.video, &out_video)
        .with_context(|| format!("writing {}", out_video.display()))?;
    if let Some(wav) = &args.wav {
        copy(&output.audio, wav)?;
    }
    let mut stems = Vec::new();
    if let Some(dir) = &args.stems {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for p in std::iter::once(&output.sfx_stem).chain(output.bgm_stem.as_ref()) {
            let dst = dir.join(p.file_name().unwrap_or_default());
            copy(p, &dst)?;
            stems.push(dst);
        }
    }
    summary(&args, &output, &out_video, &stems, spec.noise, &weights)?;
    Ok(ExitCode::SUCCESS)
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("writing {}", to.display()))?;
    Ok(())
}

fn default_output(video: &Path, ext: &str) -> PathBuf {
    let stem = video.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    video.with_file_name(format!("{stem}.foley.{ext}"))
}

fn summary(
    args: &Args,
    o: &Output,
    video: &Path,
    stems: &[PathBuf],
    noise: bool,
    weights: &std::collections::BTreeMap<String, PathBuf>,
) -> anyhow::Result<()> {
    if args.json {
        let v = serde_json::json!({
            "video": video,
            "wav": args.wav,
            "stems": stems,
            "duration_s": o.duration_s,
            "sample_rate": o.sample_rate,
            "seed": o.seed,
            "model": o.model,
            "noise": noise,
            "settings": o.settings,
            "timings": o.timings,
            "weights": weights,
        });
        outln!("{v}");
        return Ok(());
    }
    outln!("video:    {}", video.display());
    if let Some(w) = &args.wav {
        outln!("wav:      {}", w.display());
    }
    for s in stems {
        outln!("stem:     {}", s.display());
    }
    outln!("model:    {}{}", o.model, if noise { " (random weights: noise)" } else { "" });
    outln!("seed:     {}", o.seed);
    let lufs = o.settings.get("measured_loudness_lufs").and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
    outln!("loudness: {lufs:.1} LUFS");
    let total: f64 = o.timings.iter().map(|t| t.seconds).sum();
    let parts: Vec<String> = o.timings.iter().map(|t| format!("{} {:.2}s", t.stage.name(), t.seconds)).collect();
    outln!("time:     {total:.2}s ({})", parts.join(", "));
    Ok(())
}

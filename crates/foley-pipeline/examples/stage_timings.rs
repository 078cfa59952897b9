//! Per-stage timings of one generation: `cargo run --release -p foley-pipeline --example stage_timings --
//! MODEL VIDEO [--random] [--sfx TEXT] [--bgm TEXT] [--steps N]`. `--random` builds the variant at its real
//! shapes with random weights (no checkpoint needed); the audio is then noise.

use foley_pipeline::{CancelToken, Engine, FoleyEngine, ModelSpec, Request};

fn main() -> anyhow::Result<()> {
    foley_kernels::alloc::tune_for_inference();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let (model, video) = match (args.first(), args.get(1)) {
        (Some(m), Some(v)) => (m.clone(), v.clone()),
        _ => anyhow::bail!("usage: stage_timings MODEL VIDEO [--random] [--sfx TEXT] [--bgm TEXT] [--steps N]"),
    };
    let spec = ModelSpec::find(&model)?;
    let device = foley_pipeline::device_for(&model);
    let t = std::time::Instant::now();
    let engine = if args.iter().any(|a| a == "--random") {
        FoleyEngine::random(spec, device)?
    } else {
        FoleyEngine::load(spec, device)?
    };
    let load = t.elapsed().as_secs_f64();
    let req = Request {
        video: video.into(),
        sound_effect_prompt: flag("--sfx").unwrap_or_else(|| "footsteps on gravel".into()),
        bgm_prompt: flag("--bgm").unwrap_or_default(),
        num_steps: flag("--steps").map(|s| s.parse()).transpose()?,
        seed: Some(42),
        ..Request::default()
    };
    let dir = tempfile::tempdir()?;
    let t = std::time::Instant::now();
    // stage changes as they happen (long runs show where they are)
    let last = std::sync::Mutex::new(None);
    let progress = |p: foley_pipeline::Progress| {
        let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
        if *l != Some(p.stage) {
            *l = Some(p.stage);
            eprintln!("[{:>8.2} s] {:?}", t.elapsed().as_secs_f64(), p.stage);
        }
    };
    let out = engine.generate(&req, dir.path(), &progress, &CancelToken::new())?;
    let total = t.elapsed().as_secs_f64();
    println!("model {model}, {:.2} s clip, {} steps, load {load:.2} s", out.duration_s, out.settings["num_steps"]);
    println!("| stage | seconds |\n|---|---|");
    for s in &out.timings {
        println!("| {:?} | {:.2} |", s.stage, s.seconds);
    }
    println!("| total | {total:.2} |");
    Ok(())
}

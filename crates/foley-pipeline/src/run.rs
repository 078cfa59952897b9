//! The request-level flow of [`FoleyEngine`]: check → frames → CLIP / Synchformer features → effects pass (video +
//! effects prompt) → music pass (music prompt only, learned empty video features) → mix (levels, ducking,
//! loudness) → mux. Implements the [`Engine`] trait.

use std::path::{Path, PathBuf};
use std::time::Instant;

use foley_media::{AudioBuffer, Container, Limits, MuxOptions, OriginalAudio, WavFormat};

use crate::engine::{FoleyEngine, Pass, Timer};
use crate::error::PipelineError;
use crate::features::{internal, load_video};
use crate::mix;
use crate::request::{
    CancelToken, Engine, Output, OutputFormat, Progress, ProgressFn, Request, Stage, StageTiming,
};
use crate::settings::Settings;
use crate::window;

/// Where each stage starts in the overall percentage.
fn stage_start(stage: Stage) -> f32 {
    match stage {
        Stage::Probe => 0.0,
        Stage::Frames => 2.0,
        Stage::Clip => 8.0,
        Stage::Synchformer => 20.0,
        Stage::Text => 30.0,
        Stage::Sampling => 32.0,
        Stage::Vae => 86.0,
        Stage::Vocoder => 88.0,
        Stage::Mix => 94.0,
        Stage::Mux => 97.0,
    }
}

impl Engine for FoleyEngine {
    fn model(&self) -> &str {
        &self.spec.name
    }

    fn generate(
        &self,
        request: &Request,
        out_dir: &Path,
        progress: ProgressFn<'_>,
        cancel: &CancelToken,
    ) -> Result<Output, PipelineError> {
        request.check_fields()?;
        let report = |stage: Stage, percent: f32| progress(Progress { stage, percent: percent.clamp(0.0, 100.0) });
        let mut timer = Timer::default();

        // probe + validate
        report(Stage::Probe, stage_start(Stage::Probe));
        let t = Instant::now();
        let info = foley_media::check(&request.video, &Limits::default())?;
        let ext = match (request.output_format, info.container) {
            (OutputFormat::Auto, c) | (OutputFormat::Mp4, c @ Container::Mp4) | (OutputFormat::Mov, c @ Container::Mov) => {
                c.extension()
            }
            (f, c) => {
                return Err(PipelineError::invalid(
                    "output_format",
                    format!("{f:?} was asked for, but a {} input is written back as {}", c.extension(), c.extension())
                        .to_lowercase(),
                ))
            }
        };
        let mut settings = Settings::resolve(request, &self.spec.name, self.spec.sample_rate(), self.spec.noise);
        timer.add(Stage::Probe, t);
        cancel.check()?;

        // frames + features
        report(Stage::Frames, stage_start(Stage::Frames));
        let t = Instant::now();
        let max_d = info.duration_s.min(Limits::default().max_duration_s);
        let frames = load_video(&request.video, &info, max_d, &candle_core::Device::Cpu)?;
        timer.add(Stage::Frames, t);
        cancel.check()?;
        report(Stage::Clip, stage_start(Stage::Clip));
        let t = Instant::now();
        let clip = self.clip_features(&frames.clip)?;
        timer.add(Stage::Clip, t);
        cancel.check()?;
        report(Stage::Synchformer, stage_start(Stage::Synchformer));
        let t = Instant::now();
        let sync = self.sync_features(&frames.sync)?;
        timer.add(Stage::Synchformer, t);
        cancel.check()?;

        // sampling passes (the music pass shares the progress range of sampling with the effects pass)
        let duration = frames.duration_s;
        let plan = window::plan(duration, self.window_s);
        settings.window_s = plan.window_s();
        let passes = if settings.bgm_prompt.is_empty() { 1 } else { 2 };
        let steps = settings.num_steps as usize;
        let total_steps = (passes * steps * plan.windows.len()).max(1);
        let mut done = 0usize;
        let span = stage_start(Stage::Vae) - stage_start(Stage::Sampling);
        report(Stage::Text, stage_start(Stage::Text));
        let mut run_pass = |video: bool, text: &str, seed: u64, timer: &mut Timer| -> Result<Vec<f32>, PipelineError> {
            let mut pieces = Vec::new();
            for w in &plan.windows {
                let (c, s) = if video {
                    let (c, s) = window::slice_features(&clip, &sync, w, duration).map_err(internal)?;
                    (Some(c), Some(s))
                } else {
                    (None, None)
                };
                let seq = self.spec.sequence(w.duration());
                let pass = Pass { clip: c.as_ref(), sync: s.as_ref(), text, negative: &settings.negative_prompt, seed };
                let mut on_step = |_: foley_models::sampler::Step| {
                    done += 1;
                    report(Stage::Sampling, stage_start(Stage::Sampling) + span * done as f32 / total_steps as f32);
                };
                let cfg = f64::from(settings.cfg_strength);
                pieces.push(self.sample(&pass, &seq, steps, cfg, cancel, &mut on_step, timer)?);
            }
            Ok(window::join(&plan, pieces, self.spec.sample_rate()))
        };
        let sfx = run_pass(true, &settings.sfx_prompt.clone(), settings.seed, &mut timer)?;
        let bgm = if passes == 2 {
            Some(run_pass(false, &settings.bgm_prompt.clone(), settings.seed.wrapping_add(1), &mut timer)?)
        } else {
            None
        };
        cancel.check()?;

        // mix
        report(Stage::Mix, stage_start(Stage::Mix));
        let t = Instant::now();
        let out_rate = settings.output_sample_rate;
        let frames_out = (info.duration_s * f64::from(out_rate)).round() as usize;
        let to_out = |x: Vec<f32>| -> Result<Vec<f32>, PipelineError> {
            let buf = AudioBuffer { sample_rate: self.spec.sample_rate(), channels: 1, samples: x };
            let mut b = foley_media::resample(&buf, out_rate, 1)?;
            b.fit_to(frames_out);
            Ok(b.samples)
        };
        let mut sfx = to_out(sfx)?;
        mix::set_loudness(&mut sfx, 1, out_rate, settings.loudness_lufs)?;
        let mut mixed = sfx.clone();
        let bgm = match bgm {
            Some(b) => {
                let mut b = to_out(b)?;
                mix::set_loudness(&mut b, 1, out_rate, settings.loudness_lufs + settings.bgm_level_db)?;
                mix::duck(&mut b, &sfx, out_rate, settings.duck_max_db);
                mixed.iter_mut().zip(&b).for_each(|(m, x)| *m += x);
                Some(b)
            }
            None => None,
        };
        let mut stereo: Vec<f32> = mixed.iter().flat_map(|s| [*s, *s]).collect();
        let (lufs, tp) = mix::normalize(&mut stereo, 2, out_rate, settings.loudness_lufs, settings.true_peak_dbtp)?;
        // the stems carry the same overall gain as the mix
        let mix_gain = rms_ratio(&stereo, &mixed);
        let scale = |x: &mut Vec<f32>| x.iter_mut().for_each(|s| *s *= mix_gain);
        let mix_buf = AudioBuffer { sample_rate: out_rate, channels: 2, samples: stereo };
        let audio_path = out_dir.join("mix.wav");
        foley_media::write_wav(&audio_path, &mix_buf, WavFormat::Float32)?;
        let sfx_path = out_dir.join("sfx.wav");
        scale(&mut sfx);
        foley_media::write_wav(&sfx_path, &AudioBuffer { sample_rate: out_rate, channels: 1, samples: sfx }, WavFormat::Float32)?;
        let bgm_path = match bgm {
            Some(mut b) => {
                scale(&mut b);
                let p = out_dir.join("bgm.wav");
                foley_media::write_wav(&p, &AudioBuffer { sample_rate: out_rate, channels: 1, samples: b }, WavFormat::Float32)?;
                Some(p)
            }
            None => None,
        };
        timer.add(Stage::Mix, t);
        cancel.check()?;

        // mux
        report(Stage::Mux, stage_start(Stage::Mux));
        let t = Instant::now();
        let video_path: PathBuf = out_dir.join(format!("video.{ext}"));
        let opts = MuxOptions {
            original_audio: match settings.original_audio_db {
                Some(gain_db) => OriginalAudio::MixUnder { gain_db },
                None => OriginalAudio::Replace,
            },
            sample_rate: out_rate,
            channels: 2,
            ..MuxOptions::default()
        };
        foley_media::mux(&request.video, &mix_buf, &video_path, &opts)?;
        timer.add(Stage::Mux, t);
        report(Stage::Mux, 100.0);

        let mut json = settings.to_json();
        if let Some(o) = json.as_object_mut() {
            o.insert("measured_loudness_lufs".into(), serde_json::json!(round2(lufs)));
            o.insert("measured_true_peak_dbtp".into(), serde_json::json!(round2(tp)));
            o.insert("generated_duration_s".into(), serde_json::json!(duration));
        }
        Ok(Output {
            video: video_path,
            audio: audio_path,
            sfx_stem: sfx_path,
            bgm_stem: bgm_path,
            duration_s: info.duration_s,
            sample_rate: out_rate,
            seed: settings.seed,
            model: self.spec.name.clone(),
            settings: json,
            timings: timer.0.into_iter().map(|(stage, seconds)| StageTiming { stage, seconds }).collect(),
        })
    }
}

fn round2(x: f64) -> f64 {
    if x.is_finite() {
        (x * 100.0).round() / 100.0
    } else {
        x
    }
}

/// The gain that took mono `before` to the left channel of interleaved stereo `after` (ratio of RMS).
fn rms_ratio(after: &[f32], before: &[f32]) -> f32 {
    let e = |it: &mut dyn Iterator<Item = f32>| it.map(|s| f64::from(s) * f64::from(s)).sum::<f64>();
    let a = e(&mut after.iter().step_by(2).copied());
    let b = e(&mut before.iter().copied());
    if b > 0.0 {
        (a / b).sqrt() as f32
    } else {
        1.0
    }
}

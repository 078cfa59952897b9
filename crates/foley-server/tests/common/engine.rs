//! A stand-in engine for the server's tests (the real MMAudio engine lives in foley-pipeline): it does real
//! media work through foley-media — validates the video, writes tone wav stems, muxes the mix into the video —
//! reports progress over a few sleeping steps and honours the cancel token between them.
//! A sound-effect prompt of `__fail__` makes it fail with an internal error; one of `__hold__` keeps its worker
//! busy until the task is cancelled (at most 30 s), for tests that need a task that stays running.

use std::path::Path;
use std::time::Duration;

use foley_pipeline::{CancelToken, Engine, Output, OutputFormat, PipelineError, Progress, ProgressFn, Request, Stage};

pub struct ToneEngine {
    pub steps: u32,
    pub step: Duration,
}

impl ToneEngine {
    pub fn new(steps: u32, step_ms: u64) -> Self {
        ToneEngine { steps, step: Duration::from_millis(step_ms) }
    }
}

fn tone(rate: u32, secs: f64, freq: f32) -> foley_media::AudioBuffer {
    let frames = (secs * rate as f64) as usize;
    let samples = (0..frames)
        .flat_map(|i| {
            let s = 0.3 * (i as f32 * 2.0 * std::f32::consts::PI * freq / rate as f32).sin();
            [s, s]
        })
        .collect();
    foley_media::AudioBuffer { sample_rate: rate, channels: 2, samples }
}

impl Engine for ToneEngine {
    fn model(&self) -> &str {
        "tone-test"
    }

    fn generate(
        &self,
        req: &Request,
        out_dir: &Path,
        progress: ProgressFn<'_>,
        cancel: &CancelToken,
    ) -> Result<Output, PipelineError> {
        foley_media::init();
        progress(Progress { stage: Stage::Probe, percent: 1.0 });
        let info = foley_media::check(&req.video, &foley_media::Limits::default())?;
        if req.sound_effect_prompt == "__fail__" {
            return Err(PipelineError::Internal("the tone engine was asked to fail".into()));
        }
        if req.sound_effect_prompt == "__hold__" {
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < until {
                cancel.check()?;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for i in 0..self.steps {
            cancel.check()?;
            std::thread::sleep(self.step);
            progress(Progress { stage: Stage::Sampling, percent: 5.0 + 85.0 * (i + 1) as f32 / self.steps as f32 });
        }
        cancel.check()?;
        let rate = 44_100;
        let sfx = tone(rate, info.duration_s, 440.0);
        let sfx_path = out_dir.join("sfx.wav");
        foley_media::write_wav(&sfx_path, &sfx, foley_media::WavFormat::Float32)?;
        let bgm_path = if req.bgm_prompt.trim().is_empty() {
            None
        } else {
            let p = out_dir.join("bgm.wav");
            foley_media::write_wav(&p, &tone(rate, info.duration_s, 220.0), foley_media::WavFormat::Float32)?;
            Some(p)
        };
        let audio_path = out_dir.join("audio.wav");
        foley_media::write_wav(&audio_path, &sfx, foley_media::WavFormat::Float32)?;
        progress(Progress { stage: Stage::Mux, percent: 95.0 });
        let ext = match req.output_format {
            OutputFormat::Mov => "mov",
            OutputFormat::Mp4 => "mp4",
            OutputFormat::Auto => info.container.extension(),
        };
        let video_path = out_dir.join(format!("video.{ext}"));
        foley_media::mux(&req.video, &sfx, &video_path, &foley_media::MuxOptions::default())?;
        progress(Progress { stage: Stage::Mux, percent: 100.0 });
        Ok(Output {
            video: video_path,
            audio: audio_path,
            sfx_stem: sfx_path,
            bgm_stem: bgm_path,
            duration_s: info.duration_s,
            sample_rate: rate,
            seed: req.seed.unwrap_or(42),
            model: "tone-test".into(),
            // The real resolver (defaults, ASMR profile), as the MMAudio engine echoes it; seed 42 when none.
            settings: {
                let mut r = req.clone();
                r.seed.get_or_insert(42);
                foley_pipeline::Settings::resolve(&r, "tone-test", rate, true).to_json()
            },
            timings: vec![],
        })
    }
}

//! What a caller asks for ([`Request`]), what it gets back ([`Output`]), and the [`Engine`] trait between them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
pub use crate::stage::Stage;

/// Longest accepted prompt, in Unicode scalar values after trimming (the hosted service's limit).
pub const MAX_PROMPT_CHARS: usize = 200;
/// Accepted range of sampler steps.
pub const STEPS_RANGE: std::ops::RangeInclusive<u32> = 1..=200;
/// Accepted range of classifier-free guidance strength.
pub const CFG_RANGE: std::ops::RangeInclusive<f32> = 0.0..=20.0;

/// One generation request. `None` fields take the model's (or ASMR mode's) defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Request {
    /// The input video (a local file the caller owns; mp4/mov, 3–20 s).
    pub video: PathBuf,
    /// Sound effects to generate, e.g. "ocean waves, seagulls". Empty: video-only conditioning.
    pub sound_effect_prompt: String,
    /// Background music to generate under the effects. Empty: no music.
    pub bgm_prompt: String,
    /// Close-mic, detail-first profile (see the README for every setting it changes).
    pub asmr_mode: bool,
    /// What to steer away from (the unconditional branch's text).
    pub negative_prompt: String,
    pub seed: Option<u64>,
    pub num_steps: Option<u32>,
    pub cfg_strength: Option<f32>,
    /// Mix the video's own audio under the generated audio instead of replacing it.
    pub keep_original_audio: bool,
    pub output_format: OutputFormat,
}

/// Container of the output video.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// mp4 for mp4 input, mov for mov input.
    #[default]
    Auto,
    Mp4,
    Mov,
}

impl Request {
    /// Checks every field that can be checked without opening the video; the first broken rule is returned.
    pub fn check_fields(&self) -> Result<(), PipelineError> {
        for (field, text) in [
            ("sound_effect_prompt", &self.sound_effect_prompt),
            ("bgm_prompt", &self.bgm_prompt),
            ("negative_prompt", &self.negative_prompt),
        ] {
            let n = text.trim().chars().count();
            if n > MAX_PROMPT_CHARS {
                return Err(PipelineError::invalid(
                    field,
                    format!("is {n} characters long; the limit is {MAX_PROMPT_CHARS}"),
                ));
            }
        }
        if let Some(s) = self.num_steps {
            if !STEPS_RANGE.contains(&s) {
                return Err(PipelineError::invalid(
                    "num_steps",
                    format!("is {s}; it must be between {} and {}", STEPS_RANGE.start(), STEPS_RANGE.end()),
                ));
            }
        }
        if let Some(c) = self.cfg_strength {
            if !CFG_RANGE.contains(&c) {
                return Err(PipelineError::invalid(
                    "cfg_strength",
                    format!("is {c}; it must be between {} and {}", CFG_RANGE.start(), CFG_RANGE.end()),
                ));
            }
        }
        if let Some(seed) = self.seed {
            // Kept within 2^53 so that every seed survives a round trip through JSON numbers.
            if seed > (1u64 << 53) {
                return Err(PipelineError::invalid("seed", format!("is {seed}; it must be at most 2^53")));
            }
        }
        Ok(())
    }
}

/// A progress report: the stage and the overall completion in percent (0–100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub stage: Stage,
    pub percent: f32,
}

/// Progress callback, called from the worker thread.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// Wall time of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    pub stage: Stage,
    pub seconds: f64,
}

/// What a finished generation produced; every path is inside the output directory given to the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// The input video with the new audio (video stream copied).
    pub video: PathBuf,
    /// The mix alone.
    pub audio: PathBuf,
    /// The sound-effect stem, and the music stem when music was asked for.
    pub sfx_stem: PathBuf,
    pub bgm_stem: Option<PathBuf>,
    pub duration_s: f64,
    pub sample_rate: u32,
    pub seed: u64,
    pub model: String,
    /// The settings actually used (defaults and ASMR mode applied), echoed for the caller.
    pub settings: serde_json::Value,
    pub timings: Vec<StageTiming>,
}

/// A cancellation flag shared between the caller and the running generation (checked between steps).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// `Err(Cancelled)` once cancelled: for `?` between steps.
    pub fn check(&self) -> Result<(), PipelineError> {
        if self.is_cancelled() {
            Err(PipelineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// A loaded model bundle that turns requests into outputs. Implementations are shared across threads;
/// `generate` is blocking and may take minutes (call it from a blocking worker).
pub trait Engine: Send + Sync {
    /// The model variant's name (e.g. `small_16k`, `tiny-test`).
    fn model(&self) -> &str;
    /// Runs one request, writing outputs into `out_dir` (which exists).
    fn generate(
        &self,
        request: &Request,
        out_dir: &Path,
        progress: ProgressFn<'_>,
        cancel: &CancelToken,
    ) -> Result<Output, PipelineError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_limit_counts_unicode_scalars_after_trimming() {
        let mut r = Request { sound_effect_prompt: format!("  {}  ", "é".repeat(200)), ..Request::default() };
        assert!(r.check_fields().is_ok());
        r.bgm_prompt = "🌊".repeat(201);
        let e = r.check_fields().unwrap_err();
        assert_eq!(e.to_string(), "bgm_prompt: is 201 characters long; the limit is 200");
        assert!(e.is_user_error());
    }

    #[test]
    fn ranges_are_checked() {
        assert!(Request { num_steps: Some(0), ..Request::default() }.check_fields().is_err());
        assert!(Request { cfg_strength: Some(-1.0), ..Request::default() }.check_fields().is_err());
        assert!(Request { cfg_strength: Some(f32::NAN), ..Request::default() }.check_fields().is_err());
        assert!(Request { seed: Some(u64::MAX), ..Request::default() }.check_fields().is_err());
        assert!(Request { num_steps: Some(25), cfg_strength: Some(4.5), seed: Some(42), ..Request::default() }
            .check_fields()
            .is_ok());
    }

    #[test]
    fn stage_names_match_their_json() {
        for s in [Stage::Probe, Stage::Frames, Stage::Clip, Stage::Synchformer, Stage::Text, Stage::Sampling,
            Stage::Vae, Stage::Vocoder, Stage::Mix, Stage::Mux] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
    }

    #[test]
    fn cancel_token_is_shared() {
        let a = CancelToken::new();
        let b = a.clone();
        assert!(a.check().is_ok());
        b.cancel();
        assert!(matches!(a.check(), Err(PipelineError::Cancelled)));
    }
}

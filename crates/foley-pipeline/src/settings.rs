//! The generation settings a request resolves to: model defaults (`eval_utils.py` / `demo.py` of the reference:
//! 25 Euler steps, CFG 4.5), the ASMR profile, and the mixing/loudness targets. Every value is echoed in
//! `Output.settings`.

use serde::Serialize;

use crate::request::Request;

/// Reference defaults (`demo.py`): 25 steps, CFG strength 4.5.
pub const DEFAULT_STEPS: u32 = 25;
pub const DEFAULT_CFG: f32 = 4.5;
/// Output loudness target (EBU R128 integrated) and true-peak ceiling.
pub const DEFAULT_LUFS: f64 = -16.0;
pub const TRUE_PEAK_DBTP: f64 = -1.0;
/// Music level under the effects (loudness difference, dB).
pub const DEFAULT_BGM_DB: f64 = -10.0;
/// Gain of the video's own audio when it is kept under the new audio.
pub const ORIGINAL_AUDIO_DB: f32 = -12.0;

/// The ASMR profile (README "ASMR mode" lists exactly these).
pub mod asmr {
    /// Appended to the effects prompt (or used alone when it is empty).
    pub const PROMPT_SUFFIX: &str = "close-up ASMR, crisp detailed close-mic foley, quiet background";
    /// Appended to the negative prompt.
    pub const NEGATIVE: &str = "music, speech, loud noise, distortion, reverb";
    pub const STEPS: u32 = 40;
    pub const CFG: f32 = 6.0;
    /// A gentler loudness target than the default −16 LUFS.
    pub const LUFS: f64 = -20.0;
    /// Music, if asked for, sits lower under the effects.
    pub const BGM_DB: f64 = -14.0;
    /// Gentler ducking.
    pub const DUCK_MAX_DB: f64 = 3.0;
}

/// Ducking of the music where the effects are loud: up to `DUCK_MAX_DB` of reduction.
pub const DUCK_MAX_DB: f64 = 6.0;

/// Everything a generation uses, after defaults and the ASMR profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub model: String,
    pub seed: u64,
    pub num_steps: u32,
    pub cfg_strength: f32,
    /// The text conditioning the effects pass (after ASMR prompting).
    pub sfx_prompt: String,
    /// The music prompt; empty: no music pass.
    pub bgm_prompt: String,
    pub negative_prompt: String,
    pub asmr_mode: bool,
    pub loudness_lufs: f64,
    pub true_peak_dbtp: f64,
    pub bgm_level_db: f64,
    pub duck_max_db: f64,
    pub keep_original_audio: bool,
    pub original_audio_db: Option<f32>,
    /// Windows of this many seconds with crossfaded overlaps (`None`: the whole clip in one pass).
    pub window_s: Option<f64>,
    /// Sample rate of the model's audio and of the written audio (mix and stems, 48 kHz in the container).
    pub model_sample_rate: u32,
    pub output_sample_rate: u32,
    /// The weights are random (tiny-test): the audio is noise.
    pub noise_model: bool,
}

impl Settings {
    /// Resolves a (field-checked) request against the model's defaults and the ASMR profile.
    pub fn resolve(req: &Request, model: &str, model_sample_rate: u32, noise_model: bool) -> Self {
        let asmr_on = req.asmr_mode;
        let sfx = req.sound_effect_prompt.trim();
        let neg = req.negative_prompt.trim();
        let sfx_prompt = match (asmr_on, sfx.is_empty()) {
            (false, _) => sfx.to_string(),
            (true, true) => asmr::PROMPT_SUFFIX.to_string(),
            (true, false) => format!("{sfx}, {}", asmr::PROMPT_SUFFIX),
        };
        let negative_prompt = match (asmr_on, neg.is_empty()) {
            (false, _) => neg.to_string(),
            (true, true) => asmr::NEGATIVE.to_string(),
            (true, false) => format!("{neg}, {}", asmr::NEGATIVE),
        };
        fn pick<T>(asmr_on: bool, normal: T, asmr_value: T) -> T {
            if asmr_on {
                asmr_value
            } else {
                normal
            }
        }
        Settings {
            model: model.to_string(),
            seed: req.seed.unwrap_or_else(random_seed),
            num_steps: req.num_steps.unwrap_or(pick(asmr_on, DEFAULT_STEPS, asmr::STEPS)),
            cfg_strength: req.cfg_strength.unwrap_or(pick(asmr_on, DEFAULT_CFG, asmr::CFG)),
            sfx_prompt,
            bgm_prompt: req.bgm_prompt.trim().to_string(),
            negative_prompt,
            asmr_mode: asmr_on,
            loudness_lufs: pick(asmr_on, DEFAULT_LUFS, asmr::LUFS),
            true_peak_dbtp: TRUE_PEAK_DBTP,
            bgm_level_db: pick(asmr_on, DEFAULT_BGM_DB, asmr::BGM_DB),
            duck_max_db: pick(asmr_on, DUCK_MAX_DB, asmr::DUCK_MAX_DB),
            keep_original_audio: req.keep_original_audio,
            original_audio_db: req.keep_original_audio.then_some(ORIGINAL_AUDIO_DB),
            window_s: None,
            model_sample_rate,
            output_sample_rate: 48_000,
            noise_model,
        }
    }

    /// The settings as JSON for `Output.settings`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A seed when the request has none: from the clock and the process, kept below 2^53 (JSON-safe).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() & ((1u64 << 53) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_reference() {
        let s = Settings::resolve(&Request { seed: Some(1), ..Request::default() }, "m", 16_000, false);
        assert_eq!((s.num_steps, s.cfg_strength, s.loudness_lufs, s.seed), (25, 4.5, -16.0, 1));
        assert_eq!(s.sfx_prompt, "");
    }

    #[test]
    fn asmr_changes_only_what_is_not_set() {
        let r = Request { asmr_mode: true, sound_effect_prompt: " tapping ".into(), num_steps: Some(10), ..Request::default() };
        let s = Settings::resolve(&r, "m", 16_000, false);
        assert_eq!(s.num_steps, 10);
        assert_eq!(s.cfg_strength, asmr::CFG);
        assert_eq!(s.sfx_prompt, format!("tapping, {}", asmr::PROMPT_SUFFIX));
        assert_eq!(s.negative_prompt, asmr::NEGATIVE);
        assert_eq!(s.loudness_lufs, asmr::LUFS);
        assert!(s.bgm_prompt.is_empty());
    }

    #[test]
    fn random_seeds_are_json_safe() {
        let s = Settings::resolve(&Request::default(), "m", 16_000, false);
        assert!(s.seed <= 1 << 53);
    }
}

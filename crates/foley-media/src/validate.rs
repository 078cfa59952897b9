//! `validate`: is a probed video acceptable for generation?

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::probe::VideoInfo;

/// Acceptance limits. The defaults are those of the hosted service: 3–20 s, at most 100 MB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub min_duration_s: f64,
    pub max_duration_s: f64,
    pub max_file_size: u64,
    /// Smallest and largest allowed displayed side, in pixels.
    pub min_side: u32,
    pub max_side: u32,
    pub min_fps: f64,
    pub max_fps: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_duration_s: 3.0,
            max_duration_s: 20.0,
            max_file_size: 100 * 1000 * 1000,
            min_side: 16,
            max_side: 8192,
            min_fps: 1.0,
            max_fps: 240.0,
        }
    }
}

/// Checks a probed video against `limits`; the first failure found is returned, in this order:
/// size, decodability, still image, duration, dimensions, frame rate.
pub fn validate(info: &VideoInfo, limits: &Limits) -> Result<(), InputError> {
    if info.file_size > limits.max_file_size {
        return Err(InputError::TooLarge {
            size_mb: info.file_size as f64 / 1e6,
            max_mb: limits.max_file_size as f64 / 1e6,
        });
    }
    let v = &info.video;
    if !v.decodable {
        return Err(InputError::Undecodable {
            codec: v.codec.clone(),
            detail: v.decode_error.clone().unwrap_or_else(|| "no frame could be decoded".into()),
        });
    }
    if v.frame_count < 2 {
        return Err(InputError::StillImage);
    }
    if !(limits.min_duration_s..=limits.max_duration_s).contains(&info.duration_s) {
        return Err(InputError::Duration {
            duration_s: info.duration_s,
            min_s: limits.min_duration_s,
            max_s: limits.max_duration_s,
        });
    }
    let side_ok = |s: u32| (limits.min_side..=limits.max_side).contains(&s);
    if !side_ok(v.width) || !side_ok(v.height) {
        return Err(InputError::Dimensions {
            width: v.width,
            height: v.height,
            min: limits.min_side,
            max: limits.max_side,
        });
    }
    if !(limits.min_fps..=limits.max_fps).contains(&v.fps) {
        return Err(InputError::FrameRate { fps: v.fps, min: limits.min_fps, max: limits.max_fps });
    }
    Ok(())
}

/// Probes and validates in one call: the verdict on a file.
pub fn check(path: &std::path::Path, limits: &Limits) -> crate::Result<VideoInfo> {
    let info = crate::probe(path)?;
    validate(&info, limits)?;
    Ok(info)
}

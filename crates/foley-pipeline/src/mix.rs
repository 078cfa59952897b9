//! Mixing and loudness: the music stem under the effects with side-chain ducking, EBU R128 loudness
//! normalisation (integrated loudness and true peak measured with the `ebur128` crate) and a look-ahead peak
//! limiter that keeps the true peak under the ceiling.

use ebur128::{EbuR128, Mode};

use crate::error::PipelineError;

/// Loudness below this (LUFS) counts as silence: no normalisation gain is applied to it.
const SILENCE_LUFS: f64 = -70.0;

fn db_to_gain(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

/// Integrated loudness (LUFS) and true peak (dBTP) of interleaved samples.
pub fn measure(samples: &[f32], channels: u16, rate: u32) -> Result<(f64, f64), PipelineError> {
    let mut m = EbuR128::new(u32::from(channels), rate, Mode::I | Mode::TRUE_PEAK)
        .map_err(|e| PipelineError::Internal(format!("ebur128: {e}")))?;
    m.add_frames_f32(samples).map_err(|e| PipelineError::Internal(format!("ebur128: {e}")))?;
    let lufs = m.loudness_global().map_err(|e| PipelineError::Internal(format!("ebur128: {e}")))?;
    let mut peak = 0f64;
    for c in 0..u32::from(channels) {
        peak = peak.max(m.true_peak(c).map_err(|e| PipelineError::Internal(format!("ebur128: {e}")))?);
    }
    Ok((lufs, 20.0 * peak.max(1e-12).log10()))
}

/// Scales `samples` to `target_lufs` (no-op for silence); returns the gain applied in dB.
pub fn set_loudness(samples: &mut [f32], channels: u16, rate: u32, target_lufs: f64) -> Result<f64, PipelineError> {
    let (lufs, _) = measure(samples, channels, rate)?;
    if !lufs.is_finite() || lufs < SILENCE_LUFS {
        return Ok(0.0);
    }
    let db = target_lufs - lufs;
    let g = db_to_gain(db);
    samples.iter_mut().for_each(|s| *s *= g);
    Ok(db)
}

/// Look-ahead peak limiter on interleaved samples: the gain reaches `ceiling` (linear) before any sample that
/// would exceed it (1.5 ms look-ahead, linear attack over the look-ahead, 100 ms release).
pub fn limit(samples: &mut [f32], channels: u16, rate: u32, ceiling: f32) {
    let ch = usize::from(channels.max(1));
    let n = samples.len() / ch;
    if n == 0 {
        return;
    }
    let look = ((rate as f64 * 0.0015) as usize).max(1);
    // the gain each frame needs on its own
    let need: Vec<f32> = (0..n)
        .map(|i| {
            let p = samples[i * ch..(i + 1) * ch].iter().fold(0f32, |a, s| a.max(s.abs()));
            if p > ceiling {
                ceiling / p
            } else {
                1.0
            }
        })
        .collect();
    // backward pass: ramp down linearly over the look-ahead before each reduction
    let step = 1.0 / look as f32;
    let mut gain = need.clone();
    for i in (0..n.saturating_sub(1)).rev() {
        gain[i] = gain[i].min(gain[i + 1] + step);
    }
    // forward pass: exponential release
    let rel = 1.0 - (-1.0 / (rate as f64 * 0.1)).exp() as f32;
    let mut g = 1f32;
    for (i, frame) in samples.chunks_mut(ch).enumerate() {
        g = if gain[i] < g { gain[i] } else { (g + (1.0 - g) * rel).min(gain[i]) };
        frame.iter_mut().for_each(|s| *s *= g);
    }
}

/// Normalises interleaved audio to `target_lufs` with the true peak at most `ceiling_dbtp`: gain, then the
/// limiter, re-measured (limiting lowers the loudness a little; at most three rounds). Returns the final
/// (loudness, true peak).
pub fn normalize(
    samples: &mut [f32],
    channels: u16,
    rate: u32,
    target_lufs: f64,
    ceiling_dbtp: f64,
) -> Result<(f64, f64), PipelineError> {
    let mut margin = 0.3;
    for _ in 0..3 {
        set_loudness(samples, channels, rate, target_lufs)?;
        let (_, tp) = measure(samples, channels, rate)?;
        if tp <= ceiling_dbtp {
            break;
        }
        limit(samples, channels, rate, db_to_gain(ceiling_dbtp - margin));
        margin += 0.3;
    }
    let (_, tp) = measure(samples, channels, rate)?;
    if tp > ceiling_dbtp {
        // last resort: plain gain (loudness ends a little under the target)
        let g = db_to_gain(ceiling_dbtp - tp - 0.05);
        samples.iter_mut().for_each(|s| *s *= g);
    }
    measure(samples, channels, rate)
}

/// Side-chain ducking: lowers mono `music` where mono `effects` is loud. The effects' envelope (RMS over 50 ms,
/// 10 ms attack, 300 ms release) above its own median level by `d` dB lowers the music by `d / 2` dB, at most
/// `max_db`.
pub fn duck(music: &mut [f32], effects: &[f32], rate: u32, max_db: f64) {
    let n = music.len().min(effects.len());
    if n == 0 || max_db <= 0.0 {
        return;
    }
    let win = ((rate as f64 * 0.05) as usize).max(1);
    // running mean square over `win` samples
    let mut env = vec![0f64; n];
    let mut acc = 0f64;
    for i in 0..n {
        acc += f64::from(effects[i]).powi(2);
        if i >= win {
            acc -= f64::from(effects[i - win]).powi(2);
        }
        env[i] = 10.0 * (acc.max(0.0) / win as f64 + 1e-12).log10();
    }
    let mut sorted = env.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[n / 2];
    let (att, rel) = (coef(rate, 0.01), coef(rate, 0.3));
    let mut red = 0f64;
    for i in 0..n {
        let want = ((env[i] - median) / 2.0).clamp(0.0, max_db);
        red += (want - red) * if want > red { att } else { rel };
        music[i] *= db_to_gain(-red);
    }
}

fn coef(rate: u32, seconds: f64) -> f64 {
    1.0 - (-1.0 / (f64::from(rate) * seconds)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn normalises_to_target_under_the_ceiling() {
        let rate = 48_000;
        let mut x: Vec<f32> = noise(rate as usize * 4, 3).iter().map(|s| s * 0.9).collect();
        // a few loud clicks that force the limiter
        for i in (1000..x.len()).step_by(40_000) {
            x[i] = 1.0;
        }
        let (lufs, tp) = normalize(&mut x, 1, rate, -16.0, -1.0).unwrap();
        assert!((lufs + 16.0).abs() < 0.5, "{lufs}");
        assert!(tp <= -1.0 + 1e-6, "{tp}");
    }

    #[test]
    fn silence_stays_silent() {
        let mut x = vec![0f32; 48_000];
        let (lufs, _) = normalize(&mut x, 1, 48_000, -16.0, -1.0).unwrap();
        assert!(lufs.is_infinite() || lufs < -70.0);
        assert!(x.iter().all(|s| *s == 0.0));
    }

    #[test]
    fn ducking_lowers_music_only_where_effects_are_loud() {
        let rate = 16_000;
        let n = rate as usize * 2;
        let mut fx = vec![0.001f32; n];
        for s in fx[n / 2..].iter_mut() {
            *s = 0.5;
        }
        let mut music = vec![0.1f32; n];
        duck(&mut music, &fx, rate, 6.0);
        assert!((music[n / 4] - 0.1).abs() < 1e-4);
        assert!(music[n - 1] < 0.1 * 0.6 && music[n - 1] > 0.1 * 0.45, "{}", music[n - 1]);
    }
}

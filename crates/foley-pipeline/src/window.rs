//! Optional windowed generation for clips longer than a window (off by default, see the README "Durations"):
//! the clip is cut into windows of `window_s` seconds overlapping by [`OVERLAP_S`], each window is generated with
//! its own slice of the CLIP and Synchformer features (sequence lengths from the window's duration), and the
//! pieces are joined with equal-power crossfades over the overlaps.
//!
//! The reference generates any duration in one pass (`demo.py --duration`, lengths from `SequenceConfig`), and so
//! does foley by default; windowing is enabled with `FOLEY_WINDOW_S` (e.g. `8`).

use candle_core::Tensor;

/// Overlap between consecutive windows, seconds.
pub const OVERLAP_S: f64 = 1.0;
/// Synchformer features: 8 tokens per segment, one segment every 8 frames at 25 fps.
const SYNC_SEGMENT_S: f64 = 8.0 / 25.0;

/// A time range of the clip, seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: f64,
    pub end: f64,
}

impl Window {
    pub fn duration(&self) -> f64 {
        self.end - self.start
    }
}

/// The windows of one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub windows: Vec<Window>,
    pub duration: f64,
}

impl Plan {
    /// The window length in use (`None`: one pass).
    pub fn window_s(&self) -> Option<f64> {
        (self.windows.len() > 1).then(|| self.windows[0].duration())
    }
}

/// One window covering the clip, or windows of `window_s` (≥ 4 s) overlapping by [`OVERLAP_S`], the last one
/// ending at the clip's end; window starts are on the Synchformer segment grid (0.32 s).
pub fn plan(duration: f64, window_s: Option<f64>) -> Plan {
    let one = Plan { windows: vec![Window { start: 0.0, end: duration }], duration };
    let Some(w) = window_s.filter(|w| w.is_finite() && *w >= 4.0) else { return one };
    if duration <= w + 1e-6 {
        return one;
    }
    let mut windows = Vec::new();
    let mut start = 0.0f64;
    loop {
        if start + w >= duration - 1e-6 {
            // last window: ends at the clip's end, start on the grid
            let s = ((duration - w) / SYNC_SEGMENT_S - 1e-9).ceil() * SYNC_SEGMENT_S;
            windows.push(Window { start: s.max(0.0), end: duration });
            break;
        }
        windows.push(Window { start, end: start + w });
        start = ((start + w - OVERLAP_S) / SYNC_SEGMENT_S).floor() * SYNC_SEGMENT_S;
    }
    Plan { windows, duration }
}

/// The CLIP and Synchformer features of one window, cut from the whole clip's `(1, T, D)` features.
pub fn slice_features(clip: &Tensor, sync: &Tensor, w: &Window, duration: f64) -> candle_core::Result<(Tensor, Tensor)> {
    if w.start == 0.0 && (w.end - duration).abs() < 1e-9 {
        return Ok((clip.clone(), sync.clone()));
    }
    let seq = foley_models::mmaudio::sequence::SequenceConfig::mode_16k(w.duration());
    let (n_clip, n_sync) = (seq.clip_seq_len(), seq.sync_seq_len());
    let c0 = ((w.start * 8.0).round() as usize).min(clip.dim(1)?.saturating_sub(n_clip));
    let s0 = (((w.start / SYNC_SEGMENT_S).round() as usize) * 8).min(sync.dim(1)?.saturating_sub(n_sync));
    Ok((clip.narrow(1, c0, n_clip.min(clip.dim(1)?))?, sync.narrow(1, s0, n_sync.min(sync.dim(1)?))?))
}

/// Joins the pieces generated for each window (mono, `rate`): equal-power crossfades over the overlaps.
pub fn join(plan: &Plan, pieces: Vec<Vec<f32>>, rate: u32) -> Vec<f32> {
    if pieces.len() == 1 {
        return pieces.into_iter().next().unwrap_or_default();
    }
    let r = f64::from(rate);
    let total = (plan.duration * r).ceil() as usize;
    let mut out = vec![0f32; total];
    let mut filled = 0usize; // samples of `out` written so far
    for (w, piece) in plan.windows.iter().zip(pieces) {
        let start = (w.start * r).round() as usize;
        let len = ((w.duration() * r).round() as usize).min(piece.len());
        let fade = filled.saturating_sub(start).min(len);
        for (i, (o, p)) in out.iter_mut().skip(start).zip(&piece[..len]).enumerate() {
            if i < fade {
                let x = (i as f64 + 0.5) / fade as f64 * std::f64::consts::FRAC_PI_2;
                *o = *o * x.cos() as f32 + p * x.sin() as f32;
            } else {
                *o = *p;
            }
        }
        filled = (start + len).min(total);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_by_default() {
        assert_eq!(plan(20.0, None).windows.len(), 1);
        assert_eq!(plan(7.0, Some(8.0)).windows.len(), 1);
    }

    #[test]
    fn windows_cover_the_clip_with_overlaps() {
        let p = plan(20.0, Some(8.0));
        assert!(p.windows.len() >= 3);
        assert_eq!(p.windows[0].start, 0.0);
        assert!((p.windows.last().unwrap().end - 20.0).abs() < 1e-9);
        for pair in p.windows.windows(2) {
            assert!(pair[1].start < pair[0].end - 0.5, "{pair:?}");
            assert!(pair[1].start > pair[0].start);
        }
        for w in &p.windows {
            assert!(w.duration() <= 8.0 + 1e-9 && w.duration() >= 3.0);
        }
    }

    #[test]
    fn join_crossfades_constant_signals_without_dips() {
        let p = plan(12.0, Some(8.0));
        let rate = 100;
        let pieces = p.windows.iter().map(|w| vec![1.0f32; (w.duration() * 100.0).round() as usize]).collect();
        let out = join(&p, pieces, rate);
        assert_eq!(out.len(), 1200);
        // equal-power: the sum of gains is between 1 and sqrt(2)
        assert!(out.iter().all(|s| *s >= 0.99 && *s <= 1.42), "{:?}", out.iter().cloned().fold(f32::MAX, f32::min));
    }
}

//! The waveform picture of a mix for the web page: per pixel column the sample range (min..max over all
//! channels) drawn light and the RMS band drawn dark, as a small palette PNG. Rendered on request from the
//! stored wav; the page shows it with a plain `<img>` instead of downloading and decoding the whole wav
//! (measured in the server README: a few kB and milliseconds here against megabytes per task in the page).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use foley_media::AudioBuffer;

/// Pictures already drawn, by file id (stored files never change), newest last; at most [`CACHED`] of them
/// (a few kB each), so that a page showing many finished tasks, or reloaded, does not read every wav again.
static DRAWN: Mutex<VecDeque<(String, Arc<Vec<u8>>)>> = Mutex::new(VecDeque::new());
const CACHED: usize = 256;

/// The picture of file `id` if it was drawn before.
pub fn cached(id: &str) -> Option<Arc<Vec<u8>>> {
    let drawn = DRAWN.lock().unwrap_or_else(|e| e.into_inner());
    drawn.iter().find(|(k, _)| k == id).map(|(_, v)| v.clone())
}

/// Keeps the picture of file `id` (dropping the oldest beyond [`CACHED`]).
pub fn remember(id: &str, png: Arc<Vec<u8>>) {
    let mut drawn = DRAWN.lock().unwrap_or_else(|e| e.into_inner());
    drawn.retain(|(k, _)| k != id);
    drawn.push_back((id.to_string(), png));
    while drawn.len() > CACHED {
        drawn.pop_front();
    }
}

/// Size of the picture, pixels (wide enough for a page column, short enough to sit under the players).
pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 120;

/// Palette: background, peak range, RMS band, centre line (RGB).
const PALETTE: [u8; 12] = [0xf4, 0xf6, 0xfa, 0x9d, 0xb8, 0xe6, 0x1f, 0x4e, 0xa8, 0xc8, 0xcc, 0xd4];
const BG: u8 = 0;
const PEAK: u8 = 1;
const RMS: u8 = 2;
const AXIS: u8 = 3;

/// Per column: (min, max, rms) of the samples that fall into it (all channels together).
pub fn columns(audio: &AudioBuffer, width: usize) -> Vec<(f32, f32, f32)> {
    let ch = audio.channels.max(1) as usize;
    let frames = audio.frames();
    (0..width)
        .map(|x| {
            let a = x * frames / width;
            let b = ((x + 1) * frames / width).max(a + 1).min(frames);
            let s = audio.samples.get(a * ch..b * ch).unwrap_or(&[]);
            if s.is_empty() {
                return (0.0, 0.0, 0.0);
            }
            let (mut lo, mut hi, mut sq) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
            for &v in s {
                let v = if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 };
                lo = lo.min(v);
                hi = hi.max(v);
                sq += f64::from(v) * f64::from(v);
            }
            (lo, hi, (sq / s.len() as f64).sqrt() as f32)
        })
        .collect()
}

/// The palette indices of the picture, row by row (`width * height`). The height is scaled to the file's peak
/// (quiet mixes, e.g. ASMR's −20 LUFS, would otherwise be a thin line; the page prints the loudness itself);
/// below −60 dBFS nothing is scaled up, so silence stays flat.
pub fn pixels(audio: &AudioBuffer, width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height.max(2) as usize);
    let mut px = vec![BG; w * h];
    let mid = (h - 1) as f32 / 2.0;
    let cols = columns(audio, w);
    let peak = cols.iter().fold(1e-3f32, |p, &(lo, hi, _)| p.max(-lo).max(hi));
    // Amplitude v in [-peak, peak] → row (top = +peak).
    let row = |v: f32| ((mid - v / peak * mid).round().max(0.0) as usize).min(h - 1);
    for (x, (lo, hi, rms)) in cols.into_iter().enumerate() {
        px[row(0.0) * w + x] = AXIS;
        for y in row(hi)..=row(lo) {
            px[y * w + x] = PEAK;
        }
        for y in row(rms)..=row(-rms) {
            px[y * w + x] = RMS;
        }
    }
    px
}

/// The waveform of `audio` as a PNG (8-bit palette).
pub fn png(audio: &AudioBuffer, width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let height = height.max(2);
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(PALETTE.to_vec());
    let mut w = enc.write_header()?;
    w.write_image_data(&pixels(audio, width, height))?;
    w.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(seconds: f32, amp: f32) -> AudioBuffer {
        let rate = 48_000;
        let n = (seconds * rate as f32) as usize;
        let mut samples = Vec::with_capacity(n * 2);
        for i in 0..n {
            let v = amp * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin();
            samples.extend([v, v]);
        }
        AudioBuffer { sample_rate: rate, channels: 2, samples }
    }

    #[test]
    fn columns_follow_the_signal() {
        let c = columns(&sine(1.0, 0.5), 10);
        for (lo, hi, rms) in c {
            assert!((hi - 0.5).abs() < 1e-3 && (lo + 0.5).abs() < 1e-3, "{lo} {hi}");
            assert!((rms - 0.5 / 2f32.sqrt()).abs() < 1e-2, "{rms}");
        }
        let silent = AudioBuffer::silence(48_000, 2, 100);
        assert!(columns(&silent, 960).iter().all(|&(lo, hi, r)| lo == 0.0 && hi == 0.0 && r == 0.0));
    }

    /// What `GET /files/{id}/waveform.png` costs for a 20 s mix (48 kHz stereo float wav: noise under an
    /// envelope that swells and decays, so that columns differ as in real foley):
    /// `cargo test -p foley-server --lib waveform::tests::measure_20s_mix -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn measure_20s_mix() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let samples = (0..20 * 48_000 * 2)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let t = (i / 2) as f32 / 48_000.0;
                let env = 0.05 + 0.9 * (t * 2.3).sin().abs() * (-(t * 7.0).fract() * 3.0).exp();
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * env
            })
            .collect();
        let audio = AudioBuffer { sample_rate: 48_000, channels: 2, samples };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mix.wav");
        foley_media::write_wav(&path, &audio, foley_media::WavFormat::Float32).unwrap();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let a = foley_media::read_wav(&path).unwrap();
            let read = t.elapsed();
            let bytes = png(&a, WIDTH, HEIGHT).unwrap();
            println!(
                "wav {} bytes: read {:.1} ms, draw + encode {:.1} ms, png {} bytes",
                std::fs::metadata(&path).unwrap().len(),
                read.as_secs_f64() * 1e3,
                (t.elapsed() - read).as_secs_f64() * 1e3,
                bytes.len()
            );
        }
    }

    #[test]
    fn the_cache_keeps_the_newest_pictures() {
        for i in 0..CACHED + 2 {
            remember(&format!("test-cache-{i}"), Arc::new(vec![i as u8]));
        }
        assert!(cached("test-cache-0").is_none() && cached("test-cache-1").is_none());
        assert_eq!(cached(&format!("test-cache-{}", CACHED + 1)).as_deref(), Some(&vec![(CACHED + 1) as u8]));
    }

    #[test]
    fn png_is_a_valid_picture_of_the_right_size() {
        let bytes = png(&sine(3.0, 0.8), WIDTH, HEIGHT).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let dec = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().unwrap();
        assert_eq!((dec.info().width, dec.info().height), (WIDTH, HEIGHT));
        // A steady signal fills the height, loud or quiet (scaled to its peak); silence draws only the centre line.
        for amp in [0.8, 0.05] {
            let px = pixels(&sine(3.0, amp), 50, 40);
            assert!(px.iter().filter(|&&p| p != BG).count() > 50 * 40 * 9 / 10, "{amp}");
        }
        // A burst after quiet: the quiet half is drawn smaller than the burst.
        let mut mixed = sine(2.0, 0.05);
        mixed.samples.extend(sine(2.0, 0.5).samples);
        let px = pixels(&mixed, 40, 40);
        let height = |x: usize| (0..40).filter(|y| px[y * 40 + x] != BG).count();
        assert!(height(5) * 5 < height(35), "{} vs {}", height(5), height(35));
        let quiet = pixels(&AudioBuffer::silence(48_000, 1, 48_000), 50, 40);
        assert_eq!(quiet.iter().filter(|&&p| p != BG).count(), 50);
    }
}

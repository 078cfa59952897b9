//! Frame sampling: RGB frames at exact times k/fps, rotation applied, scaled with swscale, planar [T, 3, H, W].
//!
//! Timing follows the MMAudio reference (`mmaudio/data/av_utils.py::read_frames`): the frame for time
//! t_k = k / fps is the first decoded frame whose timestamp is ≥ t_k, so a source slower than `fps`
//! repeats frames and a faster one skips them. Sampling stops at the last frame or at `end_s`.
//! One decode serves several rates (the model wants 8 fps at 384² and 25 fps at 224² of the same clip).

use std::path::Path;

use ffmpeg_next as ff;
use ff::software::scaling::{Context as Scaler, Flags};

use crate::error::{InputError, MediaError, Result};

/// How decoded frames are brought to the output size (in display orientation, after rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Scale to exactly `width`×`height`, ignoring aspect ratio (MMAudio's CLIP input).
    Stretch { width: u32, height: u32 },
    /// Scale the short side to `size`, then crop the centre `size`×`size` (MMAudio's Synchformer input).
    ShortSideCenterCrop { size: u32 },
}

/// One sampling request: a frame rate and an output size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSpec {
    pub fps: f64,
    pub resize: Resize,
}

/// Sampled frames: RGB u8, planar, shape [count, 3, height, width].
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    pub fps: f64,
    pub count: usize,
    pub height: u32,
    pub width: u32,
    pub data: Vec<u8>,
}

impl Frames {
    /// [T, 3, H, W].
    pub fn shape(&self) -> [usize; 4] {
        [self.count, 3, self.height as usize, self.width as usize]
    }
    /// One frame, [3, H, W].
    pub fn frame(&self, i: usize) -> &[u8] {
        let n = self.frame_len();
        &self.data[i * n..(i + 1) * n]
    }
    fn frame_len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }
    /// The same frames as f32 in [0, 1].
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&b| f32::from(b) * (1.0 / 255.0)).collect()
    }
}

/// Samples one rate. See [`sample_frames_multi`].
pub fn sample_frames(path: &Path, spec: &SampleSpec, end_s: Option<f64>) -> Result<Frames> {
    let mut all = sample_frames_multi(path, std::slice::from_ref(spec), end_s)?;
    Ok(all.remove(0))
}

/// Decodes `path` once and samples it at every spec's rate, stopping at `end_s` (inclusive) if given.
pub fn sample_frames_multi(path: &Path, specs: &[SampleSpec], end_s: Option<f64>) -> Result<Vec<Frames>> {
    for s in specs {
        let (w, h) = s.resize.display_size();
        if !(s.fps.is_finite() && s.fps > 0.0) || w == 0 || h == 0 {
            return Err(MediaError::Invalid(format!("bad sampling request {s:?}")));
        }
    }
    let info = crate::probe(path)?;
    let mut input = crate::open::open_mov(path)?;
    let stream = input.stream(info.video.index).ok_or(InputError::NoVideo)?;
    let tb = f64::from(stream.time_base());
    let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| MediaError::ff("decoder parameters", e))?;
    ctx.set_threading(ff::threading::Config::kind(ff::threading::Type::Frame));
    let mut decoder = ctx.decoder().video().map_err(|e| InputError::Undecodable {
        codec: info.video.codec.clone(),
        detail: e.to_string(),
    })?;

    let end = end_s.unwrap_or(f64::INFINITY);
    let expected = |fps: f64| ((info.duration_s.min(end) * fps).ceil() as usize + 1).min(100_000);
    let mut samplers: Vec<Sampler> = specs
        .iter()
        .map(|s| Sampler::new(*s, info.video.rotation, expected(s.fps)))
        .collect();

    let mut decoded = ff::frame::Video::empty();
    let mut handle = |decoder: &mut ff::decoder::Video, samplers: &mut [Sampler]| -> Result<bool> {
        while decoder.receive_frame(&mut decoded).is_ok() {
            let Some(ts) = decoded.timestamp().or(decoded.pts()) else { continue };
            let t = ts as f64 * tb;
            if t > end + 1e-9 {
                return Ok(false);
            }
            for s in samplers.iter_mut() {
                s.offer(&decoded, t)?;
            }
        }
        Ok(true)
    };

    let mut packet = ff::Packet::empty();
    let mut more = true;
    while more {
        match crate::open::next_packet(&mut input, &mut packet) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(InputError::Corrupt { detail: e.to_string() }.into()),
        }
        if packet.stream() != info.video.index {
            continue;
        }
        decoder.send_packet(&packet).map_err(|e| InputError::Undecodable {
            codec: info.video.codec.clone(),
            detail: e.to_string(),
        })?;
        more = handle(&mut decoder, &mut samplers)?;
    }
    if more {
        let _ = decoder.send_eof();
        handle(&mut decoder, &mut samplers)?;
    }
    Ok(samplers.into_iter().map(Sampler::finish).collect())
}

impl Resize {
    /// Output (display-orientation) width and height.
    fn display_size(self) -> (u32, u32) {
        match self {
            Resize::Stretch { width, height } => (width, height),
            Resize::ShortSideCenterCrop { size } => (size, size),
        }
    }
}

/// Per-rate state: next target time, the scaler and the output being filled.
struct Sampler {
    spec: SampleSpec,
    rotation: u32,
    next: u64,
    scaler: Option<Scaler>,
    scaled: ff::frame::Video,
    /// Crop window (x, y) inside the scaled, rotated image.
    crop: (u32, u32),
    out: Frames,
}

impl Sampler {
    fn new(spec: SampleSpec, rotation: u32, expected: usize) -> Self {
        let (width, height) = spec.resize.display_size();
        let out = Frames {
            fps: spec.fps,
            count: 0,
            width,
            height,
            data: Vec::with_capacity(expected * 3 * width as usize * height as usize),
        };
        Sampler { spec, rotation, next: 0, scaler: None, scaled: ff::frame::Video::empty(), crop: (0, 0), out }
    }

    fn target(&self) -> f64 {
        self.next as f64 / self.spec.fps
    }

    /// Emits `frame` for every pending target time ≤ `t`.
    fn offer(&mut self, frame: &ff::frame::Video, t: f64) -> Result<()> {
        if self.target() > t + 1e-9 {
            return Ok(());
        }
        self.scale(frame)?;
        let first = self.out.count;
        self.write_scaled();
        self.next += 1;
        while self.target() <= t + 1e-9 {
            let n = self.out.frame_len();
            self.out.data.extend_from_within(first * n..(first + 1) * n);
            self.out.count += 1;
            self.next += 1;
        }
        Ok(())
    }

    fn scale(&mut self, frame: &ff::frame::Video) -> Result<()> {
        let stale = self.scaler.as_ref().is_none_or(|s| {
            let i = s.input();
            i.format != frame.format() || i.width != frame.width() || i.height != frame.height()
        });
        if stale {
            let (sw, sh) = (frame.width(), frame.height());
            // Display-orientation source size.
            let (dw, dh) = if self.rotation % 180 == 90 { (sh, sw) } else { (sw, sh) };
            let (rw, rh, crop) = match self.spec.resize {
                Resize::Stretch { width, height } => (width, height, (0, 0)),
                Resize::ShortSideCenterCrop { size } => {
                    // torchvision Resize(int): short side = size, long side = floor(size * long / short).
                    let (rw, rh) = if dw <= dh {
                        (size, ((size as u64 * dh as u64) / dw.max(1) as u64) as u32)
                    } else {
                        (((size as u64 * dw as u64) / dh.max(1) as u64) as u32, size)
                    };
                    let rw = rw.max(size);
                    let rh = rh.max(size);
                    // torchvision CenterCrop: offset = round((resized - size) / 2).
                    let off = |r: u32| ((r - size) as f64 / 2.0).round() as u32;
                    (rw, rh, (off(rw), off(rh)))
                }
            };
            // Scale in stored orientation; rotate while copying out.
            let (tw, th) = if self.rotation % 180 == 90 { (rh, rw) } else { (rw, rh) };
            let scaler = Scaler::get(frame.format(), sw, sh, ff::format::Pixel::RGB24, tw, th, Flags::BICUBIC)
                .map_err(|e| MediaError::ff("creating a scaler", e))?;
            self.scaler = Some(scaler);
            self.scaled = ff::frame::Video::empty();
            self.crop = crop;
        }
        let scaler = self.scaler.as_mut().ok_or_else(|| MediaError::Invalid("no scaler".into()))?;
        scaler.run(frame, &mut self.scaled).map_err(|e| MediaError::ff("scaling a frame", e))
    }

    /// Appends the scaled frame to the output, rotated, cropped and made planar.
    fn write_scaled(&mut self) {
        let (ow, oh) = (self.out.width as usize, self.out.height as usize);
        let stride = self.scaled.stride(0);
        let (sw, sh) = (self.scaled.width() as usize, self.scaled.height() as usize);
        let src = self.scaled.data(0);
        let (cx, cy) = (self.crop.0 as usize, self.crop.1 as usize);
        let base = self.out.data.len();
        self.out.data.resize(base + 3 * ow * oh, 0);
        let plane = ow * oh;
        let dst = &mut self.out.data[base..];
        for y in 0..oh {
            for x in 0..ow {
                // (dx, dy) in the rotated (display) image, then mapped back to stored coordinates.
                let (dx, dy) = (x + cx, y + cy);
                let (sx, sy) = match self.rotation {
                    90 => (dy, sh - 1 - dx),
                    180 => (sw - 1 - dx, sh - 1 - dy),
                    270 => (sw - 1 - dy, dx),
                    _ => (dx, dy),
                };
                let p = sy * stride + sx * 3;
                let o = y * ow + x;
                dst[o] = src[p];
                dst[plane + o] = src[p + 1];
                dst[2 * plane + o] = src[p + 2];
            }
        }
        self.out.count += 1;
    }

    fn finish(self) -> Frames {
        self.out
    }
}

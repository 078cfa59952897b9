//! Frame preprocessing of MMAudio's conditioning encoders, to the reference's numbers.
//!
//! Reference: `load_video` in `mmaudio/eval_utils.py` and `FeaturesUtils.encode_video_with_clip` in
//! `mmaudio/model/utils/features_utils.py` (github.com/hkchengrex/MMAudio commit 974010a), run with
//! torchvision 0.29's `transforms.v2` on the uint8 RGB frames PyAV decodes:
//! - CLIP: `Resize((384, 384), BICUBIC)` (squash, antialiased), `ToDtype(float32, scale=True)`, then
//!   `Normalize(CLIP mean, std)`;
//! - Synchformer: `Resize(224, BICUBIC)` (short side to 224), `CenterCrop(224)`, `ToDtype(float32, scale=True)`,
//!   `Normalize(0.5, 0.5)`.
//!
//! On uint8 images torchvision resizes with torch's native uint8 kernel (`_upsample_bicubic2d_aa`): separable,
//! horizontal pass then vertical, each with int16 fixed-point weights and rounding to uint8 in between; that
//! is reproduced here bit-exactly. Frames arrive planar `[T, 3, H, W]`, u8 or f32 in [0, 1] (rounded to the
//! u8 values they were made from).

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// open_clip / OpenAI CLIP normalisation (`FeaturesUtils.clip_preprocess`), digits as the reference writes them.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// Synchformer normalisation (`load_video`'s `sync_transform`).
pub const SYNC_MEAN: [f32; 3] = [0.5; 3];
pub const SYNC_STD: [f32; 3] = [0.5; 3];
/// Frame sizes the encoders take.
pub const CLIP_SIZE: usize = 384;
pub const SYNC_SIZE: usize = 224;

/// torch's bicubic antialias filter (a = -0.5).
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// Per output index: first input index, int16 weights; plus the fixed-point precision
/// (torch `_compute_index_ranges_int16_weights` with the antialiased bicubic filter, align_corners=False).
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
    precision: u32,
}

fn taps(input: usize, output: usize) -> Taps {
    let scale = input as f64 / output as f64;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    let mut start = Vec::with_capacity(output);
    let mut float_w = Vec::with_capacity(output);
    let mut wt_max = 0f64;
    for i in 0..output {
        let center = scale * (i as f64 + 0.5);
        let xmin = ((center - support + 0.5) as i64).max(0); // `as` truncates toward zero, like C++
        let xmax = ((center + support + 0.5) as i64).min(input as i64);
        let mut w: Vec<f64> =
            (xmin..xmax).map(|j| cubic((j as f64 - center + 0.5) * invscale)).collect();
        let total: f64 = w.iter().sum();
        if total != 0.0 {
            for v in &mut w {
                *v /= total;
                wt_max = wt_max.max(*v);
            }
        }
        start.push(xmin as usize);
        float_w.push(w);
    }
    let mut precision = 0u32;
    while precision < 22 {
        let next = (0.5 + wt_max * f64::from(1u32 << (precision + 1))) as i32;
        if next >= 1 << 15 {
            break;
        }
        precision += 1;
    }
    let weights = float_w
        .into_iter()
        .map(|w| {
            w.into_iter()
                .map(|v| {
                    let v = v * f64::from(1u32 << precision);
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i16 as i32
                })
                .collect()
        })
        .collect();
    Taps { start, weights, precision }
}

/// One 1-D pass over `lines` lines of `len` samples spaced `stride` apart (line starts `line_step` apart).
fn resample_pass(src: &[u8], dst: &mut [u8], taps: &Taps, lines: usize, line_step: (usize, usize), stride: (usize, usize)) {
    let round = 1i32 << (taps.precision.max(1) - 1);
    for l in 0..lines {
        let s = &src[l * line_step.0..];
        for (o, (start, w)) in taps.start.iter().zip(&taps.weights).enumerate() {
            let mut acc = round;
            for (j, wj) in w.iter().enumerate() {
                acc += i32::from(s[(start + j) * stride.0]) * wj;
            }
            dst[l * line_step.1 + o * stride.1] = (acc >> taps.precision).clamp(0, 255) as u8;
        }
    }
}

/// Antialiased bicubic resize of u8 planar images `[N, C, H, W]` -> `[N, C, out_h, out_w]`, bit-exact with
/// torch's uint8 `interpolate(mode="bicubic", antialias=True)` (what `v2.Resize` runs on uint8 frames).
/// Planes are resized in parallel.
pub fn resize_bicubic_u8(frames: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (n, c, h, w) = frames.dims4()?;
    let src = frames.to_dtype(DType::U8)?.flatten_all()?.to_vec1::<u8>()?;
    if (h, w) == (out_h, out_w) {
        return Tensor::from_vec(src, (n, c, h, w), frames.device());
    }
    // torch skips a pass whose size does not change
    let tw = (out_w != w).then(|| taps(w, out_w));
    let th = (out_h != h).then(|| taps(h, out_h));
    let mut dst = vec![0u8; n * c * out_h * out_w];
    src.par_chunks(h * w).zip(dst.par_chunks_mut(out_h * out_w)).for_each(|(plane, out)| {
        let horizontal;
        let mid: &[u8] = match &tw {
            Some(t) => {
                let mut tmp = vec![0u8; h * out_w];
                resample_pass(plane, &mut tmp, t, h, (w, out_w), (1, 1));
                horizontal = tmp;
                &horizontal
            }
            None => plane,
        };
        match &th {
            Some(t) => resample_pass(mid, out, t, out_w, (1, 1), (out_w, out_w)),
            None => out.copy_from_slice(mid),
        }
    });
    Tensor::from_vec(dst, (n, c, out_h, out_w), frames.device())
}

/// torchvision `_compute_resized_output_size` for `Resize(size)` with one int: the short side to `size`,
/// the long side `int(size * long / short)`.
pub fn short_side_size(h: usize, w: usize, size: usize) -> (usize, usize) {
    if h <= w {
        (size, (size as f64 * w as f64 / h as f64) as usize)
    } else {
        ((size as f64 * h as f64 / w as f64) as usize, size)
    }
}

/// torchvision `CenterCrop`: offsets `int(round((H - size) / 2))` (Python rounds half to even).
pub fn center_crop(frames: &Tensor, size: usize) -> Result<Tensor> {
    let (_, _, h, w) = frames.dims4()?;
    if h < size || w < size {
        candle_core::bail!("center crop: {h}x{w} frame smaller than {size}")
    }
    let top = ((h - size) as f64 / 2.0).round_ties_even() as usize;
    let left = ((w - size) as f64 / 2.0).round_ties_even() as usize;
    frames.narrow(2, top, size)?.narrow(3, left, size)
}

/// u8 frames, or f32 frames in [0, 1] rounded back to the u8 values they came from.
fn as_u8(frames: &Tensor) -> Result<Tensor> {
    match frames.dtype() {
        DType::U8 => Ok(frames.clone()),
        _ => (frames.to_dtype(DType::F32)? * 255.0)?.round()?.clamp(0f32, 255f32)?.to_dtype(DType::U8),
    }
}

/// `ToDtype(float32, scale=True)` then `Normalize(mean, std)`: `(x * (1/255) - mean) / std`, per channel.
pub fn to_normalized(frames_u8: &Tensor, mean: [f32; 3], std: [f32; 3]) -> Result<Tensor> {
    let dev = frames_u8.device();
    let x = (frames_u8.to_dtype(DType::F32)? * (1.0 / 255.0))?;
    let m = Tensor::from_slice(&mean, (1, 3, 1, 1), dev)?;
    let s = Tensor::from_slice(&std, (1, 3, 1, 1), dev)?;
    x.broadcast_sub(&m)?.broadcast_div(&s)
}

/// Resized u8 CLIP frames `[T, 3, 384, 384]` (squash resize), before normalisation.
pub fn clip_resize(frames: &Tensor) -> Result<Tensor> {
    resize_bicubic_u8(&as_u8(frames)?, CLIP_SIZE, CLIP_SIZE)
}

/// Resized and centre-cropped u8 Synchformer frames `[T, 3, 224, 224]`, before normalisation.
pub fn sync_resize(frames: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = frames.dims4()?;
    let (rh, rw) = short_side_size(h, w, SYNC_SIZE);
    center_crop(&resize_bicubic_u8(&as_u8(frames)?, rh, rw)?, SYNC_SIZE)
}

/// Decoded RGB frames `[T, 3, H, W]` -> the CLIP vision tower's input `[T, 3, 384, 384]` (f32, normalised).
pub fn clip_frames(frames: &Tensor) -> Result<Tensor> {
    to_normalized(&clip_resize(frames)?, CLIP_MEAN, CLIP_STD)
}

/// Decoded RGB frames `[T, 3, H, W]` -> the Synchformer's input `[T, 3, 224, 224]` (f32, normalised).
pub fn sync_frames(frames: &Tensor) -> Result<Tensor> {
    to_normalized(&sync_resize(frames)?, SYNC_MEAN, SYNC_STD)
}

/// Planar u8 frames from a plain buffer (what `foley-media` hands out) as a tensor.
pub fn frames_from_u8(data: Vec<u8>, shape: [usize; 4], device: &Device) -> Result<Tensor> {
    Tensor::from_vec(data, (shape[0], shape[1], shape[2], shape[3]), device)
}

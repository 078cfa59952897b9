//! Video → conditioning inputs, as `load_video` in `mmaudio/eval_utils.py` of the reference does it: frames at
//! 8 fps for CLIP (384×384 squash) and 25 fps for Synchformer (short side 224, centre crop), one decode for both;
//! the duration is shortened to what both frame streams cover, and each stream is cut to `int(fps · duration)`
//! frames. Sequence lengths then follow from that duration (`SequenceConfig`).
//!
//! Frames are decoded at their display size and resized with the bit-exact port of torchvision's uint8 bicubic
//! resize (`foley_models::encoders::preprocess`) when they are small enough to hold in memory at that size
//! (≤ [`NATIVE_MAX_PIXELS`]); larger videos are scaled by ffmpeg's swscale straight to the model sizes
//! (bicubic; close to, but not bit-identical with, the reference's resize).

use std::path::Path;

use candle_core::{Device, Tensor};
use foley_media::{sample_frames_multi, Frames, Resize, SampleSpec, VideoInfo};
use foley_models::encoders::preprocess;

use crate::error::PipelineError;

/// CLIP and Synchformer frame rates (`_CLIP_FPS`, `_SYNC_FPS`).
pub const CLIP_FPS: f64 = 8.0;
pub const SYNC_FPS: f64 = 25.0;
/// Largest display size (pixels per frame) decoded at full size for the bit-exact resize.
pub const NATIVE_MAX_PIXELS: u64 = 640 * 480;

/// Model-ready frames and the duration they cover.
pub struct VideoFrames {
    /// `[T_clip, 3, 384, 384]` f32, CLIP-normalised.
    pub clip: Tensor,
    /// `[T_sync, 3, 224, 224]` f32, normalised with mean = std = 0.5.
    pub sync: Tensor,
    /// Seconds of video the frames cover (≤ the video's duration).
    pub duration_s: f64,
}

fn to_tensor(f: Frames, dev: &Device) -> Result<Tensor, PipelineError> {
    let shape = f.shape();
    preprocess::frames_from_u8(f.data, shape, dev).map_err(internal)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Internal(e.to_string())
}

/// Decodes and preprocesses the frames of `path` up to `max_duration_s`.
pub fn load_video(path: &Path, info: &VideoInfo, max_duration_s: f64, dev: &Device) -> Result<VideoFrames, PipelineError> {
    let (w, h) = if info.video.rotation % 180 == 90 {
        (info.video.height, info.video.width)
    } else {
        (info.video.width, info.video.height)
    };
    let native = u64::from(w) * u64::from(h) <= NATIVE_MAX_PIXELS;
    let specs = if native {
        let r = Resize::Stretch { width: w, height: h };
        [SampleSpec { fps: CLIP_FPS, resize: r }, SampleSpec { fps: SYNC_FPS, resize: r }]
    } else {
        let c = preprocess::CLIP_SIZE as u32;
        [
            SampleSpec { fps: CLIP_FPS, resize: Resize::Stretch { width: c, height: c } },
            SampleSpec { fps: SYNC_FPS, resize: Resize::ShortSideCenterCrop { size: preprocess::SYNC_SIZE as u32 } },
        ]
    };
    let mut frames = sample_frames_multi(path, &specs, Some(max_duration_s))?;
    let sync = frames.pop().ok_or_else(|| internal("no sync frames"))?;
    let clip = frames.pop().ok_or_else(|| internal("no clip frames"))?;
    // load_video: the duration shrinks to what each stream covers; then int(fps * duration) frames are kept
    let mut duration = max_duration_s;
    duration = duration.min(clip.count as f64 / CLIP_FPS).min(sync.count as f64 / SYNC_FPS);
    let n_clip = ((CLIP_FPS * duration) as usize).min(clip.count);
    let n_sync = ((SYNC_FPS * duration) as usize).min(sync.count);
    if n_clip == 0 || n_sync < 16 {
        return Err(PipelineError::invalid("video", format!("too few frames decoded ({} at 25 fps)", sync.count)));
    }
    let clip = to_tensor(clip, dev)?.narrow(0, 0, n_clip).map_err(internal)?;
    let sync = to_tensor(sync, dev)?.narrow(0, 0, n_sync).map_err(internal)?;
    let clip = preprocess::clip_frames(&clip).map_err(internal)?;
    let sync = preprocess::sync_frames(&sync).map_err(internal)?;
    Ok(VideoFrames { clip, sync, duration_s: duration })
}

//! Everything ffmpeg for foley: probe and validate input videos, sample frames into RGB buffers,
//! write audio (wav with hound, AAC with ffmpeg) and mux it into mp4/mov without re-encoding the video.
//!
//! ffmpeg only ever sees our own local files through the mov/mp4 demuxer (see [`open`]); containers are
//! recognised by content ([`sniff`]), never by file name. Nothing here knows about models or tensors:
//! frames come out as plain planar RGB buffers.

pub mod audio;
pub mod error;
pub mod frames;
pub mod mux;
mod open;
pub mod probe;
pub mod sniff;
pub mod validate;

pub use audio::{decode_audio_track, read_wav, resample, write_wav, AudioBuffer, WavFormat};
pub use error::{InputError, MediaError, Result};
pub use frames::{sample_frames, sample_frames_multi, Frames, Resize, SampleSpec};
pub use mux::{mux, MuxOptions, MuxReport, OriginalAudio};
pub use probe::{probe, AudioStreamInfo, VideoInfo, VideoStreamInfo};
pub use sniff::{sniff, Container};
pub use validate::{check, validate, Limits};

/// Initialises ffmpeg once and keeps its own logging quiet (our errors carry the reasons).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}

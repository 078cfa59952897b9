//! Errors of the media crate: [`InputError`] for anything wrong with a user's file (each with a one-sentence
//! reason and a stable machine-readable [`InputError::kind`]), [`MediaError`] for everything else.

use std::path::PathBuf;

/// Something is wrong with the user's input file. `Display` is the sentence shown to the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size_mb:.1} MB; the limit is {max_mb:.1} MB")]
    TooLarge { size_mb: f64, max_mb: f64 },
    #[error("the file is {detected}, not an mp4/mov video; only mp4 and mov files are accepted")]
    WrongContainer { detected: String },
    #[error("the file is {detected}, not a video; playlists and scripts are never opened")]
    Playlist { detected: String },
    #[error("the file is not an mp4/mov video (its content is not recognised)")]
    Unrecognised,
    #[error("the mp4/mov file is truncated or corrupt ({detail})")]
    Corrupt { detail: String },
    #[error("the file has no video stream")]
    NoVideo,
    #[error("the video stream ({codec}) cannot be decoded: {detail}")]
    Undecodable { codec: String, detail: String },
    #[error("the file holds a single still image, not a video")]
    StillImage,
    #[error("video is {duration_s} s long; it must be between {min_s} and {max_s} s")]
    Duration { duration_s: f64, min_s: f64, max_s: f64 },
    #[error("video is {width}×{height}; each side must be between {min} and {max} pixels")]
    Dimensions { width: u32, height: u32, min: u32, max: u32 },
    #[error("video frame rate is {fps:.2} fps; it must be between {min} and {max} fps")]
    FrameRate { fps: f64, min: f64, max: f64 },
}

impl InputError {
    /// A stable snake_case name of the failure, for APIs and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            InputError::Empty => "empty",
            InputError::TooLarge { .. } => "too_large",
            InputError::WrongContainer { .. } => "wrong_container",
            InputError::Playlist { .. } => "playlist",
            InputError::Unrecognised => "unrecognised",
            InputError::Corrupt { .. } => "corrupt",
            InputError::NoVideo => "no_video",
            InputError::Undecodable { .. } => "undecodable",
            InputError::StillImage => "still_image",
            InputError::Duration { .. } => "duration",
            InputError::Dimensions { .. } => "dimensions",
            InputError::FrameRate { .. } => "frame_rate",
        }
    }
}

/// Any failure of the media crate.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The user's file is unacceptable.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A bad argument from the caller (not from file content).
    #[error("{0}")]
    Invalid(String),
    /// ffmpeg failed on something that is not the user's fault.
    #[error("ffmpeg: {context}: {source}")]
    Ffmpeg { context: String, source: ffmpeg_next::Error },
    /// Writing or reading a wav file failed.
    #[error("wav {}: {source}", path.display())]
    Wav { path: PathBuf, source: hound::Error },
}

impl MediaError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MediaError::Io { path: path.into(), source }
    }
    pub(crate) fn ff(context: impl Into<String>, source: ffmpeg_next::Error) -> Self {
        MediaError::Ffmpeg { context: context.into(), source }
    }
    /// The input error, if this failure is the user's file's fault.
    pub fn as_input(&self) -> Option<&InputError> {
        match self {
            MediaError::Input(e) => Some(e),
            _ => None,
        }
    }
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;

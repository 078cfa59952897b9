//! The foley Engine: loads a model bundle once and turns a generation request (video, prompts, ASMR mode)
//! into audio stems, a loudness-normalised mix and a muxed video. It knows nothing of HTTP: the CLI and the
//! server both reach it through the [`Engine`] trait.

pub mod error;
pub mod request;

pub use error::PipelineError;
pub use request::{
    CancelToken, Engine, Output, OutputFormat, Progress, ProgressFn, Request, Stage, StageTiming, MAX_PROMPT_CHARS,
};

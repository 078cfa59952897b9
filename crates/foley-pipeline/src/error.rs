//! Pipeline errors, split by whose fault they are (the server maps them to 4xx / 5xx, the CLI to exit 2 / 1).

use foley_media::{InputError, MediaError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A request field breaks a rule; `field` names it, the message is one sentence for the user.
    #[error("{field}: {message}")]
    InvalidField { field: &'static str, message: String },
    /// The video is unacceptable (wrong container, too short, …).
    #[error("video: {0}")]
    Video(#[from] InputError),
    /// The task was cancelled between two steps.
    #[error("cancelled")]
    Cancelled,
    /// The model bundle could not be found or loaded.
    #[error("model: {0}")]
    Model(String),
    /// A stage of the generation produced NaN or ±inf (bad weights that passed the load checks, or an overflow
    /// in a reduced dtype); caught before anything is mixed or encoded.
    #[error("the {} stage produced non-finite values (NaN or inf) in its {} running in {dtype}: the model's \
             weights are bad or overflow in this precision", stage.name(), stage_output(*stage))]
    NonFinite { stage: crate::stage::Stage, dtype: String },
    /// Anything else: a bug or an environment problem, not the user's fault.
    #[error("{0}")]
    Internal(String),
}

impl PipelineError {
    /// Whether the failure is the caller's (bad request or bad video) rather than ours.
    pub fn is_user_error(&self) -> bool {
        matches!(self, PipelineError::InvalidField { .. } | PipelineError::Video(_))
    }
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        PipelineError::InvalidField { field, message: message.into() }
    }
}

impl From<MediaError> for PipelineError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Input(i) => PipelineError::Video(i),
            other => PipelineError::Internal(other.to_string()),
        }
    }
}

/// What a generation stage hands on, for [`PipelineError::NonFinite`].
fn stage_output(stage: crate::stage::Stage) -> &'static str {
    use crate::stage::Stage;
    match stage {
        Stage::Sampling => "latents",
        Stage::Vae => "mel spectrogram",
        Stage::Vocoder => "audio",
        _ => "output",
    }
}

//! The pipeline's stages, named in progress reports, timings and errors (below both [`crate::request`] and
//! [`crate::error`], which name them).

use serde::{Deserialize, Serialize};

/// A pipeline stage, for progress reports and timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Probe,
    Frames,
    Clip,
    Synchformer,
    Text,
    Sampling,
    Vae,
    Vocoder,
    Mix,
    Mux,
}

impl Stage {
    /// The stage's name as it appears in JSON (`snake_case`), logs and progress bars.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Probe => "probe",
            Stage::Frames => "frames",
            Stage::Clip => "clip",
            Stage::Synchformer => "synchformer",
            Stage::Text => "text",
            Stage::Sampling => "sampling",
            Stage::Vae => "vae",
            Stage::Vocoder => "vocoder",
            Stage::Mix => "mix",
            Stage::Mux => "mux",
        }
    }
}

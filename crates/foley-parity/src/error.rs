//! What can go wrong in the harness: each variant reads as a sentence naming the file, fixture or tensor.

use std::path::PathBuf;

/// A harness failure. Tests turn it into a panic with this text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the fixture folder {dir} cannot be read: {source}")]
    UnreadableRoot { dir: PathBuf, source: std::io::Error },
    #[error("{file} cannot be read: {source}")]
    UnreadableMeta { file: PathBuf, source: std::io::Error },
    #[error("{file} is not valid JSON: {source}")]
    BadMeta { file: PathBuf, source: serde_json::Error },
    #[error("{file} names no module (a string field `module` is required)")]
    NoModule { file: PathBuf },
    #[error("fixture {dir} has no {file}: every fixture holds weights, inputs and outputs (safetensors) and meta.json")]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("{file} cannot be loaded: {source}")]
    BadTensors { file: PathBuf, source: candle_core::Error },
    #[error("no `{module}` fixture under {dir}")]
    NoFixtures { module: String, dir: PathBuf },
    #[error("{found} `{module}` fixtures under {dir}, fewer than the {expected} the repository commits")]
    TooFewFixtures { module: String, dir: PathBuf, found: usize, expected: usize },
    #[error("{what}: shapes differ, got {got:?}, the reference has {want:?}")]
    Shape { what: String, got: Vec<usize>, want: Vec<usize> },
    #[error("{what}: {count} non-finite values in {side} (of {total}), the first {value} at index {index:?}")]
    NonFinite { what: String, side: &'static str, count: usize, total: usize, value: f32, index: Vec<usize> },
    #[error("{what}: {source}")]
    Tensor { what: String, source: candle_core::Error },
    #[error("{what}: no fixture to check")]
    NothingToCheck { what: String },
    #[error("fixture {fixture} of `{module}`: no output was compared with the reference")]
    NothingCompared { module: String, fixture: String },
}

//! The crate's error type: what can go wrong loading weights or running a network.

/// Errors of `foley-models`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, missing weight, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input tensor does not fit the network (wrong rank, width or length).
    #[error("bad input: {0}")]
    BadInput(String),
    /// A configuration is inconsistent or unsupported.
    #[error("bad config: {0}")]
    BadConfig(String),
    /// A checkpoint does not hold what the network needs.
    #[error("weights: {0}")]
    Weights(String),
    /// The caller asked to stop (cancellation check of the sampler).
    #[error("cancelled")]
    Cancelled,
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

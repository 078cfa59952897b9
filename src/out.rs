//! Standard output that never panics: `println!` panics when stdout is a closed pipe (`foley models list | head`)
//! or a full disk. [`outln!`] returns the write error instead, and [`crate::exit::report`] ends quietly on a
//! closed pipe and with one line on any other failure.

/// A failed write to standard output.
#[derive(Debug)]
pub struct StdoutError(pub std::io::Error);

impl From<std::io::Error> for StdoutError {
    fn from(e: std::io::Error) -> Self {
        Self(e)
    }
}

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing to standard output: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

impl StdoutError {
    /// Whether the reader went away (`| head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// `println!` that returns a [`StdoutError`] from the enclosing function (which returns `anyhow::Result`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::out::StdoutError::from)?
    }};
}

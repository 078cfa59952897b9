//! The parity harness every model family's tests use: fixtures written by the PyTorch reference (`scripts/`)
//! are loaded strictly and candle's outputs are compared with them so that a test cannot pass on nothing.
//!
//! - [`compare`]: the one comparison (max-abs and RMS error, on the host in f64), an error on a shape mismatch
//!   or on any non-finite value in either tensor (counted, the first one's index named).
//! - [`load_module`]: every fixture of a module under a fixture root; an unreadable folder, a `meta.json` that
//!   does not parse, a missing safetensors file or an empty set is an error with a sentence, never a skip.
//! - [`Checked`]: iterates a test's fixtures and, as it goes, requires at least one comparison per fixture and
//!   at least as many fixtures as the repository commits ([`committed`]); it prints what it compared.
//!
//! The harness knows no model: tolerances and devices stay with each family's tests.

mod checked;
mod compare;
mod committed;
mod error;
mod fixture;

pub use checked::{comparisons, Checked};
pub use compare::{compare, max_abs, Diff};
pub use committed::{committed, committed_root, is_committed_root, minimum, COMMITTED};
pub use error::Error;
pub use fixture::{load_module, parity_root, RawFixture};

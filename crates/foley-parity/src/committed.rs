//! The fixtures the repository commits, module by module: a test over the committed tree must find at least
//! these many (a test of this crate keeps the table equal to the tree, so that neither can drift alone).

use std::path::{Path, PathBuf};

use crate::Error;

/// `(module, fixtures)` of `tests/fixtures/parity` (written by `scripts/gen_parity.py`).
pub const COMMITTED: &[(&str, usize)] = &[
    ("bigvgan", 2),
    ("chain", 1),
    ("clip_text", 1),
    ("clip_tokenizer", 1),
    ("clip_vision", 1),
    ("generate", 1),
    ("mmaudio", 3),
    ("norm", 1),
    ("preprocess", 2),
    ("sampler", 3),
    ("sequence", 1),
    ("synchformer", 1),
    ("vae_decoder", 2),
];

/// The repository's fixture tree, `tests/fixtures/parity`.
pub fn committed_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity")
}

/// Whether `root` is the committed tree (however it is spelled).
pub fn is_committed_root(root: &Path) -> bool {
    match (root.canonicalize(), committed_root().canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// How many fixtures the repository commits for `module` (0 for a module it has none of).
pub fn committed(module: &str) -> usize {
    COMMITTED.iter().find(|(m, _)| *m == module).map_or(0, |&(_, n)| n)
}

/// The fewest fixtures of `module` a test over `root` may compare: what the repository commits when `root` is
/// the committed tree, otherwise one (`FOLEY_PARITY_DIR` sets hold what their generator wrote).
pub fn minimum(root: &Path, module: &str) -> usize {
    if is_committed_root(root) { committed(module).max(1) } else { 1 }
}

/// Fails unless `found` fixtures reach [`minimum`].
pub(crate) fn enough(root: &Path, module: &str, found: usize) -> Result<(), Error> {
    let expected = minimum(root, module);
    if found == 0 {
        return Err(Error::NoFixtures { module: module.to_string(), dir: root.to_path_buf() });
    }
    if found < expected {
        return Err(Error::TooFewFixtures { module: module.to_string(), dir: root.to_path_buf(), found, expected });
    }
    Ok(())
}

//! A test's walk over its fixtures that fails when it compared nothing: every fixture must see at least one
//! [`crate::compare`], and there must be at least [`crate::minimum`] fixtures. Comparisons are counted per
//! thread (libtest runs each test on a thread of its own).

use std::cell::Cell;
use std::path::Path;

use crate::{committed::enough, Error, RawFixture};

thread_local! {
    static COMPARISONS: Cell<usize> = const { Cell::new(0) };
}

/// Counts one comparison on this thread ([`crate::compare`] calls it).
pub(crate) fn count_comparison() {
    COMPARISONS.with(|c| c.set(c.get() + 1));
}

/// Comparisons made on this thread so far.
pub fn comparisons() -> usize {
    COMPARISONS.with(Cell::get)
}

/// The fixtures of one module, handed out one at a time; checks, as each one ends and when the walk is dropped,
/// that it compared at least one output, and prints `parity <module>: N fixtures, M outputs compared`.
/// A walk dropped while the test is already failing checks nothing more.
pub struct Checked<F> {
    module: String,
    items: std::vec::IntoIter<(String, F)>,
    /// The fixture being tested and the comparison count when it was handed out.
    current: Option<(String, usize)>,
    fixtures: usize,
    outputs: usize,
}

impl<F> Checked<F> {
    /// A walk over `fixtures` (loaded from `root` for `module`, each made into the test's own type), after
    /// checking that there are enough of them.
    pub fn new(root: &Path, module: &str, fixtures: Vec<RawFixture>, wrap: impl Fn(RawFixture) -> F) -> Result<Self, Error> {
        enough(root, module, fixtures.len())?;
        let items = fixtures.into_iter().map(|f| (f.name(), wrap(f))).collect();
        Self::of(module, items)
    }

    /// A walk over named fixtures already chosen by the test (a subset of a module's, e.g. those with a
    /// checkpoint), labelled `what`: an error when there are none.
    pub fn of(what: &str, items: Vec<(String, F)>) -> Result<Self, Error> {
        if items.is_empty() {
            return Err(Error::NothingToCheck { what: what.to_string() });
        }
        Ok(Checked { module: what.to_string(), items: items.into_iter(), current: None, fixtures: 0, outputs: 0 })
    }

    /// Ends the current fixture: an error when it compared nothing.
    fn close_current(&mut self) -> Result<(), Error> {
        if let Some((fixture, start)) = self.current.take() {
            let n = comparisons() - start;
            if n == 0 {
                return Err(Error::NothingCompared { module: self.module.clone(), fixture });
            }
            self.fixtures += 1;
            self.outputs += n;
        }
        Ok(())
    }
}

impl<F> Iterator for Checked<F> {
    type Item = F;

    fn next(&mut self) -> Option<F> {
        if let Err(e) = self.close_current() {
            panic!("{e}");
        }
        let (name, f) = self.items.next()?;
        self.current = Some((name, comparisons()));
        Some(f)
    }
}

impl<F> Drop for Checked<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.close_current() {
            panic!("{e}");
        }
        let left = self.items.len();
        eprintln!("parity {}: {} fixtures, {} outputs compared", self.module, self.fixtures, self.outputs);
        assert!(left == 0, "parity {}: the test stopped with {left} fixtures not walked", self.module);
    }
}

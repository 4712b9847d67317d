//! Progress reporting for long work, without tying the engine to a terminal.

/// Receives progress from long-running work (a CLI shows bars; tests ignore it).
pub trait Progress: Sync {
    /// A new stage with `total` steps begins.
    fn stage(&self, _name: &str, _total: u64) {}
    /// The current stage's total is now known better (an estimate changed).
    fn set_total(&self, _total: u64) {}
    /// `n` steps of the current stage are done.
    fn inc(&self, _n: u64) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

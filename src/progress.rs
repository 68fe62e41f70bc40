//! How the library tells a caller how far a long phase has come, without knowing whether or
//! how it is drawn: commands count bytes on a [`Progress`]; the command line draws it (an
//! indicatif bar, in `src/cli/`), and everyone else passes [`NoProgress`].

use std::fmt::Debug;
use std::sync::Arc;

/// A counter of bytes in named phases ("inspecting", "writing"). Every method does nothing
/// unless the implementation says otherwise; it is shared by the worker threads.
pub trait Progress: Debug + Send + Sync {
    /// A new phase starts, named `message`.
    fn set_message(&self, _message: &'static str) {}
    /// The phase's total, in bytes.
    fn set_length(&self, _total: u64) {}
    /// The phase's total grows by `more` bytes (a wheel more to inspect).
    fn inc_length(&self, _more: u64) {}
    /// Where the phase stands, in bytes (0 at its start).
    fn set_position(&self, _done: u64) {}
    /// `n` more bytes are done.
    fn inc(&self, _n: u64) {}
}

/// Counts nothing: for callers that draw no progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// A [`Progress`] the options of a command own; cheap to clone.
pub type SharedProgress = Arc<dyn Progress>;

/// The no-op [`SharedProgress`].
pub fn none() -> SharedProgress {
    Arc::new(NoProgress)
}

/// A progress that only counts, for tests: the position, and the total.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Counter {
    pub done: std::sync::atomic::AtomicU64,
    pub total: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
impl Counter {
    pub fn position(&self) -> u64 {
        self.done.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
impl Progress for Counter {
    fn set_length(&self, total: u64) {
        self.total
            .store(total, std::sync::atomic::Ordering::Relaxed);
    }
    fn inc_length(&self, more: u64) {
        self.total
            .fetch_add(more, std::sync::atomic::Ordering::Relaxed);
    }
    fn set_position(&self, done: u64) {
        self.done.store(done, std::sync::atomic::Ordering::Relaxed);
    }
    fn inc(&self, n: u64) {
        self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

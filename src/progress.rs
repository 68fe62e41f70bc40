//! How the library tells a caller how far a long phase has come, without knowing whether or
//! how it is drawn: commands count bytes on a [`Progress`]; the command line draws it (an
//! indicatif bar, in `src/cli/`), and everyone else passes [`NoProgress`].

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

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

/// Counts one job's bytes on a [`Progress`]: what the job reports as it goes (through
/// [`Tick::sink`], e.g. a compression reporting batch by batch), never past its size, and the
/// rest of its size when the `Tick` is dropped, however the job ends, so each job counts
/// exactly its size, once. Shared by the worker threads of one job.
pub struct Tick {
    progress: SharedProgress,
    size: u64,
    counted: Arc<AtomicU64>,
}

impl Tick {
    pub fn new(progress: &SharedProgress, size: u64) -> Tick {
        Tick {
            progress: progress.clone(),
            size,
            counted: Arc::default(),
        }
    }

    /// Counts `n` more bytes, up to the job's size.
    fn add(progress: &dyn Progress, size: u64, counted: &AtomicU64, n: u64) {
        if let Ok(before) = counted.fetch_update(Relaxed, Relaxed, |c| Some((c + n).min(size))) {
            progress.inc((before + n).min(size) - before);
        }
    }

    /// A counter of this job's bytes that can be handed to whoever reports them
    /// (`wheel::deflate::with_progress` takes it as its sink).
    pub fn sink(&self) -> Arc<dyn Fn(u64) + Send + Sync> {
        let (progress, size, counted) = (self.progress.clone(), self.size, self.counted.clone());
        Arc::new(move |n| Tick::add(&*progress, size, &counted, n))
    }
}

impl Drop for Tick {
    fn drop(&mut self) {
        Tick::add(&*self.progress, self.size, &self.counted, self.size);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_member_counts_its_size_once_whatever_its_compression_reports() {
        let counter = Arc::new(Counter::default());
        let progress: SharedProgress = counter.clone();
        {
            let t = Tick::new(&progress, 10);
            let sink = t.sink();
            crate::wheel::deflate::with_progress(sink.clone(), || {
                crate::wheel::deflate::report(4);
            });
            assert_eq!(counter.position(), 4);
            // A splice that falls back compresses again: never counted past the size.
            sink(9);
            assert_eq!(counter.position(), 10);
        }
        assert_eq!(counter.position(), 10);
        // A job that reports nothing (a small member, an error) counts when it ends.
        drop(Tick::new(&progress, 5));
        assert_eq!(counter.position(), 15);
    }
}

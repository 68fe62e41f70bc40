//! A memory budget shared by parallel workers: each holds a reservation for the bytes it keeps
//! in memory, and waits while the budget is spent. A single reservation larger than the whole
//! budget is still granted when nothing else is held, so the peak is bounded by
//! max(budget, largest single reservation) — never by the sum of a wheel's members.
//!
//! A thread that already holds a reservation never waits for another one: it is granted at
//! once. Waiting while holding is how workers deadlock — a nested reservation (trim reserves
//! for its output while the member's bytes are reserved) would wait for its own bytes, two
//! workers would each wait for the other's, and a job that rayon runs on a thread blocked in a
//! parallel deflate would wait for the frame below it. Such nested grants can overshoot the
//! budget by what the holders nest, which stays within a small multiple of the largest member.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::{Condvar, Mutex};

thread_local! {
    /// Bytes the current thread holds in reservations (of any budget).
    static HELD: Cell<u64> = const { Cell::new(0) };
}

#[derive(Debug)]
pub struct Budget {
    cap: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

/// Bytes reserved from a [`Budget`]; returned when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
    /// Dropped on the thread that made it (the per-thread count must stay right).
    _not_send: PhantomData<*const ()>,
}

impl Budget {
    pub fn new(cap: u64) -> Budget {
        Budget {
            cap: cap.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Waits until `bytes` fit (or nothing else is held) and reserves them; a thread that
    /// already holds a reservation gets it at once.
    pub fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let holding = HELD.with(Cell::get) > 0;
        // A poisoned lock only means another worker panicked; the count is still right.
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while !holding && *used > 0 && used.saturating_add(bytes) > self.cap {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used = used.saturating_add(bytes);
        HELD.with(|h| h.set(h.get().saturating_add(bytes)));
        Reservation {
            budget: self,
            bytes,
            _not_send: PhantomData,
        }
    }

    pub fn in_use(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(self.bytes);
        HELD.with(|h| h.set(h.get().saturating_sub(self.bytes)));
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn never_exceeds_cap_except_for_one_big_reservation() {
        let b = Budget::new(100);
        let peak = AtomicU64::new(0);
        std::thread::scope(|s| {
            for i in 0..8u64 {
                let (b, peak) = (&b, &peak);
                s.spawn(move || {
                    let want = if i == 3 { 250 } else { 40 };
                    let _r = b.reserve(want);
                    peak.fetch_max(b.in_use(), Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 250);
        assert_eq!(b.in_use(), 0);
    }

    /// Runs `f` on another thread and fails the test if it does not finish in time (a deadlock
    /// would otherwise hang the test run).
    fn finishes(f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the reservations deadlocked");
    }

    /// `trim --memory` below twice a device library's size hung here: the output's reservation
    /// waited for the member's own.
    #[test]
    fn a_nested_reservation_does_not_wait_for_its_own_bytes() {
        finishes(|| {
            let b = Budget::new(100);
            let outer = b.reserve(80);
            let inner = b.reserve(80);
            assert_eq!(b.in_use(), 160);
            drop(inner);
            drop(outer);
            assert_eq!(b.in_use(), 0);
        });
    }

    /// Two workers that each hold a reservation and ask for another must not wait for each
    /// other (`trim -j 2 --memory 300k` on two 130 KiB libraries hung).
    #[test]
    fn holders_do_not_wait_for_each_other() {
        finishes(|| {
            let b = Budget::new(100);
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let (b, barrier) = (&b, &barrier);
                    s.spawn(move || {
                        let _outer = b.reserve(45);
                        barrier.wait();
                        let _inner = b.reserve(45);
                    });
                }
            });
            assert_eq!(b.in_use(), 0);
        });
    }
}

//! A memory budget shared by parallel workers: each holds a reservation for the bytes it keeps
//! in memory, and waits while the budget is spent. A single reservation larger than the whole
//! budget is still granted when nothing else is held, so the peak is bounded by
//! max(budget, largest single reservation) — never by the sum of a wheel's members.

use std::sync::{Condvar, Mutex};

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

    /// Waits until `bytes` fit (or nothing else is held) and reserves them.
    pub fn reserve(&self, bytes: u64) -> Reservation<'_> {
        // A poisoned lock only means another worker panicked; the count is still right.
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 && *used + bytes > self.cap {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += bytes;
        Reservation {
            budget: self,
            bytes,
        }
    }

    pub fn in_use(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= self.bytes;
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
}

//! A memory budget shared by parallel workers: each holds a reservation for the bytes it keeps
//! in memory, and waits while the budget is spent. A single reservation larger than the whole
//! budget is still granted when nothing else is being worked on, so the peak is bounded by
//! max(budget, largest single reservation) — never by the sum of a wheel's members.
//!
//! A reservation can be *retained*: its bytes stay in memory after the worker is done with
//! them (`split` keeps the members it will rewrite, so they are not inflated twice). Retained
//! bytes count against the budget, but they never make a worker wait forever: when no other
//! reservation is held, the next one is granted whatever is retained. Retaining itself is
//! bounded by the budget ([`Reservation::try_retain`]; the first retained member may exceed
//! it). So the peak is bounded by the retained bytes (at most max(budget, the first member
//! kept)) plus max(budget, largest single member).

use std::sync::{Condvar, Mutex};

#[derive(Debug)]
pub struct Budget {
    cap: u64,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Every byte reserved, retained ones included.
    used: u64,
    /// The part of `used` held by retained reservations.
    retained: u64,
}

/// Bytes reserved from a [`Budget`]; returned when dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
    retained: bool,
}

impl Budget {
    pub fn new(cap: u64) -> Budget {
        Budget {
            cap: cap.max(1),
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another worker panicked; the counts are still right.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `bytes` fit (or no other reservation is being worked on) and reserves them.
    pub fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let mut st = self.lock();
        while st.used > st.retained && st.used + bytes > self.cap {
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.used += bytes;
        Reservation {
            budget: self,
            bytes,
            retained: false,
        }
    }

    pub fn in_use(&self) -> u64 {
        self.lock().used
    }

    /// Bytes held by retained reservations.
    pub fn retained(&self) -> u64 {
        self.lock().retained
    }
}

impl Reservation<'_> {
    /// Keeps these bytes past the worker's turn (see the module documentation).
    pub fn retain(mut self) -> Self {
        if !self.retained {
            self.budget.lock().retained += self.bytes;
            self.retained = true;
            self.budget.freed.notify_all();
        }
        self
    }

    /// Retains these bytes if the retained total stays within the budget (or nothing is
    /// retained yet, so one member larger than the budget can still be kept); otherwise gives
    /// the reservation back unchanged.
    pub fn try_retain(self) -> Result<Self, Self> {
        if self.retained {
            return Ok(self);
        }
        let fits = {
            let st = self.budget.lock();
            st.retained == 0 || st.retained + self.bytes <= self.budget.cap
        };
        if fits { Ok(self.retain()) } else { Err(self) }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reserves `more` bytes on top of these, for a worker that needs a second buffer (the
    /// rewritten copy of a member it holds). Its own bytes never make it wait: it waits only
    /// while *other* reservations are being worked on and the total would pass the budget.
    /// (A worker reserving twice with [`Budget::reserve`] would wait for itself.)
    pub fn grow(&mut self, more: u64) {
        let own = if self.retained { 0 } else { self.bytes };
        let mut st = self.budget.lock();
        while st.used - st.retained > own && st.used + more > self.budget.cap {
            st = self
                .budget
                .freed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
        st.used += more;
        if self.retained {
            st.retained += more;
        }
        self.bytes += more;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut st = self.budget.lock();
        st.used -= self.bytes;
        if self.retained {
            st.retained -= self.bytes;
        }
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

    #[test]
    fn retained_bytes_never_block_the_next_worker() {
        let b = Budget::new(100);
        let kept = b.reserve(90).retain();
        // Nothing else is being worked on: granted although 90 + 50 > 100.
        let r = b.reserve(50);
        assert_eq!(b.in_use(), 140);
        assert_eq!(b.retained(), 90);
        drop(r);
        drop(kept);
        assert_eq!((b.in_use(), b.retained()), (0, 0));
    }

    #[test]
    fn a_worker_growing_its_reservation_does_not_wait_for_itself() {
        let b = Budget::new(100);
        let mut r = b.reserve(80);
        r.grow(80);
        assert_eq!((b.in_use(), r.bytes()), (160, 160));
        drop(r);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn retaining_stops_at_the_budget_except_for_the_first() {
        let b = Budget::new(100);
        let first = b.reserve(150).try_retain().unwrap();
        let refused = b.reserve(10).try_retain().unwrap_err();
        drop(refused);
        drop(first);
        let a = b.reserve(60).try_retain().unwrap();
        let c = b.reserve(40).try_retain().unwrap();
        assert!(b.reserve(1).try_retain().is_err());
        assert_eq!(b.retained(), 100);
        drop((a, c));
    }
}

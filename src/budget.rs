//! A memory budget shared by parallel workers: each holds a reservation for the bytes it keeps
//! in memory, and waits while the budget is spent. A single reservation larger than the whole
//! budget is still granted when nothing else is being worked on, so the peak is bounded by
//! max(budget, largest single reservation) — never by the sum of a wheel's members.
//!
//! Two rules keep the workers from deadlocking:
//!
//! * **A thread that already holds a reservation never waits for another one.** Waiting while
//!   holding is how workers deadlock: a nested reservation (trim reserves for its output while
//!   the member's bytes are reserved) would wait for its own bytes, two workers would each wait
//!   for the other's, and a job that rayon runs on a thread blocked in a parallel deflate would
//!   wait for the frame below it. Such nested grants can overshoot the budget by what the
//!   holders nest, which stays within a small multiple of the largest member.
//! * **Retained bytes never make a worker wait forever.** A reservation can be *retained*: its
//!   bytes stay in memory after the worker is done with them (`split` keeps the members it will
//!   rewrite, so they are not inflated twice). Retained bytes count against the budget, but when
//!   no other reservation is being worked on the next one is granted whatever is retained.
//!   Retaining itself is bounded by the budget, with room left for the largest reservation
//!   still to come ([`Reservation::try_retain_leaving`]), so that a retained member and the
//!   next one inflated fit the budget together (the first retained member may exceed it only
//!   when nothing else is to come).
//!
//! `--memory` is shared out explicitly ([`Shares`], issue 11): a command that may decompress
//! device code (`trim` and `split` with `--sm`/`--gfx`) gives half of it to members and half to
//! decompressed device code, [`DEVICE`]; the others give members all of it. Members and device
//! code used to get the whole of `--memory` each, so the worst case was about twice it. A
//! worker holding a member's bytes may wait on [`DEVICE`] while *another* worker holds
//! decompressed device code, because those holders never wait for anything (they decompress,
//! rebuild and compress on their own thread, with no nested parallel work), so their bytes
//! always come back. One decompression may be a quarter of `--memory` at most, so that it and
//! the rebuilt copy made from it (both reserved at once) fit the device share.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

thread_local! {
    /// Bytes the current thread holds in reservations that are not retained, of member
    /// budgets ([`Lane::Members`]) and of [`DEVICE`] ([`Lane::Device`]).
    static HELD: [Cell<u64>; 2] = const { [Cell::new(0), Cell::new(0)] };
}

/// What a budget holds: each kind has its own per-thread count, so holding a member's bytes
/// does not make a thread a holder of decompressed device code (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Members = 0,
    Device = 1,
}

/// The most bytes any decompression of device code will produce unless a caller asks for
/// another cap.
pub const DEFAULT_DECOMPRESS_CAP: u64 = 4 << 30;

/// Below this many decompressed bytes no expansion ratio is enforced on device code: tiny
/// streams of zero-filled images can honestly exceed the ratio `fatbin` allows.
pub const EXPANSION_FLOOR: u64 = 8 << 20;

/// The process's budget for decompressed device code (entries, concat groups and CCOB
/// bundles being rebuilt, with their rebuilt copies). Its cap is the device share of
/// `--memory` ([`Shares::device`]), set by `fatbin::limit_decompression`.
pub static DEVICE: Budget = Budget::for_device(2 * DEFAULT_DECOMPRESS_CAP);

/// How one `--memory` is shared out between members and decompressed device code, so that
/// the two together stay within it (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    /// The cap of the members' [`Budget`] (bytes of members held at once, their rewritten
    /// copies included).
    pub members: u64,
    /// The cap of [`DEVICE`]: decompressed device code and its rebuilt copies, all workers.
    pub device: u64,
    /// The most one piece of device code may decompress to: half the device share, since a
    /// rebuild holds the decompressed bytes and the copy it builds from them.
    pub per_decompression: u64,
}

impl Shares {
    /// The shares of `memory` for a command that decompresses device code (`decompresses`:
    /// `trim`/`split` with targets) or not. One decompression gets a quarter of `memory`,
    /// between [`EXPANSION_FLOOR`] and [`DEFAULT_DECOMPRESS_CAP`];
    /// device code gets twice that, and members the rest (all of `memory` for a command that
    /// decompresses nothing). Below 32 MiB the floor makes the two shares sum past `memory`.
    pub fn of(memory: u64, decompresses: bool) -> Shares {
        let per_decompression = (memory / 4).clamp(EXPANSION_FLOOR, DEFAULT_DECOMPRESS_CAP);
        let device = per_decompression.saturating_mul(2);
        let members = if decompresses {
            memory.saturating_sub(device).max(memory / 2).max(1)
        } else {
            memory.max(1)
        };
        Shares {
            members,
            device,
            per_decompression,
        }
    }
}

#[derive(Debug)]
pub struct Budget {
    cap: AtomicU64,
    lane: Lane,
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
///
/// A reservation that is not retained belongs to the thread that made it and must be dropped
/// there (the per-thread count must stay right); a retained one may travel.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
    retained: bool,
}

fn held_in(lane: Lane) -> u64 {
    HELD.with(|h| h[lane as usize].get())
}

#[cfg(test)]
fn held() -> u64 {
    held_in(Lane::Members)
}

fn add_held(lane: Lane, bytes: u64) {
    HELD.with(|h| {
        let c = &h[lane as usize];
        c.set(c.get().saturating_add(bytes));
    });
}

fn sub_held(lane: Lane, bytes: u64) {
    HELD.with(|h| {
        let c = &h[lane as usize];
        c.set(c.get().saturating_sub(bytes));
    });
}

impl Budget {
    pub fn new(cap: u64) -> Budget {
        Budget {
            cap: AtomicU64::new(if cap == 0 { 1 } else { cap }),
            lane: Lane::Members,
            state: Mutex::new(State {
                used: 0,
                retained: 0,
            }),
            freed: Condvar::new(),
        }
    }

    const fn for_device(cap: u64) -> Budget {
        Budget {
            cap: AtomicU64::new(cap),
            lane: Lane::Device,
            state: Mutex::new(State {
                used: 0,
                retained: 0,
            }),
            freed: Condvar::new(),
        }
    }

    pub fn cap(&self) -> u64 {
        self.cap.load(Ordering::Relaxed)
    }

    /// Changes the cap (the device budget's, once a command knows its `--memory`).
    pub fn set_cap(&self, cap: u64) {
        self.cap.store(cap.max(1), Ordering::Relaxed);
        self.freed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another worker panicked; the counts are still right.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `bytes` fit (or no other reservation is being worked on) and reserves them;
    /// a thread that already holds a reservation gets them at once.
    pub fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let holding = held_in(self.lane) > 0;
        let mut st = self.lock();
        while !holding && st.used > st.retained && st.used.saturating_add(bytes) > self.cap() {
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.used = st.used.saturating_add(bytes);
        drop(st);
        add_held(self.lane, bytes);
        Reservation {
            budget: self,
            bytes,
            retained: false,
        }
    }

    #[cfg(test)]
    pub fn in_use(&self) -> u64 {
        self.lock().used
    }

    /// Bytes held by retained reservations.
    #[cfg(test)]
    pub fn retained(&self) -> u64 {
        self.lock().retained
    }
}

impl Reservation<'_> {
    /// Keeps these bytes past the worker's turn (see the module documentation).
    pub fn retain(mut self) -> Self {
        if !self.retained {
            self.budget.lock().retained += self.bytes;
            sub_held(self.budget.lane, self.bytes);
            self.retained = true;
            self.budget.freed.notify_all();
        }
        self
    }

    /// Retains these bytes if the retained total stays within the budget (or nothing is
    /// retained yet, so one member larger than the budget can still be kept); otherwise gives
    /// the reservation back unchanged.
    #[cfg(test)]
    pub fn try_retain(self) -> Result<Self, Self> {
        self.try_retain_leaving(0)
    }

    /// Like [`Reservation::try_retain`], leaving `room` bytes free beside what is retained:
    /// `room` is the largest reservation still to come in the same pass. Retained bytes do not
    /// make the next worker wait when nothing else is worked on, so without this room a
    /// retained member and the next one inflated would be held at once past the budget (the
    /// 861 MiB `libtorch_cuda.so` kept while the 469 MiB `libtorch_cpu.so` was inspected).
    /// The first retained member may exceed the budget only when nothing else is to come.
    pub fn try_retain_leaving(self, room: u64) -> Result<Self, Self> {
        if self.could_retain_leaving(room) {
            Ok(self.retain())
        } else {
            Err(self)
        }
    }

    /// Whether [`Reservation::try_retain_leaving`] would retain these bytes now (another
    /// worker may retain first).
    pub fn could_retain_leaving(&self, room: u64) -> bool {
        if self.retained {
            return true;
        }
        let st = self.budget.lock();
        (st.retained == 0 && room == 0)
            || st.retained.saturating_add(self.bytes).saturating_add(room) <= self.budget.cap()
    }

    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reserves `more` bytes on top of these, for a worker that needs a second buffer (the
    /// rewritten copy of a member it holds). The worker holds these bytes, so it never waits.
    pub fn grow(&mut self, more: u64) {
        let mut st = self.budget.lock();
        st.used = st.used.saturating_add(more);
        if self.retained {
            st.retained = st.retained.saturating_add(more);
        } else {
            add_held(self.budget.lane, more);
        }
        self.bytes = self.bytes.saturating_add(more);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut st = self.budget.lock();
        st.used = st.used.saturating_sub(self.bytes);
        if self.retained {
            st.retained = st.retained.saturating_sub(self.bytes);
        } else {
            sub_held(self.budget.lane, self.bytes);
        }
        drop(st);
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Issue 11 item 1: two workers each holding a member's bytes decompressed device code
    /// at once, so `-j 2` held twice `--memory`. Holding a member no longer lets a worker skip
    /// the device budget's queue; holding device bytes still does (a nested decompression).
    #[test]
    fn member_holders_queue_for_device_bytes_that_another_worker_holds() {
        finishes(|| {
            let members = Budget::new(1000);
            let device = Budget::for_device(100);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::scope(|s| {
                let (members, device) = (&members, &device);
                s.spawn(move || {
                    let _m = members.reserve(10);
                    let d = device.reserve(80);
                    // Nested: granted at once although 160 > 100.
                    let nested = device.reserve(80);
                    assert_eq!(device.in_use(), 160);
                    drop(nested);
                    tx.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    assert_eq!(device.in_use(), 80, "the other worker did not wait");
                    drop(d);
                });
                s.spawn(move || {
                    rx.recv().unwrap();
                    let _m = members.reserve(10);
                    let _d = device.reserve(80);
                    assert_eq!(device.in_use(), 80);
                });
            });
            assert_eq!(device.in_use(), 0);
        });
    }

    /// Issue 11, second round: members and device code each had the whole of `--memory`.
    #[test]
    fn the_shares_of_memory_sum_to_it() {
        const MIB: u64 = 1 << 20;
        for memory in [32 * MIB, 100 * MIB, 256 * MIB, 1 << 30, 5 << 30, 64 << 30] {
            let s = Shares::of(memory, true);
            assert!(s.members + s.device <= memory, "{memory}: {s:?}");
            assert!(2 * s.per_decompression <= s.device, "{memory}: {s:?}");
            assert!(s.members >= memory / 2, "{memory}: {s:?}");
            assert_eq!(Shares::of(memory, false).members, memory);
        }
        let s = Shares::of(256 * MIB, true);
        assert_eq!(
            (s.members, s.device, s.per_decompression),
            (128 * MIB, 128 * MIB, 64 * MIB)
        );
        // Below 32 MiB the floor of one decompression wins; members keep half.
        let s = Shares::of(MIB, true);
        assert_eq!((s.members, s.per_decompression), (MIB / 2, 8 * MIB));
    }

    #[test]
    fn retained_bytes_never_block_the_next_worker() {
        finishes(|| {
            let b = Budget::new(100);
            let kept = b.reserve(90).retain();
            // Nothing else is being worked on: granted although 90 + 50 > 100.
            let r = b.reserve(50);
            assert_eq!(b.in_use(), 140);
            assert_eq!(b.retained(), 90);
            drop(r);
            // A retained reservation may be dropped on another thread.
            std::thread::scope(|s| {
                s.spawn(move || drop(kept));
            });
            assert_eq!((b.in_use(), b.retained()), (0, 0));
        });
    }

    #[test]
    fn a_worker_growing_its_reservation_does_not_wait_for_itself() {
        finishes(|| {
            let b = Budget::new(100);
            let mut r = b.reserve(80);
            r.grow(80);
            assert_eq!((b.in_use(), r.bytes()), (160, 160));
            drop(r);
            assert_eq!(b.in_use(), 0);
        });
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

    #[test]
    fn retaining_leaves_room_for_the_largest_reservation_to_come() {
        let b = Budget::new(100);
        // 60 retained and 50 still to come would hold 110 at once: refused.
        let refused = b.reserve(60).try_retain_leaving(50).unwrap_err();
        drop(refused);
        assert_eq!(b.retained(), 0);
        // Even the first retained member: one larger than the budget is kept only when
        // nothing else is to come.
        assert!(b.reserve(150).try_retain_leaving(1).is_err());
        let a = b.reserve(60).try_retain_leaving(40).unwrap();
        assert!(b.reserve(10).try_retain_leaving(31).is_err());
        let c = b.reserve(10).try_retain_leaving(30).unwrap();
        assert_eq!(b.retained(), 70);
        drop((a, c));
    }

    #[test]
    fn a_retained_reservation_no_longer_counts_as_held_by_its_thread() {
        let b = Budget::new(100);
        let kept = b.reserve(60).retain();
        assert_eq!(held(), 0);
        let r = b.reserve(10);
        assert_eq!(held(), 10);
        drop(r);
        drop(kept);
        assert_eq!(held(), 0);
    }
}

//! Largest-first scheduling of uneven work over the thread pool.
//!
//! A wheel's members differ in size by six orders of magnitude, and inflating one member is
//! sequential, so the wall time of a parallel pass is at least its largest member's time. Rayon's
//! `par_iter` over members in archive order splits the list in halves: all of `pkg.libs/`
//! can land on one thread while the other finishes the Python files and idles (measured: a
//! 1 GiB wheel inspected on 2 cores used 1.05 cores). Starting the largest items first and
//! letting each worker take the next item from a shared counter (greedy "longest processing
//! time first") keeps every core busy until the last, small items.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Maps `f` over `0..sizes.len()`, starting the items with the largest `sizes` first, on every
/// thread of the current rayon pool. Results come back in index order. Work that `f` itself
/// spreads with rayon (the chunked deflate of one large member) is picked up by workers that
/// ran out of items.
pub fn largest_first<T: Send>(sizes: &[u64], f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    // Stable: equal sizes keep index order, so the schedule is the same on every run.
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<T>>> = (0..sizes.len()).map(|_| Mutex::new(None)).collect();
    let workers = rayon::current_num_threads().clamp(1, sizes.len().max(1));
    rayon::scope(|s| {
        for _ in 0..workers {
            s.spawn(|_| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let out = f(i);
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                // PANIC SAFETY: every index in `order` was taken by exactly one worker, and a
                // panic in `f` propagates out of the scope above before we get here.
                .expect("every item was scheduled")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_index_order() {
        let sizes = [3u64, 100, 1, 50, 50, 0];
        let out = largest_first(&sizes, |i| i * 10);
        assert_eq!(out, vec![0, 10, 20, 30, 40, 50]);
        assert!(largest_first(&[], |i| i).is_empty());
    }

    #[test]
    fn largest_items_start_first() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let started = Mutex::new(Vec::new());
        pool.install(|| {
            largest_first(&[5, 9, 1, 7], |i| started.lock().unwrap().push(i));
        });
        assert_eq!(started.into_inner().unwrap(), vec![1, 3, 0, 2]);
    }
}

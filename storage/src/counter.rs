//! A counter that every core can bump on the hit path without sharing a cache line.
//!
//! A plain `AtomicU64` that all worker threads `fetch_add` is one cache line bouncing
//! between cores on every request: each increment waits for the line to arrive from the
//! core that last wrote it. [`Striped`] spreads the count over [`STRIPES`] cache-line-sized
//! cells; each thread adds to its own cell (threads are assigned cells round-robin the first
//! time they count), and a read sums the cells. Reads are rare (`/stats`), increments are
//! not. Counts are exact; a read concurrent with increments sees some of them, as with one
//! atomic.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Cells per counter: enough that the worker threads of a CDN node's cores rarely share one.
pub const STRIPES: usize = 16;

/// One cell, alone on its cache line (two lines: adjacent-line prefetch pairs them).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A sum of per-thread cells; see the module docs.
#[derive(Debug)]
pub struct Striped {
    cells: [Padded; STRIPES],
}

impl Default for Striped {
    fn default() -> Self {
        Self::new()
    }
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's cell, assigned on first use (`usize::MAX`: not yet).
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe() -> usize {
    STRIPE
        .try_with(|s| {
            let i = s.get();
            if i != usize::MAX {
                return i;
            }
            let i = NEXT_STRIPE.fetch_add(1, Relaxed) % STRIPES;
            s.set(i);
            i
        })
        // No thread-local left (a thread tearing down): any cell counts the same.
        .unwrap_or(0)
}

impl Striped {
    pub const fn new() -> Self {
        Self {
            cells: [const { Padded(AtomicU64::new(0)) }; STRIPES],
        }
    }

    /// Adds `n` (in this thread's cell).
    #[inline]
    pub fn add(&self, n: u64) {
        self.cells[stripe()].0.fetch_add(n, Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The sum of all cells (wrapping, as one `AtomicU64` would).
    pub fn get(&self) -> u64 {
        self.cells
            .iter()
            .fold(0u64, |a, c| a.wrapping_add(c.0.load(Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_from_many_threads_add_up_exactly() {
        let c = Arc::new(Striped::new());
        let threads: Vec<_> = (0..STRIPES + 3)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                    }
                    c.add(t as u64);
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        let n = (STRIPES + 3) as u64;
        assert_eq!(c.get(), n * 1000 + n * (n - 1) / 2);
    }

    #[test]
    fn cells_do_not_share_cache_lines() {
        assert!(std::mem::align_of::<Padded>() >= 128);
        assert_eq!(std::mem::size_of::<Striped>(), STRIPES * 128);
    }
}

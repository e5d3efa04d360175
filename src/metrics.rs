//! Process-wide request counters for `GET /stats`: cache hits, misses and
//! requests sent to origins, connections opened to them.
//!
//! The cache path increments them ([`Counters::hit`] / [`Counters::miss`]
//! from the request's cache phase, and [`Counters::origin_request`]);
//! they are plain relaxed atomics, so the
//! cost on the hit path is one uncontended `fetch_add`. They are global to
//! the process (several in-process nodes, as in tests, share them); the
//! storage figures of `/stats` are per node.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Hit / miss / origin-request counters.
#[derive(Debug, Default)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    origin_requests: AtomicU64,
    origin_connects: AtomicU64,
    origin_stale_retries: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub hits: u64,
    pub misses: u64,
    pub origin_requests: u64,
    /// New connections opened to origins.
    pub origin_connects: u64,
    /// Requests retried because a pooled origin connection had closed.
    pub origin_stale_retries: u64,
}

impl Snapshot {
    /// `hits / (hits + misses)`; 0 before any cache lookup.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits.saturating_add(self.misses);
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

impl Counters {
    /// The process-wide counters.
    pub fn global() -> &'static Counters {
        static C: OnceLock<Counters> = OnceLock::new();
        C.get_or_init(Counters::default)
    }

    /// A response served from the cache without contacting the origin
    /// (fresh hit, stale-while-revalidate, stale-if-error).
    pub fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }

    /// A cacheable request that could not be served from the cache alone
    /// (miss, vary miss, stale needing revalidation).
    pub fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }

    /// A request sent to an origin (any method, revalidations included).
    pub fn origin_request(&self) {
        self.origin_requests.fetch_add(1, Relaxed);
    }

    /// A new connection to an origin.
    pub fn origin_connect(&self) {
        self.origin_connects.fetch_add(1, Relaxed);
    }

    /// A request retried because its pooled connection had been closed.
    pub fn origin_stale_retry(&self) {
        self.origin_stale_retries.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            origin_requests: self.origin_requests.load(Relaxed),
            origin_connects: self.origin_connects.load(Relaxed),
            origin_stale_retries: self.origin_stale_retries.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ratio() {
        let c = Counters::default();
        assert_eq!(c.snapshot().hit_ratio(), 0.0);
        c.hit();
        c.hit();
        c.hit();
        c.miss();
        c.origin_request();
        let s = c.snapshot();
        assert_eq!((s.hits, s.misses, s.origin_requests), (3, 1, 1));
        assert!((s.hit_ratio() - 0.75).abs() < 1e-9);
    }
}

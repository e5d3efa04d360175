//! The node's figures: the one stats interface the admin endpoints read.
//! It knows nothing of requests or the store's internals: the layers that
//! count call in, and [`stats`] gathers a snapshot from the counters here,
//! the cache's figures (handed in as [`stats::CacheFigures`]) and the
//! storage crate's process-wide ones.
//!
//! [`Counters`] are process-wide request counters: cache hits, misses and
//! requests sent to origins, connections opened to them.
//!
//! The cache path increments them ([`Counters::hit`] / [`Counters::miss`]
//! from the request's cache phase, and [`Counters::origin_request`]);
//! they are striped (`outpost_storage::counter::Striped`): a thread adds to
//! one of 16 cache lines, assigned round-robin, so worker threads do not
//! share one unless the process runs more threads than stripes, and a
//! `/stats` read sums the stripes. They are global to
//! the process (several in-process nodes, as in tests, share them); the
//! storage figures of `/stats` are per node.

pub mod stats;

use outpost_storage::counter::Striped;
use std::sync::{Arc, OnceLock};

pub use stats::{CacheFigures, NodeStats, OriginFigures, Stats};

/// Bytes a listener sent with `sendfile(2)` (one per node).
pub type SendfileBytes = Arc<Striped>;

/// Hit / miss / origin-request counters.
#[derive(Debug, Default)]
pub struct Counters {
    hits: Striped,
    misses: Striped,
    origin_requests: Striped,
    origin_connects: Striped,
    origin_stale_retries: Striped,
    origin_state_changes: Striped,
    tls_handshakes: Striped,
    tls_failures: [Striped; TlsFailure::ALL.len()],
    access_denied: Striped,
    rate_limited: Striped,
    path_refused: Striped,
    request_limited: Striped,
    connections_refused: Striped,
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// No protocol version, cipher suite or signature scheme in common.
    NoSharedCipher,
    /// No certificate for the name asked (and `default = "refuse"`).
    UnknownSni,
    /// Bytes that are not TLS, or a record that does not decrypt.
    BadRecord,
    /// Not finished within `server.tls_handshake_timeout`.
    Timeout,
    /// Anything else (the client went away, an alert, …).
    Other,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::NoSharedCipher,
        TlsFailure::UnknownSni,
        TlsFailure::BadRecord,
        TlsFailure::Timeout,
        TlsFailure::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::NoSharedCipher => "no_shared_cipher",
            TlsFailure::UnknownSni => "unknown_sni",
            TlsFailure::BadRecord => "bad_record",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Other => "other",
        }
    }
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
    /// Origins that changed state (up, down, draining, disabled).
    pub origin_state_changes: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes failed, by [`TlsFailure`] in the order of `ALL`.
    pub tls_failures: [u64; TlsFailure::ALL.len()],
    /// Requests refused by an access list (403).
    pub access_denied: u64,
    /// Requests over a rate limit (429).
    pub rate_limited: u64,
    /// Requests refused for an unsafe path (400).
    pub path_refused: u64,
    /// Requests refused by a request limit (405, 413, 414).
    pub request_limited: u64,
    /// Connections closed at accept by a connection limit.
    pub connections_refused: u64,
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
        self.hits.inc();
    }

    /// A cacheable request that could not be served from the cache alone
    /// (miss, vary miss, stale needing revalidation).
    pub fn miss(&self) {
        self.misses.inc();
    }

    /// A request sent to an origin (any method, revalidations included).
    pub fn origin_request(&self) {
        self.origin_requests.inc();
    }

    /// A new connection to an origin.
    pub fn origin_connect(&self) {
        self.origin_connects.inc();
    }

    /// A request retried because its pooled connection had been closed.
    pub fn origin_stale_retry(&self) {
        self.origin_stale_retries.inc();
    }

    /// An origin changed state (ejected, probed down or up, drained,
    /// enabled).
    pub fn origin_state_change(&self) {
        self.origin_state_changes.inc();
    }

    /// A request refused by an access list.
    pub fn access_denied(&self) {
        self.access_denied.inc();
    }

    /// A connection closed at accept by a connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A request refused by a request limit.
    pub fn request_limited(&self) {
        self.request_limited.inc();
    }

    /// A request refused for an unsafe path.
    pub fn path_refused(&self) {
        self.path_refused.inc();
    }

    /// A request over a rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// A TLS handshake completed.
    pub fn tls_handshake(&self) {
        self.tls_handshakes.inc();
    }

    /// A TLS handshake failed for `why`.
    pub fn tls_failed(&self, why: TlsFailure) {
        if let Some(i) = TlsFailure::ALL.iter().position(|w| *w == why) {
            self.tls_failures[i].inc();
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            hits: self.hits.get(),
            misses: self.misses.get(),
            origin_requests: self.origin_requests.get(),
            origin_connects: self.origin_connects.get(),
            origin_stale_retries: self.origin_stale_retries.get(),
            origin_state_changes: self.origin_state_changes.get(),
            tls_handshakes: self.tls_handshakes.get(),
            tls_failures: std::array::from_fn(|i| self.tls_failures[i].get()),
            access_denied: self.access_denied.get(),
            rate_limited: self.rate_limited.get(),
            path_refused: self.path_refused.get(),
            request_limited: self.request_limited.get(),
            connections_refused: self.connections_refused.get(),
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

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

pub mod compression;
pub mod http;
pub mod stats;

use outpost_storage::counter::Striped;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

pub use stats::{CacheFigures, NodeStats, OriginFigures, Stats};

// Counters are indexed by discriminant: `ALL` must list every reason.
const _: () = assert!(Refusal::ALL.len() == Refusal::H2Abuse as usize + 1);

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
    corrupt_misses: Striped,
    cut_off: Striped,
    slices: [Striped; 3],
    tls_handshakes: Striped,
    tls_failures: [Striped; TlsFailure::ALL.len()],
    refusals: [Striped; Refusal::ALL.len()],
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Unix seconds of the last reload that took effect (0: none yet).
    last_reload: AtomicU64,
}

/// Why a request or connection was refused before any cache or origin
/// work (each with its own counter and access-log outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An access list (403).
    AccessDenied,
    /// A rate limit (429).
    RateLimited,
    /// An unsafe path (400).
    Path,
    /// A request target over `max_uri_bytes` (414).
    UriTooLong,
    /// A method not in `methods` (405).
    Method,
    /// Content over `max_body_bytes`, declared or streamed (413).
    BodyTooLarge,
    /// A head over `max_header_bytes` or `max_header_count` (431).
    HeadersTooLarge,
    /// Content slower than `body_read_timeout` (408).
    BodyTimeout,
    /// A request rule with the `deny` action.
    Rule,
    /// A connection over `max_connections` or `max_connections_per_client`.
    ConnectionLimit,
    /// A PROXY header from an untrusted peer, or a malformed one.
    ProxyHeader,
    /// An HTTP/2 connection ended for abuse (rapid reset and the like).
    H2Abuse,
}

impl Refusal {
    pub const ALL: [Refusal; 12] = [
        Refusal::AccessDenied,
        Refusal::RateLimited,
        Refusal::Path,
        Refusal::UriTooLong,
        Refusal::Method,
        Refusal::BodyTooLarge,
        Refusal::HeadersTooLarge,
        Refusal::BodyTimeout,
        Refusal::Rule,
        Refusal::ConnectionLimit,
        Refusal::ProxyHeader,
        Refusal::H2Abuse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AccessDenied => "access_denied",
            Refusal::RateLimited => "rate_limited",
            Refusal::Path => "path",
            Refusal::UriTooLong => "uri_too_long",
            Refusal::Method => "method",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::Rule => "rule",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::ProxyHeader => "proxy_header",
            Refusal::H2Abuse => "h2_abuse",
        }
    }

    /// Whether it is one of the request limits (`/stats`
    /// `request_limited`).
    pub fn is_request_limit(self) -> bool {
        matches!(
            self,
            Refusal::UriTooLong
                | Refusal::Method
                | Refusal::BodyTooLarge
                | Refusal::HeadersTooLarge
                | Refusal::BodyTimeout
        )
    }
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
    /// Stored responses found damaged before their head was sent: answered
    /// as misses.
    pub corrupt_misses: u64,
    /// Stored bodies found damaged after their head was sent: the answer
    /// was cut off.
    pub cut_off: u64,
    /// Slices of sliced objects: served from the store, fetched from the
    /// origin, and objects restarted because their validator changed between slices.
    pub slice_hits: u64,
    pub slice_fetches: u64,
    pub slice_restarts: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes failed, by [`TlsFailure`] in the order of `ALL`.
    pub tls_failures: [u64; TlsFailure::ALL.len()],
    /// Refusals, by [`Refusal`] in the order of `ALL`.
    pub refusals: [u64; Refusal::ALL.len()],
    /// Config reloads that took effect, and that were refused.
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Unix seconds of the last reload that took effect (0: none yet).
    pub last_reload: u64,
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

    /// A stored response found damaged before its head went out (a miss).
    pub fn corrupt_miss(&self) {
        self.corrupt_misses.inc();
    }

    /// A stored body found damaged after its head went out (cut off).
    pub fn cut_off(&self) {
        self.cut_off.inc();
    }

    /// A slice of a sliced object served from the store.
    pub fn slice_hit(&self) {
        self.slices[0].inc();
    }

    /// A slice fetched from the origin.
    pub fn slice_fetch(&self) {
        self.slices[1].inc();
    }

    /// A sliced object dropped because a slice had another validator.
    pub fn slice_restart(&self) {
        self.slices[2].inc();
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

    /// A config reload: taken or refused.
    pub fn config_reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Relaxed);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.last_reload.store(now, Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Relaxed);
        }
    }

    /// A request or connection refused for `why`.
    pub fn refused(&self, why: Refusal) {
        self.refusals[why as usize].inc();
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
            corrupt_misses: self.corrupt_misses.get(),
            cut_off: self.cut_off.get(),
            slice_hits: self.slices[0].get(),
            slice_fetches: self.slices[1].get(),
            slice_restarts: self.slices[2].get(),
            tls_handshakes: self.tls_handshakes.get(),
            tls_failures: std::array::from_fn(|i| self.tls_failures[i].get()),
            refusals: std::array::from_fn(|i| self.refusals[i].get()),
            reloads_ok: self.reloads_ok.load(Relaxed),
            reloads_failed: self.reloads_failed.load(Relaxed),
            last_reload: self.last_reload.load(Relaxed),
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

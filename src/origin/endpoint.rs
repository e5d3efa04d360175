//! One origin server of a pool: its URL and weight, its keep-alive
//! connections, its counters, its health, its `max_conns` limit, and the
//! [`Lease`] a request holds on it until its response body is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use outpost_storage::counter::Striped;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::balance::Candidate;
use super::h1;
use super::health::Health;
use crate::config::OriginUrl;

/// What the pool counts of one origin. The request and failure counters
/// are striped (every request writes them, from any core); `in_flight` and
/// the latency mean are plain atomics that every request touches.
#[derive(Debug, Default)]
pub struct OriginStats {
    pub(super) requests: Striped,
    pub(super) failures: Striped,
    pub(super) in_flight: AtomicUsize,
    /// Exponentially weighted mean time to the response head, in
    /// microseconds (0 before the first response).
    pub(super) latency_us: AtomicU64,
    /// Requests whose sticky cookie named this origin and went to it.
    pub(super) sticky_hits: Striped,
    /// Requests whose cookie named this origin while it took no requests.
    pub(super) sticky_fallbacks: Striped,
    /// Cookies rewritten to name this origin (the old one was down,
    /// draining, unknown, or failed the request).
    pub(super) sticky_rewrites: Striped,
}

impl OriginStats {
    /// Folds one time to the response head into the mean (weight 1/8;
    /// concurrent updates may drop one sample, which a mean can afford).
    pub(super) fn observe(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.latency_us.store(new.max(1), Ordering::Relaxed);
    }

    /// Requests in flight now (sent and not yet answered in full).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One origin server.
#[derive(Debug)]
pub struct Origin {
    pub url: OriginUrl,
    /// Its share of the site's requests.
    pub weight: u32,
    /// Keep-alive connections of the HTTP/1 client waiting for reuse.
    pub idle: h1::IdleConns,
    pub stats: OriginStats,
    pub health: Health,
    /// How an `https://` origin is reached (`None` for `http://`).
    pub tls: Option<super::tls::OriginTls>,
    /// `max_conns`: requests it carries at once.
    pub(super) limit: Option<Arc<Semaphore>>,
    /// Its rendezvous-hashing value (from its URL: stable across restarts
    /// and unchanged when other origins come or go).
    seed: u64,
}

impl Origin {
    /// An origin of weight 1, without a connection limit.
    pub fn new(url: OriginUrl) -> Origin {
        Origin::with(url, 1, 0)
    }

    pub(super) fn with(url: OriginUrl, weight: u32, max_conns: u32) -> Origin {
        let h = blake3::hash(url.to_string().as_bytes());
        let b = h.as_bytes();
        Origin {
            seed: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            url,
            weight,
            idle: h1::IdleConns::default(),
            stats: OriginStats::default(),
            health: Health::default(),
            tls: None,
            limit: (max_conns > 0).then(|| Arc::new(Semaphore::new(max_conns as usize))),
        }
    }

    /// Whether a request would not wait for `max_conns`.
    pub(super) fn has_room(&self) -> bool {
        self.limit
            .as_ref()
            .is_none_or(|s| s.available_permits() > 0)
    }
}

impl Candidate for Arc<Origin> {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn in_flight(&self) -> usize {
        self.stats.in_flight()
    }
    fn seed(&self) -> u64 {
        self.seed
    }
}

/// A request's hold on its origin: its count in flight and its place
/// under `max_conns`, given back when the response body is dropped.
#[derive(Debug)]
pub struct Lease {
    pub(super) origin: Arc<Origin>,
    pub(super) _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.origin.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

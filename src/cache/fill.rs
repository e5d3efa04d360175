//! The shared head of a coalesced fetch and the pump that streams an origin
//! body into the store and to every waiting client at once.
//!
//! The pump runs in its own task, so a client that disconnects does not
//! abort a store write other clients wait for. An incomplete body (cut off,
//! idle too long, shorter or longer than its `Content-Length`) is never
//! committed (RFC 9111 §3.3) and cuts every reader off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use outpost_storage::Store;

use super::coalesce::{FillWriter, Key, KeyHash};
use super::key_filter::KeyFilter;
use super::meta::{ObjectMeta, VaryMarker};
use crate::error::ErrorKind;

/// What the leader of a fill tells its followers.
pub enum FillHead {
    /// A response being stored and streamed: read the body from the fill.
    Stream {
        /// Its metadata (as stored).
        meta: Arc<ObjectMeta>,
        /// The store key (the variant key when the response varies).
        key: Key,
        /// Origin status, for `Cache-Status` `fwd-status`.
        fwd_status: u16,
    },
    /// The stored response was freshened by a 304: look it up again.
    Refreshed,
    /// The origin failed: serve stale if allowed, else this error.
    Failed(ErrorKind),
}

/// Recent invalidations by primary key, so that a fill which started before
/// an invalidation (RFC 9111 §4.4, or a purge) does not commit what was
/// invalidated while it ran.
///
/// Every lookup asks [`Self::predates`], hits included; a lock-free filter
/// answers for the keys never invalidated, so the hit path takes no lock
/// shared across cores (`crate::cache::key_filter`).
pub struct Invalidations {
    map: Mutex<HashMap<Key, (Instant, SystemTime), KeyHash>>,
    filter: KeyFilter,
    /// When this node started: variants fetched earlier are not trusted
    /// under a vary marker written after the start (see [`Self::marker_time`]).
    started: SystemTime,
}

impl Default for Invalidations {
    fn default() -> Self {
        Invalidations {
            map: Mutex::default(),
            filter: KeyFilter::default(),
            started: SystemTime::now(),
        }
    }
}

impl Invalidations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Instant, SystemTime), KeyHash>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for `key`, if any (the filter first, then the map).
    fn get(&self, key: &Key) -> Option<(Instant, SystemTime)> {
        if !self.filter.may_contain(key) {
            return None;
        }
        self.lock().get(key).copied()
    }

    /// Remembers that `key` was invalidated now.
    pub fn record(&self, key: Key) {
        let mut m = self.lock();
        if m.len() >= 100_000 {
            let now = Instant::now();
            m.retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(3600));
            self.filter.rebuild(m.keys());
        }
        self.filter.insert(&key);
        m.insert(key, (Instant::now(), SystemTime::now()));
    }

    /// Whether `key` was invalidated at or after `start`.
    pub fn since(&self, key: &Key, start: Instant) -> bool {
        self.get(key).is_some_and(|(t, _)| t >= start)
    }

    /// Whether an object stored at `created_at` under `key` predates the
    /// last invalidation of the URI (so it must not be served, even if a
    /// racing disk write brought it back).
    pub fn predates(&self, key: &Key, created_at: SystemTime) -> bool {
        self.get(key).is_some_and(|(_, t)| created_at <= t)
    }

    /// The `created_at` of a new vary marker for `key`: the last
    /// invalidation of the URI known to this process, or the process start.
    /// Variants older than it are ignored (they may predate an
    /// invalidation); concurrent first variants agree on the value, so
    /// neither hides the other.
    pub fn marker_time(&self, key: &Key) -> SystemTime {
        match self.get(key) {
            Some((_, t)) => t.max(self.started),
            None => self.started,
        }
    }
}

/// What a fill stores: given by the request pipeline to
/// [`super::CacheLayer::start_fill`].
pub struct FillJob {
    /// The store key (the variant key when the response varies).
    pub key: Key,
    /// The encoded [`ObjectMeta`].
    pub meta: Bytes,
    /// The vary marker to write under the primary key after the variant.
    pub marker: Option<(Key, VaryMarker)>,
    /// The body length the origin announced (`Content-Length`).
    pub expected_len: Option<u64>,
    /// Longest pause between two pieces of the origin body.
    pub idle: Duration,
    /// The request's primary key and when its fetch started.
    pub primary: Key,
    pub started: Instant,
}

/// Everything the pump needs besides the origin body and the fill.
pub(super) struct PumpJob {
    pub store: Store,
    pub invalidations: Arc<Invalidations>,
    pub job: FillJob,
}

/// Streams `body` into the store and into `fill`, then commits and ends the
/// fill. Readers see the bytes as they arrive, and the body's end before
/// the commit.
pub(super) async fn pump<B>(pj: PumpJob, mut body: B, fill: FillWriter<FillHead>)
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let PumpJob {
        store,
        invalidations,
        job,
    } = pj;
    let mut w = Some(store.begin_write(job.key, job.meta));
    let mut n: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(job.idle, body.frame()).await {
            Err(_) => {
                tracing::warn!(idle = ?job.idle, "origin body idle timeout; not stored");
                return; // drops the write (aborted) and the fill (readers cut off)
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, received = n, "origin body cut off; not stored");
                return;
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not stored
        };
        n += data.len() as u64;
        if let Some(sw) = w.as_mut()
            && let Err(e) = sw.write(data.clone()).await
        {
            tracing::info!(error = %e, "response not stored");
            w = None;
        }
        fill.push(data).await;
        if job.expected_len.is_some_and(|l| n > l) {
            tracing::warn!(
                received = n,
                "origin body longer than Content-Length; not stored"
            );
            return;
        }
    }
    if let Some(l) = job.expected_len
        && l != n
    {
        // RFC 9111 §3.3: never store an incomplete response as complete.
        tracing::warn!(
            expected = l,
            received = n,
            "origin body incomplete; not stored"
        );
        return;
    }
    // The client's copies end now: the commit below (which may wait for the
    // disk tier's flusher) is not on their way.
    fill.body_done();
    let invalidated = || invalidations.since(&job.primary, job.started);
    if invalidated() {
        tracing::debug!("URI invalidated during the fetch; not stored");
        w = None;
    }
    if let Some(sw) = w {
        match sw.finish().await {
            Ok(()) => {
                tracing::debug!(bytes = n, "stored");
                if let Some((primary, marker)) = job.marker {
                    let mw = store.begin_write(primary, Bytes::from(marker.encode()));
                    if let Err(e) = mw.finish().await {
                        tracing::warn!(error = %e, "vary marker not stored");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "response not stored"),
        }
        if invalidated() {
            store.remove(&job.key);
            store.remove(&job.primary);
        }
    }
    fill.finish();
}

#[cfg(test)]
mod tests {
    use super::super::key_filter::test_key as key;
    use super::*;

    #[test]
    fn invalidations_are_found_by_key_and_time_and_survive_a_prune() {
        let inv = Invalidations::default();
        let (a, twin, other) = (key(1, 5), key(2, 5), key(3, 6));
        let before = SystemTime::now() - Duration::from_secs(1);
        let started = Instant::now();
        assert!(!inv.predates(&a, before));
        inv.record(a);
        assert!(inv.predates(&a, before));
        assert!(inv.since(&a, started));
        assert!(inv.marker_time(&a) >= before);
        // Same filter bit, never invalidated: the map says no.
        assert!(!inv.predates(&twin, before));
        assert!(!inv.predates(&other, before));
        assert!(!inv.predates(&a, SystemTime::now() + Duration::from_secs(60)));
        // Past 100,000 entries the map is pruned of old ones and the filter
        // rebuilt: recent invalidations are still found.
        for i in 0..100_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            k[28..].copy_from_slice(&i.to_le_bytes());
            inv.record(k);
        }
        inv.record(other);
        assert!(inv.predates(&a, before));
        assert!(inv.predates(&other, before));
    }
}

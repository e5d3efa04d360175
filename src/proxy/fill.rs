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

use crate::origin::ResponseBody;
use bytes::Bytes;
use http_body_util::BodyExt;
use outpost_storage::Store;

use crate::cache::coalesce::{FillWriter, Key};
use crate::cache::meta::{ObjectMeta, VaryMarker};
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
pub struct Invalidations {
    map: Mutex<HashMap<Key, (Instant, SystemTime)>>,
    /// When this node started: variants fetched earlier are not trusted
    /// under a vary marker written after the start (see [`Self::marker_time`]).
    started: SystemTime,
}

impl Default for Invalidations {
    fn default() -> Self {
        Invalidations {
            map: Mutex::default(),
            started: SystemTime::now(),
        }
    }
}

impl Invalidations {
    /// Remembers that `key` was invalidated now.
    pub fn record(&self, key: Key) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= 100_000 {
            let now = Instant::now();
            m.retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(3600));
        }
        m.insert(key, (Instant::now(), SystemTime::now()));
    }

    /// Whether `key` was invalidated at or after `start`.
    pub fn since(&self, key: &Key, start: Instant) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .is_some_and(|(t, _)| *t >= start)
    }

    /// Whether an object stored at `created_at` under `key` predates the
    /// last invalidation of the URI (so it must not be served, even if a
    /// racing disk write brought it back).
    pub fn predates(&self, key: &Key, created_at: SystemTime) -> bool {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(key).is_some_and(|(_, t)| created_at <= *t)
    }

    /// The `created_at` of a new vary marker for `key`: the last
    /// invalidation of the URI known to this process, or the process start.
    /// Variants older than it are ignored (they may predate an
    /// invalidation); concurrent first variants agree on the value, so
    /// neither hides the other.
    pub fn marker_time(&self, key: &Key) -> SystemTime {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(key) {
            Some((_, t)) => (*t).max(self.started),
            None => self.started,
        }
    }
}

/// Everything the pump needs besides the origin body and the fill.
pub(super) struct PumpJob {
    pub store: Store,
    pub key: Key,
    pub meta: Bytes,
    /// The vary marker to write under the primary key after the variant.
    pub marker: Option<(Key, VaryMarker)>,
    pub expected_len: Option<u64>,
    pub idle: Duration,
    /// The request's primary key and when its fetch started.
    pub primary: Key,
    pub started: Instant,
    pub invalidations: Arc<Invalidations>,
}

/// Streams `body` into the store and into `fill`, then commits and ends the
/// fill. Readers see the bytes as they arrive.
pub(super) async fn pump(job: PumpJob, mut body: ResponseBody, fill: FillWriter<FillHead>) {
    let mut w = Some(job.store.begin_write(job.key, job.meta));
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
    let invalidated = || job.invalidations.since(&job.primary, job.started);
    if invalidated() {
        tracing::debug!("URI invalidated during the fetch; not stored");
        w = None;
    }
    if let Some(sw) = w {
        match sw.finish().await {
            Ok(()) => {
                tracing::debug!(bytes = n, "stored");
                if let Some((primary, marker)) = job.marker {
                    let mw = job.store.begin_write(primary, Bytes::from(marker.encode()));
                    if let Err(e) = mw.finish().await {
                        tracing::warn!(error = %e, "vary marker not stored");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "response not stored"),
        }
        if invalidated() {
            job.store.remove(&job.key);
            job.store.remove(&job.primary);
        }
    }
    fill.finish();
}

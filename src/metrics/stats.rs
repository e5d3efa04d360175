//! The `/stats` document and where its figures come from: the process-wide
//! [`super::Counters`], the node's own counters ([`NodeStats`]), the
//! cache's figures ([`CacheFigures`]) and the storage crate's zero-copy
//! arena.

use std::time::Instant;

use outpost_storage::StoreStats;
use serde::Serialize;

use super::{Counters, Refusal, SendfileBytes};

/// The `/stats` document.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub entries: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub memory_capacity: u64,
    pub disk_capacity: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: f64,
    pub origin_requests: u64,
    pub uptime_secs: u64,
    /// Connections opened to origins by the HTTP/1 client (not in the CLI
    /// contract).
    pub origin_connects: u64,
    /// Requests retried because a pooled origin connection had closed.
    pub origin_stale_retries: u64,
    /// Bans currently kept (not in the CLI contract; extra fields are
    /// ignored by `outpostctl`).
    pub bans: u64,
    /// Bytes of cached values in the zero-copy arena (shared memory, not
    /// in the heap; process-wide).
    pub zero_copy_bytes: u64,
    /// Bodies kept on the heap because the arena could not get shared
    /// memory (process-wide; a warning is logged the first time).
    pub zero_copy_fallbacks: u64,
    /// Bytes sent to clients with `sendfile(2)` since start.
    pub sendfile_bytes: u64,
    /// Segment files of the disk tier's blob log (values of 32 KiB and more).
    pub blob_segments: u64,
    /// Blob log reads whose pages were in the page cache (sent from the file).
    pub blob_resident_reads: u64,
    /// Blob log reads that had to wait for the disk (read on the storage threads).
    pub blob_cold_reads: u64,
    /// Origin fetches being stored right now (a fill ends once its object
    /// is committed to the store, or given up).
    pub fills_in_flight: u64,
    /// Origins that changed state since start (each change is also a log
    /// line).
    pub origin_state_changes: u64,
    /// Origins in each state now, over every site.
    pub origins_up: u64,
    pub origins_down: u64,
    pub origins_draining: u64,
    pub origins_disabled: u64,
    /// TLS handshakes completed, and failed by reason.
    pub tls_handshakes: u64,
    pub tls_failures: std::collections::BTreeMap<&'static str, u64>,
    /// Stored responses found damaged before their head was sent (answered
    /// from the origin), and after it (cut off).
    pub corrupt_misses: u64,
    pub cut_off: u64,
    /// Slices of sliced objects served from the store and fetched from the origin, and
    /// sliced objects restarted because a slice had another validator.
    pub slices: SliceFigures,
    /// Per coding: bytes into and out of the compressor, seconds spent in it, variants
    /// stored, bytes decoded.
    pub compression: Vec<super::compression::CodingFigures>,
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
    /// Every refusal by reason (the fields above group some of them).
    pub refusals: std::collections::BTreeMap<&'static str, u64>,
    /// Requests matched by each request rule, `site/rule`.
    pub rules: std::collections::BTreeMap<String, u64>,
    /// In a fleet: the purge stream's figures (published, applied,
    /// catch-ups, outbox, hits served past a catch-up's deadline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<serde_json::Value>,
    /// Config reloads taken and refused, and when the last was taken
    /// (Unix seconds; 0: never).
    pub config_reloads: u64,
    pub config_reload_failures: u64,
    pub config_last_reload_unix: u64,
}

/// How many origins are in each state now, over every site.
#[derive(Debug, Clone, Copy, Default)]
pub struct OriginFigures {
    pub up: u64,
    pub down: u64,
    pub draining: u64,
    pub disabled: u64,
}

/// What the cache reports: its store's statistics and the fills running.
#[derive(Debug, Clone, Default)]
pub struct CacheFigures {
    pub store: StoreStats,
    pub fills_in_flight: u64,
}

/// The node's own counters, and when it started.
#[derive(Debug, Clone)]
pub struct NodeStats {
    pub started: Instant,
    /// Bytes the proxy listener sent with `sendfile(2)`.
    pub sendfile_bytes: SendfileBytes,
}

impl NodeStats {
    /// Counters starting now.
    pub fn new() -> NodeStats {
        NodeStats {
            started: Instant::now(),
            sendfile_bytes: SendfileBytes::default(),
        }
    }

    /// A snapshot of the node's statistics; `cache` is `None` when caching
    /// is off; `bans` is the number of purge bans kept.
    pub fn snapshot(
        &self,
        cache: Option<CacheFigures>,
        bans: u64,
        origins: OriginFigures,
    ) -> Stats {
        let c = Counters::global().snapshot();
        let arena = outpost_storage::arena_stats();
        let mut s = Stats {
            hits: c.hits,
            misses: c.misses,
            hit_ratio: c.hit_ratio(),
            origin_requests: c.origin_requests,
            origin_connects: c.origin_connects,
            origin_stale_retries: c.origin_stale_retries,
            corrupt_misses: c.corrupt_misses,
            cut_off: c.cut_off,
            slices: SliceFigures {
                hits: c.slice_hits,
                fetches: c.slice_fetches,
                restarts: c.slice_restarts,
            },
            uptime_secs: self.started.elapsed().as_secs(),
            bans,
            zero_copy_bytes: arena.live_bytes,
            zero_copy_fallbacks: arena.fallbacks,
            sendfile_bytes: self.sendfile_bytes.get(),
            origin_state_changes: c.origin_state_changes,
            origins_up: origins.up,
            origins_down: origins.down,
            origins_draining: origins.draining,
            origins_disabled: origins.disabled,
            tls_handshakes: c.tls_handshakes,
            access_denied: c.refusals[Refusal::AccessDenied as usize],
            rate_limited: c.refusals[Refusal::RateLimited as usize],
            path_refused: c.refusals[Refusal::Path as usize],
            request_limited: Refusal::ALL
                .iter()
                .filter(|r| r.is_request_limit())
                .map(|r| c.refusals[*r as usize])
                .sum(),
            connections_refused: c.refusals[Refusal::ConnectionLimit as usize],
            config_reloads: c.reloads_ok,
            config_reload_failures: c.reloads_failed,
            config_last_reload_unix: c.last_reload,
            refusals: Refusal::ALL
                .iter()
                .map(|r| (r.as_str(), c.refusals[*r as usize]))
                .collect(),
            tls_failures: super::TlsFailure::ALL
                .iter()
                .zip(c.tls_failures)
                .map(|(w, n)| (w.as_str(), n))
                .collect(),
            compression: super::compression::CompressionCounters::global().figures(),
            ..Stats::default()
        };
        if let Some(cache) = cache {
            let st = cache.store;
            s.entries = st.memory_objects;
            s.memory_bytes = st.memory_bytes;
            s.memory_capacity = st.memory_capacity;
            s.disk_bytes = st.disk_allocated_bytes;
            s.disk_capacity = st.disk_capacity;
            s.blob_segments = st.blob_segments;
            s.blob_resident_reads = st.blob_resident_reads;
            s.blob_cold_reads = st.blob_cold_reads;
            s.fills_in_flight = cache.fills_in_flight;
        }
        s
    }
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats::new()
    }
}

/// `/stats` `slices`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SliceFigures {
    pub hits: u64,
    pub fetches: u64,
    pub restarts: u64,
}

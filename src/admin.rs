//! The admin listener's routes:
//!
//! - `GET /healthz`: `ok`;
//! - `GET /stats`: JSON `{entries, memory_bytes, disk_bytes,
//!   memory_capacity, disk_capacity, hits, misses, hit_ratio,
//!   origin_requests, uptime_secs, origin_connects, origin_stale_retries,
//!   bans, zero_copy_bytes,
//!   zero_copy_fallbacks, sendfile_bytes, blob_segments,
//!   blob_resident_reads, blob_cold_reads, fills_in_flight}`
//!   (the `outpostctl stats` contract for the first ten, see
//!   tools/README.md). `entries` counts objects in the memory tier (foyer
//!   exposes no disk entry count); `disk_bytes` is the space the disk tier
//!   allocates; hits, misses and origin requests come from
//!   [`crate::metrics::Counters`];
//! - `POST /purge`: see [`crate::purge::api`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use crate::metrics::Counters;
use crate::proxy::Proxy;
use crate::purge::Purger;

/// What the admin routes need from the node.
pub struct AdminState {
    pub proxy: Arc<Proxy>,
    pub purger: Arc<Purger>,
    pub started: Instant,
    /// Whether `PURGE` requests get an access-log line.
    pub access_log: bool,
    /// Bytes the proxy listener sent with `sendfile(2)`.
    pub sendfile_bytes: crate::server::zero_copy::SendfileBytes,
}

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
}

impl AdminState {
    /// A snapshot of the node's statistics.
    pub fn stats(&self) -> Stats {
        let c = Counters::global().snapshot();
        let arena = outpost_storage::arena::stats();
        let mut s = Stats {
            hits: c.hits,
            misses: c.misses,
            hit_ratio: c.hit_ratio(),
            origin_requests: c.origin_requests,
            origin_connects: c.origin_connects,
            origin_stale_retries: c.origin_stale_retries,
            uptime_secs: self.started.elapsed().as_secs(),
            bans: self.purger.bans().len() as u64,
            zero_copy_bytes: arena.live_bytes,
            zero_copy_fallbacks: arena.fallbacks,
            sendfile_bytes: self.sendfile_bytes.get(),
            ..Stats::default()
        };
        if let Some(cache) = self.proxy.cache() {
            let st = cache.store().stats();
            s.entries = st.memory_objects;
            s.memory_bytes = st.memory_bytes;
            s.memory_capacity = st.memory_capacity;
            s.disk_bytes = st.disk_allocated_bytes;
            s.disk_capacity = st.disk_capacity;
            s.blob_segments = st.blob_segments;
            s.blob_resident_reads = st.blob_resident_reads;
            s.blob_cold_reads = st.blob_cold_reads;
            s.fills_in_flight = cache.fills_in_flight() as u64;
        }
        s
    }
}

/// Answers one admin request.
pub async fn handle<B>(req: Request<B>, state: &AdminState) -> Response<Full<Bytes>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/stats") => {
            return crate::purge::api::json(StatusCode::OK, &state.stats());
        }
        (_, "/purge") => {
            return crate::purge::api::handle_admin_purge(&state.purger, &state.proxy, req).await;
        }
        (_, "/healthz" | "/stats") => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

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
//!   allocates. Every figure comes from one interface,
//!   [`crate::metrics::Stats`];
//! - `POST /purge`: see [`crate::purge::api`].
//!
//! It knows nothing of listeners, the request pipeline or the store's
//! internals.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use crate::cache::CacheLayer;
use crate::metrics::{NodeStats, Stats};
use crate::purge::Purger;

/// What the admin routes need from the node.
pub struct AdminState {
    /// The cache, when caching is on.
    pub cache: Option<Arc<CacheLayer>>,
    pub purger: Arc<Purger>,
    /// Whether `PURGE` requests get an access-log line.
    pub access_log: bool,
    /// The node's counters.
    pub stats: NodeStats,
}

impl AdminState {
    /// A snapshot of the node's statistics.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot(
            self.cache.as_deref().map(CacheLayer::figures),
            self.purger.bans().len() as u64,
        )
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
            return crate::purge::api::handle_admin_purge(
                &state.purger,
                state.cache.as_deref(),
                req,
            )
            .await;
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

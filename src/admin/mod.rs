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
//! - `POST /purge`: see [`crate::purge::api`];
//! - `GET /origins`, `POST /origins/drain`, `POST /origins/enable`: see
//!   [`origins`];
//! - `POST /reload` (admin token): reads every TLS certificate file again;
//!   200 with `{"tls": {"loaded": [...], "failed": []}}`, 500 when a
//!   certificate failed to load (it keeps its previous version), `"tls":
//!   null` without a TLS listener.
//!
//! It knows nothing of listeners, the request pipeline or the store's
//! internals.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;

pub mod metrics;
pub mod origins;
pub mod status;

use crate::cache::CacheLayer;
use crate::metrics::{NodeStats, OriginFigures, Stats};
use crate::origin::Pool;
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
    /// Every site's origin pool, as configured now.
    pub pools: Arc<dyn Fn() -> Vec<Arc<Pool>> + Send + Sync>,
    /// What `POST /reload` runs.
    pub reload: ReloadFn,
    /// The status page's rates, sampled every 2 s.
    pub history: status::History,
    /// Every request rule's counter, as `site/rule`, as configured now.
    pub rules: Arc<dyn Fn() -> Vec<(String, Arc<outpost_storage::counter::Striped>)> + Send + Sync>,
}

/// What `POST /reload` runs: whether the new configuration is in force,
/// and the report as JSON.
pub type ReloadFn = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = (bool, serde_json::Value)> + Send>>
        + Send
        + Sync,
>;

impl AdminState {
    /// A snapshot of the node's statistics.
    pub fn stats(&self) -> Stats {
        let mut o = OriginFigures::default();
        for p in &(self.pools)() {
            let [up, down, draining, disabled] = p.state_counts();
            o.up += up;
            o.down += down;
            o.draining += draining;
            o.disabled += disabled;
        }
        let mut s = self.stats.snapshot(
            self.cache.as_deref().map(CacheLayer::figures),
            self.purger.bans().len() as u64,
            o,
        );
        s.rules = (self.rules)()
            .iter()
            .map(|(n, c)| (n.clone(), c.get()))
            .collect();
        s.fleet = self.purger.fleet_figures().map(|f| {
            serde_json::json!({
                "published": f.published,
                "publish_failures": f.publish_failures,
                "applied": f.applied,
                "applied_seq": self.purger.applied(),
                "outbox": self.purger.outbox_len(),
                "catch_ups": f.catch_ups,
                "last_catch_up_purges": f.last_catch_up_purges,
                "last_catch_up_ms": f.last_catch_up_ms,
                "catching_up": self.purger.bans().catch_up().behind(),
                "late_hits": self.purger.bans().catch_up().late_hits(),
            })
        });
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
            return crate::purge::api::handle_admin_purge(
                &state.purger,
                state.cache.as_deref(),
                req,
            )
            .await;
        }
        (&Method::GET | &Method::HEAD, "/origins") => return origins::list(&(state.pools)()),
        (&Method::GET | &Method::HEAD, "/") => {
            return page(
                Bytes::from_static(status::PAGE.as_bytes()),
                "text/html; charset=utf-8",
            );
        }
        (&Method::GET | &Method::HEAD, "/status.json") => {
            return page(Bytes::from(status::json(state)), "application/json");
        }
        (&Method::GET | &Method::HEAD, "/metrics") => {
            // OpenMetrics when the scraper asks for it, else the Prometheus
            // text format.
            let open = req.headers().get_all(header::ACCEPT).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.contains("application/openmetrics-text"))
            });
            let text = metrics::render(state);
            let (text, kind) = if open {
                (
                    text,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    metrics::prometheus_text(&text),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            };
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(kind));
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            return resp;
        }
        (_, "/origins/drain") => {
            return origins::change(&(state.pools)(), &state.purger, req, true).await;
        }
        (_, "/origins/enable") => {
            return origins::change(&(state.pools)(), &state.purger, req, false).await;
        }
        (_, "/reload") => return reload(state, req).await,
        (_, "/healthz" | "/stats" | "/origins" | "/metrics" | "/" | "/status.json") => {
            (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
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

/// A read-only answer of `kind`, never cached.
fn page(body: Bytes, kind: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(kind));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `POST /reload`.
async fn reload<B>(state: &AdminState, req: Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return crate::purge::api::error(StatusCode::METHOD_NOT_ALLOWED, "use POST /reload");
    }
    if let Some(denied) = crate::purge::api::authorise_for(&state.purger, req.headers(), "reload") {
        return denied;
    }
    let (ok, report) = (state.reload)().await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    crate::purge::api::json(status, &report)
}

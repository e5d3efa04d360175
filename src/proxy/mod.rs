//! The request pipeline: route by Host to a site, then the cache or the
//! site's origin pool, and build the response streamed back.
//!
//! GET and HEAD on a caching site go through the cache ([`cached`]: it
//! asks the cache layer, decides, and fetches from the origin what the
//! cache cannot answer); other methods are passed to the origin (and
//! invalidate, RFC 9111 §4.4). It knows nothing of listeners or of the
//! store's internals: the server hands it requests, and the cache layer
//! ([`crate::cache::CacheLayer`]) owns what is stored.

pub mod body;
pub mod cached;
mod ctx;
mod encode;
mod fetch;
mod gate;
pub mod hide;
mod live;
mod pass;
mod refuse;
mod respond;
mod slice;
mod slice_walk;
mod uncached;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Version};
use http_body_util::BodyExt;

use crate::admission::rules::Rules;
use crate::admission::{AccessList, RateLimiter};
use crate::cache::key::request_host;
use crate::cache::{CacheLayer, RequestTarget};
use crate::config::{Config, HostPattern};
use crate::error::Error;
use crate::origin::headers::{Forwarding, ViaValues, add_via, is_upgrade, strip_hop_by_hop};
use crate::origin::{OriginClient, Pool, ResponseBody};
use arc_swap::ArcSwap;
use body::{AccessRecord, ProxyBody};
use gate::{Gate, Passed};
pub use live::Live;
pub use refuse::{error_response, error_response_for};
use refuse::{https_redirect, method_not_allowed, rule_refusal, too_many_requests};

pub use crate::origin::RequestBody;

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `http` or `https`, for `X-Forwarded-Proto` and cache keys.
    pub scheme: &'static str,
    /// Responses go out through the own HTTP/1.1 writer, which takes a
    /// hit's head in wire form ([`body::WireHead`]).
    pub wire_heads: bool,
}

/// A site at run time.
pub struct SiteRuntime {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    pub pool: Arc<Pool>,
    /// The shields a miss asks before the origin (an edge with shields).
    pub shields: Option<crate::cluster::Shields>,
    /// Whether responses for this site are cached.
    pub cache: bool,
    /// Ignore client `no-cache` / `max-age=0` reloads (RFC 9111 §5.2.1).
    pub ignore_client_reload: bool,
    /// Seconds a stored response may be served stale when the origin fails.
    pub stale_on_error: Option<u32>,
    /// Remove targeted cache-control fields (RFC 9213) from responses.
    pub strip_targeted_fields: bool,
    /// Store POST responses for GETs of their `Content-Location` (the target).
    pub cache_post_responses: bool,
    /// Fetch and store objects in aligned slices of this many bytes.
    pub slice: Option<u64>,
    /// Send a cacheable object's Early Hints at once on a miss or revalidation.
    pub early_hints: bool,
    /// Answer cleartext requests with 308 to the `https` URL.
    pub https_redirect: bool,
    /// `Strict-Transport-Security` for responses over TLS.
    pub hsts: Option<HeaderValue>,
    /// Client addresses the site serves.
    pub access: AccessList,
    /// Fields removed and set on the way to the origin and back.
    pub hide: hide::Hide,
    /// A request rate per client, and the path prefix it counts.
    pub rate_limit: Option<(RateLimiter, Option<String>)>,
    /// The request limits in force for the site.
    pub limits: crate::config::Limits,
    /// Its header limits are below the listener's, so each request's
    /// fields are measured.
    pub header_check: bool,
    /// Request rules, in order.
    pub rules: Rules,
    /// Its `/metrics` series.
    pub metrics: Arc<crate::metrics::http::SiteMetrics>,
    /// What is compressed for its clients, and how.
    pub compression: crate::config::compression::CompressionConfig,
    /// Unique to this build of the site (a reload makes new ones): memos of
    /// decisions that depend on its settings are keyed by it.
    pub generation: u64,
}

impl crate::origin::interim::InterimFilter for SiteRuntime {
    fn filter(&self, fields: &mut http::HeaderMap) {
        self.hide.origin_response(fields);
    }
}

/// What [`Proxy::admit`] made of a request. Each part in a box: the
/// future that waits on it keeps only the pointer. Its state lives in the
/// connection's box, whose lines have left the CPU's caches by that
/// connection's next request (64 busy connections); a block from the
/// allocator is the one the last request gave back, still cached. By
/// value, the `Ctx` (640 bytes) would be copied twice into that state.
enum Admitted {
    /// Answered already: by the gate (a refusal, a redirect) or an error.
    Answer(Box<Response<ProxyBody>>),
    /// The cache path, with what it derived from the request (and its
    /// record).
    Cache(Box<cached::Ctx>),
    /// The origin, as it is, with the record of the request.
    Origin(Box<uncached::ToOrigin>, Box<AccessRecord>),
}

/// The answer to a request that failed, logged by whose fault it is.
fn failed(e: &Error, rec: AccessRecord) -> Response<ProxyBody> {
    match e.kind().fault() {
        crate::error::Fault::Client => tracing::info!(error = %e, "bad request"),
        _ => tracing::warn!(error = %e, "request failed"),
    }
    error_response_for(e, rec)
}

/// The proxy: the settings of the pipeline that stay for the process's
/// life, and the [`Live`] part a config reload replaces.
pub struct Proxy {
    /// Sites, access lists, limits and rules: swapped whole on reload; a
    /// request keeps the one it started with.
    live: ArcSwap<Live>,
    /// One set of origin connections for every site's pool, kept across
    /// reloads.
    client: OriginClient,
    /// The same for shields, with `[cluster] shield_timeout` for their
    /// response heads.
    shield_client: OriginClient,
    /// `Server` on responses (the origin's is always removed).
    server_header: Option<HeaderValue>,
    via: ViaValues,
    idle_body: Duration,
    access_log: bool,
    cache: Option<Arc<CacheLayer>>,
}

impl Proxy {
    /// Builds the pipeline from a validated config; `cache` is `None` when
    /// caching is off.
    pub fn new(cfg: &Config, cache: Option<Arc<CacheLayer>>) -> Result<Proxy, Error> {
        let client = OriginClient::new(&cfg.timeouts)?;
        let shield_client = OriginClient::new(&crate::config::Timeouts {
            response_header: cfg.cluster.shield_timeout,
            ..cfg.timeouts.clone()
        })?;
        Ok(Proxy {
            live: ArcSwap::from_pointee(Live::new(cfg, &client, &shield_client, None)?),
            client,
            shield_client,
            server_header: cfg.server.server_header.clone(),
            via: ViaValues::new(&cfg.server.via),
            idle_body: cfg.timeouts.idle_body,
            access_log: cfg.log.access_log,
            cache,
        })
    }

    /// Builds the reloadable part from `cfg` (origins configured as before
    /// keep their state) without putting it in place: `Err` changes nothing.
    pub fn prepare(&self, cfg: &Config) -> Result<Arc<Live>, Error> {
        Live::new(
            cfg,
            &self.client,
            &self.shield_client,
            Some(&self.live.load()),
        )
        .map(Arc::new)
    }

    /// Puts a prepared [`Live`] in place for new requests and starts its
    /// health checks; in-flight requests finish with the one they had, and
    /// the old probes stop when the last of them is done.
    pub fn commit(&self, live: Arc<Live>) {
        live.start_health_checks();
        self.live.store(live);
    }

    /// Closes every site's idle origin connections that are past the idle
    /// timeout; returns how many. The node runs it periodically.
    pub fn sweep_idle_origins(&self) -> usize {
        self.live
            .load()
            .sites
            .iter()
            .map(|s| s.pool.sweep_idle() + s.shields.as_ref().map_or(0, |h| h.pool().sweep_idle()))
            .sum()
    }

    /// Every site's origin pool, and its shields' when it has them.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.live
            .load()
            .sites
            .iter()
            .flat_map(|s| {
                std::iter::once(s.pool.clone()).chain(s.shields.as_ref().map(|h| h.pool().clone()))
            })
            .collect()
    }

    /// Every request rule's counter, named `site/rule`.
    pub fn rule_counters(&self) -> Vec<(String, Arc<outpost_storage::counter::Striped>)> {
        self.live
            .load()
            .sites
            .iter()
            .flat_map(|s| {
                s.rules
                    .counters()
                    .map(|(n, c)| (format!("{}/{n}", s.name), c.clone()))
            })
            .collect()
    }

    /// Starts the active health checks of every site that has them.
    pub fn start_health_checks(&self) {
        self.live.load().start_health_checks();
    }

    /// The cache layer, if caching is on.
    pub fn cache(&self) -> Option<&Arc<CacheLayer>> {
        self.cache.as_ref()
    }

    /// Handles one request; never fails (errors become responses).
    pub async fn handle(
        self: &Arc<Self>,
        req: Box<Request<RequestBody>>,
        conn: ConnInfo,
    ) -> Response<ProxyBody> {
        // What comes before the first wait runs in a plain function: its
        // locals (the access record, the gate's verdict, the live config's
        // guard) stay on the stack instead of taking lines of this future's
        // state, which lives in the connection's box and has left the CPU's
        // caches by the connection's next request.
        match self.admit(req, conn) {
            Admitted::Answer(r) => *r,
            Admitted::Cache(mut ctx) => self.serve_cached(&mut ctx, conn).await,
            Admitted::Origin(to_origin, mut rec) => {
                match self.forward_uncached(*to_origin, conn, &mut rec).await {
                    Ok(r) => r,
                    Err(e) => failed(&e, *rec),
                }
            }
        }
    }

    /// The request's record, the gate, and the route it takes.
    fn admit(&self, mut req: Box<Request<RequestBody>>, conn: ConnInfo) -> Admitted {
        let host = request_host(&req);
        // The sites and controls in force when the request arrived (the
        // request keeps its site; the guard is gone before any wait). A
        // guard, not a clone: a clone writes the count every core shares.
        let live = self.live.load();
        // The client's address: the peer's, or what a trusted proxy in
        // front says (every later control and the log use it).
        let client = live.admission.client_ip(conn.peer.ip(), req.headers());
        // Without an access log the record keeps no strings: it is cloned
        // several times per request.
        let log = self.access_log;
        let mut rec = AccessRecord {
            method: req.method().clone(),
            host: if log {
                host.clone().unwrap_or_default()
            } else {
                String::new()
            },
            path: if log {
                req.uri().path().to_string()
            } else {
                String::new()
            },
            version: req.version(),
            client,
            status: 0,
            cache: "pass",
            error: None,
            // For the access log and the latency histograms.
            start: Some(crate::clock::Stamp::now()),
            enabled: self.access_log,
            rule: None,
            site: None,
            ttfb: None,
        };
        let gated = live.gate(&mut req, host, &conn, &mut rec);
        let trusted = live.admission.trusts(conn.peer.ip());
        drop(live);
        match gated {
            Ok(Gate::Pass(passed)) => self.ready(req, passed, trusted, conn, rec),
            Ok(Gate::Answer(r)) => Admitted::Answer(r),
            Err(e) => Admitted::Answer(Box::new(failed(&e, rec))),
        }
    }

    /// A request on the cache path, and the last fields of its answer.
    async fn serve_cached(
        self: &Arc<Self>,
        ctx: &mut cached::Ctx,
        conn: ConnInfo,
    ) -> Response<ProxyBody> {
        let mut resp = self.cached(ctx).await;
        let site = &ctx.site;
        site.hide
            .client_response(resp.headers_mut(), self.server_header.as_ref());
        if conn.scheme == "https"
            && let Some(h) = site.hsts.as_ref()
        {
            resp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, h.clone());
        }
        // A hit or a miss by the phase the cache path recorded (the
        // same that went into `Cache-Status`).
        let m = crate::metrics::Counters::global();
        if resp
            .body()
            .cache_phase()
            .is_some_and(crate::cache::status::CachePhase::is_hit_name)
        {
            m.hit();
        } else {
            m.miss();
        }
        resp
    }

    /// Readies a request for the cache path (its `Ctx`) or, when the cache
    /// does not see it, for the origin path.
    fn ready(
        &self,
        mut req: Box<Request<RequestBody>>,
        passed: Passed,
        trusted: bool,
        conn: ConnInfo,
        rec: AccessRecord,
    ) -> Admitted {
        let Passed {
            site,
            host,
            bypass_cache,
            trip,
        } = passed;
        // The origin's 1xx fields are hidden like its final response's.
        if let Some(i) = crate::origin::interim::Interim::current() {
            i.set_filter(&site);
        }
        // RFC 9110 §7.8: only HTTP/1.1 has Upgrade.
        let upgrade = req.version() == Version::HTTP_11 && is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut *req));
        let (mut parts, body) = (*req).into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let client_version = parts.version;
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers, upgrade);
        // From an edge: this node does not ask a shield in turn (loops).
        // Looked for by a scan of the names first: removing an absent
        // non-standard name hashes it (~150 instructions).
        let shield_hop = crate::fields::has(headers, &crate::cluster::HOP)
            && headers.remove(&crate::cluster::HOP).is_some();
        // The sticky cookie is read (and removed) before the cache sees the
        // request: it is never part of a key or a variant.
        let sticky = site
            .pool
            .sticky()
            .map(|s| s.read(headers))
            .unwrap_or_default();
        site.hide.request(headers, trusted);
        if !crate::fields::has(headers, &header::HOST) {
            // HTTP/2 carries the host in :authority (RFC 9113 §8.3.1).
            if let Ok(v) = HeaderValue::from_str(&host) {
                headers.insert(header::HOST, v);
            }
        }
        // Via and X-Forwarded-* are added on the way to the origin
        // (`Proxy::forwarding`), not here: a hit does not need them.
        let client_ip = conn.peer.ip();

        let target = RequestTarget {
            scheme: conn.scheme,
            authority: host,
            path_and_query,
        };
        let method = parts.method.clone();
        if let Some(cache) = self.cache.as_ref()
            && site.cache
            && !bypass_cache
            && !upgrade
            && (method == Method::GET || method == Method::HEAD)
            // RFC 9110 §9.3.1: content in a GET has no defined semantics and
            // is not part of the cache key: such a request is passed on.
            && body.is_end_stream()
        {
            let _ = cache;
            let accepts = encode::take_accepts(&site.compression, &mut parts.headers);
            let mut ctx = Box::new(cached::Ctx::new(
                site.clone(),
                method,
                parts.headers,
                target,
                client_version,
                client_ip,
                // The cached path answers every request (errors too): the
                // record goes with it.
                rec,
            ));
            ctx.sticky = sticky;
            ctx.accepts = accepts;
            ctx.shield_hop = shield_hop;
            ctx.wire_heads = conn.wire_heads;
            return Admitted::Cache(ctx);
        }
        let to_origin = Box::new(uncached::ToOrigin {
            site,
            method,
            target,
            parts,
            body,
            client_version,
            client_ip,
            sticky,
            trip,
            client_upgrade,
        });
        Admitted::Origin(to_origin, Box::new(rec))
    }

    /// The last fields of a response from the origin to the client: the
    /// sticky cookie, the site's header rules and `Server`, HSTS over TLS.
    fn finish_passed(
        &self,
        site: &SiteRuntime,
        headers: &mut http::HeaderMap,
        set_cookie: Option<HeaderValue>,
        hsts: Option<&HeaderValue>,
    ) {
        if let Some(c) = set_cookie {
            headers.append(header::SET_COOKIE, c);
        }
        site.hide
            .client_response(headers, self.server_header.as_ref());
        if let Some(h) = hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, h.clone());
        }
    }

    /// What goes into a request to the origin for a client's request of
    /// `version` from `client_ip` over `proto` (RFC 9110 §7.6.3: `Via`
    /// names the protocol received).
    pub(crate) fn forwarding(
        &self,
        version: Version,
        client_ip: std::net::IpAddr,
        proto: &'static str,
    ) -> Forwarding<'_> {
        Forwarding {
            via: self.via.get(version),
            client_ip,
            proto,
        }
    }

    /// An origin response as sent to the client (its hop-by-hop fields
    /// already removed): `Via` added, the body streamed with the idle-body
    /// timeout, compressed with `coding` when given.
    pub(crate) fn client_response_stripped(
        &self,
        resp: Response<ResponseBody>,
        client_version: Version,
        rec: AccessRecord,
        coding: Option<(crate::compress::Encoding, u32)>,
    ) -> Response<ProxyBody> {
        let (mut rp, body) = resp.into_parts();
        add_via(&mut rp.headers, self.via.get(rp.version));
        rp.version = client_version;
        let mut body = body.map_err(Into::into).boxed_unsync();
        if let Some((e, level)) = coding {
            body = crate::compress::stream::encode(body, e, level, None);
        }
        Response::from_parts(rp, ProxyBody::new(body, Some(self.idle_body), rec))
    }
}

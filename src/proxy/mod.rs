//! The request pipeline: route by Host to a site, forward to the site's
//! origin pool, and stream the response back.
//!
//! GET and HEAD on a caching site go through the cache ([`cached`]); other
//! methods are passed to the origin (and invalidate, RFC 9111 §4.4).
//! Admission control and purge requests plug in here (see the data flow in
//! DESIGN.md).

pub mod body;
pub mod cached;
mod fetch;
mod fill;
pub mod layer;
mod respond;
pub mod stored_body;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::cache::status::{CacheStatus, Fwd};
use crate::config::{Config, HostPattern};
use crate::error::{Error, ErrorKind};
use crate::origin::headers::{Forwarding, ViaValues, add_via, is_upgrade, strip_hop_by_hop};
use crate::origin::{OriginBody, OriginClient, Pool, ResponseBody};
use body::{AccessRecord, ProxyBody};
use layer::{CACHE_NAME, CacheLayer, RequestTarget};

/// A client request's content: none, or hyper's stream. The server's own
/// HTTP/1 path ([`crate::server::h1`]) takes only requests without
/// content; everything else arrives through hyper.
#[derive(Debug)]
pub enum RequestBody {
    Empty,
    Hyper(Incoming),
}

impl RequestBody {
    /// Whether the request has no (more) content.
    pub fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Hyper(b) => b.is_end_stream(),
        }
    }
}

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `http` or `https`, for `X-Forwarded-Proto` and cache keys.
    pub scheme: &'static str,
}

/// A site at run time.
pub struct SiteRuntime {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    pub pool: Pool,
    /// Whether responses for this site are cached.
    pub cache: bool,
    /// Ignore client `no-cache` / `max-age=0` reloads (RFC 9111 §5.2.1).
    pub ignore_client_reload: bool,
}

/// The proxy: sites, the origin client and the settings of the pipeline.
pub struct Proxy {
    sites: Vec<Arc<SiteRuntime>>,
    origin: OriginClient,
    via: ViaValues,
    idle_body: Duration,
    access_log: bool,
    cache: Option<CacheLayer>,
}

impl Proxy {
    /// Builds the pipeline from a validated config; `cache` is `None` when
    /// caching is off.
    pub fn new(cfg: &Config, cache: Option<CacheLayer>) -> Proxy {
        Proxy {
            sites: cfg
                .sites
                .iter()
                .map(|s| {
                    Arc::new(SiteRuntime {
                        name: s.name.clone(),
                        hosts: s.hosts.clone(),
                        pool: Pool::new(&s.origins),
                        cache: s.cache,
                        ignore_client_reload: s.ignore_client_reload,
                    })
                })
                .collect(),
            origin: OriginClient::new(&cfg.timeouts),
            via: ViaValues::new(&cfg.server.via),
            idle_body: cfg.timeouts.idle_body,
            access_log: cfg.log.access_log,
            cache,
        }
    }

    /// Closes every site's idle origin connections that are past the idle
    /// timeout; returns how many. The node runs it periodically.
    pub fn sweep_idle_origins(&self) -> usize {
        self.sites
            .iter()
            .flat_map(|s| s.pool.origins())
            .map(|o| self.origin.sweep_idle(o))
            .sum()
    }

    /// The cache layer, if caching is on.
    pub fn cache(&self) -> Option<&CacheLayer> {
        self.cache.as_ref()
    }

    /// The first site with a pattern matching `host` (lower-cased, no port).
    fn route(&self, host: &str) -> Option<&Arc<SiteRuntime>> {
        self.sites
            .iter()
            .find(|s| s.hosts.iter().any(|p| p.matches(host)))
    }

    /// Handles one request; never fails (errors become responses).
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<RequestBody>,
        conn: ConnInfo,
    ) -> Response<ProxyBody> {
        let host = request_host(&req);
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
            client: conn.peer.ip(),
            status: 0,
            cache: "pass",
            error: None,
            // No clock read unless it is logged.
            start: log.then(Instant::now),
            enabled: self.access_log,
        };
        match self.forward(req, host, conn, &mut rec).await {
            Ok(resp) => resp,
            Err(e) => {
                match e.kind().fault() {
                    crate::error::Fault::Client => tracing::info!(error = %e, "bad request"),
                    _ => tracing::warn!(error = %e, "request failed"),
                }
                error_response(e.kind(), rec)
            }
        }
    }

    async fn forward(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
        host: Option<String>,
        conn: ConnInfo,
        rec: &mut AccessRecord,
    ) -> Result<Response<ProxyBody>, Error> {
        // RFC 9110 §9.3.6: CONNECT asks for a tunnel, which a reverse proxy
        // does not open (and no origin should be asked for one).
        if req.method() == Method::CONNECT {
            return Err(Error::new(
                ErrorKind::MethodNotAllowed,
                "CONNECT is not carried by a reverse proxy",
            ));
        }
        let host =
            host.ok_or_else(|| Error::new(ErrorKind::BadRequest, "missing or invalid Host"))?;
        let site = self
            .route(&normalise_host(&host))
            .ok_or_else(|| Error::new(ErrorKind::NoSite, format!("no site for host {host:?}")))?;
        // RFC 9110 §7.8: only HTTP/1.1 has Upgrade.
        let upgrade = req.version() == Version::HTTP_11 && is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let client_version = parts.version;
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers, upgrade);
        if !headers.contains_key(header::HOST) {
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
            authority: host.clone(),
            path_and_query,
        };
        let method = parts.method.clone();
        if let Some(cache) = self.cache.as_ref()
            && site.cache
            && !upgrade
            && (method == Method::GET || method == Method::HEAD)
            // RFC 9110 §9.3.1: content in a GET has no defined semantics and
            // is not part of the cache key: such a request is passed on.
            && body.is_end_stream()
        {
            let _ = cache;
            let ctx = cached::Ctx::new(
                site.clone(),
                method,
                parts.headers,
                target,
                client_version,
                client_ip,
                rec.clone(),
            );
            let resp = self.cached(ctx).await;
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
            return Ok(resp);
        }

        let resp = self
            .send_to_origin(
                site,
                &method,
                &target.path_and_query,
                &parts.headers,
                Some(body),
                &self.forwarding(client_version, client_ip, conn.scheme),
            )
            .await?;
        rec.status = resp.status().as_u16();
        if let Some(cache) = self.cache.as_ref() {
            // RFC 9111 §4.4: a successful unsafe request invalidates.
            cache.invalidate_after(site, &method, &target, resp.status(), resp.headers());
        }
        let mut resp = resp;
        if let Some(client_up) = client_upgrade
            && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let origin_up = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client_up, origin_up));
            let (mut rp, _) = resp.into_parts();
            strip_hop_by_hop(&mut rp.headers, true);
            add_via(&mut rp.headers, self.via.get(rp.version));
            rp.version = client_version;
            return Ok(Response::from_parts(rp, ProxyBody::empty(rec.clone())));
        }
        let bypass = self.cache.is_some() && site.cache;
        let mut out = self.client_response(resp, client_version, rec.clone());
        if bypass {
            rec.cache = "bypass";
            CacheStatus::new(CACHE_NAME)
                .fwd(Fwd::Bypass)
                .fwd_status(rec.status)
                .append_to(out.headers_mut());
        }
        Ok(out)
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

    /// Sends a request to one of the site's origins, with `fwd`'s fields
    /// added. A bodyless request is retried once on another origin after a
    /// connection failure.
    pub(crate) async fn send_to_origin(
        &self,
        site: &SiteRuntime,
        method: &Method,
        path_and_query: &str,
        headers: &http::HeaderMap,
        body: Option<RequestBody>,
        fwd: &Forwarding<'_>,
    ) -> Result<Response<ResponseBody>, Error> {
        let replayable = body.as_ref().is_none_or(|b| b.is_end_stream());
        // Requests without content or upgrade take our HTTP/1 client.
        let lean = replayable && !headers.contains_key(header::UPGRADE);
        let mut body = body;
        let attempts = if replayable {
            site.pool.len().min(2)
        } else {
            1
        };
        let mut last_err = None;
        for _ in 0..attempts.max(1) {
            let origin = site
                .pool
                .select()
                .ok_or_else(|| Error::new(ErrorKind::Internal, "empty origin pool"))?;
            crate::metrics::Counters::global().origin_request();
            let sent = if lean {
                self.origin
                    .send_bodyless(&origin, method, path_and_query, headers, fwd)
                    .await
            } else {
                self.send_hyper(&origin, method, path_and_query, headers, body.take(), fwd)
                    .await
            };
            match sent {
                Ok(r) => return Ok(r),
                Err(e) => {
                    let retry = replayable
                        && matches!(
                            e.kind(),
                            ErrorKind::OriginRefused
                                | ErrorKind::OriginUnreachable
                                | ErrorKind::OriginConnectTimeout
                        );
                    tracing::warn!(error = %e, site = %site.name, retry, "origin request failed");
                    last_err = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::new(ErrorKind::Internal, "no origin attempt made")))
    }

    /// Sends a request on hyper's client: one with content (streamed, so
    /// never replayed) or an upgrade.
    async fn send_hyper(
        &self,
        origin: &crate::origin::Origin,
        method: &Method,
        path_and_query: &str,
        headers: &http::HeaderMap,
        body: Option<RequestBody>,
        fwd: &Forwarding<'_>,
    ) -> Result<Response<ResponseBody>, Error> {
        let uri = OriginClient::uri_for(origin, path_and_query)?;
        let out_body: OriginBody = match body {
            Some(RequestBody::Hyper(b)) if !b.is_end_stream() => {
                b.map_err(Into::into).boxed_unsync()
            }
            _ => http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        };
        let mut out = Request::new(out_body);
        *out.method_mut() = method.clone();
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = headers.clone();
        fwd.add_to(out.headers_mut());
        self.origin.send(origin, out).await
    }

    /// An origin response as sent to the client: hop-by-hop fields removed,
    /// `Via` added, the body streamed with the idle-body timeout.
    pub(crate) fn client_response(
        &self,
        mut resp: Response<ResponseBody>,
        client_version: Version,
        rec: AccessRecord,
    ) -> Response<ProxyBody> {
        crate::origin::strip_response_hop_by_hop(&mut resp);
        self.client_response_stripped(resp, client_version, rec)
    }

    /// [`Proxy::client_response`] for a response whose hop-by-hop fields
    /// are already gone.
    pub(crate) fn client_response_stripped(
        &self,
        resp: Response<ResponseBody>,
        client_version: Version,
        rec: AccessRecord,
    ) -> Response<ProxyBody> {
        let (mut rp, body) = resp.into_parts();
        add_via(&mut rp.headers, self.via.get(rp.version));
        rp.version = client_version;
        let body = body.map_err(Into::into).boxed_unsync();
        Response::from_parts(rp, ProxyBody::new(body, Some(self.idle_body), rec))
    }
}

/// Copies bytes both ways between an upgraded client and origin connection.
async fn tunnel(client: hyper::upgrade::OnUpgrade, origin: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, origin) {
        Ok((c, o)) => {
            let mut c = TokioIo::new(c);
            let mut o = TokioIo::new(o);
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut o).await {
                tracing::debug!(error = %e, "upgraded connection closed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "protocol upgrade failed"),
    }
}

/// The plain-text error response for `kind`.
pub fn error_response(kind: ErrorKind, mut rec: AccessRecord) -> Response<ProxyBody> {
    let status = kind.status();
    rec.status = status.as_u16();
    rec.error = Some(kind.as_str());
    let mut resp = Response::new(ProxyBody::full(
        Bytes::from_static(kind.client_message().as_bytes()),
        rec,
    ));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if kind == ErrorKind::MethodNotAllowed {
        // RFC 9110 §15.5.6: a 405 lists the methods that are carried.
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE, TRACE"),
        );
    }
    resp
}

/// The request's host as sent: the absolute-form or HTTP/2 authority wins
/// over `Host` (RFC 9112 §3.2.2, RFC 9113 §8.3.1). `None` when absent or
/// not valid text.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_owned());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let h = hosts.next()?;
    if hosts.next().is_some() {
        // RFC 9112 §3.2: more than one Host is a bad request.
        return None;
    }
    let s = h.to_str().ok()?.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Lower-cases a host and strips the port (`[::1]:80` → `[::1]`).
pub fn normalise_host(host: &str) -> std::borrow::Cow<'_, str> {
    let h = host.trim();
    let no_port = if h.starts_with('[') {
        match h.find(']') {
            Some(i) => &h[..=i],
            None => h,
        }
    } else {
        match h.rfind(':') {
            Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
            _ => h,
        }
    };
    let h = no_port.trim_end_matches('.');
    // Borrowed when already lower-case (no allocation per request).
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(h.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_normalisation() {
        assert_eq!(normalise_host("Example.COM:8080"), "example.com");
        assert_eq!(normalise_host("example.com."), "example.com");
        assert_eq!(normalise_host("[::1]:80"), "[::1]");
        assert_eq!(normalise_host("[::1]"), "[::1]");
        assert_eq!(normalise_host("h"), "h");
    }
}

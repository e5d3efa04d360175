//! A site's origin pool: the one front that every origin request goes
//! through, whichever client carries it on the wire.
//!
//! The pool owns the site's [`Origin`]s with their weights, health
//! ([`super::health`]), connection limits and statistics; it chooses one
//! per attempt ([`super::balance`]), retries a failed attempt on another
//! origin when that is safe and the retry budget allows it
//! ([`super::retry`]), and answers 503 when no origin takes requests.
//! Requests without content and without an upgrade go to the own HTTP/1.1
//! client ([`super::h1`]); requests with content (streamed, so never
//! replayed once taken) and upgrades go to hyper's client. A request holds
//! a [`Lease`] on its origin (its place in `max_conns`, its count in
//! flight) until the response body is done.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{HeaderMap, HeaderName, Method, Request, Response, Version, header};
use http_body_util::BodyExt;
use outpost_storage::counter::Striped;

use super::balance::Balancer;
pub use super::endpoint::{Lease, Origin, OriginStats};
use super::headers::Forwarding;
use super::health::{Names, State, now_ms};
use super::retry::{Budget, is_connect_failure, is_idempotent, is_reset};
use super::sticky::{Sticky, StickyRequest};
use super::{OriginBody, OriginClient, ResponseBody};
use crate::config::{OriginSpec, PoolPolicy};
use crate::error::{Error, ErrorKind};

pub use super::request_body::RequestBody;

/// One request to an origin, as the pipeline hands it to the pool.
#[derive(Debug)]
pub struct OriginRequest<'a> {
    pub method: &'a Method,
    /// Path and query, sent as received.
    pub path_and_query: &'a str,
    /// The request's fields, hop-by-hop ones already removed.
    pub headers: &'a HeaderMap,
    /// The client's content, if any (`None`: a request of our own, such
    /// as a cache fill or revalidation).
    pub body: Option<RequestBody>,
    /// `Via` and `X-Forwarded-*` to add.
    pub fwd: &'a Forwarding<'a>,
    /// The cache key for `balance = "hash"`, the client's for `client_ip`.
    pub hash_key: Option<&'a [u8; 32]>,
    /// The origin a sticky cookie names (tried first while it is up).
    pub prefer: Option<usize>,
    /// Response fields the caller has no use for (a site's hidden ones):
    /// left out of the response, on the own client as its head is parsed.
    pub drop_fields: &'a [HeaderName],
}

/// Which origin of its pool answered a response (in its extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered(pub usize);

/// The value `balance = "client_ip"` hashes for a client: its address.
pub fn client_key(ip: std::net::IpAddr) -> [u8; 32] {
    // An IPv4 client seen over IPv6 is the same client.
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    };
    match ip {
        std::net::IpAddr::V4(a) => *blake3::hash(&a.octets()).as_bytes(),
        std::net::IpAddr::V6(a) => *blake3::hash(&a.octets()).as_bytes(),
    }
}

/// What the balancer hashes, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashOn {
    Nothing,
    /// The cache key (`balance = "hash"`).
    CacheKey,
    /// The client's address (`balance = "client_ip"`).
    ClientIp,
}

/// What `GET /origins` shows of one origin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OriginReport {
    pub site: String,
    pub origin: String,
    pub weight: u32,
    pub state: &'static str,
    /// Why it last changed state (empty before any change).
    pub reason: &'static str,
    pub in_flight: usize,
    pub requests: u64,
    pub failures: u64,
    /// Mean time to the response head (EWMA), milliseconds.
    pub latency_ms: f64,
    /// Milliseconds since the last active probe (none without probes).
    pub last_check_ms: Option<u64>,
    /// Milliseconds left of an ejection (0 when not ejected).
    pub ejected_ms: u64,
    pub sticky_hits: u64,
    pub sticky_fallbacks: u64,
    pub sticky_rewrites: u64,
}

/// A site's origin servers, how one is chosen, and the clients that reach
/// them.
#[derive(Debug)]
pub struct Pool {
    /// The site's name, for log lines and reports.
    site: String,
    origins: Vec<Arc<Origin>>,
    balancer: Balancer,
    policy: PoolPolicy,
    budget: Budget,
    /// First attempts (requests), for the retry budget.
    requests: Striped,
    client: OriginClient,
    /// Stops the active probes when the pool goes.
    probes: std::sync::Mutex<Option<tokio_util::sync::DropGuard>>,
    sticky: Option<Sticky>,
}

impl Pool {
    /// Site `site`'s pool over `origins` (validated config guarantees at
    /// least one) with `policy`, sending through `client`'s connections.
    /// Active probes start with [`Pool::start_health_checks`].
    pub fn new(
        site: &str,
        origins: &[OriginSpec],
        policy: &PoolPolicy,
        client: OriginClient,
    ) -> Result<Pool, Error> {
        Pool::renew(site, origins, policy, client, None)
    }

    /// [`Pool::new`] after a config reload: an origin of `old` that is
    /// configured the same way (URL, weight, `max_conns`, origin TLS) is
    /// carried over as it is, with its health, ejection, drain state,
    /// statistics and idle connections; the rest start afresh.
    pub fn renew(
        site: &str,
        origins: &[OriginSpec],
        policy: &PoolPolicy,
        client: OriginClient,
        old: Option<&Pool>,
    ) -> Result<Pool, Error> {
        let keep = |o: &OriginSpec| -> Option<Arc<Origin>> {
            let old = old?;
            let same_policy = old.policy.max_conns == policy.max_conns
                && old.policy.origin_ca == policy.origin_ca
                && old.policy.origin_sni == policy.origin_sni;
            let prev = old.find(&o.url.to_string())?;
            (same_policy && prev.weight == o.weight).then(|| prev.clone())
        };
        let urls: Vec<String> = origins.iter().map(|o| o.url.to_string()).collect();
        // `https://` origins: the site's CA and name, or the system's.
        let tls = if origins.iter().any(|o| o.url.is_https()) {
            Some(super::tls::origin_tls(
                policy.origin_ca.as_deref(),
                policy.origin_sni.as_deref(),
                super::tls::provider(),
            )?)
        } else {
            None
        };
        let client = match &tls {
            Some(t) if policy.origin_ca.is_some() || policy.origin_sni.is_some() => {
                client.with_tls(t)
            }
            _ => client,
        };
        Ok(Pool {
            sticky: policy
                .sticky
                .as_ref()
                .map(|c| Sticky::new(c, &urls, &Sticky::key(c))),
            site: site.to_owned(),
            origins: origins
                .iter()
                .map(|o| {
                    if let Some(kept) = keep(o) {
                        return kept;
                    }
                    let mut origin = Origin::with(o.url.clone(), o.weight, policy.max_conns);
                    if o.url.is_https() {
                        origin.tls = tls.clone();
                    }
                    Arc::new(origin)
                })
                .collect(),
            balancer: Balancer::new(policy.balance, origins.len()),
            budget: Budget::new(policy.retry_budget, policy.retry_budget_window),
            policy: policy.clone(),
            requests: Striped::new(),
            client,
            probes: std::sync::Mutex::new(None),
        })
    }

    /// The site's name.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// What requests should carry in [`OriginRequest::hash_key`].
    pub fn hash_on(&self) -> HashOn {
        match self.policy.balance {
            crate::config::Balance::Hash => HashOn::CacheKey,
            crate::config::Balance::ClientIp => HashOn::ClientIp,
            _ => HashOn::Nothing,
        }
    }

    /// The site's sticky cookie, if configured.
    pub fn sticky(&self) -> Option<&Sticky> {
        self.sticky.as_ref()
    }

    /// The `Set-Cookie` for a pass-through response: naming the origin that
    /// answered, unless the request's cookie already named it.
    pub fn sticky_set_cookie<B>(
        &self,
        resp: &Response<B>,
        req: StickyRequest,
        secure: bool,
    ) -> Option<http::HeaderValue> {
        let sticky = self.sticky.as_ref()?;
        let Answered(i) = *resp.extensions().get::<Answered>()?;
        if req.prefer == Some(i) {
            return None;
        }
        if req.had_cookie
            && let Some(o) = self.origins.get(i)
        {
            o.stats.sticky_rewrites.inc();
        }
        sticky.set_cookie(i, secure)
    }

    /// Starts one probe task per origin when `[site.health]` is set; they
    /// stop when the pool is dropped. Needs a tokio runtime.
    pub fn start_health_checks(&self) {
        let Some(check) = self.policy.health.clone() else {
            return;
        };
        let token = tokio_util::sync::CancellationToken::new();
        for o in &self.origins {
            tokio::spawn(super::probe::run(
                self.site.clone(),
                o.clone(),
                check.clone(),
                token.clone(),
            ));
        }
        *self.probes.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.drop_guard());
    }

    /// The pool's origins.
    pub fn origins(&self) -> &[Arc<Origin>] {
        &self.origins
    }

    /// Number of origins in the pool.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// Whether the pool has no origins.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Closes the idle connections past the idle timeout; returns how many.
    pub fn sweep_idle(&self) -> usize {
        self.origins.iter().map(|o| self.client.sweep_idle(o)).sum()
    }

    /// The origin whose URL reads `url`.
    pub fn find(&self, url: &str) -> Option<&Arc<Origin>> {
        let want = url.trim().trim_end_matches('/');
        self.origins
            .iter()
            .find(|o| o.url.to_string().eq_ignore_ascii_case(want))
    }

    /// Drains (`true`) or enables (`false`) an origin.
    pub fn set_drained(&self, origin: &Origin, drained: bool) {
        origin
            .health
            .set_drained(&self.names(origin), drained, origin.stats.in_flight());
    }

    fn names<'a>(&'a self, o: &'a Origin) -> Names<'a> {
        Names {
            site: &self.site,
            origin: &o.url,
        }
    }

    /// What `GET /origins` shows for this pool.
    pub fn report(&self) -> Vec<OriginReport> {
        let now = now_ms();
        self.origins
            .iter()
            .map(|o| {
                let in_flight = o.stats.in_flight();
                OriginReport {
                    site: self.site.clone(),
                    origin: o.url.to_string(),
                    weight: o.weight,
                    state: o.health.state(in_flight, now).as_str(),
                    reason: o.health.reason(),
                    in_flight,
                    requests: o.stats.requests.get(),
                    failures: o.stats.failures.get(),
                    latency_ms: o.stats.latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
                    last_check_ms: o.health.since_last_probe(now),
                    ejected_ms: o.health.ejected_for(now),
                    sticky_hits: o.stats.sticky_hits.get(),
                    sticky_fallbacks: o.stats.sticky_fallbacks.get(),
                    sticky_rewrites: o.stats.sticky_rewrites.get(),
                }
            })
            .collect()
    }

    /// How many origins are in each state: up, down, draining, disabled.
    pub fn state_counts(&self) -> [u64; 4] {
        let now = now_ms();
        let mut c = [0u64; 4];
        for o in &self.origins {
            let i = match o.health.state(o.stats.in_flight(), now) {
                State::Up => 0,
                State::Down => 1,
                State::Draining => 2,
                State::Disabled => 3,
            };
            c[i] += 1;
        }
        c
    }

    /// The 503 when no origin takes requests, with when to try again: the
    /// soonest end of an ejection, else the probe interval.
    fn no_origin(&self, now: u64) -> Error {
        let soonest = self
            .origins
            .iter()
            .map(|o| o.health.ejected_for(now))
            .filter(|&ms| ms > 0)
            .min();
        let secs = match (soonest, &self.policy.health) {
            (Some(ms), _) => ms.div_ceil(1000),
            (None, Some(h)) => h.interval.as_secs().max(1),
            (None, None) => self.policy.fail_timeout.as_secs().max(1),
        };
        Error::new(
            ErrorKind::NoOrigin,
            format!("site {}: no origin is up", self.site),
        )
        .with_retry_after(secs.max(1))
    }

    /// The origin for the next attempt among those not `tried`: one with
    /// room under `max_conns` if there is one.
    fn pick(&self, tried: u64, key: Option<&[u8; 32]>, now: u64) -> Option<usize> {
        let open =
            |i: usize| (i >= 64 || tried & (1 << i) == 0) && self.origins[i].health.routable(now);
        if self.policy.max_conns > 0
            && let Some(i) = self.balancer.pick(
                &self.origins,
                |i| open(i) && self.origins[i].has_room(),
                key,
            )
        {
            return Some(i);
        }
        self.balancer.pick(&self.origins, open, key)
    }

    /// A lease on `origin` if `max_conns` leaves room now (`None`: the
    /// request must queue, [`Pool::lease_queued`]).
    fn try_lease(&self, origin: &Arc<Origin>) -> Option<Lease> {
        let permit = match &origin.limit {
            None => None,
            Some(sem) => Some(sem.clone().try_acquire_owned().ok()?),
        };
        origin.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            origin: origin.clone(),
            _permit: permit,
        })
    }

    /// A lease on `origin`, waiting up to `queue_timeout` under `max_conns`
    /// (only when [`Pool::try_lease`] found no room: it is kept out of the
    /// request's future, which holds it boxed while it waits).
    async fn lease_queued(&self, origin: &Arc<Origin>) -> Result<Lease, Error> {
        let permit = match &origin.limit {
            None => None,
            Some(sem) => {
                match tokio::time::timeout(self.policy.queue_timeout, sem.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => Some(p),
                    _ => {
                        return Err(Error::new(
                            ErrorKind::OriginBusy,
                            format!(
                                "{}: {} requests in flight for {:?}",
                                origin.url, self.policy.max_conns, self.policy.queue_timeout
                            ),
                        )
                        .with_retry_after(1));
                    }
                }
            }
        };
        origin.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            origin: origin.clone(),
            _permit: permit,
        })
    }

    /// A failed attempt: counted, and perhaps the origin ejected.
    fn failed(&self, origin: &Origin, why: &'static str) {
        origin.stats.failures.inc();
        origin.health.request_failed(
            &self.names(origin),
            self.policy.max_fails,
            self.policy.fail_timeout,
            origin.stats.in_flight(),
            why,
        );
    }

    /// Whether another attempt may be made: an untried origin is up and
    /// the budget has a retry left (taken if so).
    fn may_retry(&self, attempt: u32, tried: u64, key: Option<&[u8; 32]>) -> bool {
        attempt < self.policy.retries
            && self.pick_peek(tried, key)
            && self.budget.try_take(self.requests.get())
    }

    fn pick_peek(&self, tried: u64, _key: Option<&[u8; 32]>) -> bool {
        let now = now_ms();
        self.origins
            .iter()
            .enumerate()
            .any(|(i, o)| (i >= 64 || tried & (1 << i) == 0) && o.health.routable(now))
    }

    /// Sends `req` to one of the origins and waits for the response head.
    /// A failed attempt is tried again on another origin when nothing of
    /// the request can have been acted on twice ([`super::retry`]), up to
    /// `retries` times and within the retry budget; the pool returns at
    /// the response head, so no retry ever follows a response byte sent to
    /// the client.
    pub async fn send(&self, req: OriginRequest<'_>) -> Result<Response<ResponseBody>, Error> {
        let OriginRequest {
            method,
            path_and_query,
            headers,
            mut body,
            fwd,
            hash_key,
            prefer,
            drop_fields,
        } = req;
        let has_content = body.as_ref().is_some_and(|b| !b.is_end_stream());
        let upgrade = crate::fields::has(headers, &header::UPGRADE);
        // Requests without content or upgrade take our HTTP/1 client.
        let lean = !has_content && !upgrade;
        let replayable = !has_content && !upgrade && is_idempotent(method);
        self.requests.inc();
        let mut tried: u64 = 0;
        // What the client gets when no further attempt can be made: the
        // last error, or the last answer retried on a `retry_on` status.
        let mut last: Option<Result<Response<ResponseBody>, Error>> = None;
        let mut attempt = 0u32;
        loop {
            let now = now_ms();
            // A sticky cookie's origin first, while it takes requests.
            let sticky = match prefer {
                Some(p) if attempt == 0 && p < self.origins.len() => {
                    if self.origins[p].health.routable(now) {
                        self.origins[p].stats.sticky_hits.inc();
                        Some(p)
                    } else {
                        self.origins[p].stats.sticky_fallbacks.inc();
                        None
                    }
                }
                _ => None,
            };
            let Some(i) = sticky.or_else(|| self.pick(tried, hash_key, now)) else {
                return last.unwrap_or_else(|| Err(self.no_origin(now)));
            };
            if i < 64 {
                tried |= 1 << i;
            }
            let origin = &self.origins[i];
            let lease = match self.try_lease(origin) {
                Some(l) => l,
                None => match Box::pin(self.lease_queued(origin)).await {
                    Ok(l) => l,
                    Err(busy) => return last.unwrap_or(Err(busy)),
                },
            };
            crate::metrics::Counters::global().origin_request();
            origin.stats.requests.inc();
            let started = crate::clock::Stamp::now();
            let sent = if lean {
                self.client
                    .send_bodyless(origin, method, path_and_query, headers, fwd, drop_fields)
                    .await
            } else {
                // Boxed: its state stays out of every request's future.
                Box::pin(self.send_hyper(origin, method, path_and_query, headers, body.take(), fwd))
                    .await
                    .map(|mut r| {
                        super::headers::remove_fields(r.headers_mut(), drop_fields);
                        r
                    })
            };
            match sent {
                Ok(resp) => {
                    origin.stats.observe(started.elapsed());
                    let status = resp.status().as_u16();
                    // A gateway error from the origin counts against it.
                    if matches!(status, 502..=504) {
                        self.failed(origin, "answered 502/503/504");
                    } else {
                        origin.health.request_succeeded();
                    }
                    let mut resp = resp.map(|b| b.with_lease(lease));
                    // Only a sticky pool reads it (`sticky_set_cookie`):
                    // an extension costs two allocations per response.
                    if self.sticky.is_some() {
                        resp.extensions_mut().insert(Answered(i));
                    }
                    if replayable
                        && self.policy.retry_on.contains(&status)
                        && self.may_retry(attempt, tried, hash_key)
                    {
                        tracing::info!(site = %self.site, origin = %origin.url, status, "retrying on another origin");
                        // Kept until another answer comes (then dropped).
                        last = Some(Ok(resp));
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    drop(lease);
                    // With content on hyper's client, a timeout or a broken
                    // exchange may be the client's slow or aborted upload:
                    // only a refused connection counts against the origin.
                    if !has_content || is_connect_failure(e.kind()) {
                        self.failed(origin, e.kind().as_str());
                    } else {
                        origin.stats.failures.inc();
                    }
                    // Content not taken yet: the hyper path takes it.
                    let untouched = !has_content || body.is_some();
                    let retry = ((is_connect_failure(e.kind()) && untouched)
                        || (is_reset(e.kind()) && replayable))
                        && self.may_retry(attempt, tried, hash_key);
                    tracing::warn!(error = %e, site = %self.site, retry, "origin request failed");
                    if !retry {
                        return match last {
                            Some(Ok(answer)) => Ok(answer),
                            _ => Err(e),
                        };
                    }
                    if !matches!(last, Some(Ok(_))) {
                        last = Some(Err(e));
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Sends a request on hyper's client: one with content (streamed, so
    /// never replayed) or an upgrade.
    async fn send_hyper(
        &self,
        origin: &Origin,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Option<RequestBody>,
        fwd: &Forwarding<'_>,
    ) -> Result<Response<ResponseBody>, Error> {
        let uri = OriginClient::uri_for(origin, path_and_query)?;
        let out_body: OriginBody = match body {
            Some(RequestBody::Hyper(b)) if !http_body::Body::is_end_stream(&b) => {
                b.map_err(Into::into).boxed_unsync()
            }
            Some(RequestBody::H2(b)) if !http_body::Body::is_end_stream(&b) => {
                b.map_err(Into::into).boxed_unsync()
            }
            Some(RequestBody::Guarded(b)) if !http_body::Body::is_end_stream(&b) => {
                b.boxed_unsync()
            }
            _ => http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        };
        let mut out = Request::new(out_body);
        // The origin's 1xx reach the client (RFC 9110 §15.2), from hyper's
        // connection task.
        if let Some(i) = super::interim::Interim::current() {
            hyper::ext::on_informational(&mut out, move |r| {
                let mut fields = r.headers().clone();
                super::headers::strip_hop_by_hop(&mut fields, false);
                i.from_origin(r.status(), fields);
            });
        }
        *out.method_mut() = method.clone();
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = headers.clone();
        fwd.add_to(out.headers_mut());
        self.client.send(origin, out).await
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;

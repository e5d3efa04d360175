//! The gate of the pipeline: every check made on a request before any
//! cache or origin work, in order — the node's access list, CONNECT, the
//! target's length, path safety, routing to a site, the site's access list,
//! its header limits, its request rules, methods, the declared content
//! length, its rate limit and its HTTPS redirect — and the guard put on
//! the content a request streams to the origin. A refusal is answered
//! here, counted by reason and logged.
//!
//! It decides; it does not fetch: what passes goes on to [`super::Proxy`]'s
//! cache or pass path.

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response};

use super::body::{AccessRecord, ProxyBody};
use super::{ConnInfo, Live, RequestBody, SiteRuntime};
use crate::admission::rules::Action;
use crate::cache::key::normalise_host;
use crate::error::{Error, ErrorKind};
use crate::metrics::{Counters, Refusal};
use crate::origin::request_body::{Trip, Tripped};

/// A request the gate let through.
pub(super) struct Passed {
    pub site: Arc<SiteRuntime>,
    pub host: String,
    /// A rule sends it by the cache.
    pub bypass_cache: bool,
    /// What the content's guard says if it trips.
    pub trip: Option<Trip>,
}

/// What the gate decided.
pub(super) enum Gate {
    Pass(Passed),
    /// Answered here (a refusal with its own fields, a redirect).
    Answer(Box<Response<ProxyBody>>),
}

impl Live {
    /// Runs every check on `req`; an `Err` is answered as an error page.
    pub(super) fn gate(
        &self,
        req: &mut Request<RequestBody>,
        host: Option<String>,
        conn: &ConnInfo,
        rec: &mut AccessRecord,
    ) -> Result<Gate, Error> {
        // Access lists first: a refused client costs no cache or origin work.
        if !self.admission.permits(rec.client) {
            return Err(self.refuse(rec.client, "the node's access list"));
        }
        // RFC 9110 §9.3.6: CONNECT asks for a tunnel, which a reverse proxy
        // does not open (and no origin should be asked for one).
        if req.method() == Method::CONNECT {
            return Err(Error::new(
                ErrorKind::MethodNotAllowed,
                "CONNECT is not carried by a reverse proxy",
            ));
        }
        // RFC 9110 §15.5.15: a target longer than the node takes.
        if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > self.max_uri_bytes {
            Counters::global().refused(Refusal::UriTooLong);
            return Err(Error::new(ErrorKind::UriTooLong, "request target too long"));
        }
        // A path that an origin would read as above its root never goes on.
        // (A plain path, nearly every one, has nothing to refuse or change.)
        if let Some(pq) = req
            .uri()
            .path_and_query()
            .filter(|pq| !crate::admission::path::plain(pq.as_str()))
        {
            if let Err(why) = crate::admission::path::check(pq.as_str()) {
                Counters::global().refused(Refusal::Path);
                return Err(Error::new(ErrorKind::BadRequest, why));
            }
            // The cache key and the origin see one normal form.
            if let Some(normal) = crate::admission::path::normalise(pq.as_str()) {
                normalise_uri(req.uri_mut(), normal)?;
            }
        }
        let host =
            host.ok_or_else(|| Error::new(ErrorKind::BadRequest, "missing or invalid Host"))?;
        let site = self
            .route(&normalise_host(&host))
            .ok_or_else(|| Error::new(ErrorKind::NoSite, format!("no site for host {host:?}")))?
            .clone();
        rec.site = Some(site.metrics.clone());
        if !site.access.is_open() && !site.access.permits(rec.client) {
            return Err(self.refuse(rec.client, "the site's access list"));
        }
        // RFC 6585 §5: fields over the site's limits (the listener already
        // refused anything over the largest of all limits).
        if site.header_check
            && headers_over(
                req.headers(),
                site.limits.max_header_bytes,
                site.limits.max_header_count,
            )
        {
            Counters::global().refused(Refusal::HeadersTooLarge);
            return Err(Error::new(
                ErrorKind::HeadersTooLarge,
                "request fields over the site's limits",
            ));
        }
        let mut bypass_cache = false;
        if !site.rules.is_empty()
            && let Some(rule) =
                site.rules
                    .first_match(req.method(), req.uri(), req.headers(), rec.client)
        {
            rec.rule = Some(rule.name.clone());
            match &rule.action {
                Action::Allow => {}
                Action::BypassCache => bypass_cache = true,
                Action::Deny { status, body } => {
                    Counters::global().refused(Refusal::Rule);
                    tracing::info!(site = %site.name, rule = %rule.name, client = %rec.client, "refused by a rule");
                    return Ok(Gate::Answer(Box::new(super::rule_refusal(
                        *status,
                        body.clone(),
                        rec.clone(),
                    ))));
                }
                Action::RateLimit(limiter) => {
                    if let Err(wait) = limiter.check(rec.client) {
                        return Ok(Gate::Answer(Box::new(super::too_many_requests(
                            &rule.name,
                            limiter,
                            wait,
                            rec.clone(),
                        ))));
                    }
                }
            }
        }
        if !site.limits.methods.is_empty() && !site.limits.methods.contains(req.method()) {
            Counters::global().refused(Refusal::Method);
            return Ok(Gate::Answer(Box::new(super::method_not_allowed(
                &site.limits.methods,
                rec.clone(),
            ))));
        }
        let max_body = site.limits.max_body_bytes;
        if max_body > 0
            && req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|n| n > max_body)
        {
            Counters::global().refused(Refusal::BodyTooLarge);
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                "declared body too large",
            ));
        }
        if let Some((limiter, prefix)) = &site.rate_limit
            && prefix
                .as_deref()
                .is_none_or(|p| req.uri().path().starts_with(p))
            && let Err(wait) = limiter.check(rec.client)
        {
            return Ok(Gate::Answer(Box::new(super::too_many_requests(
                &site.name,
                limiter,
                wait,
                rec.clone(),
            ))));
        }
        if site.https_redirect && conn.scheme == "http" {
            return Ok(Gate::Answer(Box::new(super::https_redirect(
                &host,
                req.uri(),
                rec.clone(),
            ))));
        }
        // Content streamed to the origin is counted and timed as it goes.
        let trip = req
            .body_mut()
            .guard(max_body, site.limits.body_read_timeout);
        Ok(Gate::Pass(Passed {
            site,
            host,
            bypass_cache,
            trip,
        }))
    }
}

/// Puts the normalised path and query in `uri` (scheme and authority, on an
/// absolute-form or HTTP/2 target, kept).
fn normalise_uri(uri: &mut http::Uri, path_and_query: String) -> Result<(), Error> {
    let bad = |_| Error::new(ErrorKind::BadRequest, "invalid request target");
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(path_and_query).map_err(bad)?);
    *uri = http::Uri::from_parts(parts)
        .map_err(|_| Error::new(ErrorKind::BadRequest, "invalid request target"))?;
    Ok(())
}

/// Whether `h` has more fields than `max_count` or more than `max_bytes`
/// of them (each counted as `name: value` and its line end).
fn headers_over(h: &HeaderMap, max_bytes: u64, max_count: usize) -> bool {
    if h.len() > max_count {
        return true;
    }
    let bytes: usize = h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    bytes as u64 > max_bytes
}

/// The error to answer when an origin request failed because the
/// content's guard tripped (counted), if it did.
pub(super) fn tripped(trip: Option<&Trip>) -> Option<Error> {
    match trip?.get()? {
        Tripped::TooLarge => {
            Counters::global().refused(Refusal::BodyTooLarge);
            Some(Error::new(
                ErrorKind::PayloadTooLarge,
                "request content over max_body_bytes",
            ))
        }
        Tripped::TooSlow => {
            Counters::global().refused(Refusal::BodyTimeout);
            Some(Error::new(
                ErrorKind::RequestTimeout,
                "request content slower than body_read_timeout",
            ))
        }
    }
}

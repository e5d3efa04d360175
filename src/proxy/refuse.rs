//! The responses the node makes itself when it refuses or fails a request:
//! 405 with `Allow`, 429 with `Retry-After`, a rule's own status and body,
//! the 308 to `https`, and the error statuses with a short plain-text
//! body, each with its access-log record.
//!
//! Owns: those responses. Must not know: why the request was refused.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use std::time::Duration;

use super::body::{AccessRecord, ProxyBody};
use crate::admission::RateLimiter;
use crate::cache::key::normalise_host;
use crate::error::{Error, ErrorKind};
use crate::metrics::Refusal;

/// 405 with the site's methods in `Allow` (RFC 9110 §15.5.6).
pub(super) fn method_not_allowed(methods: &[Method], rec: AccessRecord) -> Response<ProxyBody> {
    let mut resp = error_response(ErrorKind::MethodNotAllowed, rec);
    let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

/// The 429 for a client over `limiter` (RFC 6585 §4), with `Retry-After`
/// and the limit in `RateLimit-Policy` / `RateLimit` (the IETF httpapi
/// RateLimit header fields draft: quota `q` per window `w` seconds; `r`
/// remaining, `t` seconds until there is room).
pub(super) fn too_many_requests(
    site: &str,
    limiter: &RateLimiter,
    wait: Duration,
    rec: AccessRecord,
) -> Response<ProxyBody> {
    crate::metrics::Counters::global().refused(Refusal::RateLimited);
    tracing::info!(site, client = %rec.client, ?wait, "rate limited");
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut resp = error_response(ErrorKind::RateLimited, rec);
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    let window = limiter.period.as_secs().max(1);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{site}\";q={};w={window}", limiter.requests)) {
        h.insert("ratelimit-policy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{site}\";r=0;t={secs}")) {
        h.insert("ratelimit", v);
    }
    resp
}

/// A request rule's refusal: its status and body.
pub(super) fn rule_refusal(
    status: StatusCode,
    body: Bytes,
    mut rec: AccessRecord,
) -> Response<ProxyBody> {
    rec.status = status.as_u16();
    rec.error = Some(ErrorKind::Denied.as_str());
    let mut resp = Response::new(ProxyBody::full(body, rec));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// 308 to the `https` URL of a cleartext request (RFC 9110 §15.4.9: the
/// method and content are kept), to the default port 443.
pub(super) fn https_redirect(
    host: &str,
    uri: &http::Uri,
    mut rec: AccessRecord,
) -> Response<ProxyBody> {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{}{pq}", normalise_host(host));
    rec.status = 308;
    let mut resp = Response::new(ProxyBody::empty(rec));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The plain-text error response for `e`, with `Retry-After` when the
/// error names one (RFC 9110 §10.2.3).
pub fn error_response_for(e: &Error, rec: AccessRecord) -> Response<ProxyBody> {
    let mut r = error_response(e.kind(), rec);
    if let Some(secs) = e.retry_after() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
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

//! The response body sent to clients: a streaming wrapper that counts bytes,
//! enforces the origin idle-body timeout, and writes the access-log line
//! when the response ends (completed, cut off or abandoned by the client).

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::time::Sleep;

use crate::error::BoxError;

/// Boxed body of any source.
pub type InnerBody = UnsyncBoxBody<Bytes, BoxError>;

/// What the access log records about one request.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub method: http::Method,
    pub host: String,
    pub path: String,
    pub version: http::Version,
    pub client: IpAddr,
    pub status: u16,
    /// Cache phase (`Cache-Status` vocabulary); `pass` until caching lands.
    pub cache: &'static str,
    /// Error kind, if the request failed.
    pub error: Option<&'static str>,
    /// When the request arrived (the latency histograms and the access log
    /// measure from it); `None` when nothing measures it (an admin request
    /// without an access log).
    pub start: Option<crate::clock::Stamp>,
    pub enabled: bool,
    /// The request rule that matched, if any.
    pub rule: Option<std::sync::Arc<str>>,
    /// The site's `/metrics` series, once routed.
    pub site: Option<std::sync::Arc<crate::metrics::http::SiteMetrics>>,
    /// Until the response head was ready.
    pub ttfb: Option<Duration>,
}

impl AccessRecord {
    /// Moves the record out to the response that will carry it (and log
    /// it), leaving one that records and measures nothing. Unlike a clone
    /// it copies no strings and writes no shared count.
    pub fn take(&mut self) -> AccessRecord {
        let spent = AccessRecord {
            method: http::Method::GET,
            host: String::new(),
            path: String::new(),
            version: self.version,
            client: self.client,
            status: 0,
            cache: "pass",
            error: None,
            start: None,
            enabled: false,
            rule: None,
            site: None,
            ttfb: None,
        };
        std::mem::replace(self, spent)
    }

    fn emit(&self, bytes: u64, outcome: &'static str) {
        if let (Some(m), Some(start)) = (&self.site, self.start) {
            let duration = start.elapsed();
            m.record(&crate::metrics::http::Finished {
                method: &self.method,
                status: self.status,
                phase: self.cache,
                bytes,
                duration,
                ttfb: self.ttfb.unwrap_or(duration),
            });
        }
        if !self.enabled {
            return;
        }
        let duration_ms = self
            .start
            .map_or(0.0, |s| s.elapsed().as_secs_f64() * 1000.0);
        if let Some(sink) = crate::access_log::sink() {
            let time = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            sink.write(&crate::access_log::Line {
                time,
                client: self.client,
                method: self.method.as_str(),
                host: &self.host,
                path: &self.path,
                version: version_str(self.version),
                status: self.status,
                bytes,
                duration_ms,
                cache: self.cache,
                outcome,
                error: self.error.unwrap_or("-"),
                rule: self.rule.as_deref().unwrap_or("-"),
            });
            return;
        }
        tracing::info!(
            target: "access",
            method = %self.method,
            host = %self.host,
            path = %self.path,
            version = ?self.version,
            client = %self.client,
            status = self.status,
            bytes,
            duration_ms,
            cache = self.cache,
            outcome,
            error = self.error.unwrap_or("-"),
            rule = self.rule.as_deref().unwrap_or("-"),
        );
    }
}

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// A complete in-memory body, boxed as any other source.
pub fn full_inner(data: Bytes) -> InnerBody {
    http_body_util::Full::new(data)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The client-facing response body. Its state is boxed: a response moves
/// through every layer of the pipeline and the connection's loop, and with
/// the body a pointer a response is 120 bytes, which a move copies in
/// registers; with the state inline (384 bytes) each move was a `memcpy`
/// call.
pub struct ProxyBody(Box<State>);

struct State {
    inner: InnerBody,
    idle: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    record: Option<AccessRecord>,
    bytes: u64,
    outcome: &'static str,
    /// Data went out since the last `Pending`: hyper may still hold it in
    /// its write buffer.
    unflushed: bool,
    /// An error held back until that data is flushed.
    deferred: Option<BoxError>,
    /// The head's fields in wire form, for the own HTTP/1.1 writer (in a
    /// box: every other response would carry its room).
    wire: Option<Box<WireHead>>,
}

/// A hit's head as the own HTTP/1.1 writer sends it
/// (`crate::server::h1_head::encode_head`): the stored fields the client
/// is sent, already in wire form, and the two that change from response
/// to response. The response's own map then holds only what is added
/// after it was built, none of it among these lines (`Server`,
/// `Strict-Transport-Security` and a site's response fields are set
/// there: a stored head that has one of them is not sent this way).
/// Other writers (HTTP/2, hyper's) never get such a response: the
/// pipeline makes it only for a connection of the own HTTP/1.1 path
/// (`ConnInfo::wire_heads`).
#[derive(Debug)]
pub struct WireHead {
    /// Every stored field sent, `Via` and `Accept-Ranges`.
    pub fields: crate::fields::WireFields,
    /// RFC 9111 §5.1.
    pub age: http::HeaderValue,
    /// RFC 9211.
    pub cache_status: http::HeaderValue,
    /// The content's length (RFC 9110 §8.6).
    pub len: u64,
}

impl WireHead {
    /// Appends its lines.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.fields.bytes());
        crate::fields::push_line(out, b"age", self.age.as_bytes());
        crate::fields::push_line(out, b"cache-status", self.cache_status.as_bytes());
    }
}

/// Raised when the origin pauses longer than `timeouts.idle_body`.
#[derive(Debug, thiserror::Error)]
#[error("origin body idle for longer than {0:?}")]
pub struct IdleTimeout(pub Duration);

impl ProxyBody {
    /// The cache phase of the response's access record (`Cache-Status`
    /// vocabulary, see [`crate::cache::status::CachePhase::as_str`]).
    pub fn cache_phase(&self) -> Option<&'static str> {
        self.0.record.as_ref().map(|r| r.cache)
    }

    /// Wraps `inner`; `idle` applies the idle-body timeout to an origin body.
    pub fn new(inner: InnerBody, idle: Option<Duration>, mut record: AccessRecord) -> ProxyBody {
        if record.ttfb.is_none() {
            record.ttfb = record.start.map(|s| s.elapsed());
        }
        ProxyBody(Box::new(State {
            inner,
            idle,
            sleep: None,
            record: Some(record),
            bytes: 0,
            outcome: "aborted",
            unflushed: false,
            deferred: None,
            wire: None,
        }))
    }

    /// The same body, its response's head to be sent as `wire` says.
    pub fn with_wire(mut self, wire: Box<WireHead>) -> ProxyBody {
        self.0.wire = Some(wire);
        self
    }

    /// The head in wire form, if the response has one (taken by the
    /// writer).
    pub fn take_wire(&mut self) -> Option<Box<WireHead>> {
        self.0.wire.take()
    }

    /// A complete in-memory body.
    pub fn full(data: impl Into<Bytes>, record: AccessRecord) -> ProxyBody {
        ProxyBody::new(full_inner(data.into()), None, record)
    }

    /// An empty body.
    pub fn empty(record: AccessRecord) -> ProxyBody {
        ProxyBody::full(Bytes::new(), record)
    }
}

impl State {
    fn finish(&mut self, outcome: &'static str) {
        self.outcome = outcome;
        if let Some(r) = self.record.take() {
            r.emit(self.bytes, outcome);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self.get_mut().0;
        if let Some(e) = this.deferred.take() {
            this.finish("cut_off");
            return Poll::Ready(Some(Err(e)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                    this.unflushed = true;
                }
                this.sleep = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "response body cut off");
                if this.unflushed {
                    // hyper drops what it has buffered when a body fails:
                    // yield once so the bytes already sent are flushed,
                    // then fail (the client sees a short body, then close).
                    this.unflushed = false;
                    this.deferred = Some(e);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                this.finish("cut_off");
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish("complete");
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.unflushed = false;
                if let Some(idle) = this.idle {
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        tracing::warn!(?idle, "origin body idle timeout; cutting the response off");
                        this.finish("idle_timeout");
                        return Poll::Ready(Some(Err(Box::new(IdleTimeout(idle)))));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.inner.size_hint()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        if self.record.is_some() {
            // hyper does not poll the body of a HEAD response or a 304; an
            // empty body counts as complete.
            let outcome = if self.inner.is_end_stream() {
                "complete"
            } else {
                self.outcome
            };
            self.finish(outcome);
        }
    }
}

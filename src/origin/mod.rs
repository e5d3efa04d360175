//! The origin layer: talking to origin servers. It knows nothing of
//! caching: it is asked for a response and answers with a response head
//! and a streamed body, or an [`Error`] whose kind decides 502 or 504.
//!
//! A site's [`Pool`] ([`pool`]) is the one front of every origin request:
//! it holds the site's origins with their health ([`health`], `probe`),
//! picks one per attempt (`balance`; a sticky cookie's first,
//! [`sticky`]), retries a failed attempt on another origin when that is
//! safe and within the budget ([`retry`]), and records each origin's
//! outcomes. The [`OriginClient`] carries requests on the
//! wire: those without content and without an upgrade through our own
//! HTTP/1.1 client ([`h1`], keep-alive connections kept per [`Origin`]),
//! the rest through hyper-util's pooled client. It applies the connect and
//! response-header timeouts; the idle-body timeout is applied to the
//! streamed body by the request pipeline.

pub mod h1;
pub mod h1_body;
mod h1_head;
pub mod headers;
pub mod interim;
pub mod names;
pub mod pool;
pub mod request_body;
pub mod retry;

mod balance;
pub mod endpoint;
pub mod health;
mod probe;
pub mod sticky;
pub mod stream;
pub mod tls;
pub mod transfer;

pub use health::State;
pub use pool::{
    Answered, HashOn, Lease, Origin, OriginReport, OriginRequest, OriginStats, Pool, RequestBody,
    client_key,
};
pub use sticky::StickyRequest;

use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Timeouts;
use crate::error::{BoxError, Error, ErrorKind};

/// The body type sent to origins.
pub type OriginBody = UnsyncBoxBody<Bytes, BoxError>;

/// Pooled connections to every origin, with timeouts. Cloning shares the
/// connections.
#[derive(Clone)]
pub struct OriginClient {
    client: Client<HttpsConnector<HttpConnector>, OriginBody>,
    timeouts: Timeouts,
    h1: h1::H1Client,
    response_header_timeout: Duration,
}

impl std::fmt::Debug for OriginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginClient")
            .field("h1", &self.h1)
            .finish_non_exhaustive()
    }
}

/// hyper's pooled client over cleartext or TLS (`https://` origins).
fn hyper_client(
    t: &Timeouts,
    tls: &tls::OriginTls,
) -> Client<HttpsConnector<HttpConnector>, OriginBody> {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(t.connect));
    conn.set_keepalive(Some(Duration::from_secs(60)));
    conn.enforce_http(false);
    // hyper-rustls sets ALPN itself (and refuses a preset list).
    let mut config = (*tls.config).clone();
    config.alpn_protocols.clear();
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let b = match &tls.server_name {
        Some(n) => {
            b.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(n.clone()))
        }
        None => b,
    };
    let https = b.enable_http1().wrap_connector(conn);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(t.pool_idle)
        .pool_max_idle_per_host(t.pool_max_idle_per_origin)
        .set_host(false)
        .build(https)
}

impl OriginClient {
    /// Builds the client from the `[timeouts]` section; `https://` origins
    /// are verified against the system's trust store.
    pub fn new(t: &Timeouts) -> Result<OriginClient, Error> {
        let tls = tls::origin_tls(None, None, tls::provider())?;
        Ok(OriginClient {
            client: hyper_client(t, &tls),
            timeouts: t.clone(),
            h1: h1::H1Client {
                connect_timeout: t.connect,
                response_header_timeout: t.response_header,
                limits: h1::PoolLimits {
                    max_idle: t.pool_max_idle_per_origin,
                    idle_timeout: t.pool_idle,
                },
            },
            response_header_timeout: t.response_header,
        })
    }

    /// The same client with hyper's connections verified by `tls` (a site
    /// with its own `origin_ca` or `origin_sni`).
    pub fn with_tls(&self, tls: &tls::OriginTls) -> OriginClient {
        OriginClient {
            client: hyper_client(&self.timeouts, tls),
            ..self.clone()
        }
    }

    /// Closes the idle connections to `origin` that are past the pool's idle
    /// timeout; returns how many.
    pub fn sweep_idle(&self, origin: &Origin) -> usize {
        origin
            .idle
            .sweep(self.h1.limits, crate::clock::coarse_millis())
    }

    /// The absolute URI for `path_and_query` on `origin`.
    pub fn uri_for(origin: &Origin, path_and_query: &str) -> Result<Uri, Error> {
        Uri::builder()
            .scheme(origin.url.scheme.clone())
            .authority(origin.url.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| Error::new(ErrorKind::BadRequest, format!("request target: {e}")))
    }

    /// Sends a request without content and without an upgrade on our
    /// HTTP/1.1 client and waits for the response head, within the
    /// response-header timeout (which the client applies itself, see
    /// `crate::deadline`).
    pub async fn send_bodyless(
        &self,
        origin: &Arc<Origin>,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        fwd: &headers::Forwarding<'_>,
        drop_fields: &[http::HeaderName],
    ) -> Result<Response<ResponseBody>, Error> {
        let resp = self
            .h1
            .send(origin, method, path_and_query, headers, fwd, drop_fields)
            .await?;
        Ok(resp.map(ResponseBody::h1))
    }

    /// Sends `req` (its URI already points at `origin`) on hyper's client
    /// and waits for the response head, within the response-header timeout.
    pub async fn send(
        &self,
        origin: &Origin,
        req: Request<OriginBody>,
    ) -> Result<Response<ResponseBody>, Error> {
        let fut = self.client.request(req);
        match tokio::time::timeout(self.response_header_timeout, fut).await {
            Err(_) => Err(self.head_timeout(origin)),
            Ok(Ok(resp)) => ResponseBody::hyper_decoded(resp)
                .map_err(|e| Error::new(ErrorKind::OriginProtocol, format!("{}: {e}", origin.url))),
            Ok(Err(e)) => Err(classify(origin, e)),
        }
    }

    fn head_timeout(&self, origin: &Origin) -> Error {
        Error::new(
            ErrorKind::OriginResponseTimeout,
            format!(
                "{}: no response head within {:?}",
                origin.url, self.response_header_timeout
            ),
        )
    }
}

/// Removes an origin response's hop-by-hop fields (RFC 9110 §7.6.1). Our
/// HTTP/1 client leaves them out while it parses the head (`h1::Head`), so
/// only hyper's responses are scanned.
pub fn strip_response_hop_by_hop(resp: &mut Response<ResponseBody>) {
    if resp.body().is_hyper() {
        headers::strip_hop_by_hop(resp.headers_mut(), false);
    }
}

/// A response body from an origin, from either client, holding the
/// request's [`Lease`] on its origin until it is dropped. Its state is
/// boxed: the response moves through the origin client's and the proxy's
/// layers, and with the body a pointer it is 120 bytes, which a move copies
/// in registers (312 bytes inline took a `memcpy` call per move).
#[derive(Debug)]
pub struct ResponseBody(Box<BodyState>);

#[derive(Debug)]
struct BodyState {
    inner: Inner,
    lease: Option<Lease>,
}

enum Inner {
    H1(h1_body::H1Body),
    Hyper(Incoming),
    /// Either, with transfer codings taken off (`transfer`).
    Decoded(UnsyncBoxBody<Bytes, BoxError>),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inner::H1(b) => b.fmt(f),
            Inner::Hyper(b) => b.fmt(f),
            Inner::Decoded(_) => f.write_str("Decoded"),
        }
    }
}

impl ResponseBody {
    fn of(inner: Inner) -> ResponseBody {
        ResponseBody(Box::new(BodyState { inner, lease: None }))
    }

    fn h1(mut b: h1_body::H1Body) -> ResponseBody {
        let codings = b.take_codings();
        ResponseBody::of(if codings.is_empty() {
            Inner::H1(b)
        } else {
            Inner::Decoded(transfer::decoded(b, &codings))
        })
    }

    /// hyper's body, with the codings its response's `Transfer-Encoding`
    /// lists besides chunked taken off (hyper removes chunked, or reads to
    /// the close when chunked is not last).
    fn hyper_decoded(resp: Response<Incoming>) -> Result<Response<ResponseBody>, String> {
        let codings = transfer::parse(resp.headers())?.map(|c| c.decode);
        Ok(resp.map(|b| match codings {
            Some(c) if !c.is_empty() => ResponseBody::of(Inner::Decoded(transfer::decoded(b, &c))),
            _ => ResponseBody::hyper(b),
        }))
    }

    fn hyper(b: Incoming) -> ResponseBody {
        ResponseBody::of(Inner::Hyper(b))
    }

    fn with_lease(mut self, lease: Lease) -> ResponseBody {
        self.0.lease = Some(lease);
        self
    }

    /// Takes the lease out (an upgraded connection keeps it for the
    /// tunnel's life).
    pub fn take_lease(&mut self) -> Option<Lease> {
        self.0.lease.take()
    }

    fn is_hyper(&self) -> bool {
        match &self.0.inner {
            Inner::Hyper(_) => true,
            Inner::H1(_) => false,
            // Hop-by-hop fields are stripped from hyper's responses only
            // (the own client drops them while parsing); a decoded body
            // from the own client has none left, so stripping is harmless.
            Inner::Decoded(_) => true,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self.get_mut().0;
        let polled = match &mut this.inner {
            Inner::H1(b) => Pin::new(b).poll_frame(cx),
            Inner::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Inner::Decoded(b) => Pin::new(b).poll_frame(cx),
        };
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Done with the origin: no longer in flight.
            this.lease = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.0.inner {
            Inner::H1(b) => b.is_end_stream(),
            Inner::Hyper(b) => b.is_end_stream(),
            Inner::Decoded(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0.inner {
            Inner::H1(b) => b.size_hint(),
            Inner::Hyper(b) => b.size_hint(),
            Inner::Decoded(b) => b.size_hint(),
        }
    }
}

/// Maps a client error to our error kind by looking at its cause chain.
fn classify(origin: &Origin, e: hyper_util::client::legacy::Error) -> Error {
    let mut io_kind = None;
    let mut bad_certificate = false;
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    let mut text = e.to_string();
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
            bad_certificate |= matches!(
                io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::InvalidCertificate(_))
            );
        }
        if let Some(rustls::Error::InvalidCertificate(_)) = s.downcast_ref::<rustls::Error>() {
            bad_certificate = true;
        }
        src = s.source();
    }
    // rustls's message, for a chain that hides its error type.
    bad_certificate |= text.contains("invalid peer certificate");
    let kind = if bad_certificate {
        ErrorKind::OriginCertificate
    } else if e.is_connect() {
        match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => ErrorKind::OriginRefused,
            Some(std::io::ErrorKind::TimedOut) => ErrorKind::OriginConnectTimeout,
            _ if text.contains("timed out") || text.contains("timeout") => {
                ErrorKind::OriginConnectTimeout
            }
            _ => ErrorKind::OriginUnreachable,
        }
    } else {
        ErrorKind::OriginProtocol
    };
    Error::new(kind, format!("{}: {text}", origin.url)).with_source(e)
}

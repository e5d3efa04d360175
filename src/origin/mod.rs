//! The origin-fetch layer: talking to origin servers.
//!
//! A [`Pool`] holds a site's origins and picks one per request (round robin
//! for now; load balancing and health checks extend it later). The
//! [`OriginClient`] owns pooled keep-alive connections (hyper-util's client),
//! applies the connect and response-header timeouts and turns failures into
//! [`Error`]s whose kind decides 502 or 504. The idle-body timeout is applied
//! to the streamed body by the proxy layer ([`crate::proxy::body`]).

pub mod headers;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{OriginUrl, Timeouts};
use crate::error::{BoxError, Error, ErrorKind};

/// The body type sent to origins.
pub type OriginBody = UnsyncBoxBody<Bytes, BoxError>;

/// One origin server.
#[derive(Debug)]
pub struct Origin {
    pub url: OriginUrl,
}

/// A site's origin servers and how one is chosen.
#[derive(Debug)]
pub struct Pool {
    origins: Vec<Arc<Origin>>,
    next: AtomicUsize,
}

impl Pool {
    /// A pool over `urls` (validated config guarantees at least one).
    pub fn new(urls: &[OriginUrl]) -> Pool {
        Pool {
            origins: urls
                .iter()
                .map(|u| Arc::new(Origin { url: u.clone() }))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Picks the origin for the next attempt (round robin).
    pub fn select(&self) -> Option<Arc<Origin>> {
        if self.origins.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.origins.len();
        self.origins.get(i).cloned()
    }

    /// Number of origins in the pool.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// Whether the pool has no origins.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }
}

/// Pooled connections to every origin, with timeouts.
#[derive(Clone)]
pub struct OriginClient {
    client: Client<HttpConnector, OriginBody>,
    response_header_timeout: Duration,
}

impl OriginClient {
    /// Builds the client from the `[timeouts]` section.
    pub fn new(t: &Timeouts) -> OriginClient {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(t.connect));
        conn.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(t.pool_idle)
            .pool_max_idle_per_host(t.pool_max_idle_per_origin)
            .set_host(false)
            .build(conn);
        OriginClient {
            client,
            response_header_timeout: t.response_header,
        }
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

    /// Sends `req` (its URI already points at `origin`) and waits for the
    /// response head, within the response-header timeout.
    pub async fn send(
        &self,
        origin: &Origin,
        req: Request<OriginBody>,
    ) -> Result<Response<Incoming>, Error> {
        let fut = self.client.request(req);
        match tokio::time::timeout(self.response_header_timeout, fut).await {
            Err(_) => Err(Error::new(
                ErrorKind::OriginResponseTimeout,
                format!(
                    "{}: no response head within {:?}",
                    origin.url, self.response_header_timeout
                ),
            )),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(origin, e)),
        }
    }
}

/// Maps a client error to our error kind by looking at its cause chain.
fn classify(origin: &Origin, e: hyper_util::client::legacy::Error) -> Error {
    let mut io_kind = None;
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    let mut text = e.to_string();
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        src = s.source();
    }
    let kind = if e.is_connect() {
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

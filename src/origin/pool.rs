//! A site's origin pool: the one front that every origin request goes
//! through, whichever client carries it on the wire.
//!
//! The pool owns the site's [`Origin`]s, chooses one per attempt, retries a
//! request that can be replayed on another origin after a connection
//! failure, and records each attempt's outcome in the chosen origin's
//! [`OriginStats`] (health accounting). Requests without content and
//! without an upgrade go to the own HTTP/1.1 client ([`super::h1`]);
//! requests with content (streamed, so never replayed) and upgrades go to
//! hyper's client. Both clients keep their connections per origin and
//! under the pool's limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use http::{HeaderMap, Method, Request, Response, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use outpost_storage::counter::Striped;

use super::headers::Forwarding;
use super::{OriginBody, OriginClient, ResponseBody, h1};
use crate::config::OriginUrl;
use crate::error::{Error, ErrorKind};

/// A client request's content: none, or hyper's stream. The server's own
/// HTTP/1 path takes only requests without content; everything else
/// arrives through hyper.
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
            RequestBody::Hyper(b) => http_body::Body::is_end_stream(b),
        }
    }
}

/// What the pool knows of one origin's recent answers. Counters are
/// striped: every request writes them, from any core.
#[derive(Debug, Default)]
pub struct OriginStats {
    requests: Striped,
    failures: Striped,
    /// Failed attempts since the last success.
    consecutive_failures: AtomicU32,
}

/// A snapshot of [`OriginStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginSnapshot {
    /// Attempts sent to the origin.
    pub requests: u64,
    /// Attempts that got no response head (refused, unreachable, timed
    /// out, malformed).
    pub failures: u64,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
}

impl OriginStats {
    fn success(&self) {
        // Read first: a healthy origin's line stays shared between cores.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    fn failure(&self) {
        self.failures.inc();
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> OriginSnapshot {
        OriginSnapshot {
            requests: self.requests.get(),
            failures: self.failures.get(),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
        }
    }
}

/// One origin server.
#[derive(Debug)]
pub struct Origin {
    pub url: OriginUrl,
    /// Keep-alive connections of the HTTP/1 client waiting for reuse.
    pub idle: h1::IdleConns,
    /// Outcomes of the requests sent to it.
    pub stats: OriginStats,
}

impl Origin {
    /// An origin with no connections and no history.
    pub fn new(url: OriginUrl) -> Origin {
        Origin {
            url,
            idle: h1::IdleConns::default(),
            stats: OriginStats::default(),
        }
    }
}

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
}

/// A site's origin servers, how one is chosen, and the clients that reach
/// them.
#[derive(Debug)]
pub struct Pool {
    /// The site's name, for log lines.
    site: String,
    origins: Vec<Arc<Origin>>,
    next: AtomicUsize,
    client: OriginClient,
}

impl Pool {
    /// Site `site`'s pool over `urls` (validated config guarantees at
    /// least one), sending through `client`'s connections.
    pub fn new(site: &str, urls: &[OriginUrl], client: OriginClient) -> Pool {
        Pool {
            site: site.to_owned(),
            origins: urls
                .iter()
                .map(|u| Arc::new(Origin::new(u.clone())))
                .collect(),
            next: AtomicUsize::new(0),
            client,
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

    /// Sends `req` to one of the origins and waits for the response head.
    /// A request that can be replayed (no content) is tried once more on
    /// the next origin after a connection failure; a response byte is
    /// never followed by a retry (the pool returns at the head).
    pub async fn send(&self, req: OriginRequest<'_>) -> Result<Response<ResponseBody>, Error> {
        let OriginRequest {
            method,
            path_and_query,
            headers,
            mut body,
            fwd,
        } = req;
        let replayable = body.as_ref().is_none_or(|b| b.is_end_stream());
        // Requests without content or upgrade take our HTTP/1 client.
        let lean = replayable && !headers.contains_key(header::UPGRADE);
        let attempts = if replayable { self.len().min(2) } else { 1 };
        let mut last_err = None;
        for _ in 0..attempts.max(1) {
            let origin = self
                .select()
                .ok_or_else(|| Error::new(ErrorKind::Internal, "empty origin pool"))?;
            crate::metrics::Counters::global().origin_request();
            origin.stats.requests.inc();
            let sent = if lean {
                self.client
                    .send_bodyless(&origin, method, path_and_query, headers, fwd)
                    .await
            } else {
                self.send_hyper(&origin, method, path_and_query, headers, body.take(), fwd)
                    .await
            };
            match sent {
                Ok(r) => {
                    origin.stats.success();
                    return Ok(r);
                }
                Err(e) => {
                    origin.stats.failure();
                    let retry = replayable
                        && matches!(
                            e.kind(),
                            ErrorKind::OriginRefused
                                | ErrorKind::OriginUnreachable
                                | ErrorKind::OriginConnectTimeout
                        );
                    tracing::warn!(error = %e, site = %self.site, retry, "origin request failed");
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
        self.client.send(origin, out).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Timeouts;
    use std::time::Duration;

    fn client() -> OriginClient {
        OriginClient::new(&Timeouts {
            connect: Duration::from_secs(2),
            response_header: Duration::from_secs(10),
            idle_body: Duration::from_secs(10),
            pool_idle: Duration::from_secs(30),
            pool_max_idle_per_origin: 8,
        })
    }

    #[test]
    fn selection_is_round_robin() {
        let urls: Vec<OriginUrl> = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
            .iter()
            .map(|u| OriginUrl::parse(u).unwrap())
            .collect();
        let pool = Pool::new("s", &urls, client());
        let picks: Vec<String> = (0..4)
            .map(|_| pool.select().unwrap().url.to_string())
            .collect();
        assert_eq!(picks[0], picks[2]);
        assert_eq!(picks[1], picks[3]);
        assert_ne!(picks[0], picks[1]);
    }

    #[tokio::test]
    async fn a_refused_attempt_is_counted_and_retried_on_the_next_origin() {
        // Bound but not listening: connections are refused.
        let dead = tokio::net::TcpSocket::new_v4().unwrap();
        dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let dead_addr = dead.local_addr().unwrap();
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = live.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        });
        let urls = [
            OriginUrl::parse(&format!("http://{dead_addr}")).unwrap(),
            OriginUrl::parse(&format!("http://{live_addr}")).unwrap(),
        ];
        let pool = Pool::new("s", &urls, client());
        let fwd = Forwarding {
            via: None,
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            proto: "http",
        };
        let headers = HeaderMap::new();
        let req = || OriginRequest {
            method: &Method::GET,
            path_and_query: "/",
            headers: &headers,
            body: None,
            fwd: &fwd,
        };
        // Round robin starts at the dead origin: the retry goes to the live one.
        let resp = pool.send(req()).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::OK);
        let (dead_o, live_o) = (&pool.origins()[0], &pool.origins()[1]);
        let d = dead_o.stats.snapshot();
        assert_eq!((d.requests, d.failures, d.consecutive_failures), (1, 1, 1));
        let l = live_o.stats.snapshot();
        assert_eq!((l.requests, l.failures, l.consecutive_failures), (1, 0, 0));
        // The next round starts at the dead origin again.
        drop(resp);
        let resp = pool.send(req()).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::OK);
        let d = dead_o.stats.snapshot();
        assert_eq!((d.requests, d.failures, d.consecutive_failures), (2, 2, 2));
        assert_eq!(live_o.stats.snapshot().requests, 2);
    }
}

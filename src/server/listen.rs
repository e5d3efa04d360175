//! Listening sockets and the accept loop: a listener inherited (`upgrade`) or bound, hyper's
//! settings, the own HTTP/1 path's settings, accepting with a back-off when descriptors run
//! out, and the drain on shutdown (idle connections closed, the others waited for).
//!
//! Owns: accepting and draining. Must not know: what a request is answered with (the
//! handlers and the pipeline are given), caching rules or the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::conn::{ConnSetup, open_conn};
use super::hyper_conn::serve_hyper;
use super::rewind::Rewind;
use super::zero_copy::ZeroCopyStream;
use super::{fds, h1, upgrade};
use crate::config::{Config, ServerConfig};
use crate::error::{Error, ErrorKind};
use crate::proxy::{ConnInfo, Proxy};

/// The inherited listener named `what`, else a new one bound to `addr`.
pub(super) async fn listener(
    inherited: &mut upgrade::Inherited,
    what: &str,
    addr: SocketAddr,
) -> Result<TcpListener, Error> {
    let Some(l) = inherited.take(what) else {
        return bind(addr, what).await;
    };
    let l = l
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(l))
        .map_err(|e| Error::new(ErrorKind::Bind, format!("inherited {what} listener: {e}")))?;
    if let Ok(got) = l.local_addr()
        && got != addr
        && addr.port() != 0
    {
        tracing::warn!(%what, inherited = %got, configured = %addr, "serving on the inherited address; a restart moves it");
    }
    Ok(l)
}

pub(super) async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::new(
            ErrorKind::Bind,
            format!("cannot listen on {addr} ({what}): {e}"),
        )
        .with_source(e)
    })
}

pub(super) fn local(l: &TcpListener) -> Result<SocketAddr, Error> {
    l.local_addr()
        .map_err(|e| Error::new(ErrorKind::Bind, format!("local_addr: {e}")).with_source(e))
}

/// hyper's HTTP/1 and HTTP/2 settings; `caps` are the largest request head
/// (bytes, fields) any site takes (`Config::header_caps`): beyond them the
/// listener answers 431 itself.
pub(super) fn http_builder(s: &ServerConfig, caps: (u64, usize)) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    let max_buf = usize::try_from(caps.0).unwrap_or(usize::MAX);
    // The HTTP/1 timer is set per connection in `serve` (server::timer).
    b.http1()
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(max_buf.max(8192))
        .max_headers(caps.1)
        // A client may close its sending side once its request is out and
        // still read the answer (RFC 9112 §9.6 lets either side close first).
        // Without this hyper takes that EOF for an abort, and it probes for
        // it on every request that waits for an origin, with a fresh 8 KiB
        // read buffer each time (the request still holds the old one):
        // ~660 instructions per pass-through request (benches/load/README.md).
        // A client that goes away is noticed when its answer is written.
        .half_close(true)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(caps.0).unwrap_or(u32::MAX))
        // h2's own rapid-reset guard: streams reset before they are
        // accepted (the rest is counted per connection, server::abuse).
        .max_pending_accept_reset_streams(20)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// The own HTTP/1 path of a listener: its limits, and the pipeline its
/// requests go to with the listener's scheme.
#[derive(Clone)]
pub(super) struct Fast {
    pub(super) settings: h1::Settings,
    pub(super) proxy: Arc<Proxy>,
    pub(super) scheme: &'static str,
    /// The own HTTP/2 server, when `server.fast_http2` (its handler is set
    /// by the node, which adds `PURGE`).
    pub(super) h2: Option<(super::h2::Settings, super::h2::Handler)>,
}

/// The own HTTP/1 path for a listener whose connections are `scheme`, when
/// `server.fast_http1` is on.
pub(super) fn fast_path(cfg: &Config, proxy: &Arc<Proxy>, scheme: &'static str) -> Option<Fast> {
    let s = &cfg.server;
    s.fast_http1.then(|| Fast {
        settings: h1::Settings {
            header_read_timeout: s.header_read_timeout,
            keepalive_timeout: s.keepalive_timeout,
            keepalive_requests: s.keepalive_requests,
            max_head: usize::try_from(cfg.header_caps().0)
                .unwrap_or(usize::MAX)
                .max(8192),
        },
        proxy: proxy.clone(),
        scheme,
        h2: None,
    })
}

/// The own HTTP/2 server's settings.
pub(super) fn h2_settings(cfg: &Config) -> super::h2::Settings {
    super::h2::Settings {
        max_concurrent_streams: cfg.server.h2_max_concurrent_streams,
        max_header_list_size: u32::try_from(cfg.header_caps().0).unwrap_or(u32::MAX),
        handshake_timeout: cfg.server.header_read_timeout,
    }
}

/// Accepts connections until cancelled, then drains. Returns whether every
/// connection finished within `drain`. With `fast`, a connection starts on
/// the own HTTP/1 path ([`h1`]) and goes to hyper (`handler`) when that
/// path gives it up; without, hyper serves it from the start.
pub(super) async fn serve<F, Fut, B>(
    listener: TcpListener,
    builder: Builder<TokioExecutor>,
    stop: super::stop::Stop,
    drain: Duration,
    conn: ConnSetup,
    handler: F,
    fast: Option<Fast>,
) -> bool
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tracker = tokio_util::task::TaskTracker::new();
    let builder = Arc::new(builder);
    let fast = fast.map(Arc::new);
    let mut backoff = fds::Backoff::default();
    while let Some((mut stream, peer)) = accept(&listener, stop.token(), &mut backoff).await {
        let conn = conn.clone();
        let h = handler.clone();
        let builder = builder.clone();
        let fast = fast.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let Some((peer, _guard)) = open_conn(&mut stream, peer, &conn).await else {
                return;
            };
            // Built in a block: what goes into the connection's future does
            // not also keep a place of its own in this task's state.
            // The closures borrow what this task owns for its whole life
            // (a reference each) instead of keeping copies of their own.
            let served = {
                let io = ZeroCopyStream::new(stream, conn.sendfile_bytes);
                let (h, peer, builder, stop, limits) = (&h, &peer, &builder, &stop, &conn.abuse);
                let with_hyper = move |io: Rewind<ZeroCopyStream>| {
                    serve_hyper(io, h.clone(), *peer, builder, stop.token().clone(), *limits)
                };
                match fast.as_deref() {
                    Some(f) => {
                        // The pipeline's own future, nothing around it: `h1::serve`
                        // makes it in its box.
                        let handler = move |req| {
                            let info = ConnInfo {
                                peer: *peer,
                                scheme: f.scheme,
                                // `h1::serve` writes its responses.
                                wire_heads: true,
                            };
                            f.proxy.handle(req, info)
                        };
                        // A connection the own HTTP/1 path gives up: HTTP/2 by prior
                        // knowledge (RFC 9113 §3.3) to the own HTTP/2 server, the rest
                        // to hyper.
                        // Each boxed on its own: an HTTP/2 connection does not keep
                        // room for hyper's larger state.
                        let give_up = move |io: Rewind<ZeroCopyStream>| match &f.h2 {
                            Some((s, h2h)) if io.prefix().starts_with(super::h2::PREFACE) => {
                                Either::Left(Box::pin(super::h2::serve(
                                    io,
                                    h2h.clone(),
                                    *peer,
                                    *s,
                                    stop.token().clone(),
                                    *limits,
                                )))
                            }
                            _ => Either::Right(Box::pin(with_hyper(io))),
                        };
                        Either::Left(h1::serve(io, &f.settings, stop, handler, give_up))
                    }
                    // Boxed: inline, hyper's connection state would stay allocated in
                    // every connection's task, own-path ones included.
                    None => {
                        Either::Right(Box::pin(with_hyper(Rewind::new(bytes::Bytes::new(), io))))
                    }
                }
            };
            served.await;
        });
    }
    drop(listener);
    drain_all(tracker, drain).await
}

/// The next connection, or `None` once `cancel` fires. A failed accept
/// (EMFILE and friends) is logged and retried after a pause instead of
/// spinning.
pub(super) async fn accept(
    listener: &TcpListener,
    cancel: &CancellationToken,
    backoff: &mut fds::Backoff,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return None,
            r = listener.accept() => r,
        };
        let pause = match accepted {
            Ok(x) => {
                backoff.succeeded();
                return Some(x);
            }
            // Out of descriptors: stop accepting a while (one log line per
            // episode); open connections go on being served.
            Err(e) if fds::out_of_descriptors(&e) => backoff.failed(&e),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                Duration::from_millis(20)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return None,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Closes idle connections and waits for the others (up to `drain`);
/// returns whether every connection finished in time.
pub(super) async fn drain_all(tracker: tokio_util::task::TaskTracker, drain: Duration) -> bool {
    tracker.close();
    let all_done = async {
        tracker.wait().await;
    };
    match tokio::time::timeout(drain, all_done).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                ?drain,
                "drain timeout reached; closing remaining connections"
            );
            false
        }
    }
}

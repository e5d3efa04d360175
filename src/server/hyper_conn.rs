//! One connection served on hyper (HTTP/1.1 with upgrades, or HTTP/2 by
//! prior knowledge or ALPN on the admin listener and when
//! `server.fast_http2` is off; [`super::h2`] serves it otherwise), ended gracefully when the listener stops
//! (in-flight requests finish, HTTP/2 gets GOAWAY) and ended for abuse when
//! its client abuses it ([`super::abuse`]: rapid reset, control-frame
//! floods counted by [`super::h2_frames`], a window held shut): GOAWAY, a
//! short grace, then the socket is closed.
//!
//! It owns the connection's lifetime, not what its requests do.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio_util::sync::CancellationToken;

use super::abuse::{Limits, ResetMeter, Watched};
use super::h2_frames::Scanned;
use super::timer;
use crate::metrics::{Counters, Refusal};

/// How long an abusive or idle connection has after its GOAWAY before it is
/// closed.
const ABUSE_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection on hyper until it ends, `stop` fires (graceful) or
/// its client passes one of `limits`.
pub(super) fn serve_hyper<IO, F, Fut, B>(
    io: IO,
    handler: F,
    peer: SocketAddr,
    builder: &Builder<TokioExecutor>,
    stop: CancellationToken,
    limits: Limits,
) -> impl Future<Output = ()> + Send + 'static + use<IO, F, Fut, B>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let meter = ResetMeter::new(limits);
    let m = meter.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let h = handler.clone();
        let mut armed = m.arm();
        let (in_progress, n) = m.request();
        let m = m.clone();
        let http1 = req.version() < http::Version::HTTP_2;
        async move {
            let resp = h(req, peer).await;
            armed.disarm();
            let (mut parts, body) = resp.into_parts();
            // `keepalive_requests`: hyper closes an HTTP/1.1 connection
            // after a response that says so.
            let max = m.keepalive_requests();
            if http1 && max > 0 && n >= max {
                parts.headers.insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(Response::from_parts(
                parts,
                Watched::new(body, &m, in_progress),
            ))
        }
    });
    // One header-read timer per connection (server::timer).
    let mut conn_builder = builder.clone();
    conn_builder.http1().timer(timer::ConnTimer::new());
    let conn = conn_builder
        .serve_connection_with_upgrades(TokioIo::new(Scanned::new(io, meter.clone())), svc)
        .into_owned();
    async move {
        let mut conn = pin!(conn);
        let every = meter
            .stall_check_every()
            .min(limits.h2_idle_timeout / 4)
            .max(std::time::Duration::from_millis(50));
        let mut stalls = tokio::time::interval(every);
        stalls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            tokio::select! {
                r = conn.as_mut() => break Some(r),
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    break None;
                }
                _ = stalls.tick() => {
                    meter.check_stalls();
                    // An HTTP/2 connection with no request for its idle
                    // timeout gets GOAWAY and closes.
                    if let (Some(idle), Some(limit)) = (meter.idle_for(), meter.idle_limit())
                        && idle > limit
                    {
                        tracing::debug!(%peer, ?idle, "idle HTTP/2 connection closed");
                        conn.as_mut().graceful_shutdown();
                        // GOAWAY, then a moment for the client to read it.
                        match tokio::time::timeout(ABUSE_GRACE, conn.as_mut()).await {
                            Ok(r) => break Some(r),
                            Err(_) => return,
                        }
                    }
                }
                () = meter.abused() => {
                    Counters::global().refused(Refusal::H2Abuse);
                    tracing::warn!(%peer, reason = meter.why(), "connection ended for abuse");
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(ABUSE_GRACE, conn.as_mut()).await {
                        Ok(r) => break Some(r),
                        // Closed by dropping it.
                        Err(_) => return,
                    }
                }
            }
        };
        let r = match ended {
            Some(r) => r,
            None => conn.await,
        };
        if let Err(e) = r {
            if ended_for_abuse(&*e) {
                Counters::global().refused(Refusal::H2Abuse);
                tracing::warn!(%peer, "HTTP/2 client reset too many streams; connection ended");
            } else {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        }
    }
}

/// Whether h2 itself ended the connection for abuse: its GOAWAY with
/// ENHANCE_YOUR_CALM (streams reset before they were accepted, too many
/// local errors, a CONTINUATION or SETTINGS flood).
fn ended_for_abuse(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h2e) = err.downcast_ref::<h2::Error>() {
            return h2e.is_go_away()
                && h2e.is_library()
                && h2e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
        }
        cur = err.source();
    }
    false
}

//! The proxy listeners' own HTTP/2 server (RFC 9113), on the h2 crate
//! directly rather than through hyper, for what hyper's server cannot do:
//! send a request's interim responses (1xx, RFC 9110 §15.2; 103 Early
//! Hints, RFC 8297) before its final one. It serves connections that
//! negotiated `h2` over TLS and cleartext ones with the prior-knowledge
//! preface (§3.3), when `server.fast_http2` is on.
//!
//! Per connection: the h2 connection is driven by one task that accepts
//! streams, each served by a task of its own (the request's pipeline, its
//! 1xx, its response head and body under the client's flow control, as
//! hyper's pipe does). The abuse rules of [`super::abuse`] apply as on
//! hyper: control frames are counted on the bytes ([`super::h2_frames`]),
//! a stream reset before its response is done counts as cancelled, a
//! window held shut past `send_timeout` is a stall, and a connection with
//! no request for `h2_idle_timeout` gets GOAWAY. A stopping listener sends
//! GOAWAY and lets the streams in progress finish.
//!
//! It owns the HTTP/2 framing of requests and responses, not what the
//! pipeline does with them.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use tokio_util::sync::CancellationToken;

use super::abuse::{Limits, ResetMeter, Watched};
use super::h2_frames::Scanned;
use crate::metrics::{Counters, Refusal};
use crate::origin::interim::Interim;
use crate::proxy::RequestBody;
use crate::proxy::body::ProxyBody;

/// How long an abusive or idle connection has after its GOAWAY before it
/// is closed.
const GRACE: Duration = Duration::from_secs(1);

/// How a cleartext HTTP/2 connection's client preface starts (RFC 9113
/// §3.4): what the own HTTP/1 path has read of it when it gives up.
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2";

/// A request handler of the own HTTP/2 server.
pub(super) type Handler = Arc<
    dyn Fn(
            Request<RequestBody>,
            SocketAddr,
        ) -> Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>
        + Send
        + Sync,
>;

/// The server's settings, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub(super) max_concurrent_streams: u32,
    /// The largest request head taken (`Config::header_caps`).
    pub(super) max_header_list_size: u32,
    /// Until the client's preface and SETTINGS arrive.
    pub(super) handshake_timeout: Duration,
}

/// hyper's defaults, which clients were served with so far.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONN_WINDOW: u32 = 1024 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;

/// Serves one HTTP/2 connection until it ends, `stop` fires (graceful) or
/// its client passes one of `limits`.
pub(super) async fn serve<IO>(
    io: IO,
    handler: Handler,
    peer: SocketAddr,
    settings: Settings,
    stop: CancellationToken,
    limits: Limits,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let meter = ResetMeter::new(limits);
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(settings.max_header_list_size)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        // h2's own rapid-reset guard: streams reset before they are
        // accepted (the rest is counted per connection, super::abuse).
        .max_pending_accept_reset_streams(20);
    let handshake = builder.handshake::<_, Bytes>(Scanned::new(io, meter.clone()));
    let mut conn = match tokio::time::timeout(settings.handshake_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/2 handshake timed out");
            return;
        }
    };
    meter.set_h2();
    let every = meter
        .stall_check_every()
        .min(limits.h2_idle_timeout / 4)
        .max(Duration::from_millis(50));
    let mut stalls = tokio::time::interval(every);
    stalls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    // Past it, a connection told to go away is closed.
    let mut close_by: Option<tokio::time::Instant> = None;
    loop {
        let deadline = async {
            match close_by {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    tokio::spawn(stream(req, respond, handler.clone(), peer, meter.clone()));
                }
                Some(Err(e)) => {
                    if e.is_go_away()
                        && e.is_library()
                        && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)
                    {
                        Counters::global().refused(Refusal::H2Abuse);
                        tracing::warn!(%peer, "HTTP/2 client reset too many streams; connection ended");
                    } else {
                        tracing::debug!(%peer, error = %e, "HTTP/2 connection ended with an error");
                    }
                    return;
                }
                None => return,
            },
            () = stop.cancelled(), if !closing => {
                closing = true;
                conn.graceful_shutdown();
            }
            _ = stalls.tick() => {
                meter.check_stalls();
                if let (Some(idle), Some(limit)) = (meter.idle_for(), meter.idle_limit())
                    && idle > limit
                    && close_by.is_none()
                {
                    tracing::debug!(%peer, ?idle, "idle HTTP/2 connection closed");
                    conn.graceful_shutdown();
                    close_by = Some(tokio::time::Instant::now() + GRACE);
                }
            }
            () = meter.abused(), if close_by.is_none() => {
                Counters::global().refused(Refusal::H2Abuse);
                tracing::warn!(%peer, reason = meter.why(), "connection ended for abuse");
                conn.graceful_shutdown();
                close_by = Some(tokio::time::Instant::now() + GRACE);
            }
            () = deadline => return,
        }
    }
}

/// Serves one stream: the request's pipeline with its interim responses,
/// then the response head and body. A reset from the client drops the
/// pipeline (counted as cancelled).
async fn stream(
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    handler: Handler,
    peer: SocketAddr,
    meter: Arc<ResetMeter>,
) {
    let mut armed = meter.arm();
    let (in_progress, _) = meter.request();
    let req = req.map(|b| RequestBody::H2(crate::origin::request_body::H2Body::new(b)));
    let interim = Interim::default();
    // The interim responses' scope is entered around each poll (see
    // `Interim::enter`).
    let mut pipeline = pin!(handler(req, peer));
    // Taken apart as soon as it is made: a box would cost an allocation per request.
    #[allow(clippy::large_enum_variant)]
    enum Step {
        Done(Response<ProxyBody>),
        Interim,
        Reset,
    }
    let resp = loop {
        let step = poll_fn(|cx| {
            if let Poll::Ready(r) = interim.enter(|| pipeline.as_mut().poll(cx)) {
                return Poll::Ready(Step::Done(r));
            }
            if interim.poll_pending(cx) {
                return Poll::Ready(Step::Interim);
            }
            match respond.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(Step::Reset),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        send_interim(&mut respond, &interim);
        match step {
            Step::Done(r) => break r,
            Step::Interim => {}
            Step::Reset => return,
        }
    };
    armed.disarm();
    let (mut parts, body) = resp.into_parts();
    without_connection_fields(&mut parts.headers);
    if !parts.headers.contains_key(header::DATE) {
        parts
            .headers
            .insert(header::DATE, super::h1_head::date_value());
    }
    if !parts.headers.contains_key(header::CONTENT_LENGTH)
        && let Some(n) = body.size_hint().exact()
        && !body.is_end_stream()
    {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let body = Watched::new(body, &meter, in_progress);
    let end = body.is_end_stream();
    let head = Response::from_parts(parts, ());
    let tx = match respond.send_response(head, end) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 response head not sent");
            return;
        }
    };
    if !end && let Err(e) = pipe(body, tx).await {
        tracing::debug!(%peer, error = %e, "HTTP/2 response body not sent whole");
    }
}

/// RFC 9113 §8.2.2: no connection-specific fields in HTTP/2 (h2 refuses a
/// head with any), and `TE` only as `trailers`.
fn without_connection_fields(fields: &mut http::HeaderMap) {
    for n in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::HeaderName::from_static("keep-alive"),
        header::HeaderName::from_static("proxy-connection"),
    ] {
        fields.remove(n);
    }
    if fields.get(header::TE).is_some_and(|v| v != "trailers") {
        fields.remove(header::TE);
    }
}

/// Sends the interim responses queued for the stream (RFC 9113 §8.1: any
/// number of 1xx heads before the final one).
fn send_interim(respond: &mut h2::server::SendResponse<Bytes>, interim: &Interim) {
    for (status, fields) in interim.take() {
        if !status.is_informational() || status == http::StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        let mut r = Response::new(());
        *r.status_mut() = status;
        *r.headers_mut() = fields;
        without_connection_fields(r.headers_mut());
        if let Err(e) = respond.send_informational(r) {
            tracing::debug!(error = %e, "interim response not sent");
        }
    }
}

/// Streams `body` on `tx` as the client's flow-control window allows:
/// capacity is asked for before each piece is polled, so the body is read
/// only as fast as the client takes it (the stall rule counts on that).
async fn pipe(body: Watched<ProxyBody>, mut tx: h2::SendStream<Bytes>) -> Result<(), h2::Error> {
    let mut body = pin!(body);
    loop {
        tx.reserve_capacity(1);
        poll_fn(|cx| {
            loop {
                if tx.capacity() > 0 {
                    return match tx.poll_reset(cx) {
                        Poll::Ready(Ok(reason)) => Poll::Ready(Err(h2::Error::from(reason))),
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Ready(Ok(())),
                    };
                }
                match tx.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => {
                        return Poll::Ready(Err(h2::Error::from(h2::Reason::CANCEL)));
                    }
                    Poll::Pending => {
                        return match tx.poll_reset(cx) {
                            Poll::Ready(Ok(reason)) => Poll::Ready(Err(h2::Error::from(reason))),
                            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                            Poll::Pending => Poll::Pending,
                        };
                    }
                }
            }
        })
        .await?;
        let frame = poll_fn(|cx| match body.as_mut().poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(Ok(f)),
            Poll::Pending => match tx.poll_reset(cx) {
                Poll::Ready(Ok(reason)) => Poll::Ready(Err(h2::Error::from(reason))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        })
        .await?;
        match frame {
            None => return tx.send_data(Bytes::new(), true),
            Some(Ok(f)) => {
                let f = match f.into_data() {
                    Ok(d) => {
                        let end = body.is_end_stream();
                        tx.send_data(d, end)?;
                        if end {
                            return Ok(());
                        }
                        continue;
                    }
                    Err(f) => f,
                };
                if let Ok(t) = f.into_trailers() {
                    tx.reserve_capacity(0);
                    return tx.send_trailers(t);
                }
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; stream reset");
                tx.send_reset(h2::Reason::INTERNAL_ERROR);
                return Ok(());
            }
        }
    }
}

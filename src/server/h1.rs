//! The proxy listener's own HTTP/1.1 path for the requests a CDN node
//! mostly sees: `GET` and `HEAD` without content, on keep-alive
//! connections. Everything else is handed to hyper, with the bytes already
//! read put back ([`super::rewind`]): requests with content, `Expect`,
//! `Upgrade`, HTTP/1.0, HTTP/2 prior knowledge, heads that do not parse or
//! are too large (hyper answers 400 or 431 exactly as without this path).
//! A connection given up stays with hyper for the rest of its life.
//!
//! Why: hyper's HTTP/1 server (dispatcher, role encoding, its buffers and
//! the futures moved between them) was ~9,700 instructions per request
//! with a handler that answers at once, a quarter of a pass-through
//! request (benches/load/README.md). This path parses the head with
//! httparse into the same `http::Request`, calls the same handler, and
//! writes the response with one `write`/`writev` (or `sendfile` through
//! [`super::zero_copy`] on cleartext) per response. It serves the
//! cleartext listener and HTTP/1.1 over TLS alike.
//!
//! Rules kept (RFC 9112): persistent connections unless `Connection:
//! close` (§9.3); requests are answered in order, pipelined ones too
//! (§9.3.2); the response framing is `Content-Length` when the length is
//! known, chunked otherwise (§6.1, §6.2, §7.1); no content for `HEAD`,
//! 1xx, 204 and 304 (§6.3); the origin's 1xx for a request, and the
//! node's own Early Hints, are written while its pipeline waits, before
//! its final response ([`crate::origin::interim`]). A head must arrive within the header-read
//! timeout; a kept-alive connection waits up to the keep-alive timeout for
//! its next request, and is closed after `keepalive_requests` of them.

use std::future::{Future, poll_fn};
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use tokio::io::AsyncWriteExt;

use super::h1_write::{write_interim, write_response};
use super::rewind::Rewind;
use crate::deadline::Deadline;
use crate::origin::interim::Interim;
use crate::proxy::RequestBody;
use crate::proxy::body::ProxyBody;

/// Headers per request head, as hyper's default (more: hyper answers 431).
const MAX_HEADERS: usize = 100;
/// Read buffer of a connection, and what a read asks for at least.
/// How long a kept-alive connection waits for its next request before it gives its
/// read and write buffers back.
const IDLE_RELEASE: Duration = Duration::from_millis(100);

/// How long a kept-alive connection stays open once the node drains, for a request that
/// may already be on its way (answered, then closed).
const DRAIN_LINGER: Duration = Duration::from_millis(1000);
const READ_BUF: usize = 8192;
const READ_MIN: usize = 1024;

/// Limits of the own path, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request's
    /// first byte (then the head has `header_read_timeout`).
    pub keepalive_timeout: Duration,
    /// Requests on one connection before it is closed (0: no limit).
    pub keepalive_requests: u64,
    /// Largest head taken; a longer one goes to hyper (431).
    pub max_head: usize,
}

/// What a head in the read buffer is.
#[derive(Debug)]
// Returned once per request and taken apart at once; a box would cost an
// allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parsed {
    /// Incomplete: read more.
    Partial,
    /// A request this path takes, and whether it asked to close.
    /// Boxed: it moves from here through the connection to the pipeline,
    /// and a box moves in a register where the request would be copied.
    Take(Box<Request<RequestBody>>, bool),
    /// Anything else: hyper takes the connection.
    GiveUp,
}

/// Parses the head at the start of `buf`; a taken head is removed from it.
pub(crate) fn parse(buf: &mut BytesMut) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::GiveUp,
    };
    // HTTP/1.0 keep-alive rules and bodies stay with hyper.
    if req.version != Some(1) {
        return Parsed::GiveUp;
    }
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Parsed::GiveUp,
    };
    let Some(path) = req.path else {
        return Parsed::GiveUp;
    };
    // One copy of the head that every field value then shares.
    let base = buf.as_ptr() as usize;
    let head = Bytes::copy_from_slice(&buf[..len]);
    let slice = |s: &[u8]| {
        let at = s.as_ptr() as usize - base;
        head.slice(at..at + s.len())
    };
    let Ok(uri) = Uri::from_maybe_shared(slice(path.as_bytes())) else {
        return Parsed::GiveUp;
    };
    // Room for what the pipeline adds (Via, X-Forwarded-*) without a
    // rehash of the map.
    let mut headers = HeaderMap::with_capacity(req.headers.len() + 3);
    let mut close = false;
    for h in req.headers.iter() {
        let Some(name) = request_name(h.name.as_bytes()) else {
            return Parsed::GiveUp;
        };
        // RFC 9112 §6: content (or a promise of it) and protocol changes
        // are hyper's.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
        {
            return Parsed::GiveUp;
        }
        // RFC 9112 §9.6: `close` ends the connection after this response.
        if name == header::CONNECTION && has_close(h.value) {
            close = true;
        }
        let Ok(value) = HeaderValue::from_maybe_shared(slice(h.value)) else {
            return Parsed::GiveUp;
        };
        headers.append(name, value);
    }
    buf.advance(len);
    let mut r = Box::new(Request::new(RequestBody::Empty));
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    *r.version_mut() = Version::HTTP_11;
    *r.headers_mut() = headers;
    Parsed::Take(r, close)
}

/// Canonical spellings of the fields clients send most, by name length.
fn request_names(len: usize) -> &'static [(&'static [u8], HeaderName)] {
    use http::header::*;
    match len {
        4 => &[(b"Host", HOST)],
        5 => &[(b"Range", RANGE)],
        6 => &[
            (b"Accept", ACCEPT),
            (b"Cookie", COOKIE),
            (b"Origin", ORIGIN),
            (b"Pragma", PRAGMA),
        ],
        7 => &[(b"Referer", REFERER), (b"Upgrade", UPGRADE)],
        10 => &[(b"User-Agent", USER_AGENT), (b"Connection", CONNECTION)],
        13 => &[
            (b"Cache-Control", CACHE_CONTROL),
            (b"If-None-Match", IF_NONE_MATCH),
            (b"Authorization", AUTHORIZATION),
        ],
        14 => &[(b"Content-Length", CONTENT_LENGTH)],
        15 => &[
            (b"Accept-Encoding", ACCEPT_ENCODING),
            (b"Accept-Language", ACCEPT_LANGUAGE),
        ],
        17 => &[
            (b"If-Modified-Since", IF_MODIFIED_SINCE),
            (b"Transfer-Encoding", TRANSFER_ENCODING),
        ],
        _ => &[],
    }
}

/// A request's field name (as [`HeaderName::from_bytes`] reads it): the
/// common ones from a table (~110 instructions fewer a field), the rest
/// through `from_bytes`.
fn request_name(raw: &[u8]) -> Option<HeaderName> {
    match crate::fields::find_name(raw, request_names(raw.len()), |c| c.0) {
        Some((_, name)) => Some(name.clone()),
        None => HeaderName::from_bytes(raw).ok(),
    }
}

/// Whether a `Connection` value lists `close`.
pub(crate) fn has_close(v: &[u8]) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

enum Wait {
    Read(std::io::Result<usize>),
    Timeout,
    Shutdown,
}

/// Serves one client connection: requests this path takes are answered by
/// `handler`; at the first it does not take, the connection (with what
/// was read of it) goes to `give_up`, which serves it with hyper.
///
/// Its state is what an idle connection costs, so it is kept small: an
/// `async` block rather than an `async fn` (whose arguments would be stored
/// twice), and nothing large (a parsed head, a request) held across an
/// `.await` (a moved-out local keeps its place until its scope ends).
#[allow(clippy::manual_async_fn)] // see above: an `async fn` would be larger
pub(crate) fn serve<'a, IO, H, HF, G, GF>(
    mut io: IO,
    settings: &'a Settings,
    shutdown: &'a super::stop::Stop,
    handler: H,
    give_up: G,
) -> impl Future<Output = ()>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    H: Fn(Box<Request<RequestBody>>) -> HF,
    HF: Future<Output = Response<ProxyBody>>,
    G: FnOnce(Rewind<IO>) -> GF,
    GF: Future<Output = ()>,
{
    async move {
        let mut rbuf = BytesMut::with_capacity(READ_BUF);
        let mut wbuf = Vec::with_capacity(1024);
        let mut deadline: Option<Deadline> = None;
        let mut cancelled = pin!(shutdown.token().cancelled());
        // Whether `cancelled` was polled (its waiter holds this task's waker).
        let mut registered = false;
        let mut served: u64 = 0;
        let mut interim: Option<Interim> = None;
        // The last request's pipeline future, finished: its box is used
        // again for the next request, as the buffers are (a box this
        // large is no small allocation: a fresh one per request cost
        // ~500 instructions in the allocator), and given back with them.
        let mut spare: Option<Pin<Box<HF>>> = None;
        let at = |t: Duration| tokio::time::Instant::from_std(crate::clock::coarse_now() + t);
        loop {
            // A new connection has the header-read timeout for its first head;
            // a kept-alive one waits up to the keep-alive timeout for the next
            // request's first byte, then has the header-read timeout.
            let waiting = served > 0 && rbuf.is_empty();
            // A kept-alive connection that stays idle past `IDLE_RELEASE` gives its
            // buffers back to the allocator (whose free lists are the pool) and waits
            // without one; the next request's first bytes bring them back. A busy one
            // keeps them: no allocation per request.
            let release_at = waiting.then(|| IDLE_RELEASE.min(settings.keepalive_timeout));
            let first = match release_at {
                Some(r) => r,
                None => settings.header_read_timeout,
            };
            match deadline.as_mut() {
                Some(d) => d.set(at(first)),
                None => deadline = Some(Deadline::new(at(first))),
            }
            let mut keepalive_wait = waiting;
            let mut lingering = false;
            let (pipeline, head_only, close) = loop {
                if !rbuf.is_empty() {
                    let give = match parse(&mut rbuf) {
                        // The request goes into the pipeline's (boxed) future here:
                        // it is not kept in this state while that runs.
                        Parsed::Take(r, close) => {
                            let head_only = r.method() == Method::HEAD;
                            // The request's 1xx heads (RFC 9110 §15.2) are written
                            // while its pipeline waits.
                            interim.get_or_insert_with(Interim::default).reset();
                            // Made in its box: a future this large moved into one
                            // would be copied whole, on every request.
                            let pipeline = match spare.take() {
                                Some(mut b) => {
                                    b.set(handler(r));
                                    b
                                }
                                None => Box::into_pin(Box::write(Box::new_uninit(), handler(r))),
                            };
                            break (pipeline, head_only, close);
                        }
                        Parsed::Partial => rbuf.len() >= settings.max_head,
                        Parsed::GiveUp => true,
                    };
                    if give {
                        return Box::pin(give_up(Rewind::new(rbuf.freeze(), io))).await;
                    }
                }
                // No capacity: idle, waiting for a byte without a buffer.
                let bufferless = rbuf.capacity() == 0;
                if !bufferless && rbuf.capacity() - rbuf.len() < READ_MIN {
                    rbuf.reserve(READ_BUF);
                }
                let idle = rbuf.is_empty();
                let wait = poll_fn(|cx| {
                    let read = if bufferless {
                        probe_read(&mut io, cx, &mut rbuf)
                    } else {
                        tokio_util::io::poll_read_buf(Pin::new(&mut io), cx, &mut rbuf)
                    };
                    if let Poll::Ready(r) = read {
                        return Poll::Ready(Wait::Read(r));
                    }
                    // Graceful shutdown closes idle connections only. The
                    // token is polled once, which registers this task with
                    // it; the flag, set before it wakes anyone, says the rest
                    // (polled again, it takes locks every connection shares).
                    if idle && !lingering {
                        let stopped = if registered {
                            shutdown.is_stopped()
                        } else {
                            registered = true;
                            cancelled.as_mut().poll(cx).is_ready()
                        };
                        if stopped {
                            return Poll::Ready(Wait::Shutdown);
                        }
                    }
                    match deadline.as_mut().map(|d| d.poll_expired(cx)) {
                        Some(Poll::Ready(())) => Poll::Ready(Wait::Timeout),
                        _ => Poll::Pending,
                    }
                })
                .await;
                match wait {
                    Wait::Shutdown if served > 0 => {
                        // A kept-alive client may be sending its next request right now: a
                        // close would lose it (RFC 9112 §9.6). Linger a moment instead; a
                        // request that comes is answered with `Connection: close`.
                        lingering = true;
                        if let Some(d) = deadline.as_mut() {
                            d.set(at(DRAIN_LINGER.min(settings.keepalive_timeout)));
                        }
                    }
                    Wait::Read(Ok(0)) | Wait::Shutdown => return,
                    Wait::Read(Ok(_)) => {
                        if keepalive_wait {
                            keepalive_wait = false;
                            if let Some(d) = deadline.as_mut() {
                                d.set(at(settings.header_read_timeout));
                            }
                        }
                    }
                    Wait::Read(Err(e)) => {
                        tracing::debug!(error = %e, "client connection read failed");
                        return;
                    }
                    Wait::Timeout if keepalive_wait && !lingering && rbuf.capacity() > 0 => {
                        rbuf = BytesMut::new();
                        wbuf = Vec::new();
                        interim = None;
                        spare = None;
                        let rest = settings
                            .keepalive_timeout
                            .saturating_sub(release_at.unwrap_or_default());
                        if let Some(d) = deadline.as_mut() {
                            d.set(at(rest));
                        }
                    }
                    Wait::Timeout => {
                        if !idle {
                            tracing::debug!("client sent no complete request head in time");
                        }
                        return;
                    }
                }
            };
            // Boxed: the pipeline's future is many times the size of this loop's own
            // state, and inline it would stay allocated while the connection idles.
            let mut pipeline = pipeline;
            // The final response is never held across an await here: it would
            // take room in every connection's state, idle ones included.
            let (resp, heads) = loop {
                // In a block of its own: `step` (a response's size) must not be
                // live across the interim write's await below, or it takes room
                // in every connection's state, idle ones included.
                let heads = {
                    let step = poll_fn(|cx| {
                        let Some(i) = interim.as_ref() else {
                            return pipeline.as_mut().poll(cx).map(Some);
                        };
                        match i.enter(|| pipeline.as_mut().poll(cx)) {
                            Poll::Ready(r) => Poll::Ready(Some(r)),
                            Poll::Pending if i.poll_pending(cx) => Poll::Ready(None),
                            Poll::Pending => Poll::Pending,
                        }
                    })
                    .await;
                    let heads = interim.as_ref().map(Interim::take).unwrap_or_default();
                    match step {
                        Some(r) => break (r, heads),
                        None => heads,
                    }
                };
                // Boxed: rare, and its state would take room in every connection's.
                if let Err(e) = Box::pin(write_interim(&mut io, &mut wbuf, heads)).await {
                    tracing::debug!(error = %e, "client connection write failed");
                    return;
                }
            };
            // Finished (its state dropped); the box waits for the next request.
            spare = Some(pipeline);
            served += 1;
            let keep = !close
                && !shutdown.is_stopped()
                && (settings.keepalive_requests == 0 || served < settings.keepalive_requests);
            match Box::pin(write_response(
                &mut io, &mut wbuf, resp, head_only, keep, heads,
            ))
            .await
            {
                Ok(true) => {}
                Ok(false) => {
                    let _ = io.shutdown().await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "client connection write failed");
                    return;
                }
            }
        }
    }
}

/// A read for a connection that holds no buffer: into a small buffer on the stack (not
/// kept in the connection's state while it waits), copied into a new read buffer when
/// bytes arrive.
fn probe_read<IO: tokio::io::AsyncRead + Unpin>(
    io: &mut IO,
    cx: &mut std::task::Context<'_>,
    rbuf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    let mut probe = [0u8; 512];
    let mut rb = tokio::io::ReadBuf::new(&mut probe);
    match Pin::new(io).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => {
            let got = rb.filled();
            if !got.is_empty() {
                rbuf.reserve(READ_BUF);
                rbuf.extend_from_slice(got);
            }
            Poll::Ready(Ok(got.len()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;

//! A lean HTTP/1.1 client for origin exchanges (RFC 9112), in the way
//! Pingora has its own: the request's task writes the request head to a
//! pooled connection and reads the response itself, with no connection
//! task, no channels between tasks and no second HTTP state machine.
//!
//! It carries every origin request without content and without an upgrade
//! (all cache fills and revalidations, and most pass-through). Requests
//! with content and protocol upgrades go through hyper's client, which
//! streams request bodies and hands over upgraded connections.
//!
//! Framing of the response follows RFC 9112 §6.3 ([`super::h1_body`]). A
//! connection returns to its origin's idle list only after a complete,
//! well-framed response that did not ask to close.

use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, Method, Response, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Origin;
use super::h1_body::{Framing, H1Body};
use super::h1_head::{Head, parse_head};
use super::headers::Forwarding;
pub use super::stream::OriginStream;
use crate::deadline::Deadline;
use crate::error::{Error, ErrorKind};

/// Largest response head accepted from an origin.
pub const MAX_HEAD: usize = 64 * 1024;
/// Bytes reserved for each read of a response head.
const HEAD_READ: usize = 8 * 1024;

/// One open connection to an origin and the bytes read from it so far.
#[derive(Debug)]
pub struct Conn {
    pub(super) io: OriginStream,
    pub(super) buf: BytesMut,
    /// The response-header deadline, kept armed between exchanges.
    deadline: Deadline,
}

/// How idle connections are kept.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Idle connections kept per origin.
    pub max_idle: usize,
    /// How long an idle connection may wait for reuse.
    pub idle_timeout: Duration,
}

impl PoolLimits {
    /// The idle timeout in milliseconds.
    fn idle_ms(self) -> u64 {
        u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

/// An origin's idle keep-alive connections, newest last, each with the
/// time it was put there ([`crate::clock::coarse_millis`]: compared with
/// the idle timeout only, so no `Instant` is made per request).
#[derive(Debug, Default)]
pub struct IdleConns {
    conns: Mutex<Vec<(Conn, u64)>>,
}

impl IdleConns {
    fn lock(&self) -> MutexGuard<'_, Vec<(Conn, u64)>> {
        // A panic while holding the lock leaves a valid Vec behind.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used connection that has not idled too long
    /// (`now`: coarse milliseconds).
    fn take(&self, limits: PoolLimits, now: u64) -> Option<Conn> {
        let mut conns = self.lock();
        while let Some((c, at)) = conns.pop() {
            if now.saturating_sub(at) < limits.idle_ms() {
                return Some(c);
            }
        }
        None
    }

    /// Keeps `conn` for reuse, first closing connections past the idle
    /// timeout (the oldest are first).
    pub(super) fn put(&self, mut conn: Conn, limits: PoolLimits) {
        let now = crate::clock::coarse_millis();
        let mut conns = self.lock();
        drop_expired(&mut conns, limits, now);
        if conns.len() < limits.max_idle {
            // Do not pin a large read buffer (or the body chunk it shares
            // an allocation with) while idle.
            if conn.buf.capacity() > 2 * HEAD_READ {
                conn.buf = BytesMut::new();
            }
            conns.push((conn, now));
        }
    }

    /// Closes the connections that idled past the timeout. Without it an
    /// origin that gets no more requests would keep its idle connections
    /// (up to `max_idle`, each a descriptor, and in `CLOSE_WAIT` once the
    /// origin closes its end) until the node stops; the node calls this
    /// periodically (through [`super::Pool::sweep_idle`]).
    pub(super) fn sweep(&self, limits: PoolLimits, now: u64) -> usize {
        drop_expired(&mut self.lock(), limits, now)
    }

    /// Number of idle connections (the tests check pooling with it).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Closes the connections of `conns` (oldest first) that idled past the
/// timeout; returns how many.
fn drop_expired(conns: &mut Vec<(Conn, u64)>, limits: PoolLimits, now: u64) -> usize {
    let idle = limits.idle_ms();
    let expired = conns
        .iter()
        .take_while(|(_, at)| now.saturating_sub(*at) >= idle)
        .count();
    conns.drain(..expired);
    expired
}

/// The client: connection settings shared by every origin.
#[derive(Debug, Clone, Copy)]
pub struct H1Client {
    pub connect_timeout: Duration,
    /// From the start of [`H1Client::send`] to the final response head,
    /// connecting included.
    pub response_header_timeout: Duration,
    pub limits: PoolLimits,
}

/// Why an exchange failed, and whether it failed before the origin sent
/// anything (so that a stale pooled connection can be retried).
enum Failure {
    /// Writing failed or the connection closed before a response byte.
    BeforeResponse(io::Error),
    Io(io::Error),
    Protocol(String),
    /// The response-header deadline passed.
    Timeout,
}

impl H1Client {
    /// Sends a request without content and returns the response head with
    /// its streaming body, within the connect and response-header timeouts.
    pub async fn send(
        &self,
        origin: &Arc<Origin>,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        fwd: &Forwarding<'_>,
        drop_fields: &[HeaderName],
    ) -> Result<Response<H1Body>, Error> {
        let head = encode_head(method, path_and_query, headers, fwd);
        // A tick early at worst (crate::clock).
        let (now, now_ms) = crate::clock::coarse_now_and_millis();
        let deadline = Instant::from_std(now) + self.response_header_timeout;
        if let Some(conn) = origin.idle.take(self.limits, now_ms) {
            match exchange(conn, &head, deadline, drop_fields).await {
                Ok((conn, resp)) => return self.respond(origin, conn, resp, method),
                // RFC 9112 §9.3.1: the origin may close an idle connection
                // at any time. A request it never answered is retried on a
                // new connection when it is idempotent (RFC 9110 §9.2.2).
                Err(Failure::BeforeResponse(e)) if is_idempotent(method) => {
                    tracing::debug!(origin = %origin.url, error = %e, "stale pooled connection, retrying");
                    crate::metrics::Counters::global().origin_stale_retry();
                }
                Err(f) => return Err(self.failure(origin, f)),
            }
        }
        // Boxed: a connect's state (most of this future's) stays out of
        // every request's future, as most requests find an idle connection.
        let conn = Box::pin(self.connect(origin, deadline)).await?;
        match exchange(conn, &head, deadline, drop_fields).await {
            Ok((conn, resp)) => self.respond(origin, conn, resp, method),
            Err(f) => Err(self.failure(origin, f)),
        }
    }

    /// Builds the response and its body; a body-less response gives the
    /// connection back at once.
    fn respond(
        &self,
        origin: &Arc<Origin>,
        conn: Conn,
        mut head: Head,
        method: &Method,
    ) -> Result<Response<H1Body>, Error> {
        let framing = match head.plain_length {
            Some(n) if !head.transfer_encoding => Ok(Framing::of_length(method, head.status, n)),
            _ => Framing::of(method, head.status, &head.headers),
        }
        .map_err(|e| Error::new(ErrorKind::OriginProtocol, format!("{}: {e}", origin.url)))?;
        let mut codings = Vec::new();
        if head.transfer_encoding {
            // Codings other than chunked are taken off the body (a HEAD,
            // 204 or 304 has none to take off).
            if !matches!(framing, Framing::Length(0)) {
                codings = super::transfer::parse(&head.headers)
                    .ok()
                    .flatten()
                    .map(|c| c.decode)
                    .unwrap_or_default();
            }
            // Hop-by-hop (RFC 9110 §7.6.1); the body is decoded here.
            head.headers.remove(header::TRANSFER_ENCODING);
        }
        let keep_alive = head.connection.keeps_alive(head.version) && framing.reusable();
        let mut body = H1Body::new(conn, framing, keep_alive, origin.clone(), self.limits);
        body.set_codings(codings);
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }

    /// Opens a new connection within the connect timeout (and before the
    /// response-header `deadline`).
    async fn connect(&self, origin: &Origin, deadline: Instant) -> Result<Conn, Error> {
        let auth = &origin.url.authority;
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        let port = origin.url.port();
        let attempt = async {
            let mut last = None;
            for addr in tokio::net::lookup_host((host, port)).await? {
                match TcpStream::connect(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
        };
        let connect_by = Instant::now() + self.connect_timeout;
        let io = match tokio::time::timeout_at(connect_by.min(deadline), attempt).await {
            Err(_) if deadline < connect_by => return Err(self.failure(origin, Failure::Timeout)),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::OriginConnectTimeout,
                    format!(
                        "{}: connect timed out after {:?}",
                        origin.url, self.connect_timeout
                    ),
                ));
            }
            Ok(Err(e)) => {
                let kind = match e.kind() {
                    io::ErrorKind::ConnectionRefused => ErrorKind::OriginRefused,
                    io::ErrorKind::TimedOut => ErrorKind::OriginConnectTimeout,
                    _ => ErrorKind::OriginUnreachable,
                };
                return Err(
                    Error::new(kind, format!("{}: connect: {e}", origin.url)).with_source(e)
                );
            }
            Ok(Ok(s)) => s,
        };
        // Small heads must not wait for ACKs (RFC 9112 leaves this to us).
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY on an origin connection");
        }
        if let Err(e) = rustix::net::sockopt::set_socket_keepalive(&io, true)
            .and_then(|()| rustix::net::sockopt::set_tcp_keepidle(&io, Duration::from_secs(60)))
        {
            tracing::debug!(error = %e, "TCP keepalive on an origin connection");
        }
        crate::metrics::Counters::global().origin_connect();
        let io = match (&origin.tls, origin.url.is_https()) {
            (_, false) => OriginStream::Plain(io),
            (None, true) => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("{}: an https origin without TLS settings", origin.url),
                ));
            }
            (Some(tls), true) => {
                let name = match &tls.server_name {
                    Some(n) => n.clone(),
                    None => rustls_pki_types::ServerName::try_from(
                        origin
                            .url
                            .authority
                            .host()
                            .trim_matches(['[', ']'])
                            .to_owned(),
                    )
                    .map_err(|e| {
                        Error::new(ErrorKind::OriginProtocol, format!("{}: {e}", origin.url))
                    })?,
                };
                let connecting =
                    tokio_rustls::TlsConnector::from(tls.config.clone()).connect(name, io);
                match tokio::time::timeout_at(deadline, connecting).await {
                    Err(_) => return Err(self.failure(origin, Failure::Timeout)),
                    Ok(Err(e)) => return Err(super::tls::handshake_error(&origin.url, e)),
                    Ok(Ok(s)) => OriginStream::Tls(Box::new(s)),
                }
            }
        };
        Ok(Conn {
            io,
            buf: BytesMut::with_capacity(HEAD_READ),
            deadline: Deadline::new(deadline),
        })
    }

    /// Our error for a failed exchange.
    fn failure(&self, origin: &Origin, f: Failure) -> Error {
        match f {
            Failure::BeforeResponse(e) => {
                Error::new(ErrorKind::OriginReset, format!("{}: {e}", origin.url)).with_source(e)
            }
            Failure::Io(e) => {
                Error::new(ErrorKind::OriginProtocol, format!("{}: {e}", origin.url)).with_source(e)
            }
            Failure::Protocol(m) => {
                Error::new(ErrorKind::OriginProtocol, format!("{}: {m}", origin.url))
            }
            Failure::Timeout => Error::new(
                ErrorKind::OriginResponseTimeout,
                format!(
                    "{}: no response head within {:?}",
                    origin.url, self.response_header_timeout
                ),
            ),
        }
    }
}

/// Writes the request head and reads the final response head, handing
/// interim (1xx) responses to [`super::interim`], before `deadline`.
/// Fields named in `drop_fields` are left out of the heads read.
async fn exchange(
    mut conn: Conn,
    head: &[u8],
    deadline: Instant,
    drop_fields: &[HeaderName],
) -> Result<(Conn, Head), Failure> {
    conn.deadline.set(deadline);
    let head = {
        let Conn { io, buf, deadline } = &mut conn;
        let mut io_done = pin!(exchange_io(io, buf, head, drop_fields));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = io_done.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            deadline.poll_expired(cx).map(|()| Err(Failure::Timeout))
        })
        .await?
    };
    Ok((conn, head))
}

/// [`exchange`]'s reads and writes.
async fn exchange_io(
    stream: &mut OriginStream,
    buf: &mut BytesMut,
    head: &[u8],
    drop_fields: &[HeaderName],
) -> Result<Head, Failure> {
    // Nothing of a response arrived: the origin may not have seen the
    // request (a pooled connection it closed) or dropped it.
    let stale = Failure::BeforeResponse;
    stream.write_all(head).await.map_err(stale)?;
    let mut received = false;
    loop {
        if !buf.is_empty() {
            if let Some(h) = parse_head(buf, drop_fields).map_err(Failure::Protocol)? {
                // RFC 9110 §15.2: interim responses precede the final one;
                // 101 is final only for an upgrade, which is not sent here.
                if h.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(Failure::Protocol("101 to a request without Upgrade".into()));
                }
                if h.status.is_informational() {
                    // Forwarded to the client before the final response
                    // (RFC 9110 §15.2), never stored.
                    super::interim::from_origin(h.status, h.headers);
                    continue;
                }
                return Ok(h);
            }
            if buf.len() >= MAX_HEAD {
                return Err(Failure::Protocol(format!(
                    "response head larger than {MAX_HEAD} bytes"
                )));
            }
        }
        buf.reserve(HEAD_READ);
        match stream.read_buf(buf).await {
            Ok(0) if !received => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "closed before responding");
                return Err(stale(e));
            }
            Ok(0) => return Err(Failure::Protocol("closed in the response head".into())),
            Ok(_) => received = true,
            Err(e) if !received => return Err(stale(e)),
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

/// The request head: request line, the caller's fields (already free of
/// hop-by-hop fields) and framing for an empty body (RFC 9112 §6.3).
fn encode_head(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    fwd: &Forwarding<'_>,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(160 + path_and_query.len() + headers.len() * 40);
    b.extend_from_slice(method.as_str().as_bytes());
    b.push(b' ');
    b.extend_from_slice(path_and_query.as_bytes());
    b.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || Forwarding::replaces(name)
        {
            continue;
        }
        b.extend_from_slice(name.as_str().as_bytes());
        b.extend_from_slice(b": ");
        b.extend_from_slice(value.as_bytes());
        b.extend_from_slice(b"\r\n");
    }
    fwd.write_fields(headers, &mut b);
    // RFC 9110 §8.6: a method that defines content sends a zero length.
    if !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    ) {
        b.extend_from_slice(b"content-length: 0\r\n");
    }
    b.extend_from_slice(b"\r\n");
    b
}

/// RFC 9110 §9.2.2.
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;

//! The body of a response read by [`super::h1`]: framing by
//! `Content-Length`, chunked coding or connection close (RFC 9112 §6.3),
//! read by whichever task polls the body. The connection goes back to its
//! origin's idle list the moment the last byte of a keep-alive response
//! is read, before that byte reaches the client.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes};
use http::{HeaderMap, Method, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use tokio_util::io::poll_read_buf;

use super::Origin;
use super::h1::{Conn, PoolLimits};
use crate::error::BoxError;

/// Largest chunk-size line or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;
/// Bytes reserved for a body read. It adapts as hyper's does: it doubles
/// after a read that filled it and halves after one that used less than
/// half. Each chunk handed on shares its read buffer's allocation, so a
/// small read into a large buffer would pin the whole buffer for as long
/// as the chunk lives (in a fill's window, for instance).
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;

/// How the response's end is found (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No content (HEAD, 1xx, 204, 304), or `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding (§7.1).
    Chunked,
    /// Until the origin closes the connection (§6.3 item 7).
    Close,
}

impl Framing {
    /// The framing of a response to `method` with `status` and `headers`.
    pub fn of(method: &Method, status: StatusCode, headers: &HeaderMap) -> Result<Framing, String> {
        if Self::bodiless(method, status) {
            return Ok(Framing::Length(0));
        }
        // §6.3 item 3: Transfer-Encoding with Content-Length may be a
        // smuggling attempt (§6.1): refused rather than guessed at. Item 4:
        // the body ends with its last chunk when chunked is the last
        // coding, else when the origin closes; the other codings are taken
        // off by `transfer` (one it cannot remove is refused).
        if headers.contains_key(header::TRANSFER_ENCODING) {
            if headers.contains_key(header::CONTENT_LENGTH) {
                return Err("both Transfer-Encoding and Content-Length".into());
            }
            return match super::transfer::parse(headers)? {
                Some(c) if c.chunked_last => Ok(Framing::Chunked),
                _ => Ok(Framing::Close),
            };
        }
        // §6.3 item 5: every Content-Length must agree and be valid.
        let mut len = None;
        for v in headers.get_all(header::CONTENT_LENGTH) {
            for part in v.to_str().map_err(|_| "bad Content-Length")?.split(',') {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("bad Content-Length {part:?}"));
                }
                let n: u64 = part.parse().map_err(|_| "Content-Length too large")?;
                if len.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length values".into());
                }
                len = Some(n);
            }
        }
        Ok(len.map_or(Framing::Close, Framing::Length))
    }

    /// The framing of a response whose only `Content-Length` is `n` and
    /// that has no `Transfer-Encoding`: what [`Framing::of`] finds for it.
    pub fn of_length(method: &Method, status: StatusCode, n: u64) -> Framing {
        if Self::bodiless(method, status) {
            Framing::Length(0)
        } else {
            Framing::Length(n)
        }
    }

    /// RFC 9112 §6.3 item 1: responses that never have content.
    fn bodiless(method: &Method, status: StatusCode) -> bool {
        *method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
    }

    /// Whether the connection can carry another exchange after this body.
    pub fn reusable(self) -> bool {
        self != Framing::Close
    }
}

/// Where the chunked decoder is (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers(usize),
    Close,
    Done,
}

/// A streaming response body from an origin connection.
#[derive(Debug)]
pub struct H1Body {
    conn: Option<Conn>,
    state: State,
    keep_alive: bool,
    origin: Arc<Origin>,
    limits: PoolLimits,
    /// The size of the next read (adaptive, see [`MIN_READ`]).
    next_read: usize,
    /// Transfer codings besides chunked, for `transfer` to take off.
    codings: Vec<super::transfer::TransferCoding>,
}

impl H1Body {
    pub(super) fn new(
        conn: Conn,
        framing: Framing,
        keep_alive: bool,
        origin: Arc<Origin>,
        limits: PoolLimits,
    ) -> H1Body {
        let state = match framing {
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        let mut body = H1Body {
            conn: Some(conn),
            state,
            keep_alive,
            origin,
            limits,
            next_read: MIN_READ,
            codings: Vec::new(),
        };
        if matches!(body.state, State::Length(0)) {
            body.finish();
        }
        body
    }

    /// The transfer codings to take off this body (set by the client).
    pub(super) fn set_codings(&mut self, codings: Vec<super::transfer::TransferCoding>) {
        self.codings = codings;
    }

    /// Takes the codings out (the body is then wrapped in their decoders).
    pub(super) fn take_codings(&mut self) -> Vec<super::transfer::TransferCoding> {
        std::mem::take(&mut self.codings)
    }

    /// The body is complete: keep the connection if it is clean.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            // Bytes after the body break the framing: do not reuse.
            && conn.buf.is_empty()
        {
            self.origin.idle.put(conn, self.limits);
        }
    }

    /// Advances the decoder over buffered bytes: `Some` with a data frame
    /// or the end, `None` when more bytes must be read.
    fn decode(&mut self) -> Option<Result<Option<Bytes>, BoxError>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Some(Ok(None));
            };
            let buf = &mut conn.buf;
            match self.state {
                State::Done => return Some(Ok(None)),
                State::Length(0) => {
                    self.finish();
                    return Some(Ok(None));
                }
                State::Length(rem) => {
                    if buf.is_empty() {
                        return None;
                    }
                    let n = rem.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = State::Length(rem - n);
                    if rem == n {
                        self.finish();
                    }
                    return Some(Ok(Some(data)));
                }
                State::Close => {
                    if buf.is_empty() {
                        return None;
                    }
                    return Some(Ok(Some(buf.split().freeze())));
                }
                State::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 {
                            State::Trailers(0)
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => return None,
                    _ => return Some(Err(protocol("malformed chunk size line"))),
                },
                State::ChunkData(rem) => {
                    if buf.is_empty() {
                        return None;
                    }
                    let n = rem.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = if rem == n {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(rem - n)
                    };
                    return Some(Ok(Some(data)));
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return None;
                    }
                    if &buf[..2] != b"\r\n" {
                        return Some(Err(protocol("chunk data not followed by CRLF")));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                // RFC 9112 §7.1.2: trailer fields are read and dropped
                // (none of them is forwarded or stored).
                State::Trailers(seen) => {
                    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if seen + buf.len() > MAX_TRAILERS {
                            return Some(Err(protocol("trailer section too large")));
                        }
                        return None;
                    };
                    buf.advance(eol + 2);
                    if eol == 0 {
                        self.finish();
                        return Some(Ok(None));
                    }
                    if seen + eol > MAX_TRAILERS {
                        return Some(Err(protocol("trailer section too large")));
                    }
                    self.state = State::Trailers(seen + eol + 2);
                }
            }
        }
    }

    /// How much to read next: never more than the body still owes.
    fn read_size(&self) -> usize {
        match self.state {
            State::Length(rem) | State::ChunkData(rem) => {
                (rem.min(self.next_read as u64) as usize).max(MIN_READ)
            }
            _ => self.next_read,
        }
    }

    /// Adapts the read size to what the last read brought.
    fn adapt(&mut self, wanted: usize, got: usize) {
        if got >= wanted {
            self.next_read = (self.next_read * 2).min(MAX_READ);
        } else if got < wanted / 2 {
            self.next_read = (self.next_read / 2).max(MIN_READ);
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match this.decode() {
                Some(Ok(Some(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(Ok(None)) => return Poll::Ready(None),
                Some(Err(e)) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {}
            }
            let want = this.read_size();
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            conn.buf.reserve(want);
            // Read at most `want`, even when the buffer has more room.
            let room = conn.buf.capacity() - conn.buf.len();
            let read = if room > want {
                let mut limited = (&mut conn.buf).limit(want);
                ready!(poll_read_buf(Pin::new(&mut conn.io), cx, &mut limited))
            } else {
                ready!(poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf))
            };
            if let Ok(n) = read {
                this.adapt(want, n);
            }
            match read {
                Ok(0) => {
                    this.conn = None;
                    if matches!(this.state, State::Close) {
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(protocol(
                        "origin closed the connection before the end of the body",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

fn protocol(m: &str) -> BoxError {
    Box::new(io::Error::new(io::ErrorKind::InvalidData, m.to_owned()))
}

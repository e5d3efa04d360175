//! Writing one response of the own HTTP/1.1 path ([`super::h1`]): the
//! head, the framing, and the body as it comes.
//!
//! A small chunk with more of the body behind it is copied behind the
//! head; the chunk that ends a body of known length, and a large chunk, go
//! out with what is buffered in one `writev` without a copy (so that
//! [`super::zero_copy`] can `sendfile` a cached body). Whatever is
//! buffered is written before waiting for more of the body (an origin
//! stream), so the client never waits on bytes that are already here.
//!
//! A body already here in many chunks (a collapsed miss's follower reads
//! the fill's whole window at once) is written in turns: the head and the
//! first chunk, then [`TURN_BYTES`] at a time, yielding to the other
//! connections in between, so that one connection's megabytes do not
//! hold back another's head (the load benchmark's miss storm: time to
//! first byte p50 86–466 ms before, 25–33 ms after). A chunk larger than a
//! turn with more of the body behind it (a hit larger than the store's
//! chunk size) is itself cut into turns, the first going with the head.
//! A body of one chunk, however large, is written in one turn.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use tokio::io::AsyncWrite;

use super::h1_head::{Framing, encode_head, encode_interim};
use crate::error::BoxError;
use crate::proxy::body::ProxyBody;

/// A data chunk up to this size is copied behind what is buffered.
const COPY_MAX: usize = 16 * 1024;
/// A body that is here in many chunks is written this much at a time
/// before other tasks get their turn (see `write_response`).
const TURN_BYTES: u64 = 256 * 1024;

/// `n` in hexadecimal (a chunk size, RFC 9112 §7.1).
fn put_hex(out: &mut Vec<u8>, n: usize) {
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(n >> (i * 4)) & 0xf]);
    }
}

/// Writes `a` then `b` completely, in as few `writev` calls as it takes.
async fn write_two<W: AsyncWrite + Unpin>(io: &mut W, a: &[u8], b: &[u8]) -> io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() || !b.is_empty() {
        let n = poll_fn(|cx| {
            let bufs = [IoSlice::new(a), IoSlice::new(b)];
            let bufs = if a.is_empty() { &bufs[1..] } else { &bufs[..] };
            Pin::new(&mut *io).poll_write_vectored(cx, bufs)
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

/// Writes what `out` holds and empties it.
async fn flush<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        write_two(io, out, &[]).await?;
        out.clear();
    }
    Ok(())
}

type Next = Option<Result<Frame<Bytes>, BoxError>>;

/// The next frame if it is here, else `Err(())` (the waker is registered).
async fn frame_now(body: &mut ProxyBody) -> Result<Next, ()> {
    poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
        Poll::Ready(f) => Poll::Ready(Ok(f)),
        Poll::Pending => Poll::Ready(Err(())),
    })
    .await
}

/// Writes interim (1xx) responses (RFC 9110 §15.2, RFC 9112 §4) before the
/// final response.
pub(crate) async fn write_interim<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut Vec<u8>,
    heads: Vec<(StatusCode, HeaderMap)>,
) -> io::Result<()> {
    out.clear();
    encode_interim(out, heads);
    flush(io, out).await
}

/// Writes `resp` to `io` (after the `interim` responses not yet sent), using
/// `out` as its buffer. Returns whether the connection can carry another
/// request: `keep`, and the response was sent whole and delimited.
pub(crate) async fn write_response<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut Vec<u8>,
    resp: Response<ProxyBody>,
    head_only: bool,
    mut keep: bool,
    interim: Vec<(StatusCode, HeaderMap)>,
) -> io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    out.clear();
    // 1xx heads read with the final one go out in the same write.
    encode_interim(out, interim);
    let wire = body.take_wire();
    let exact = match &wire {
        Some(w) => Some(w.len),
        None => body.size_hint().exact(),
    };
    let framing = encode_head(
        out,
        parts.status,
        &parts.headers,
        exact,
        head_only,
        &mut keep,
        wire.as_deref(),
    );
    drop(wire);
    if framing == Framing::None {
        // Not polled, as hyper does (the access log counts it complete).
        drop(body);
        flush(io, out).await?;
        return Ok(keep);
    }
    let chunked = framing == Framing::Chunked;
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut overflow = false;
    // Frames written, and bytes written since the writer last waited for
    // the body or yielded: see below.
    let mut frames = 0u32;
    let mut this_turn = 0u64;
    loop {
        let next = match frame_now(&mut body).await {
            Ok(f) => f,
            Err(()) => {
                flush(io, out).await?;
                this_turn = 0;
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let mut data = match next {
            None => break,
            // Cut off (logged by the body): what came is sent, and the
            // connection closes so the client sees the response end short.
            Some(Err(_)) => {
                flush(io, out).await?;
                return Ok(false);
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(d) if !d.is_empty() => d,
                // Trailers are not forwarded; empty chunks end nothing.
                _ => continue,
            },
        };
        frames += 1;
        if frames > 1 && (frames == 2 || this_turn >= TURN_BYTES) {
            // A body that is here in many chunks (the followers of a
            // collapsed miss read the fill's whole window at once) would
            // otherwise go out, in one turn, up to the client's receive
            // window (megabytes on loopback), while other connections wait
            // for their heads: with 1,000 followers the last heads waited
            // for gigabytes of copying. So the head and the first chunk
            // leave at once, and the rest in turns of `TURN_BYTES`. A body
            // of one chunk (a stored body up to the store's chunk size,
            // 1 MiB by default) never yields; a larger hit yields every
            // `TURN_BYTES` (below).
            flush(io, out).await?;
            this_turn = 0;
            tokio::task::yield_now().await;
        }
        if !chunked {
            if data.len() as u64 > left {
                // More than the Content-Length promised: never send it.
                tracing::warn!("response body longer than its Content-Length; closing");
                data.truncate(usize::try_from(left).unwrap_or(0));
                overflow = true;
            }
            left -= data.len() as u64;
        } else {
            put_hex(out, data.len());
            out.extend_from_slice(b"\r\n");
        }
        if !chunked && left > 0 {
            // A chunk larger than a turn with more body behind it (a hit
            // larger than the store's chunk size) leaves in turns as well,
            // the first with the head: 1,000 clients of one cached 10 MiB
            // object otherwise waited for 1 MiB each ahead of their heads.
            // (`this_turn` is below `TURN_BYTES` here: a full turn yielded
            // above.)
            while data.len() as u64 > TURN_BYTES.saturating_sub(this_turn) {
                let piece = data.split_to(TURN_BYTES.saturating_sub(this_turn) as usize);
                write_two(io, out, &piece).await?;
                out.clear();
                this_turn = 0;
                tokio::task::yield_now().await;
            }
        }
        this_turn += data.len() as u64;
        // The chunk that ends a body of known length leaves with what is
        // buffered in one `writev`, not copied behind it: the copy cost the
        // instructions and wrote a connection's buffer whose lines had left
        // the CPU's caches since its last response.
        let ends_body = !chunked && left == 0;
        if data.len() <= COPY_MAX && !ends_body {
            out.extend_from_slice(&data);
        } else {
            write_two(io, out, &data).await?;
            out.clear();
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if overflow {
            keep = false;
            break;
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    } else if left != 0 {
        // Shorter than its Content-Length: only a close tells the client.
        keep = false;
    }
    flush(io, out).await?;
    Ok(keep)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;
    use http::header;
    use std::future::Future;
    use std::pin::pin;

    /// A writer that keeps what it is given where the test can see it.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Shared {
        fn bytes(&self) -> Vec<u8> {
            self.0.lock().unwrap().clone()
        }
    }

    impl AsyncWrite for Shared {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A response whose body is already here, in `chunks`.
    fn ready_response(chunks: &[&'static [u8]]) -> Response<ProxyBody> {
        use http_body_util::BodyExt;
        let len: usize = chunks.iter().map(|c| c.len()).sum();
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        let inner =
            http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        let record = crate::proxy::body::AccessRecord {
            method: http::Method::GET,
            host: String::new(),
            path: String::new(),
            version: http::Version::HTTP_11,
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            status: 200,
            cache: "hit",
            error: None,
            start: None,
            enabled: false,
            rule: None,
            site: None,
            ttfb: None,
        };
        let mut resp = Response::new(ProxyBody::new(inner, None, record));
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        resp
    }

    /// Polls `write_response` for `resp` once per turn; what had been
    /// written after each turn, and whether the last one finished with
    /// the connection kept.
    fn turns(resp: Response<ProxyBody>) -> (Vec<Vec<u8>>, bool) {
        let sink = Shared::default();
        let mut io = sink.clone();
        let mut out = Vec::new();
        let mut fut = pin!(write_response(
            &mut io,
            &mut out,
            resp,
            false,
            true,
            Vec::new()
        ));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut seen = Vec::new();
        for _ in 0..10 {
            let r = fut.as_mut().poll(&mut cx);
            seen.push(sink.bytes());
            if let Poll::Ready(r) = r {
                return (seen, matches!(r, Ok(true)));
            }
        }
        panic!("the writer did not finish in 10 turns");
    }

    #[test]
    fn a_body_here_in_many_chunks_lets_other_tasks_run_after_its_first() {
        let big: &'static [u8] = &[b'b'; COPY_MAX + 1];
        let (seen, keep) = turns(ready_response(&[b"aaa", big, b"ccc"]));
        assert!(keep);
        assert_eq!(
            seen.len(),
            2,
            "one yield, after the head and the first chunk"
        );
        let first = String::from_utf8_lossy(&seen[0]).into_owned();
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(first.ends_with("\r\n\r\naaa"), "{first}");
        let all = &seen[1];
        assert_eq!(all.len(), seen[0].len() + big.len() + 3);
        assert!(all.ends_with(b"bccc"));
    }

    #[test]
    fn a_long_body_already_here_is_written_in_turns() {
        let big: &'static [u8] = &[b'b'; TURN_BYTES as usize];
        let (seen, keep) = turns(ready_response(&[b"aaa", big, b"ccc"]));
        assert!(keep);
        // The head and "aaa"; then a turn's worth; then the rest.
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].len(), seen[0].len() + big.len());
        assert_eq!(seen[2].len(), seen[1].len() + 3);
        assert!(seen[2].ends_with(b"bccc"));
    }

    #[test]
    fn a_large_chunk_with_more_body_behind_it_is_cut_into_turns() {
        const T: usize = TURN_BYTES as usize;
        let big: &'static [u8] = &[b'b'; 2 * T + 10];
        let (seen, keep) = turns(ready_response(&[big, b"ccc"]));
        assert!(keep);
        let head = seen[0].len() - T;
        assert!(seen[0].starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(
            seen[0][..head].ends_with(b"\r\n\r\n"),
            "the head, then a turn"
        );
        // Then a turn; then the chunk's last 10 bytes; then "ccc".
        let lens: Vec<usize> = seen.iter().map(|s| s.len() - head).collect();
        assert_eq!(lens, [T, 2 * T, 2 * T + 10, 2 * T + 13]);
        assert!(seen[3].ends_with(b"bccc"));
    }

    #[test]
    fn a_single_large_chunk_is_written_in_one_turn() {
        let big: &'static [u8] = &[b'b'; 2 * TURN_BYTES as usize + 10];
        let (seen, keep) = turns(ready_response(&[big]));
        assert!(keep);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].ends_with(&big[..64]));
    }

    #[test]
    fn a_single_chunk_body_is_written_in_one_turn() {
        let (seen, keep) = turns(ready_response(&[b"abc"]));
        assert!(keep);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].ends_with(b"\r\n\r\nabc"));
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        for (n, want) in [
            (0, "0"),
            (9, "9"),
            (255, "ff"),
            (4096, "1000"),
            (100_000, "186a0"),
        ] {
            let mut out = Vec::new();
            put_hex(&mut out, n);
            assert_eq!(out, want.as_bytes());
        }
    }
}

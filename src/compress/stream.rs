//! Compressing and decoding a response body while it streams (async-compression over the
//! body's bytes), with bounded memory: the coder reads what it needs and hands out pieces
//! of at most [`PIECE`] bytes. A compressed stream can also be written to the store as it
//! goes (`sink`): committed when the stream ends whole, dropped (never visible) if it fails.
//!
//! Owns: the coders' streams and their counters. Must not know: where the body comes from or
//! which key the sink writes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_compression::Level;
use async_compression::tokio::bufread::{
    BrotliDecoder, BrotliEncoder, GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use outpost_storage::WriteHandle;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::{ReaderStream, StreamReader};

use super::Encoding;
use crate::error::BoxError;
use crate::metrics::compression::{CodingCounters, CompressionCounters};

/// A response body as the pipeline sends it.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The largest piece a coder hands out.
pub const PIECE: usize = 32 * 1024;

type Coder = Pin<Box<dyn AsyncRead + Send>>;

/// Brotli's `lgwin`.
const BROTLI_WINDOW_LOG: i32 = 19;
/// zstd's window log.
const ZSTD_WINDOW_LOG: u32 = 20;

fn input(
    body: Body,
) -> StreamReader<impl futures_util::Stream<Item = io::Result<Bytes>> + Send, Bytes> {
    StreamReader::new(BodyDataStream::new(body).map(|r| r.map_err(io::Error::other)))
}

/// `body` compressed with `e` at `level`; written to `sink` as well when given.
pub fn encode(body: Body, e: Encoding, level: u32, sink: Option<WriteHandle>) -> Body {
    let counters = &CompressionCounters::global().codings[e.index()];
    let counted = BodyDataStream::new(body).map(move |r| {
        if let Ok(b) = &r {
            counters.bytes_in.add(b.len() as u64);
        }
        r.map_err(io::Error::other)
    });
    let reader = StreamReader::new(counted);
    let q = Level::Precise(level as i32);
    // Windows of 512 KiB (Brotli, as ngx_brotli's default) and 1 MiB (zstd) instead of their
    // 4–8 MiB defaults: a stream then needs a few MiB, not 30–40, whatever its length,
    // and the size lost on web pages is a fraction of a percent.
    let coder: Coder = match e {
        Encoding::Br => Box::pin(BrotliEncoder::with_params(
            reader,
            async_compression::brotli::EncoderParams::default()
                .quality(q)
                .window_size(BROTLI_WINDOW_LOG)
                .block_size(16),
        )),
        Encoding::Zstd => Box::pin(ZstdEncoder::with_quality_and_params(
            reader,
            q,
            &[async_compression::zstd::CParameter::window_log(
                ZSTD_WINDOW_LOG,
            )],
        )),
        Encoding::Gzip => Box::pin(GzipEncoder::with_quality(reader, q)),
    };
    let timed = Timed {
        inner: coder,
        counters,
    };
    let out = ReaderStream::with_capacity(timed, PIECE);
    let st = Tee {
        out: Box::pin(out),
        sink,
        counters,
    };
    StreamBody::new(futures_util::stream::unfold(st, tee_next)).boxed_unsync()
}

/// `body` in coding `e`, decoded.
pub fn decode(body: Body, e: Encoding) -> Body {
    let counters = &CompressionCounters::global().codings[e.index()];
    let reader = input(body);
    let coder: Coder = match e {
        Encoding::Br => Box::pin(BrotliDecoder::new(reader)),
        Encoding::Zstd => Box::pin(ZstdDecoder::new(reader)),
        Encoding::Gzip => Box::pin(GzipDecoder::new(reader)),
    };
    let out = ReaderStream::with_capacity(coder, PIECE).map(move |r| {
        if let Ok(b) = &r {
            counters.decoded.add(b.len() as u64);
        }
        r.map(Frame::data).map_err(|e| Box::new(e) as BoxError)
    });
    StreamBody::new(out).boxed_unsync()
}

/// Counts the time spent in the coder (and the bytes it puts out).
struct Timed {
    inner: Coder,
    counters: &'static CodingCounters,
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let start = Instant::now();
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        self.counters
            .nanos
            .add(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        self.counters
            .bytes_out
            .add((buf.filled().len() - before) as u64);
        r
    }
}

type Pieces = Pin<Box<dyn futures_util::Stream<Item = io::Result<Bytes>> + Send>>;

struct Tee {
    out: Pieces,
    sink: Option<WriteHandle>,
    counters: &'static CodingCounters,
}

async fn tee_next(mut st: Tee) -> Option<(Result<Frame<Bytes>, BoxError>, Tee)> {
    match st.out.next().await {
        Some(Ok(piece)) => {
            if let Some(w) = st.sink.as_mut()
                && let Err(e) = w.write(piece.clone()).await
            {
                tracing::debug!(error = %e, "compressed variant not stored");
                st.sink = None;
            }
            Some((Ok(Frame::data(piece)), st))
        }
        Some(Err(e)) => {
            // The source failed: whatever was written is dropped, never visible.
            st.sink = None;
            Some((Err(Box::new(e) as BoxError), st))
        }
        None => {
            if let Some(w) = st.sink.take() {
                match w.finish().await {
                    Ok(()) => st.counters.stored.inc(),
                    Err(e) => tracing::debug!(error = %e, "compressed variant not stored"),
                }
            }
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn body_of(pieces: Vec<Bytes>) -> Body {
        let s = futures_util::stream::iter(
            pieces
                .into_iter()
                .map(|b| Ok::<_, BoxError>(Frame::data(b))),
        );
        StreamBody::new(s).boxed_unsync()
    }

    #[tokio::test]
    async fn every_coding_round_trips_in_pieces() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of some html\n", i % 977).into_bytes())
            .collect();
        let pieces: Vec<Bytes> = text.chunks(7_000).map(Bytes::copy_from_slice).collect();
        for e in Encoding::ALL {
            let coded = encode(body_of(pieces.clone()), e, 5, None);
            let mut n = 0;
            let mut all = Vec::new();
            let mut s = BodyDataStream::new(coded);
            while let Some(p) = s.next().await {
                let p = p.unwrap();
                assert!(p.len() <= PIECE);
                n += p.len();
                all.push(p);
            }
            assert!(n < text.len() / 5, "{e:?}: {n} bytes");
            let back = decode(body_of(all), e).collect().await.unwrap().to_bytes();
            assert!(back == text, "{e:?} decodes to the input");
        }
    }

    #[tokio::test]
    async fn a_failing_source_fails_the_stream() {
        let s = futures_util::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"hello"))),
            Err::<Frame<Bytes>, BoxError>("cut".into()),
        ]);
        let coded = encode(StreamBody::new(s).boxed_unsync(), Encoding::Gzip, 6, None);
        assert!(coded.collect().await.is_err());
    }
}

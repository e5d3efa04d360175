//! Bodies served from the store or from an in-flight fill: a list of
//! segments (literal bytes, or a byte range of the stored body) streamed
//! chunk by chunk, seeking into the stored body rather than reading it all
//! (RFC 9110 §14 ranges, `multipart/byteranges` parts).

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use outpost_storage::{BodyReader, ReadHandle};

use super::coalesce::FillReader;
use crate::error::BoxError;

/// A boxed response body (the type the request pipeline sends on).
pub type InnerBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// One piece of a response body.
#[derive(Debug, Clone)]
pub enum Segment {
    /// Bytes produced by us (multipart part headers, delimiters).
    Literal(Bytes),
    /// `len` bytes of the stored body starting at `offset`.
    Stored { offset: u64, len: u64 },
}

/// The stored body was shorter than its metadata said, or unreadable.
#[derive(Debug, thiserror::Error)]
#[error("stored body ended early or could not be read: {0}")]
pub struct StoredBodyError(String);

struct State {
    handle: ReadHandle,
    segments: std::vec::IntoIter<Segment>,
    current: Option<(BodyReader, u64)>,
    /// A piece already read (see [`stored_body_from`]), sent first.
    first: Option<Bytes>,
}

async fn next(mut st: State) -> Option<(Result<Frame<Bytes>, BoxError>, State)> {
    if let Some(b) = st.first.take() {
        return Some((Ok(Frame::data(b)), st));
    }
    loop {
        if let Some((reader, remaining)) = st.current.as_mut() {
            if *remaining == 0 {
                st.current = None;
                continue;
            }
            return match reader.next_chunk().await {
                Ok(Some(mut b)) => {
                    if b.len() as u64 > *remaining {
                        b.truncate(*remaining as usize);
                    }
                    *remaining -= b.len() as u64;
                    Some((Ok(Frame::data(b)), st))
                }
                Ok(None) => {
                    crate::metrics::Counters::global().cut_off();
                    let e = StoredBodyError(format!("{remaining} bytes missing"));
                    st.current = None;
                    st.segments = Vec::new().into_iter();
                    Some((Err(Box::new(e) as BoxError), st))
                }
                Err(e) => {
                    crate::metrics::Counters::global().cut_off();
                    let e = StoredBodyError(e.to_string());
                    st.current = None;
                    st.segments = Vec::new().into_iter();
                    Some((Err(Box::new(e) as BoxError), st))
                }
            };
        }
        match st.segments.next()? {
            Segment::Literal(b) => return Some((Ok(Frame::data(b)), st)),
            Segment::Stored { offset, len } => {
                st.current = Some((st.handle.reader(offset), len));
            }
        }
    }
}

/// Streams `segments` out of the stored object behind `handle`.
pub fn stored_body(handle: ReadHandle, segments: Vec<Segment>) -> InnerBody {
    let st = State {
        handle,
        segments: segments.into_iter(),
        current: None,
        first: None,
    };
    StreamBody::new(futures_util::stream::unfold(st, next)).boxed_unsync()
}

/// The whole stored body of `len` bytes when its first piece `first` was read already
/// with `reader` (which goes on from there): the piece is not read twice.
pub fn stored_body_from(
    handle: ReadHandle,
    reader: BodyReader,
    first: Bytes,
    len: u64,
) -> InnerBody {
    let rest = len.saturating_sub(first.len() as u64);
    let st = State {
        handle,
        segments: Vec::new().into_iter(),
        current: Some((reader, rest)),
        first: Some(first),
    };
    StreamBody::new(futures_util::stream::unfold(st, next)).boxed_unsync()
}

/// Streams a fill (a response still arriving from the origin) to one
/// reader, skipping `skip` bytes and stopping after `take` (for a single
/// range answered on a miss).
pub fn fill_body<H: Send + Sync + 'static>(
    reader: FillReader<H>,
    skip: u64,
    take: Option<u64>,
) -> InnerBody {
    let s = futures_util::stream::unfold(
        (reader, skip, take),
        |(mut r, mut skip, mut take)| async move {
            loop {
                if take == Some(0) {
                    return None;
                }
                match r.next_chunk().await {
                    Ok(Some(mut b)) => {
                        if skip > 0 {
                            let n = skip.min(b.len() as u64);
                            skip -= n;
                            b = b.slice(n as usize..);
                            if b.is_empty() {
                                continue;
                            }
                        }
                        if let Some(t) = take.as_mut() {
                            if b.len() as u64 > *t {
                                b.truncate(*t as usize);
                            }
                            *t -= b.len() as u64;
                        }
                        return Some((Ok(Frame::data(b)), (r, skip, take)));
                    }
                    Ok(None) => return None,
                    Err(e) => return Some((Err(Box::new(e) as BoxError), (r, 0, Some(0)))),
                }
            }
        },
    );
    StreamBody::new(s).boxed_unsync()
}

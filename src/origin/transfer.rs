//! Transfer codings of origin responses (RFC 9112 §6.1, §7): what a
//! `Transfer-Encoding` field lists, whether the body then ends with the
//! chunked coding or when the origin closes the connection (§6.3 item 4),
//! and the decoders that take gzip and deflate codings off, so the client
//! (and the cache) get the content itself. The field is hop-by-hop: once it
//! is dropped, a body still coded would be a wrong byte, so a coding the
//! node cannot remove is refused (502) instead.
//!
//! Owns: parsing the field and decoding. Must not know: the connection the
//! body comes from (`h1_body`, hyper's client).

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, header};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use tokio::io::{AsyncBufRead, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::error::BoxError;

/// A transfer coding the node removes (RFC 9112 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferCoding {
    /// `gzip` or `x-gzip` (RFC 1952).
    Gzip,
    /// `deflate`: the zlib format (RFC 1950) around deflate data.
    Deflate,
}

/// What a `Transfer-Encoding` field says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codings {
    /// `chunked` is the last coding: the body ends with its last chunk;
    /// otherwise it ends when the origin closes the connection (§6.3
    /// item 4).
    pub chunked_last: bool,
    /// The other codings, in the order the origin applied them.
    pub decode: Vec<TransferCoding>,
}

/// Parses every `Transfer-Encoding` line; `None` without one. An unknown
/// coding, `chunked` other than last (§7.1: applied once, last), or an
/// empty list is an error naming it.
pub fn parse(headers: &HeaderMap) -> Result<Option<Codings>, String> {
    let mut lines = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let mut tokens = Vec::new();
    for v in lines {
        let v = v.to_str().map_err(|_| "Transfer-Encoding is not text")?;
        // Parameters (`;q=…`) do not apply to the codings taken here.
        tokens.extend(
            v.split(',')
                .map(|t| t.split(';').next().unwrap_or("").trim())
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
    }
    let Some(last) = tokens.last() else {
        return Err("empty Transfer-Encoding".into());
    };
    let chunked_last = last.eq_ignore_ascii_case("chunked");
    let applied = if chunked_last {
        &tokens[..tokens.len() - 1]
    } else {
        &tokens[..]
    };
    let mut decode = Vec::new();
    for t in applied {
        if t.eq_ignore_ascii_case("gzip") || t.eq_ignore_ascii_case("x-gzip") {
            decode.push(TransferCoding::Gzip);
        } else if t.eq_ignore_ascii_case("deflate") {
            decode.push(TransferCoding::Deflate);
        } else if t.eq_ignore_ascii_case("identity") {
            // Obsolete (RFC 2616) and a no-op.
        } else if t.eq_ignore_ascii_case("chunked") {
            return Err("chunked is not the last transfer coding".into());
        } else {
            return Err(format!("transfer coding {t:?} cannot be decoded"));
        }
    }
    Ok(Some(Codings {
        chunked_last,
        decode,
    }))
}

/// `body` with `codings` (in the order applied) taken off, last first.
pub fn decoded<B>(body: B, codings: &[TransferCoding]) -> UnsyncBoxBody<Bytes, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let data = BodyDataStream::new(body).map_err(|e| std::io::Error::other(e.into()));
    let mut reader: Pin<Box<dyn AsyncBufRead + Send>> = Box::pin(StreamReader::new(data));
    for c in codings.iter().rev() {
        reader = match c {
            TransferCoding::Gzip => Box::pin(BufReader::new(
                async_compression::tokio::bufread::GzipDecoder::new(reader),
            )),
            TransferCoding::Deflate => Box::pin(BufReader::new(
                async_compression::tokio::bufread::ZlibDecoder::new(reader),
            )),
        };
    }
    let frames = ReaderStream::new(reader).map(|r| r.map(Frame::data).map_err(BoxError::from));
    StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn te(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for x in v {
            h.append(header::TRANSFER_ENCODING, x.parse().unwrap());
        }
        h
    }

    #[test]
    fn codings_and_where_the_body_ends() {
        use TransferCoding::*;
        assert_eq!(parse(&HeaderMap::new()), Ok(None));
        let c = |chunked_last, decode: Vec<TransferCoding>| {
            Ok(Some(Codings {
                chunked_last,
                decode,
            }))
        };
        assert_eq!(parse(&te(&["chunked"])), c(true, vec![]));
        assert_eq!(parse(&te(&["Chunked"])), c(true, vec![]));
        assert_eq!(parse(&te(&["gzip, chunked"])), c(true, vec![Gzip]));
        assert_eq!(parse(&te(&["gzip", "chunked"])), c(true, vec![Gzip]));
        assert_eq!(parse(&te(&["gzip"])), c(false, vec![Gzip]));
        assert_eq!(parse(&te(&["x-gzip"])), c(false, vec![Gzip]));
        assert_eq!(
            parse(&te(&["deflate, gzip"])),
            c(false, vec![Deflate, Gzip])
        );
        assert_eq!(parse(&te(&["identity"])), c(false, vec![]));
        for bad in [
            &["chunked, gzip"][..],
            &["compress"],
            &["br"],
            &[" , "],
            &["chunked", "chunked"],
        ] {
            assert!(parse(&te(bad)).is_err(), "{bad:?}");
        }
    }
}

//! Sliced objects: a large representation fetched from the origin in
//! aligned byte ranges ("slices", as nginx's slice module and ATS's partial
//! object caching do), each stored on its own as a partial response (RFC
//! 9111 §3.3) and combined with the others when they are parts of the same
//! representation (§3.4).
//!
//! Owns the slice arithmetic, the slices' keys, reading the origin's
//! `Content-Range` (RFC 9110 §14.4), what makes two slices parts of one
//! representation, and the range a client's request selects once the
//! length is known. Knows nothing of the origin, the store or the client
//! connection.

use http::header::{CONTENT_RANGE, ETAG, LAST_MODIFIED, RANGE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::coalesce::Key;
use super::conditional::EntityTag;
use super::control::{EffectiveControl, RequestDirectives};
use super::freshness::{Storable, storability};
use super::range::{ByteRange, RangeOutcome, RangeSpec, parse_range, resolve};
use super::status::NoCacheReason;
use super::syntax::trim_ows;

/// Where slice `index` of the object under `primary` is stored.
pub fn slice_key(primary: &Key, index: u64) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(b"outpost-slice-v1\0");
    h.update(primary);
    h.update(&index.to_le_bytes());
    *h.finalize().as_bytes()
}

/// The `Range` field that asks the origin for slice `index` (RFC 9110 §14.2).
pub fn slice_request(index: u64, size: u64) -> HeaderValue {
    let start = index.saturating_mul(size);
    let end = start.saturating_add(size - 1);
    HeaderValue::from_str(&format!("bytes={start}-{end}"))
        .unwrap_or_else(|_| HeaderValue::from_static("bytes=0-0"))
}

/// The bytes slice `index` holds of a representation of `total` bytes, or
/// `None` when it starts past the end.
pub fn slice_bounds(index: u64, size: u64, total: u64) -> Option<ByteRange> {
    let start = index.checked_mul(size)?;
    if start >= total {
        return None;
    }
    Some(ByteRange {
        start,
        end: start.saturating_add(size - 1).min(total - 1),
    })
}

/// Whether a request can be answered from slices: no `Range`, an invalid
/// one (ignored, §14.2), or one field line with a single range-spec. Several
/// ranges are answered as before slicing (whole object or passed through).
pub fn sliceable_request(method: &Method, request: &HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    let mut it = request.get_all(RANGE).iter();
    let Some(v) = it.next() else {
        return true;
    };
    if it.next().is_some() {
        return true; // not a singleton: ignored
    }
    match parse_range(v.as_bytes()) {
        Some(specs) => specs.len() == 1,
        None => true,
    }
}

/// The slice a request reads first, before the length is known: the one
/// holding its first byte for `first-last` and `first-`, else the first one
/// (no range, or a suffix, whose place depends on the length).
pub fn first_slice(request: &HeaderMap, size: u64) -> u64 {
    let mut it = request.get_all(RANGE).iter();
    let (Some(v), None) = (it.next(), it.next()) else {
        return 0;
    };
    match parse_range(v.as_bytes()).as_deref() {
        Some([RangeSpec::FromTo(a, _)]) | Some([RangeSpec::From(a)]) => a / size,
        _ => 0,
    }
}

/// `Content-Range: bytes first-last/complete` of a 206 (§14.4); `None` for
/// an unknown length (`/*`), an unsatisfied range or a malformed value.
pub fn parse_content_range(headers: &HeaderMap) -> Option<(ByteRange, u64)> {
    let mut it = headers.get_all(CONTENT_RANGE).iter();
    let (Some(v), None) = (it.next(), it.next()) else {
        return None;
    };
    let v = trim_ows(v.as_bytes());
    let rest = v.strip_prefix(b"bytes ")?;
    let s = std::str::from_utf8(rest).ok()?;
    let (range, total) = s.split_once('/')?;
    let (a, b) = range.trim().split_once('-')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    let (a, b, total) = (a.trim(), b.trim(), total.trim());
    if !digits(a) || !digits(b) || !digits(total) {
        return None;
    }
    let (start, end, total) = (a.parse().ok()?, b.parse().ok()?, total.parse().ok()?);
    // §14.4: a valid byte-range-resp has first <= last < complete-length.
    if start > end || end >= total {
        return None;
    }
    Some((ByteRange { start, end }, total))
}

/// What identifies the representation a slice is part of (RFC 9111 §3.4:
/// partial responses are combined only when their strong validators match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Representation {
    /// Its complete length.
    pub total: u64,
    /// A strong entity tag, or else the `Last-Modified` value.
    validator: Validator,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Validator {
    Etag(Vec<u8>),
    LastModified(Vec<u8>),
}

impl Representation {
    /// The representation of a 206 with `total` bytes; `None` without a
    /// strong validator, which makes slices impossible to combine safely.
    pub fn of(headers: &HeaderMap, total: u64) -> Option<Representation> {
        let validator = match headers.get(ETAG) {
            Some(v) => {
                let tag = EntityTag::parse(v.as_bytes())?;
                if tag.weak {
                    return None; // §8.8.3: a weak tag does not identify the bytes
                }
                Validator::Etag(tag.to_bytes())
            }
            None => Validator::LastModified(headers.get(LAST_MODIFIED)?.as_bytes().to_vec()),
        };
        Some(Representation { total, validator })
    }
}

/// What a request gets of a representation of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    /// All of it (200).
    Full,
    /// One range (206).
    Part(ByteRange),
    /// Nothing it asked for exists (416).
    Unsatisfiable,
}

impl Selected {
    /// The bytes to send; `None` for a 416 or an empty representation.
    pub fn bytes(&self, total: u64) -> Option<ByteRange> {
        match *self {
            Selected::Part(r) => Some(r),
            Selected::Full if total > 0 => Some(ByteRange {
                start: 0,
                end: total - 1,
            }),
            _ => None,
        }
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        match self {
            Selected::Full => StatusCode::OK,
            Selected::Part(_) => StatusCode::PARTIAL_CONTENT,
            Selected::Unsatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }
}

/// The range a request selects of `total` bytes (RFC 9110 §14.2); `ranged`
/// is false when `If-Range` did not match (then all of it, §13.1.5).
pub fn select(request: &HeaderMap, total: u64, ranged: bool) -> Selected {
    if !ranged {
        return Selected::Full;
    }
    match resolve(request, total) {
        RangeOutcome::Full => Selected::Full,
        RangeOutcome::Unsatisfiable => Selected::Unsatisfiable,
        RangeOutcome::Satisfiable(rs) => match rs.as_slice() {
            [r] => Selected::Part(*r),
            // Not sliceable (see `sliceable_request`); a 200 is always right.
            _ => Selected::Full,
        },
    }
}

/// Whether a 206 to a slice request may be stored. RFC 9111 §3.3 lets a
/// cache that supports ranges store an incomplete response, and a 206 is
/// heuristically cacheable (RFC 9110 §15.3.7): the rules of a 200 apply.
pub fn slice_storability(
    request: &HeaderMap,
    dirs: &RequestDirectives,
    headers: &HeaderMap,
    control: &EffectiveControl,
) -> Result<Storable, NoCacheReason> {
    storability(
        &Method::GET,
        request,
        dirs,
        StatusCode::OK,
        headers,
        control,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn slices_are_aligned_and_the_last_is_short() {
        assert_eq!(slice_request(2, 1024), "bytes=2048-3071");
        assert_eq!(
            slice_bounds(2, 1024, 2500),
            Some(ByteRange {
                start: 2048,
                end: 2499
            })
        );
        assert_eq!(slice_bounds(3, 1024, 2500), None);
        assert_ne!(slice_key(&[1; 32], 0), slice_key(&[1; 32], 1));
        assert_ne!(slice_key(&[1; 32], 0), slice_key(&[2; 32], 0));
    }

    #[test]
    fn the_first_slice_holds_the_first_byte_asked_for() {
        assert_eq!(first_slice(&h(&[]), 100), 0);
        assert_eq!(first_slice(&h(&[("range", "bytes=250-260")]), 100), 2);
        assert_eq!(first_slice(&h(&[("range", "bytes=999-")]), 100), 9);
        assert_eq!(first_slice(&h(&[("range", "bytes=-10")]), 100), 0);
        assert_eq!(first_slice(&h(&[("range", "pages=3-4")]), 100), 0);
    }

    #[test]
    fn several_ranges_are_not_sliced() {
        let get = Method::GET;
        assert!(sliceable_request(&get, &h(&[])));
        assert!(sliceable_request(&get, &h(&[("range", "bytes=1-2")])));
        assert!(sliceable_request(&get, &h(&[("range", "nonsense")])));
        assert!(!sliceable_request(&get, &h(&[("range", "bytes=1-2,5-6")])));
        assert!(!sliceable_request(&Method::HEAD, &h(&[])));
    }

    #[test]
    fn content_range_is_read_strictly() {
        let r = |v| parse_content_range(&h(&[("content-range", v)]));
        assert_eq!(
            r("bytes 0-99/1000"),
            Some((ByteRange { start: 0, end: 99 }, 1000))
        );
        assert_eq!(r("bytes 0-99/*"), None);
        assert_eq!(r("bytes */1000"), None);
        assert_eq!(r("bytes 5-4/1000"), None);
        assert_eq!(r("bytes 0-1000/1000"), None);
        assert_eq!(r("bytes +1-2/3"), None);
        assert_eq!(r("items 0-1/2"), None);
    }

    #[test]
    fn slices_combine_only_under_a_strong_validator() {
        let a = Representation::of(&h(&[("etag", "\"v1\"")]), 10).unwrap();
        let b = Representation::of(&h(&[("etag", "\"v1\"")]), 10).unwrap();
        let c = Representation::of(&h(&[("etag", "\"v2\"")]), 10).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            a,
            Representation::of(&h(&[("etag", "\"v1\"")]), 11).unwrap()
        );
        assert!(Representation::of(&h(&[("etag", "W/\"v1\"")]), 10).is_none());
        assert!(Representation::of(&h(&[]), 10).is_none());
        let lm = "Tue, 15 Nov 1994 08:12:31 GMT";
        assert!(Representation::of(&h(&[("last-modified", lm)]), 10).is_some());
    }

    #[test]
    fn selection_follows_the_request() {
        let r = h(&[("range", "bytes=-10")]);
        assert_eq!(
            select(&r, 100, true),
            Selected::Part(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(select(&r, 100, false), Selected::Full);
        let far = h(&[("range", "bytes=500-")]);
        assert_eq!(select(&far, 100, true), Selected::Unsatisfiable);
        assert_eq!(Selected::Full.bytes(0), None);
    }
}

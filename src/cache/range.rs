//! Byte range requests served from a stored representation (RFC 9110 §14):
//! `Range: bytes=…` parsing, resolution against a known length, coalescing,
//! `Content-Range`, and `multipart/byteranges` framing (§14.6).
//!
//! Policy (RFC 9110 §14.2 lets a server ignore `Range`):
//! - an invalid `Range` (bad syntax, another unit, several field lines,
//!   `last < first`) is ignored → [`RangeOutcome::Full`];
//! - more than [`MAX_RANGES`] range-specs is treated as abuse and ignored
//!   (→ `Full`, a plain 200) rather than answered 416, because a 200 is
//!   always a correct answer;
//! - overlapping or adjacent ranges are coalesced, keeping the order in
//!   which they were requested (§14.2, §15.3.7.2);
//! - a zero-length representation has no satisfiable byte range except
//!   suffixes, which would select nothing: answered `Full` (an empty 200).

use http::HeaderMap;
use http::HeaderValue;
use http::header::RANGE;

use super::syntax::{parse_u64_saturating, split_list, trim_ows};

/// The most range-specs honoured in one request (DoS protection, §14.2).
pub const MAX_RANGES: usize = 100;

/// A range-spec as written (§14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last`
    FromTo(u64, u64),
    /// `first-`
    From(u64),
    /// `-suffix`
    Suffix(u64),
}

/// A resolved, satisfiable byte range; `end` is inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte offset.
    pub start: u64,
    /// Last byte offset (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// Never empty (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// How to answer a (possibly) ranged GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Send the whole representation (no or ignored Range).
    Full,
    /// 206 with these ranges (one → single part, several → multipart).
    Satisfiable(Vec<ByteRange>),
    /// 416 with `Content-Range: bytes */len` ([`unsatisfied_content_range`]).
    Unsatisfiable,
}

/// Parses a `Range` value (§14.2). `None` = invalid or not `bytes`.
/// Returns at most `MAX_RANGES + 1` specs (enough to detect abuse).
pub fn parse_range(value: &[u8]) -> Option<Vec<RangeSpec>> {
    let v = trim_ows(value);
    let eq = v.iter().position(|&b| b == b'=')?;
    let unit = trim_ows(v.get(..eq)?);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return None; // §14.1: unknown range units are ignored
    }
    let mut specs = Vec::new();
    for spec in split_list(v.get(eq + 1..)?) {
        if specs.len() > MAX_RANGES {
            break;
        }
        let dash = spec.iter().position(|&b| b == b'-')?;
        let (first, last) = (spec.get(..dash)?, spec.get(dash + 1..)?);
        let s = match (first.is_empty(), last.is_empty()) {
            (true, true) => return None,
            (true, false) => RangeSpec::Suffix(parse_u64_saturating(last)?),
            (false, true) => RangeSpec::From(parse_u64_saturating(first)?),
            (false, false) => {
                let (a, b) = (parse_u64_saturating(first)?, parse_u64_saturating(last)?);
                if b < a {
                    return None; // §14.1.1: invalid range-spec
                }
                RangeSpec::FromTo(a, b)
            }
        };
        specs.push(s);
    }
    if specs.is_empty() { None } else { Some(specs) }
}

/// Resolves specs against a representation of `len` bytes (§14.1.1).
pub fn resolve_specs(specs: &[RangeSpec], len: u64) -> RangeOutcome {
    if specs.len() > MAX_RANGES {
        return RangeOutcome::Full;
    }
    if len == 0 {
        return if specs
            .iter()
            .any(|s| matches!(s, RangeSpec::Suffix(n) if *n > 0))
        {
            RangeOutcome::Full
        } else {
            RangeOutcome::Unsatisfiable
        };
    }
    let last = len - 1;
    let mut ranges: Vec<ByteRange> = Vec::new();
    for s in specs {
        let r = match *s {
            RangeSpec::FromTo(a, b) if a <= last => ByteRange {
                start: a,
                end: b.min(last),
            },
            RangeSpec::From(a) if a <= last => ByteRange {
                start: a,
                end: last,
            },
            RangeSpec::Suffix(n) if n > 0 => ByteRange {
                start: len - n.min(len),
                end: last,
            },
            _ => continue, // unsatisfiable spec: skipped
        };
        ranges.push(r);
    }
    if ranges.is_empty() {
        return RangeOutcome::Unsatisfiable;
    }
    RangeOutcome::Satisfiable(coalesce(ranges))
}

/// Merges overlapping or adjacent ranges, keeping request order (the
/// merged range sits where its first constituent was).
pub fn coalesce(ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    let mut out: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        let mut cur = r;
        // Absorb every existing range touching `cur`; repeat until stable.
        let mut pos: Option<usize> = None;
        let mut i = 0;
        while i < out.len() {
            let o = out.get(i).copied().unwrap_or(cur);
            let touches =
                o.start <= cur.end.saturating_add(1) && cur.start <= o.end.saturating_add(1);
            if touches {
                cur = ByteRange {
                    start: o.start.min(cur.start),
                    end: o.end.max(cur.end),
                };
                out.remove(i);
                pos = Some(pos.map_or(i, |p| p.min(i)));
                i = 0; // the grown range may now touch earlier ones
                continue;
            }
            i += 1;
        }
        match pos {
            Some(p) if p <= out.len() => out.insert(p, cur),
            _ => out.push(cur),
        }
    }
    out
}

/// Evaluates the request's `Range` against a stored length. The caller
/// checks `If-Range` first ([`super::conditional::if_range_allows`]) and
/// that the method is GET (§14.2: Range is only defined for GET).
pub fn resolve(request: &HeaderMap, len: u64) -> RangeOutcome {
    let mut it = request.get_all(RANGE).iter();
    let Some(v) = it.next() else {
        return RangeOutcome::Full;
    };
    if it.next().is_some() {
        return RangeOutcome::Full; // not a singleton: invalid, ignored
    }
    match parse_range(v.as_bytes()) {
        Some(specs) => resolve_specs(&specs, len),
        None => RangeOutcome::Full,
    }
}

/// `Content-Range: bytes first-last/complete` (§14.4).
pub fn content_range(r: &ByteRange, complete_len: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end, complete_len))
        .unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

/// `Content-Range: bytes */complete` for a 416 (§15.5.17).
pub fn unsatisfied_content_range(complete_len: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes */{complete_len}"))
        .unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

/// A boundary for `multipart/byteranges` (RFC 2046 §5.1.1: ≤ 70 chars):
/// 32 hex digits of [`unique_hash`], unpredictable enough not to occur in
/// content.
pub fn generate_boundary(seed: &[u8]) -> String {
    unique_hash(b"outpost-boundary\0", seed)
        .to_hex()
        .as_str()
        .get(..32)
        .unwrap_or("outpost-boundary")
        .to_owned()
}

/// blake3 over `domain`, `seed`, a process-wide counter and the clock: a
/// value no other call returns.
pub fn unique_hash(domain: &[u8], seed: &[u8]) -> blake3::Hash {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(domain);
    h.update(seed);
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(&nanos.to_le_bytes());
    h.finalize()
}

/// The framing of a `multipart/byteranges` body (RFC 9110 §14.6), so the
/// body can be streamed part by part from the store: for each part, send
/// `header` then the bytes of `range`; finally `trailer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartPlan {
    /// The boundary.
    pub boundary: String,
    /// `(part header bytes, range)` in order.
    pub parts: Vec<(Vec<u8>, ByteRange)>,
    /// The closing delimiter.
    pub trailer: Vec<u8>,
    /// Total body length (for `Content-Length`).
    pub content_length: u64,
}

impl MultipartPlan {
    /// Builds the framing. `content_type` is the stored representation's
    /// Content-Type (repeated in each part, §14.6), if any.
    pub fn new(
        ranges: &[ByteRange],
        complete_len: u64,
        content_type: Option<&HeaderValue>,
        boundary: String,
    ) -> Self {
        let mut parts = Vec::with_capacity(ranges.len());
        let mut total: u64 = 0;
        for (i, r) in ranges.iter().enumerate() {
            let mut h = Vec::new();
            if i > 0 {
                h.extend_from_slice(b"\r\n");
            }
            h.extend_from_slice(b"--");
            h.extend_from_slice(boundary.as_bytes());
            h.extend_from_slice(b"\r\n");
            if let Some(ct) = content_type {
                h.extend_from_slice(b"Content-Type: ");
                h.extend_from_slice(ct.as_bytes());
                h.extend_from_slice(b"\r\n");
            }
            h.extend_from_slice(
                format!(
                    "Content-Range: bytes {}-{}/{}\r\n\r\n",
                    r.start, r.end, complete_len
                )
                .as_bytes(),
            );
            total = total.saturating_add(h.len() as u64).saturating_add(r.len());
            parts.push((h, *r));
        }
        let trailer = format!("\r\n--{boundary}--\r\n").into_bytes();
        total = total.saturating_add(trailer.len() as u64);
        MultipartPlan {
            boundary,
            parts,
            trailer,
            content_length: total,
        }
    }

    /// `Content-Type: multipart/byteranges; boundary=…` for the response.
    pub fn content_type(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("multipart/byteranges; boundary={}", self.boundary))
            .unwrap_or_else(|_| HeaderValue::from_static("multipart/byteranges"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "range_tests.rs"]
mod tests;

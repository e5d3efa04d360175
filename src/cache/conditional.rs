//! Conditional requests (RFC 9110 §13) evaluated against a stored
//! response's validators, entity tags (§8.8.3), `If-Range` (§13.1.5), and
//! validation requests sent by the cache (RFC 9111 §4.3.1).
//!
//! RFC 9111 §4.3.2: a cache evaluates only `If-None-Match` and
//! `If-Modified-Since` (and `If-Range` when serving ranges);
//! `If-Match`/`If-Unmodified-Since` "are not applicable to a cache" and must
//! not be evaluated by it — use [`has_origin_preconditions`] to forward such
//! requests. [`evaluate`] implements the full §13.2.2 order for callers that
//! act as the origin of a stored representation.

use std::borrow::Cow;
use std::time::SystemTime;

use http::header::{
    ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
    RANGE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::syntax::{header_date, parse_http_date, split_list, trim_ows, unix_secs};

/// An entity tag (RFC 9110 §8.8.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityTag {
    /// `W/` prefix.
    pub weak: bool,
    /// The opaque-tag without its quotes.
    pub opaque: Vec<u8>,
}

fn is_etagc(b: u8) -> bool {
    // etagc = %x21 / %x23-7E / obs-text
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

impl EntityTag {
    /// Parses one entity-tag (`"xyz"` or `W/"xyz"`), OWS-trimmed.
    pub fn parse(s: &[u8]) -> Option<EntityTag> {
        let s = trim_ows(s);
        let (weak, rest) = match s.strip_prefix(b"W/") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let opaque = rest.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        if !opaque.iter().all(|&b| is_etagc(b)) {
            return None;
        }
        Some(EntityTag {
            weak,
            opaque: opaque.to_vec(),
        })
    }

    /// Strong comparison (§8.8.3.2): both strong and identical.
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// Weak comparison (§8.8.3.2): identical opaque tags.
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }

    /// The ETag field of `headers`, if exactly one valid value is present.
    pub fn from_headers(headers: &HeaderMap) -> Option<EntityTag> {
        let mut it = headers.get_all(ETAG).iter();
        let first = it.next()?;
        if it.next().is_some() {
            return None;
        }
        EntityTag::parse(first.as_bytes())
    }

    /// Serialised form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.opaque.len() + 4);
        if self.weak {
            v.extend_from_slice(b"W/");
        }
        v.push(b'"');
        v.extend_from_slice(&self.opaque);
        v.push(b'"');
        v
    }
}

/// `If-Match` / `If-None-Match` value (§13.1.1, §13.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagList {
    /// `*`
    Any,
    /// A list of entity tags.
    Tags(Vec<EntityTag>),
}

/// Parses all lines of an If-Match/If-None-Match field. `None` = absent;
/// `Some(Err(()))` = present but invalid.
fn etag_list(headers: &HeaderMap, name: &http::HeaderName) -> Option<Result<EtagList, ()>> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut tags = Vec::new();
    let mut any = false;
    for line in lines {
        for m in split_list(line.as_bytes()) {
            if m == b"*" {
                any = true;
            } else if let Some(t) = EntityTag::parse(m) {
                tags.push(t);
            } else {
                return Some(Err(()));
            }
        }
    }
    Some(match (any, tags.is_empty()) {
        (true, true) => Ok(EtagList::Any),
        (false, false) => Ok(EtagList::Tags(tags)),
        _ => Err(()), // "*" mixed with tags, or an empty list
    })
}

/// A stored response's validators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// Its `ETag`.
    pub etag: Option<EntityTag>,
    /// Its `Last-Modified`.
    pub last_modified: Option<SystemTime>,
    /// Its `Date`.
    pub date: Option<SystemTime>,
    /// When the cache received it (RFC 9111 §4.3.2 fallback).
    pub received: Option<SystemTime>,
}

impl Validators {
    /// Reads ETag, Last-Modified and Date from stored response headers.
    pub fn from_headers(headers: &HeaderMap, received: Option<SystemTime>) -> Validators {
        Validators {
            etag: EntityTag::from_headers(headers),
            last_modified: header_date(headers, &LAST_MODIFIED),
            date: header_date(headers, &http::header::DATE),
            received,
        }
    }

    /// Whether Last-Modified is a strong validator (RFC 9110 §8.8.2.2: the
    /// entry has a Date at least 60 seconds after it).
    pub fn last_modified_is_strong(&self) -> bool {
        match (self.last_modified, self.date) {
            (Some(lm), Some(d)) => unix_secs(d) >= unix_secs(lm).saturating_add(60),
            _ => false,
        }
    }
}

/// Outcome of precondition evaluation (RFC 9110 §13.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Perform the request normally.
    Proceed,
    /// Respond 304 (Not Modified).
    NotModified,
    /// Respond 412 (Precondition Failed).
    PreconditionFailed,
}

/// Whether the request carries preconditions a cache must not evaluate
/// (If-Match, If-Unmodified-Since; RFC 9111 §4.3.2). Such requests should
/// be forwarded to the origin.
pub fn has_origin_preconditions(request: &HeaderMap) -> bool {
    request.contains_key(IF_MATCH) || request.contains_key(IF_UNMODIFIED_SINCE)
}

fn single_date(headers: &HeaderMap, name: &http::HeaderName) -> Option<SystemTime> {
    // §13.1.3/§13.1.4: ignore if not a valid HTTP-date or more than one member.
    let mut it = headers.get_all(name).iter();
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    parse_http_date(v.as_bytes())
}

fn is_get_or_head(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

/// If-None-Match (§13.1.2) and If-Modified-Since (§13.1.3) as a cache
/// evaluates them (RFC 9111 §4.3.2). Returns `Proceed` or `NotModified`
/// (or `PreconditionFailed` for an unsafe method with a failing
/// If-None-Match, which a cache will normally have forwarded anyway).
pub fn evaluate_for_cache(method: &Method, request: &HeaderMap, v: &Validators) -> Precondition {
    // §13.2.2 step 3.
    if let Some(list) = etag_list(request, &IF_NONE_MATCH) {
        // An invalid If-None-Match is ignored: a full response is always
        // correct, a wrong 304 is not.
        let Ok(list) = list else {
            return Precondition::Proceed;
        };
        let matches = match (&list, &v.etag) {
            (EtagList::Any, _) => true, // a current representation exists
            (EtagList::Tags(tags), Some(e)) => tags.iter().any(|t| t.weak_eq(e)),
            (EtagList::Tags(_), None) => false,
        };
        return match (matches, is_get_or_head(method)) {
            (false, _) => Precondition::Proceed,
            (true, true) => Precondition::NotModified,
            (true, false) => Precondition::PreconditionFailed,
        };
    }
    // §13.2.2 step 4: only GET/HEAD, only without If-None-Match.
    if is_get_or_head(method)
        && let Some(ims) = single_date(request, &IF_MODIFIED_SINCE)
    {
        // RFC 9111 §4.3.2: without Last-Modified use Date, else receipt time.
        if let Some(lm) = v.last_modified.or(v.date).or(v.received)
            && unix_secs(lm) <= unix_secs(ims)
        {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// The full §13.2.2 evaluation order (If-Match, If-Unmodified-Since,
/// If-None-Match, If-Modified-Since) against `v`, for a representation that
/// exists. An invalid If-Match evaluates false (the condition cannot be
/// shown to hold); an invalid If-Unmodified-Since is ignored (§13.1.4).
pub fn evaluate(method: &Method, request: &HeaderMap, v: &Validators) -> Precondition {
    if let Some(list) = etag_list(request, &IF_MATCH) {
        // §13.1.1: strong comparison.
        let ok = match (list, &v.etag) {
            (Ok(EtagList::Any), _) => true,
            (Ok(EtagList::Tags(tags)), Some(e)) => tags.iter().any(|t| t.strong_eq(e)),
            _ => false,
        };
        if !ok {
            return Precondition::PreconditionFailed;
        }
    } else if let Some(ius) = single_date(request, &IF_UNMODIFIED_SINCE) {
        // §13.1.4: ignored when the representation has no modification date.
        if let Some(lm) = v.last_modified
            && unix_secs(lm) > unix_secs(ius)
        {
            return Precondition::PreconditionFailed;
        }
    }
    evaluate_for_cache(method, request, v)
}

/// Whether a `Range` header applies given `If-Range` (§13.1.5): true when
/// there is no If-Range, or it is a strong entity tag that strongly matches,
/// or an HTTP-date that exactly equals a strong Last-Modified (§8.8.2.2).
/// Otherwise the Range is ignored and the whole representation sent.
pub fn if_range_allows(request: &HeaderMap, v: &Validators) -> bool {
    let mut it = request.get_all(IF_RANGE).iter();
    let Some(value) = it.next() else {
        return true;
    };
    if it.next().is_some() {
        return false;
    }
    let value = trim_ows(value.as_bytes());
    if value.first() == Some(&b'"') || value.starts_with(b"W/") {
        return match (EntityTag::parse(value), &v.etag) {
            (Some(t), Some(e)) => t.strong_eq(e),
            _ => false,
        };
    }
    match (parse_http_date(value), v.last_modified) {
        (Some(d), Some(lm)) => v.last_modified_is_strong() && unix_secs(d) == unix_secs(lm),
        _ => false,
    }
}

/// Validator headers for revalidating a stored response (RFC 9111 §4.3.1):
/// `If-None-Match` with its ETag and `If-Modified-Since` with its
/// Last-Modified (when that is a valid date), copied byte for byte.
pub fn validation_headers(stored: &HeaderMap) -> Vec<(http::HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(etag) = stored.get(ETAG)
        && EntityTag::parse(etag.as_bytes()).is_some()
    {
        out.push((IF_NONE_MATCH, etag.clone()));
    }
    if let Some(lm) = stored.get(LAST_MODIFIED)
        && parse_http_date(lm.as_bytes()).is_some()
    {
        out.push((IF_MODIFIED_SINCE, lm.clone()));
    }
    out
}

/// The client's headers without its own preconditions and `Range`: the
/// cache fetches and validates whole responses (RFC 9111 §4.3.1, §3.3).
/// Borrowed when there is nothing to remove (the common case: no copy).
pub fn without_preconditions(client: &HeaderMap) -> Cow<'_, HeaderMap> {
    const FIELDS: [HeaderName; 6] = [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
        RANGE,
    ];
    // One pass over the (few) names beats six hash lookups.
    if !client.keys().any(|k| FIELDS.contains(k)) {
        return Cow::Borrowed(client);
    }
    let mut h = client.clone();
    for n in FIELDS {
        h.remove(n);
    }
    Cow::Owned(h)
}

/// The headers of a request that revalidates a stored response on behalf
/// of `client` (RFC 9111 §4.3.1): the client's headers minus its own
/// preconditions and `Range` (the cache validates its whole stored
/// response), plus [`validation_headers`].
pub fn revalidation_request_headers(client: &HeaderMap, stored: &HeaderMap) -> HeaderMap {
    let mut h = without_preconditions(client).into_owned();
    for (n, v) in validation_headers(stored) {
        h.insert(n, v);
    }
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "conditional_tests.rs"]
mod tests;

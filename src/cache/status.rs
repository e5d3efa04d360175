//! Cache phases, no-cache reasons and the RFC 9211 `Cache-Status` header.
//!
//! The phase names are shared by the access log and the response header so
//! both tell the same story.

use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::recent::Recent;
use super::sfv::{is_sf_token, write_string};

/// `Cache-Status` (RFC 9211 §2).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// What the cache did with a request (access log and `Cache-Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CachePhase {
    /// Fresh stored response served.
    Hit,
    /// Stale response served because the client's `max-stale` allowed it.
    StaleHit,
    /// Stale response served, refreshed in the background (RFC 5861 §3).
    StaleWhileRevalidate,
    /// Stale response served because validation failed (RFC 5861 §4).
    StaleIfError,
    /// Stored response validated by a 304 and served (RFC 9111 §4.3.4).
    Revalidated,
    /// Nothing stored for the URI (RFC 9211 `fwd=uri-miss`).
    UriMiss,
    /// Stored responses exist but none matches the Vary'd headers.
    VaryMiss,
    /// A stale response was validated and the origin sent a new one.
    Stale,
    /// The request's directives forced a forward (RFC 9211 `fwd=request`).
    Request,
    /// Served from another request's in-flight fetch (RFC 9211 `collapsed`).
    Collapsed,
    /// The cache was bypassed (site switch, hit-for-pass, policy).
    Bypass,
    /// The method is not cacheable (RFC 9211 `fwd=method`).
    Method,
    /// `only-if-cached` with nothing usable: 504 (RFC 9111 §5.2.1.7).
    OnlyIfCachedMiss,
}

/// RFC 9211 §2.2 `fwd` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fwd {
    /// `bypass`
    Bypass,
    /// `method`
    Method,
    /// `uri-miss`
    UriMiss,
    /// `vary-miss`
    VaryMiss,
    /// `miss`
    Miss,
    /// `request`
    Request,
    /// `stale`
    Stale,
    /// `partial`
    Partial,
}

impl Fwd {
    /// The sf-token.
    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Miss => "miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
            Fwd::Partial => "partial",
        }
    }
}

impl CachePhase {
    /// Log name.
    pub fn as_str(self) -> &'static str {
        match self {
            CachePhase::Hit => "hit",
            CachePhase::StaleHit => "stale-hit",
            CachePhase::StaleWhileRevalidate => "stale-while-revalidate",
            CachePhase::StaleIfError => "stale-if-error",
            CachePhase::Revalidated => "revalidated",
            CachePhase::UriMiss => "uri-miss",
            CachePhase::VaryMiss => "vary-miss",
            CachePhase::Stale => "stale",
            CachePhase::Request => "request",
            CachePhase::Collapsed => "collapsed",
            CachePhase::Bypass => "bypass",
            CachePhase::Method => "method",
            CachePhase::OnlyIfCachedMiss => "only-if-cached",
        }
    }

    /// Whether the response came from the cache without a forward
    /// (RFC 9211 §2.1 `hit`).
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            CachePhase::Hit | CachePhase::StaleHit | CachePhase::StaleWhileRevalidate
        )
    }

    /// [`CachePhase::is_hit`] for a phase's log name ([`CachePhase::as_str`]).
    pub fn is_hit_name(name: &str) -> bool {
        [
            CachePhase::Hit,
            CachePhase::StaleHit,
            CachePhase::StaleWhileRevalidate,
        ]
        .iter()
        .any(|p| p.as_str() == name)
    }

    /// The `fwd` parameter, if the request went (or tried to go) forward.
    pub fn fwd(self) -> Option<Fwd> {
        match self {
            CachePhase::Hit | CachePhase::StaleHit | CachePhase::StaleWhileRevalidate => None,
            CachePhase::OnlyIfCachedMiss => None,
            CachePhase::StaleIfError | CachePhase::Revalidated | CachePhase::Stale => {
                Some(Fwd::Stale)
            }
            CachePhase::UriMiss | CachePhase::Collapsed => Some(Fwd::UriMiss),
            CachePhase::VaryMiss => Some(Fwd::VaryMiss),
            CachePhase::Request => Some(Fwd::Request),
            CachePhase::Bypass => Some(Fwd::Bypass),
            CachePhase::Method => Some(Fwd::Method),
        }
    }

    /// A starting `Cache-Status` for this phase (`hit`/`fwd`/`collapsed`
    /// and a detail for the stale-serving phases).
    pub fn cache_status(self, cache_name: &'static str) -> CacheStatus {
        let mut s = CacheStatus::new(cache_name);
        s.hit = self.is_hit();
        s.fwd = self.fwd();
        s.collapsed = self == CachePhase::Collapsed;
        s.detail = match self {
            CachePhase::StaleHit => Some(Cow::Borrowed("max-stale")),
            CachePhase::StaleWhileRevalidate => Some(Cow::Borrowed("stale-while-revalidate")),
            CachePhase::StaleIfError => Some(Cow::Borrowed("stale-if-error")),
            CachePhase::OnlyIfCachedMiss => Some(Cow::Borrowed("only-if-cached")),
            _ => None,
        };
        s
    }
}

impl fmt::Display for CachePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a response was not stored (access log, `Cache-Status` `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoCacheReason {
    /// Request method not stored (RFC 9111 §3).
    Method,
    /// Non-final, 304, or not understood under must-understand (§3, §5.2.2.3).
    Status,
    /// 206 is not stored (§3.3 permits; this cache stores whole objects).
    PartialContent,
    /// Request `no-store` (§5.2.1.5).
    RequestNoStore,
    /// Response `no-store` (§5.2.2.5).
    NoStore,
    /// Unqualified `private` (§5.2.2.7).
    Private,
    /// `Authorization` without public/s-maxage/must-revalidate (§3.5).
    Authorization,
    /// `Vary: *` (§4.1).
    VaryStar,
    /// No explicit freshness and status not heuristically cacheable (§3).
    NotCacheable,
    /// The response body was incomplete (§3.3).
    Incomplete,
    /// Caching is switched off for the site.
    Disabled,
    /// A recent uncacheable answer for this key (hit-for-pass).
    HitForPass,
    /// Too large for the store.
    TooLarge,
}

impl NoCacheReason {
    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCacheReason::Method => "method",
            NoCacheReason::Status => "status",
            NoCacheReason::PartialContent => "partial-content",
            NoCacheReason::RequestNoStore => "request-no-store",
            NoCacheReason::NoStore => "no-store",
            NoCacheReason::Private => "private",
            NoCacheReason::Authorization => "authorization",
            NoCacheReason::VaryStar => "vary-star",
            NoCacheReason::NotCacheable => "not-cacheable",
            NoCacheReason::Incomplete => "incomplete",
            NoCacheReason::Disabled => "disabled",
            NoCacheReason::HitForPass => "hit-for-pass",
            NoCacheReason::TooLarge => "too-large",
        }
    }
}

impl fmt::Display for NoCacheReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest magnitude of an sf-integer (RFC 8941 §3.3.1).
const SF_INT_MAX: i64 = 999_999_999_999_999;

/// One `Cache-Status` list member (RFC 9211 §2).
#[derive(Debug, Clone, Default, Eq)]
pub struct CacheStatus {
    /// The cache's name (sf-token when possible, else sf-string).
    pub name: Cow<'static, str>,
    /// `hit` (§2.1).
    pub hit: bool,
    /// `fwd` (§2.2).
    pub fwd: Option<Fwd>,
    /// `fwd-status` (§2.3).
    pub fwd_status: Option<u16>,
    /// `ttl` (§2.4), seconds, may be negative.
    pub ttl: Option<i64>,
    /// `stored` (§2.5).
    pub stored: bool,
    /// `collapsed` (§2.6).
    pub collapsed: bool,
    /// `key` (§2.7).
    pub key: Option<String>,
    /// `detail` (§2.8).
    pub detail: Option<Cow<'static, str>>,
}

/// Every field compared, the numbers and flags first: the memo of encoded
/// values ([`CacheStatus::append_to`]) compares a member with several kept
/// ones, which mostly differ in those, and the name (the same string on
/// every member this node makes) is then compared once, not per slot.
impl PartialEq for CacheStatus {
    fn eq(&self, o: &Self) -> bool {
        self.fwd_status == o.fwd_status
            && self.ttl == o.ttl
            && self.fwd == o.fwd
            && self.hit == o.hit
            && self.stored == o.stored
            && self.collapsed == o.collapsed
            && self.detail == o.detail
            && self.key == o.key
            && self.name == o.name
    }
}

impl CacheStatus {
    /// An empty member for `name`.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        CacheStatus {
            name: name.into(),
            ..Default::default()
        }
    }
    /// Sets `hit`.
    pub fn hit(mut self) -> Self {
        self.hit = true;
        self
    }
    /// Sets `fwd`.
    pub fn fwd(mut self, fwd: Fwd) -> Self {
        self.fwd = Some(fwd);
        self
    }
    /// Sets `fwd-status`.
    pub fn fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }
    /// Sets `ttl`.
    pub fn ttl(mut self, ttl: i64) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets `stored`.
    pub fn stored(mut self) -> Self {
        self.stored = true;
        self
    }
    /// Sets `collapsed`.
    pub fn collapsed(mut self) -> Self {
        self.collapsed = true;
        self
    }
    /// Sets `key`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
    /// Sets `detail`.
    pub fn detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The header value. Serialisation is always valid ASCII.
    pub fn to_header_value(&self) -> HeaderValue {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
            .unwrap_or_else(|_| HeaderValue::from_static("Outpost"))
    }

    /// Appends this member to any `Cache-Status` already present (RFC 9211
    /// §2: caches closer to the client come later in the list). Empty
    /// lines are empty lists (RFC 8941 §3.1): left out of the result.
    pub fn append_to(&self, headers: &mut HeaderMap) {
        // One lookup of the (non-standard, so costly to hash) name for both
        // reading what is there and writing the result.
        match headers.entry(CACHE_STATUS.clone()) {
            http::header::Entry::Occupied(mut e) if e.iter().all(|v| v.is_empty()) => {
                // Replaced in place: no room taken.
                e.insert(self.memoised_value());
            }
            http::header::Entry::Occupied(mut e) => {
                let mut out: Vec<u8> = Vec::with_capacity(96);
                for v in e.iter().filter(|v| !v.is_empty()) {
                    out.extend_from_slice(v.as_bytes());
                    out.extend_from_slice(b", ");
                }
                self.encode(&mut out);
                // Replaces every earlier line with the combined one.
                e.insert(self.value_of(&out));
            }
            http::header::Entry::Vacant(e) => {
                e.insert(self.memoised_value());
            }
        }
    }

    /// Makes room in `headers` for a later [`Self::append_to`] that then
    /// adds nothing: an empty line (an empty list) when there is no
    /// `Cache-Status` yet.
    pub fn make_room(headers: &mut HeaderMap) {
        if let http::header::Entry::Vacant(e) = headers.entry(CACHE_STATUS.clone()) {
            e.insert(HeaderValue::from_static(""));
        }
    }

    /// This member alone as the field's value: what [`Self::append_to`]
    /// sets in a map whose `Cache-Status` is absent or a placeholder.
    pub fn field_value(&self) -> HeaderValue {
        self.memoised_value()
    }

    /// This member alone as a field value, from a per-thread memo of the
    /// last few encoded: most responses carry one of a handful of members
    /// (a pass-through's is the same every time; a hit's changes with its
    /// `ttl`), and a memoised value is a reference count, not an encoding,
    /// a buffer and a copy.
    fn memoised_value(&self) -> HeaderValue {
        thread_local! {
            static MEMO: std::cell::RefCell<Recent<CacheStatus, HeaderValue, 4>> =
                const { std::cell::RefCell::new(Recent::new()) };
        }
        // A `key` is the request's own: not worth keeping.
        if self.key.is_some() {
            return self.to_header_value();
        }
        MEMO.with(|m| {
            let Ok(mut m) = m.try_borrow_mut() else {
                return self.to_header_value();
            };
            if let Some(v) = m.get(self) {
                return v;
            }
            let v = self.to_header_value();
            m.put(self.clone(), v.clone());
            v
        })
    }

    /// `out` as a field value (no core::fmt on the hot path: one
    /// exact-size copy), or the escaped form if `out` is not one.
    fn value_of(&self, out: &[u8]) -> HeaderValue {
        HeaderValue::from_bytes(out).unwrap_or_else(|_| self.to_header_value())
    }

    /// Writes the member (RFC 9211 §2, RFC 8941 §4.1) to `out`. Only
    /// printable ASCII is written: strings are escaped, other bytes become
    /// `?`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn integer(out: &mut Vec<u8>, n: i64) {
            // RFC 8941 §3.3.1: at most 15 digits.
            let mut b = itoa::Buffer::new();
            out.extend_from_slice(b.format(n.clamp(-SF_INT_MAX, SF_INT_MAX)).as_bytes());
        }
        if is_sf_token(&self.name) {
            out.extend_from_slice(self.name.as_bytes());
        } else {
            write_string(out, &self.name);
        }
        if self.hit {
            out.extend_from_slice(b"; hit");
        }
        if let Some(fwd) = self.fwd {
            out.extend_from_slice(b"; fwd=");
            out.extend_from_slice(fwd.as_str().as_bytes());
        }
        if let Some(s) = self.fwd_status {
            out.extend_from_slice(b"; fwd-status=");
            integer(out, i64::from(s));
        }
        if let Some(t) = self.ttl {
            out.extend_from_slice(b"; ttl=");
            integer(out, t);
        }
        if self.stored {
            out.extend_from_slice(b"; stored");
        }
        if self.collapsed {
            out.extend_from_slice(b"; collapsed");
        }
        if let Some(k) = &self.key {
            out.extend_from_slice(b"; key=");
            write_string(out, k);
        }
        if let Some(d) = &self.detail {
            out.extend_from_slice(b"; detail=");
            write_string(out, d);
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        // `encode` writes printable ASCII only.
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "status_tests.rs"]
mod tests;

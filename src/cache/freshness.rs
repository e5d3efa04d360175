//! Shared-cache storability (RFC 9111 §3), freshness lifetime (§4.2.1,
//! §4.2.2), age (§4.2.3) and the reuse decision for a stored response
//! (§4.2.4, §5.2, RFC 5861).
//!
//! `tests/rfc_oracle.rs` holds storability and lifetimes against
//! `http-cache-semantics` 3 (RFC 7234) on random responses. Where it differs,
//! this follows RFC 9111: qualified `private`/`no-cache` are honoured per field
//! (§5.2.2.4, §5.2.2.7), `must-understand` (§5.2.2.3), any final status with
//! explicit freshness is stored (§3; the crate stores only the statuses it
//! lists), `proxy-revalidate` bounds stale reuse and leaves the lifetime
//! (§5.2.2.8; the crate makes it 0), an `Expires` that is not a date means
//! already expired (§5.3), RFC 9213 targeted fields (Expires ignored under a
//! targeted field), and no `Warning` headers (§5.5 obsoleted).

use std::time::{Duration, SystemTime};

use http::header::{AGE, AUTHORIZATION, DATE, EXPIRES, HeaderName, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::control::{EffectiveControl, MaxStale, RequestDirectives};
use super::status::NoCacheReason;
use super::syntax::{DELTA_SECONDS_MAX, header_date, parse_u64_saturating, secs_between, trim_ows};

/// Heuristic freshness settings (RFC 9111 §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeuristicConfig {
    /// Fraction of `Date − Last-Modified` (typically 0.1). Values that are
    /// negative or not finite disable heuristics.
    pub fraction: f64,
    /// Upper bound on a heuristic lifetime.
    pub max: Duration,
}

impl Default for HeuristicConfig {
    fn default() -> Self {
        HeuristicConfig {
            fraction: 0.1,
            max: Duration::from_secs(86_400),
        }
    }
}

/// Methods whose responses may be reused from this cache (GET and HEAD
/// share entries; RFC 9110 §9.3.1, §9.3.2, RFC 9111 §2).
pub fn is_cacheable_method(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Status codes that are heuristically cacheable (RFC 9110 §15.1).
pub fn is_heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Status codes whose caching requirements this cache understands
/// (for `must-understand`, RFC 9111 §5.2.2.3): the final codes defined by
/// RFC 9110 §15.
pub fn is_understood_status(status: u16) -> bool {
    matches!(status,
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505)
}

/// A response may be stored; these fields must be removed first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Storable {
    /// Fields named by a qualified `private` (§5.2.2.7: a shared cache MUST
    /// NOT store them) or qualified `no-cache` (§5.2.2.4: they must not be
    /// sent without revalidation; not storing them guarantees that), plus
    /// the fields excluded by §3.1 (see [`super::update::excluded_from_storage`]).
    pub strip_fields: Vec<HeaderName>,
}

/// Whether a shared cache may store this response (RFC 9111 §3).
///
/// Only GET responses are stored (a HEAD response has no content; it can
/// only update a stored GET, §4.3.5), and 206 is not stored (this cache
/// fetches whole objects; §3.3 allows but does not require partial storage).
/// Completeness of the body (§3.3) is the caller's concern.
pub fn storability(
    method: &Method,
    request_headers: &HeaderMap,
    request_cc: &RequestDirectives,
    status: StatusCode,
    response_headers: &HeaderMap,
    control: &EffectiveControl,
) -> Result<Storable, NoCacheReason> {
    let d = &control.directives;
    let code = status.as_u16();
    // §3: the request method is understood by the cache.
    if method != Method::GET {
        return Err(NoCacheReason::Method);
    }
    // §3: the response status code is final.
    if code < 200 {
        return Err(NoCacheReason::Status);
    }
    // §3: 206 and 304 need special handling we do not store.
    if code == 206 {
        return Err(NoCacheReason::PartialContent);
    }
    if code == 304 {
        return Err(NoCacheReason::Status);
    }
    // §5.2.1.5: request no-store.
    if request_cc.no_store {
        return Err(NoCacheReason::RequestNoStore);
    }
    // §5.2.2.3: with must-understand, the status must be understood, and
    // then no-store is ignored.
    let understood = is_understood_status(code);
    if d.must_understand && !understood {
        return Err(NoCacheReason::Status);
    }
    if d.no_store && !(d.must_understand && understood) {
        return Err(NoCacheReason::NoStore); // §5.2.2.5
    }
    if d.private.is_all() {
        return Err(NoCacheReason::Private); // §5.2.2.7, shared cache
    }
    // §3.5: authenticated requests.
    if request_headers.contains_key(AUTHORIZATION)
        && !(d.public || d.s_maxage.is_some() || d.must_revalidate)
    {
        return Err(NoCacheReason::Authorization);
    }
    // §4.1: "Vary: *" always fails to match, so storing it is useless.
    if super::vary::Vary::from_headers(response_headers) == super::vary::Vary::Any {
        return Err(NoCacheReason::VaryStar);
    }
    // §3: explicit freshness, public, or a heuristically cacheable status.
    let has_expires = !control.ignores_expires() && response_headers.contains_key(EXPIRES);
    if !(d.has_explicit_lifetime() || has_expires || d.public || is_heuristically_cacheable(code)) {
        return Err(NoCacheReason::NotCacheable);
    }
    let mut strip_fields = super::update::excluded_from_storage(response_headers);
    for f in d.private.fields().iter().chain(d.no_cache.fields()) {
        if !strip_fields.contains(f) {
            strip_fields.push(f.clone());
        }
    }
    Ok(Storable { strip_fields })
}

/// Where a freshness lifetime came from (RFC 9111 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeSource {
    /// `s-maxage` (shared caches).
    SMaxAge,
    /// `max-age`.
    MaxAge,
    /// `Expires − Date`.
    Expires,
    /// Heuristic (§4.2.2).
    Heuristic,
    /// No freshness information: lifetime 0.
    None,
}

/// A freshness lifetime in seconds and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Seconds.
    pub secs: u64,
    /// Where it came from.
    pub source: LifetimeSource,
}

/// The freshness lifetime of a response for a shared cache (RFC 9111
/// §4.2.1): `s-maxage`, else `max-age`, else `Expires − Date` (Date defaults
/// to `response_time`; an invalid or repeated-and-differing Expires means
/// already expired), else a heuristic (§4.2.2). Under an RFC 9213 targeted
/// field, Expires is ignored.
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    control: &EffectiveControl,
    response_time: SystemTime,
    heuristic: &HeuristicConfig,
) -> Lifetime {
    let d = &control.directives;
    if let Some(s) = d.s_maxage {
        return Lifetime {
            secs: u64::from(s),
            source: LifetimeSource::SMaxAge,
        };
    }
    if let Some(s) = d.max_age {
        return Lifetime {
            secs: u64::from(s),
            source: LifetimeSource::MaxAge,
        };
    }
    let date = header_date(headers, &DATE).unwrap_or(response_time);
    if !control.ignores_expires() && headers.contains_key(EXPIRES) {
        // §5.3: an invalid date (e.g. "0") represents a time in the past.
        let secs = header_date(headers, &EXPIRES).map_or(0, |e| secs_between(date, e));
        return Lifetime {
            secs,
            source: LifetimeSource::Expires,
        };
    }
    // §4.2.2: heuristics only for statuses that are heuristically cacheable and for
    // responses "marked as explicitly cacheable (e.g., with a public response
    // directive)".
    if (is_heuristically_cacheable(status.as_u16()) || d.public)
        && let Some(lm) = header_date(headers, &LAST_MODIFIED)
    {
        let f = heuristic.fraction;
        let since = secs_between(lm, date);
        if f.is_finite() && f > 0.0 && since > 0 {
            // `as` saturates on overflow.
            let secs = ((since as f64) * f) as u64;
            return Lifetime {
                secs: secs.min(heuristic.max.as_secs()),
                source: LifetimeSource::Heuristic,
            };
        }
    }
    Lifetime {
        secs: 0,
        source: LifetimeSource::None,
    }
}

/// `age_value` (RFC 9111 §4.2.3): the `Age` field as a number of seconds,
/// 0 when absent. RFC 9111 §5.1: a list (`Age: 7200, 0`) or repeated lines
/// (one list, RFC 9110 §5.3) count by their first member; when that is not
/// delta-seconds the response "SHOULD be considered stale": its age is
/// then the largest there is, 2^31 (§1.2.2), stale for any lifetime.
/// Clamped to 2^31.
pub fn age_value(headers: &HeaderMap) -> u64 {
    let Some(first) = headers.get(AGE) else {
        return 0;
    };
    let b = first.as_bytes();
    let member = b.split(|&c| c == b',').next().unwrap_or(b);
    parse_u64_saturating(trim_ows(member))
        .unwrap_or(u64::MAX)
        .min(u64::from(DELTA_SECONDS_MAX))
}

/// `apparent_age = max(0, response_time − date_value)` (§4.2.3). Without a
/// Date, the response time stands in (RFC 9110 §6.6.1), giving 0.
pub fn apparent_age(date: Option<SystemTime>, response_time: SystemTime) -> u64 {
    date.map_or(0, |d| secs_between(d, response_time))
}

/// `response_delay = response_time − request_time`,
/// `corrected_age_value = age_value + response_delay` (§4.2.3).
pub fn corrected_age_value(
    age_value: u64,
    request_time: SystemTime,
    response_time: SystemTime,
) -> u64 {
    age_value.saturating_add(secs_between(request_time, response_time))
}

/// `corrected_initial_age = max(apparent_age, corrected_age_value)` (§4.2.3).
pub fn corrected_initial_age(apparent_age: u64, corrected_age_value: u64) -> u64 {
    apparent_age.max(corrected_age_value)
}

/// `resident_time = now − response_time` (§4.2.3).
pub fn resident_time(response_time: SystemTime, now: SystemTime) -> u64 {
    secs_between(response_time, now)
}

/// `current_age = corrected_initial_age + resident_time` (§4.2.3).
pub fn current_age(corrected_initial_age: u64, response_time: SystemTime, now: SystemTime) -> u64 {
    corrected_initial_age.saturating_add(resident_time(response_time, now))
}

/// `corrected_initial_age` straight from a received response's headers
/// (its `Date` and `Age`) and the request/response times (§4.2.3).
pub fn initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> u64 {
    let apparent = apparent_age(header_date(headers, &DATE), response_time);
    corrected_initial_age(
        apparent,
        corrected_age_value(age_value(headers), request_time, response_time),
    )
}

/// The `Age` header value to send (§5.1), clamped to 2^31 (§1.2.2).
pub fn age_header_value(current_age: u64) -> HeaderValue {
    crate::fields::number(current_age.min(u64::from(DELTA_SECONDS_MAX)))
}

/// What the reuse decision needs to know about a stored response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredFacts {
    /// Freshness lifetime, seconds.
    pub lifetime: u64,
    /// Current age, seconds (§4.2.3).
    pub current_age: u64,
    /// Unqualified `no-cache` (§5.2.2.4).
    pub no_cache: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `s-maxage` present (§5.2.2.10: implies proxy-revalidate).
    pub s_maxage: bool,
    /// `stale-while-revalidate` window (RFC 5861 §3).
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error` window (RFC 5861 §4).
    pub stale_if_error: Option<u32>,
    /// Marked stale regardless of age (soft purge, §4.3.5 HEAD mismatch).
    pub forced_stale: bool,
}

/// Site switches for the reuse decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReuseOptions {
    /// Ignore client reloads: request `no-cache` and `max-age=0`
    /// (RFC 9111 §5.2.1.4 allows a cache to be configured so).
    pub ignore_client_reload: bool,
    /// Read `s-maxage`'s implied proxy-revalidate (§5.2.2.10) as also
    /// forbidding RFC 5861 stale-while-revalidate / stale-if-error. Off by
    /// default: an explicit RFC 5861 grant from the origin is honoured next
    /// to `s-maxage` (as deployed CDNs do); client `max-stale` never is.
    pub strict_s_maxage: bool,
    /// Serve a stored response this many seconds stale when the origin
    /// fails (RFC 9111 §4.2.4 allows stale when disconnected), as if it had
    /// `stale-if-error`; never past `must-revalidate`, `proxy-revalidate`,
    /// `no-cache` or `s-maxage`.
    pub stale_on_error: Option<u32>,
}

/// Why a stored response cannot be reused without validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevalidateReason {
    /// Response `no-cache` (§5.2.2.4).
    ResponseNoCache,
    /// Request `no-cache` (§5.2.1.4).
    RequestNoCache,
    /// Request `max-age` exceeded (§5.2.1.1).
    RequestMaxAge,
    /// Request `min-fresh` not met (§5.2.1.3).
    RequestMinFresh,
    /// Stale and `must-revalidate` (§5.2.2.2).
    MustRevalidate,
    /// Stale and `proxy-revalidate` (§5.2.2.8).
    ProxyRevalidate,
    /// Stale and `s-maxage` (§5.2.2.10).
    SMaxAge,
}

impl RevalidateReason {
    /// Short name for `Cache-Status` `detail` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RevalidateReason::ResponseNoCache => "no-cache",
            RevalidateReason::RequestNoCache => "request-no-cache",
            RevalidateReason::RequestMaxAge => "request-max-age",
            RevalidateReason::RequestMinFresh => "request-min-fresh",
            RevalidateReason::MustRevalidate => "must-revalidate",
            RevalidateReason::ProxyRevalidate => "proxy-revalidate",
            RevalidateReason::SMaxAge => "s-maxage",
        }
    }

    /// Whether the request, not the stored response, forced validation
    /// (RFC 9211 `fwd=request` rather than `fwd=stale`).
    pub fn is_request_driven(self) -> bool {
        matches!(
            self,
            RevalidateReason::RequestNoCache
                | RevalidateReason::RequestMaxAge
                | RevalidateReason::RequestMinFresh
        )
    }
}

/// How a stored response may be used for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh: serve it (§4.2).
    Fresh,
    /// Stale, and no directive forbids serving stale (§4.2.4).
    Stale {
        /// The client's `max-stale` accepts this staleness: serve it without
        /// contacting the origin (§5.2.1.2).
        client_allows: bool,
        /// Within `stale-while-revalidate`: serve it now, refresh in the
        /// background (RFC 5861 §3).
        can_serve_stale_while_revalidate: bool,
        /// Within `stale-if-error` (response or request): may be served if
        /// validation fails with a 5xx or no answer (RFC 5861 §4).
        can_serve_stale_if_error: bool,
    },
    /// Validate with the origin before use (§4.3).
    MustRevalidate {
        /// Why.
        reason: RevalidateReason,
        /// May still be served if validation fails (RFC 5861 §4); never
        /// under no-cache/must-revalidate/proxy-revalidate (§4.2.4).
        can_serve_stale_if_error: bool,
    },
}

/// The reuse decision plus numbers for `Cache-Status` (RFC 9211 `ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What may be done.
    pub reuse: Reuse,
    /// Remaining freshness in seconds; negative when stale (RFC 9211 §2.5).
    pub ttl: i64,
    /// Current age (for the `Age` header).
    pub current_age: u64,
}

impl Decision {
    /// Whether the stored response can be sent now without contacting the
    /// origin (fresh, or stale under the client's max-stale).
    pub fn serve_without_origin(&self) -> bool {
        matches!(
            self.reuse,
            Reuse::Fresh
                | Reuse::Stale {
                    client_allows: true,
                    ..
                }
        )
    }

    /// Whether to serve stale now and refresh in the background.
    pub fn stale_while_revalidate(&self) -> bool {
        matches!(
            self.reuse,
            Reuse::Stale {
                client_allows: false,
                can_serve_stale_while_revalidate: true,
                ..
            }
        )
    }

    /// Whether a failed validation may fall back to the stored response.
    pub fn can_serve_stale_if_error(&self) -> bool {
        match self.reuse {
            Reuse::Fresh => false,
            Reuse::Stale {
                can_serve_stale_if_error,
                ..
            }
            | Reuse::MustRevalidate {
                can_serve_stale_if_error,
                ..
            } => can_serve_stale_if_error,
        }
    }

    /// `only-if-cached` (§5.2.1.7): true when the cache must answer 504
    /// because the stored response cannot be used without the origin.
    pub fn only_if_cached_fails(&self, request: &RequestDirectives) -> bool {
        request.only_if_cached && !self.serve_without_origin()
    }

    /// `Cache-Status` `detail` text (RFC 9211 §2.8), if any.
    pub fn detail(&self) -> Option<&'static str> {
        match self.reuse {
            Reuse::MustRevalidate { reason, .. } => Some(reason.as_str()),
            Reuse::Stale {
                client_allows: true,
                ..
            } => Some("max-stale"),
            _ => None,
        }
    }
}

/// Decides how a stored response may satisfy a request (RFC 9111 §4,
/// §4.2.4, §5.2.1, §5.2.2; RFC 5861).
pub fn decide(stored: &StoredFacts, request: &RequestDirectives, opts: &ReuseOptions) -> Decision {
    let age = stored.current_age;
    let lifetime = if stored.forced_stale {
        0
    } else {
        stored.lifetime
    };
    let ttl = i64::try_from(lifetime)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(age).unwrap_or(i64::MAX));
    let fresh = lifetime > age; // §4.2: fresh iff lifetime > current_age
    let staleness = age.saturating_sub(lifetime);
    let within = |w: Option<u32>| w.is_some_and(|w| staleness <= u64::from(w));
    // RFC 5861 §4 (response or request stale-if-error).
    let sie = within(stored.stale_if_error)
        || within(request.stale_if_error)
        // The site's own grant: not over `s-maxage` (a shared cache's
        // explicit lifetime); the other forbidding directives below apply.
        || (!stored.s_maxage && within(opts.stale_on_error));
    let make = |reuse| Decision {
        reuse,
        ttl,
        current_age: age,
    };
    let revalidate = |reason, sie| {
        make(Reuse::MustRevalidate {
            reason,
            can_serve_stale_if_error: sie,
        })
    };

    // §5.2.2.4 / §4.2.4: no-cache forbids reuse and stale serving.
    if stored.no_cache {
        return revalidate(RevalidateReason::ResponseNoCache, false);
    }
    let reload_ignored = opts.ignore_client_reload;
    // §5.2.1.4: the client requires validation; serving stored content after
    // a failed validation would contradict it.
    if request.no_cache && !reload_ignored {
        return revalidate(RevalidateReason::RequestNoCache, false);
    }
    // Stale-forbidding directives, §4.2.4 / §5.2.2.2 / §5.2.2.8 / §5.2.2.10.
    let forbid = if stored.must_revalidate {
        Some(RevalidateReason::MustRevalidate)
    } else if stored.proxy_revalidate {
        Some(RevalidateReason::ProxyRevalidate)
    } else if stored.s_maxage && opts.strict_s_maxage {
        Some(RevalidateReason::SMaxAge)
    } else {
        None
    };
    let sie_ok = sie && forbid.is_none();
    // §5.2.1.1: the client does not want a response older than max-age.
    // Age has one-second granularity: a response of age "0" may be almost
    // a second old, so `max-age=0` (a client reload) always validates.
    if let Some(max_age) = request.max_age
        && !(reload_ignored && max_age == 0)
        && (age > u64::from(max_age) || max_age == 0)
    {
        return revalidate(RevalidateReason::RequestMaxAge, sie_ok);
    }
    // §5.2.1.3: the response must stay fresh for min-fresh more seconds.
    if let Some(min_fresh) = request.min_fresh
        && fresh
        && lifetime - age < u64::from(min_fresh)
    {
        return revalidate(RevalidateReason::RequestMinFresh, sie_ok);
    }
    if fresh {
        return make(Reuse::Fresh);
    }
    if let Some(reason) = forbid {
        return revalidate(reason, false);
    }
    // §5.2.1.2: max-stale; s-maxage implies proxy-revalidate, which
    // forbids it in a shared cache (§5.2.2.10).
    let client_allows = !stored.s_maxage
        && match request.max_stale {
            Some(MaxStale::Any) => true,
            Some(MaxStale::Secs(s)) => staleness <= u64::from(s),
            None => false,
        };
    make(Reuse::Stale {
        client_allows,
        can_serve_stale_while_revalidate: within(stored.stale_while_revalidate),
        can_serve_stale_if_error: sie,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "freshness_tests.rs"]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "decide_tests.rs"]
mod decide_tests;

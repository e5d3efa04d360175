//! `[[site]]`: a site's hosts, its origins, its cache settings, access,
//! limits, rules, fields and compression, and their validation with key
//! paths; the origin pool's part is [`super::pool`].

use std::time::Duration;

use super::file::FileSite;
use super::pool::{MAX_ORIGINS, OriginSpec, PoolPolicy, origin, pool_policy};
use super::validate::{Errors, duration};
use super::{CacheConfig, HostPattern};

/// `[[site]]`: hosts served from one origin pool.
#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub hosts: Vec<HostPattern>,
    pub origins: Vec<OriginSpec>,
    /// Whether responses for this site are cached.
    pub cache: bool,
    /// Ignore client `no-cache` / `max-age=0` reloads (RFC 9111 §5.2.1.4
    /// allows a cache to be configured so).
    pub ignore_client_reload: bool,
    /// Serve a stored response up to this stale when the origin is
    /// unreachable, resets, times out or answers 5xx (default: off).
    pub stale_on_error: Option<std::time::Duration>,
    /// Remove `CDN-Cache-Control` and the configured targeted field from
    /// responses to clients (RFC 9213; default: forwarded).
    pub strip_targeted_fields: bool,
    /// Store a POST's response for later GETs when its `Content-Location`
    /// is the target URI and it has explicit freshness (RFC 9110 §9.3.3).
    pub cache_post_responses: bool,
    /// Fetch objects from the origin in aligned slices of this many bytes
    /// with `Range` requests, each stored on its own (default: off).
    pub slice: Option<u64>,
    /// Send the origin's Early Hints of a cacheable object at once on a
    /// later miss or revalidation of it, before asking the origin.
    pub early_hints: bool,
    /// How the origin pool chooses, checks and retries.
    pub pool: PoolPolicy,
    /// Answer cleartext requests with 308 to the `https` URL.
    pub https_redirect: bool,
    /// `Strict-Transport-Security` value added to responses over TLS.
    pub hsts: Option<http::HeaderValue>,
    /// Client addresses this site serves (empty: all) and refuses.
    pub allow: Vec<ipnet::IpNet>,
    pub deny: Vec<ipnet::IpNet>,
    /// Fields removed and set on requests and responses.
    pub headers: super::HeaderRules,
    /// A request rate per client address, if limited.
    pub rate_limit: Option<super::RateLimitConfig>,
    /// Request limits of its own, instead of `[limits]`'s.
    pub limits: super::SiteLimits,
    /// Request rules, in order: the first that matches decides.
    pub rules: Vec<super::RuleConfig>,
    /// What is compressed, how and how much.
    pub compression: super::compression::CompressionConfig,
}

/// The smallest `slice` (smaller ones would turn one object into too many requests).
pub const MIN_SLICE: u64 = 64 << 10;

/// The largest `slice`.
pub const MAX_SLICE: u64 = 1 << 30;

/// Validates `[[site]]` number `i`.
pub(super) fn site(
    errs: &mut Errors,
    i: usize,
    s: &FileSite,
    cache: &CacheConfig,
    compression: &super::compression::CompressionConfig,
) -> Site {
    let base = format!("site[{i}]");
    let name = s.name.clone().unwrap_or_else(|| format!("site{i}"));
    let mut hosts = Vec::new();
    match &s.hosts {
        None => hosts.push(HostPattern::Any),
        Some(list) if list.is_empty() => errs.push(
            format!("{base}.hosts"),
            "must list at least one host pattern (use \"*\" for a catch-all)",
        ),
        Some(list) => {
            for (j, h) in list.iter().enumerate() {
                match HostPattern::parse(h) {
                    Ok(p) => hosts.push(p),
                    Err(e) => errs.push(format!("{base}.hosts[{j}]"), e),
                }
            }
        }
    }
    let mut origins = Vec::new();
    match &s.origins {
        None => errs.push(
            format!("{base}.origins"),
            "missing: give at least one origin URL, e.g. origins = [\"http://10.0.0.5:8000\"]",
        ),
        Some(list) if list.is_empty() => errs.push(
            format!("{base}.origins"),
            "must list at least one origin URL",
        ),
        Some(list) if list.len() > MAX_ORIGINS => errs.push(
            format!("{base}.origins"),
            format!("{} origins: a site has at most {MAX_ORIGINS}", list.len()),
        ),
        Some(list) => {
            for (j, o) in list.iter().enumerate() {
                if let Some(spec) = origin(errs, &format!("{base}.origins[{j}]"), o) {
                    if origins.iter().any(|x: &OriginSpec| x.url == spec.url) {
                        errs.push(
                            format!("{base}.origins[{j}]"),
                            format!("`{}` is listed twice", spec.url),
                        );
                    }
                    origins.push(spec);
                }
            }
        }
    }
    Site {
        name,
        hosts,
        origins,
        cache: s.cache.unwrap_or(cache.enabled),
        ignore_client_reload: s.ignore_client_reload.unwrap_or(cache.ignore_client_reload),
        strip_targeted_fields: s.strip_targeted_fields.unwrap_or(false),
        cache_post_responses: s.cache_post_responses.unwrap_or(false),
        early_hints: s.early_hints.unwrap_or(false),
        slice: s.slice.as_ref().and_then(|v| {
            let key = format!("{base}.slice");
            let n = super::validate::size(errs, &key, Some(v), 0);
            if n != 0 && !(MIN_SLICE..=MAX_SLICE).contains(&n) {
                errs.push(key, format!("{n} bytes: a slice is 64KiB to 1GiB"));
                return None;
            }
            (n != 0).then_some(n)
        }),
        stale_on_error: s.stale_on_error.as_ref().and_then(|v| {
            if v == "off" {
                return None;
            }
            let d = duration(errs, &format!("{base}.stale_on_error"), Some(v), Duration::ZERO);
            (!d.is_zero()).then_some(d)
        }),
        pool: pool_policy(errs, &base, s),
        https_redirect: s.https_redirect.unwrap_or(false),
        allow: super::access::nets(errs, &format!("{base}.allow"), s.allow.as_ref()),
        deny: super::access::nets(errs, &format!("{base}.deny"), s.deny.as_ref()),
        limits: super::access::site_limits(errs, &base, s),
        rules: super::rules::rules(errs, &base, s.rules.as_deref()),
        compression: super::compression::compression(
            errs,
            &format!("{base}.compression"),
            s.compression.as_ref(),
            compression,
        ),
        rate_limit: s
            .rate_limit
            .as_ref()
            .map(|r| super::access::rate_limit(errs, &base, r)),
        headers: super::headers::header_rules(
            errs,
            &base,
            s.headers.as_ref(),
            s.pass_request_headers.as_ref(),
        ),
        hsts: s.hsts.as_ref().and_then(|h| {
            // RFC 6797 §6.1: `max-age` is required.
            let ok = h.split(';').any(|d| {
                d.trim()
                    .strip_prefix("max-age=")
                    .is_some_and(|v| v.trim_matches('"').parse::<u64>().is_ok())
            });
            match http::HeaderValue::from_str(h) {
                Ok(v) if ok => Some(v),
                _ => {
                    errs.push(
                        format!("{base}.hsts"),
                        format!("`{h}` is not a Strict-Transport-Security value like \"max-age=31536000; includeSubDomains\""),
                    );
                    None
                }
            }
        }),
    }
}

//! `[access]`, `[server] trusted_proxies` and a site's `allow` / `deny`:
//! which client addresses are believed when they forward for others, and
//! which may use the node. Lists are CIDRs (`10.0.0.0/8`, `2001:db8::/32`,
//! or a bare address); `deny_file` names a file of them, read by the
//! admission layer at start-up and by `outpost check`.

use std::path::PathBuf;
use std::time::Duration;

use super::file::{FileAccess, FileRateLimit};
use super::validate::{Errors, duration, parse_net};

/// Allow and deny lists: deny wins; an empty allow list allows everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessConfig {
    pub allow: Vec<ipnet::IpNet>,
    pub deny: Vec<ipnet::IpNet>,
    /// One CIDR per line, `#` comments.
    pub deny_file: Option<PathBuf>,
}

/// A list of CIDRs at `key`.
pub(super) fn nets(errs: &mut Errors, key: &str, list: Option<&Vec<String>>) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for (i, n) in list.into_iter().flatten().enumerate() {
        match parse_net(n) {
            Ok(net) => out.push(net),
            Err(e) => errs.push(format!("{key}[{i}]"), e),
        }
    }
    out
}

/// Validates `[access]`.
pub(super) fn access_section(f: Option<&FileAccess>, errs: &mut Errors) -> AccessConfig {
    let Some(f) = f else {
        return AccessConfig::default();
    };
    AccessConfig {
        allow: nets(errs, "access.allow", f.allow.as_ref()),
        deny: nets(errs, "access.deny", f.deny.as_ref()),
        deny_file: match &f.deny_file {
            Some(p) if p.trim().is_empty() => {
                errs.push("access.deny_file", "empty path");
                None
            }
            p => p.as_ref().map(PathBuf::from),
        },
    }
}

/// `[site.rate_limit]`: a token bucket per client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub requests: u32,
    pub period: Duration,
    /// Requests at once (default: `requests`).
    pub burst: u32,
    /// Only requests whose path starts so are counted (default: all).
    pub path_prefix: Option<String>,
    /// Client addresses remembered at most (default 100,000).
    pub max_tracked_clients: usize,
}

/// Validates a site's `[site.rate_limit]`.
pub(super) fn rate_limit(errs: &mut Errors, base: &str, f: &FileRateLimit) -> RateLimitConfig {
    let key = |k: &str| format!("{base}.rate_limit.{k}");
    let count = |errs: &mut Errors, k: &str, v: Option<i64>, d: u32| match v {
        None => d,
        Some(n) if (1..=10_000_000).contains(&n) => n as u32,
        Some(n) => {
            errs.push(key(k), format!("{n} is out of range (1 to 10000000)"));
            d
        }
    };
    let requests = match f.requests {
        None => {
            errs.push(
                key("requests"),
                "missing: requests per period, e.g. requests = 100",
            );
            1
        }
        Some(_) => count(errs, "requests", f.requests, 1),
    };
    let path_prefix = f.path_prefix.clone();
    if let Some(p) = &path_prefix
        && !p.starts_with('/')
    {
        errs.push(key("path_prefix"), format!("`{p}` does not start with /"));
    }
    RateLimitConfig {
        requests,
        period: duration(
            errs,
            &key("period"),
            f.period.as_ref(),
            Duration::from_secs(1),
        ),
        burst: count(errs, "burst", f.burst, requests),
        path_prefix,
        max_tracked_clients: match f.max_tracked_clients {
            None => 100_000,
            Some(n) if (16..=100_000_000).contains(&n) => n as usize,
            Some(n) => {
                errs.push(
                    key("max_tracked_clients"),
                    format!("{n} is out of range (16 to 100000000)"),
                );
                100_000
            }
        },
    }
}

/// `[limits]` (and a site's `methods` / `max_body_bytes`): what a request
/// may be before it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request target (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest declared `Content-Length` (413 beyond; 0: no limit).
    pub max_body_bytes: u64,
    /// Methods served (405 with `Allow` otherwise; empty: every method).
    pub methods: Vec<http::Method>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri_bytes: 8192,
            max_body_bytes: 0,
            methods: Vec::new(),
        }
    }
}

/// Validates a list of methods at `key`.
pub(super) fn methods(
    errs: &mut Errors,
    key: &str,
    list: Option<&Vec<String>>,
) -> Option<Vec<http::Method>> {
    let list = list?;
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        match http::Method::from_bytes(m.as_bytes()) {
            Ok(m) => out.push(m),
            Err(_) => errs.push(format!("{key}[{i}]"), format!("`{m}` is not a method")),
        }
    }
    Some(out)
}

/// Validates `[limits]`.
pub(super) fn limits_section(f: Option<&super::file::FileLimits>, errs: &mut Errors) -> Limits {
    let d = Limits::default();
    let Some(f) = f else {
        return d;
    };
    Limits {
        max_uri_bytes: match f.max_uri_bytes {
            None => d.max_uri_bytes,
            Some(n) if (64..=1 << 20).contains(&n) => n as usize,
            Some(n) => {
                errs.push(
                    "limits.max_uri_bytes",
                    format!("{n} is out of range (64 to 1048576)"),
                );
                d.max_uri_bytes
            }
        },
        max_body_bytes: match &f.max_body_bytes {
            None => 0,
            Some(v) => super::validate::size(errs, "limits.max_body_bytes", Some(v), 0),
        },
        methods: methods(errs, "limits.methods", f.methods.as_ref()).unwrap_or_default(),
    }
}

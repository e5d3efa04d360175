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

/// `[limits]` (and a site's [`SiteLimits`]): what a request may be before
/// it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request target (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest content, declared or streamed (413 beyond; 0: no limit).
    pub max_body_bytes: u64,
    /// Methods served (405 with `Allow` otherwise; empty: every method).
    pub methods: Vec<http::Method>,
    /// Largest request head's fields, names and values (431 beyond);
    /// defaults to `[server] max_header_bytes`.
    pub max_header_bytes: u64,
    /// Most request fields (431 beyond).
    pub max_header_count: usize,
    /// Longest pause while a client sends content (408 beyond; `None`: no
    /// limit).
    pub body_read_timeout: Option<Duration>,
}

/// Most fields a request may have by default (hyper's and nginx's order of
/// magnitude).
pub const DEFAULT_MAX_HEADER_COUNT: usize = 100;
/// Most fields any limit may allow.
pub const MAX_HEADER_COUNT: usize = 1000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_uri_bytes: 8192,
            max_body_bytes: 0,
            methods: Vec::new(),
            max_header_bytes: 64 << 10,
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            body_read_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// A site's own request limits, each instead of `[limits]`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteLimits {
    pub methods: Option<Vec<http::Method>>,
    pub max_body_bytes: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub max_header_count: Option<usize>,
    pub body_read_timeout: Option<Option<Duration>>,
}

impl SiteLimits {
    /// The limits in force for the site, over the node's.
    pub fn over(&self, node: &Limits) -> Limits {
        Limits {
            max_uri_bytes: node.max_uri_bytes,
            max_body_bytes: self.max_body_bytes.unwrap_or(node.max_body_bytes),
            methods: self.methods.clone().unwrap_or_else(|| node.methods.clone()),
            max_header_bytes: self.max_header_bytes.unwrap_or(node.max_header_bytes),
            max_header_count: self.max_header_count.unwrap_or(node.max_header_count),
            body_read_timeout: self.body_read_timeout.unwrap_or(node.body_read_timeout),
        }
    }
}

/// `max_header_count` at `key`.
fn header_count(errs: &mut Errors, key: &str, v: Option<i64>) -> Option<usize> {
    match v? {
        n if (1..=MAX_HEADER_COUNT as i64).contains(&n) => Some(n as usize),
        n => {
            errs.push(
                key,
                format!("{n} is out of range (1 to {MAX_HEADER_COUNT})"),
            );
            None
        }
    }
}

/// `max_header_bytes` at `key`.
fn header_bytes(errs: &mut Errors, key: &str, v: Option<&super::file::SizeValue>) -> Option<u64> {
    let n = super::validate::size(errs, key, Some(v?), 0);
    if !(1024..=1 << 20).contains(&n) {
        errs.push(key, format!("{n} bytes is out of range (1 KiB to 1 MiB)"));
        return None;
    }
    Some(n)
}

/// `body_read_timeout` at `key`: a duration, or `"off"`.
fn body_timeout(errs: &mut Errors, key: &str, v: Option<&String>) -> Option<Option<Duration>> {
    let v = v?;
    if v == "off" {
        return Some(None);
    }
    let d = duration(errs, key, Some(v), Duration::from_secs(60));
    if d.is_zero() {
        errs.push(key, "must be more than 0 (or \"off\")");
    }
    Some(Some(d))
}

/// Validates a site's own limits.
pub(super) fn site_limits(errs: &mut Errors, base: &str, s: &super::file::FileSite) -> SiteLimits {
    SiteLimits {
        methods: methods(errs, &format!("{base}.methods"), s.methods.as_ref()),
        max_body_bytes: s
            .max_body_bytes
            .as_ref()
            .map(|v| super::validate::size(errs, &format!("{base}.max_body_bytes"), Some(v), 0)),
        max_header_bytes: header_bytes(
            errs,
            &format!("{base}.max_header_bytes"),
            s.max_header_bytes.as_ref(),
        ),
        max_header_count: header_count(
            errs,
            &format!("{base}.max_header_count"),
            s.max_header_count,
        ),
        body_read_timeout: body_timeout(
            errs,
            &format!("{base}.body_read_timeout"),
            s.body_read_timeout.as_ref(),
        ),
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

/// Validates `[limits]`; `max_header_bytes` defaults to the listener's
/// (`[server] max_header_bytes`).
pub(super) fn limits_section(
    f: Option<&super::file::FileLimits>,
    server_max_header_bytes: u64,
    errs: &mut Errors,
) -> Limits {
    let d = Limits {
        max_header_bytes: server_max_header_bytes,
        ..Limits::default()
    };
    let Some(f) = f else {
        return d;
    };
    Limits {
        max_header_bytes: header_bytes(
            errs,
            "limits.max_header_bytes",
            f.max_header_bytes.as_ref(),
        )
        .unwrap_or(d.max_header_bytes),
        max_header_count: header_count(errs, "limits.max_header_count", f.max_header_count)
            .unwrap_or(d.max_header_count),
        body_read_timeout: body_timeout(
            errs,
            "limits.body_read_timeout",
            f.body_read_timeout.as_ref(),
        )
        .unwrap_or(d.body_read_timeout),
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

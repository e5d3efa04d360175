//! A site's origin pool in the config: its origins, balancing, session
//! persistence, health checks, outlier ejection, retries with a budget and
//! connection limits, and their validation with key paths. Knows nothing
//! of the rest of a site.

use std::time::Duration;

use super::file::{FileHealth, FileSite, FileSticky};
use super::validate::{Errors, duration};
use super::{OriginUrl, Secret};

/// One origin of a site: `"http://h:p"` (weight 1) or
/// `{ url = "http://h:p", weight = N }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSpec {
    pub url: OriginUrl,
    /// Relative share of requests (≥ 1).
    pub weight: u32,
}

/// `balance`: how the pool picks an origin for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Smooth weighted round robin (nginx's).
    #[default]
    RoundRobin,
    /// Fewest requests in flight per unit of weight, ties in turn.
    LeastConn,
    /// The less loaded of two origins picked at random (by weight).
    RandomTwo,
    /// Rendezvous hashing on the cache key: one origin per object.
    Hash,
    /// Rendezvous hashing on the client's address: one origin per client.
    ClientIp,
}

impl Balance {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
            Balance::RandomTwo => "random_two",
            Balance::Hash => "hash",
            Balance::ClientIp => "client_ip",
        }
    }

    fn parse(s: &str) -> Option<Balance> {
        [
            Balance::RoundRobin,
            Balance::LeastConn,
            Balance::RandomTwo,
            Balance::Hash,
            Balance::ClientIp,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }
}

/// `[site.health]`: active health checks, one probe task per origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path and query of the probe (`GET`).
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Status codes that count as healthy (inclusive range).
    pub expect: (u16, u16),
    /// Consecutive good probes that bring a down origin up.
    pub rise: u32,
    /// Consecutive bad probes that take an up origin down.
    pub fall: u32,
    /// `Host` of the probe (default: the origin's authority).
    pub host: Option<String>,
}

/// `[site.sticky]`: session persistence by cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyCookie {
    /// The cookie's name (an RFC 6265 token).
    pub cookie: String,
    /// `Max-Age` of the cookie; a session cookie when `None`.
    pub max_age: Option<Duration>,
    /// Remove the cookie from requests before they reach the origin.
    pub strip_cookie: bool,
    /// Keys the origin ids in cookies; `None`: a random key per start.
    pub secret: Option<Secret>,
}

/// How a site's origin pool chooses, checks and retries.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPolicy {
    pub balance: Balance,
    /// Session persistence by cookie, if configured.
    pub sticky: Option<StickyCookie>,
    /// Active checks, if configured.
    pub health: Option<HealthCheck>,
    /// Consecutive failures (connect errors, timeouts, 502/503/504) that
    /// eject an origin.
    pub max_fails: u32,
    /// How long a first ejection lasts; each repeated one lasts twice as
    /// long as the last, up to [`MAX_EJECTION`].
    pub fail_timeout: Duration,
    /// Retries of one request on other origins.
    pub retries: u32,
    /// Origin statuses that are retried (idempotent requests only).
    pub retry_on: Vec<u16>,
    /// Retries allowed per request over the budget window (0.2: one retry
    /// for every five requests).
    pub retry_budget: f64,
    pub retry_budget_window: Duration,
    /// Requests one origin carries at once (0: no limit).
    pub max_conns: u32,
    /// How long a request waits for an origin under `max_conns`.
    pub queue_timeout: Duration,
    /// The name sent (SNI) and verified for `https://` origins, instead of
    /// each origin's host.
    pub origin_sni: Option<String>,
    /// A PEM file of CA certificates that verify `https://` origins,
    /// instead of the system's trust store.
    pub origin_ca: Option<std::path::PathBuf>,
}

/// The longest an ejection lasts, however often the origin failed.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Origins of one site (the pool tracks the origins a request tried in a
/// 64-bit set).
pub const MAX_ORIGINS: usize = 64;

impl Default for PoolPolicy {
    fn default() -> Self {
        PoolPolicy {
            balance: Balance::RoundRobin,
            sticky: None,
            health: None,
            max_fails: 3,
            fail_timeout: Duration::from_secs(10),
            retries: 2,
            retry_on: vec![502, 503, 504],
            retry_budget: 0.2,
            retry_budget_window: Duration::from_secs(10),
            max_conns: 0,
            queue_timeout: Duration::from_secs(5),
            origin_sni: None,
            origin_ca: None,
        }
    }
}

/// A count in `1..=max`.
fn count(errs: &mut Errors, key: &str, v: Option<i64>, default: u32, max: u32) -> u32 {
    match v {
        None => default,
        Some(n) if n >= 1 && n <= i64::from(max) => n as u32,
        Some(n) => {
            errs.push(key, format!("{n} is out of range (1 to {max})"));
            default
        }
    }
}

pub(super) fn origin(errs: &mut Errors, key: &str, v: &toml::Value) -> Option<OriginSpec> {
    let (url, weight) = match v {
        toml::Value::String(s) => (s.as_str(), 1),
        toml::Value::Table(t) => {
            for k in t.keys() {
                if k != "url" && k != "weight" {
                    errs.push(format!("{key}.{k}"), "unknown key");
                }
            }
            let Some(url) = t.get("url").and_then(toml::Value::as_str) else {
                errs.push(format!("{key}.url"), "missing: the origin's URL");
                return None;
            };
            let weight = match t.get("weight") {
                None => 1,
                Some(toml::Value::Integer(w)) if (1..=1000).contains(w) => *w as u32,
                Some(w) => {
                    errs.push(
                        format!("{key}.weight"),
                        format!("{w} is not a weight (an integer from 1 to 1000)"),
                    );
                    return None;
                }
            };
            (url, weight)
        }
        other => {
            errs.push(
                key,
                format!("{other} is not an origin (a URL, or {{ url = \"…\", weight = N }})"),
            );
            return None;
        }
    };
    match OriginUrl::parse(url) {
        Ok(url) => Some(OriginSpec { url, weight }),
        Err(e) => {
            errs.push(key, e);
            None
        }
    }
}

/// A token (RFC 9110 §5.6.2), which RFC 6265 §4.1.1 requires of a
/// cookie's name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn sticky(errs: &mut Errors, base: &str, f: &FileSticky) -> StickyCookie {
    let key = |k: &str| format!("{base}.sticky.{k}");
    let cookie = match &f.cookie {
        None => {
            errs.push(
                key("cookie"),
                "missing: the cookie's name, e.g. cookie = \"OUTPOST_ORIGIN\"",
            );
            String::new()
        }
        Some(c) if !is_token(c) => {
            errs.push(
                key("cookie"),
                format!("`{c}` is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
            );
            String::new()
        }
        Some(c) => c.clone(),
    };
    let secret = match &f.secret {
        Some(s) if s.len() < 16 => {
            errs.push(key("secret"), "must be at least 16 characters");
            None
        }
        Some(s) => Some(Secret::new(s.clone())),
        None => None,
    };
    StickyCookie {
        cookie,
        max_age: f
            .max_age
            .as_ref()
            .map(|m| duration(errs, &key("max_age"), Some(m), Duration::from_secs(1))),
        strip_cookie: f.strip_cookie.unwrap_or(true),
        secret,
    }
}

/// `"200-399"` or `"200"`.
fn status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.trim().parse().ok()?;
    let b: u16 = b.trim().parse().ok()?;
    ((100..=599).contains(&a) && (a..=599).contains(&b)).then_some((a, b))
}

fn health(errs: &mut Errors, base: &str, h: &FileHealth) -> HealthCheck {
    let key = |k: &str| format!("{base}.health.{k}");
    let interval = duration(
        errs,
        &key("interval"),
        h.interval.as_ref(),
        Duration::from_secs(5),
    );
    let timeout = duration(
        errs,
        &key("timeout"),
        h.timeout.as_ref(),
        Duration::from_secs(2),
    );
    if interval > Duration::from_secs(86400) {
        errs.push(key("interval"), "must be at most a day");
    }
    if timeout > interval {
        errs.push(
            key("interval"),
            format!("{interval:?} is shorter than the probe timeout {timeout:?}"),
        );
    }
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        errs.push(
            key("path"),
            format!("`{path}` is not a path like \"/healthz\""),
        );
    }
    let expect = match &h.expect {
        None => (200, 399),
        Some(s) => status_range(s).unwrap_or_else(|| {
            errs.push(
                key("expect"),
                format!("`{s}` is not a status range like \"200-399\""),
            );
            (200, 399)
        }),
    };
    if let Some(host) = &h.host
        && (host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f))
    {
        errs.push(key("host"), format!("`{host}` is not a host"));
    }
    HealthCheck {
        path,
        interval,
        timeout,
        expect,
        rise: count(errs, &key("rise"), h.rise, 2, 100),
        fall: count(errs, &key("fall"), h.fall, 3, 100),
        host: h.host.clone(),
    }
}

pub(super) fn pool_policy(errs: &mut Errors, base: &str, s: &FileSite) -> PoolPolicy {
    let d = PoolPolicy::default();
    let key = |k: &str| format!("{base}.{k}");
    let balance = match &s.balance {
        None => d.balance,
        Some(b) => Balance::parse(b).unwrap_or_else(|| {
            errs.push(
                key("balance"),
                format!("`{b}` is not one of round_robin, least_conn, random_two, hash, client_ip"),
            );
            d.balance
        }),
    };
    let mut retry_on = Vec::new();
    for (j, st) in s
        .retry_on
        .clone()
        .unwrap_or(d.retry_on.clone().into_iter().map(i64::from).collect())
        .into_iter()
        .enumerate()
    {
        if (500..=599).contains(&st) {
            retry_on.push(st as u16);
        } else {
            errs.push(
                format!("{base}.retry_on[{j}]"),
                format!("{st} is not a server error status (500 to 599)"),
            );
        }
    }
    let retry_budget = match s.retry_budget {
        None => d.retry_budget,
        Some(r) if r > 0.0 && r <= 1.0 => r,
        Some(r) => {
            errs.push(
                key("retry_budget"),
                format!("{r} is not a share of requests (above 0, at most 1)"),
            );
            d.retry_budget
        }
    };
    let retries = match s.retries {
        None => d.retries,
        Some(n) if (0..=10).contains(&n) => n as u32,
        Some(n) => {
            errs.push(key("retries"), format!("{n} is out of range (0 to 10)"));
            d.retries
        }
    };
    let max_conns = match s.max_conns {
        None => d.max_conns,
        Some(n) if (0..=1_000_000).contains(&n) => n as u32,
        Some(n) => {
            errs.push(
                key("max_conns"),
                format!("{n} is out of range (0 = no limit, up to 1000000)"),
            );
            d.max_conns
        }
    };
    PoolPolicy {
        balance,
        sticky: s.sticky.as_ref().map(|st| sticky(errs, base, st)),
        health: s.health.as_ref().map(|h| health(errs, base, h)),
        max_fails: count(errs, &key("max_fails"), s.max_fails, d.max_fails, 1000),
        fail_timeout: {
            let t = duration(
                errs,
                &key("fail_timeout"),
                s.fail_timeout.as_ref(),
                d.fail_timeout,
            );
            if t > MAX_EJECTION {
                errs.push(
                    key("fail_timeout"),
                    format!("{t:?} is longer than the longest ejection ({MAX_EJECTION:?})"),
                );
            }
            t.min(MAX_EJECTION)
        },
        retries,
        retry_on,
        retry_budget,
        retry_budget_window: duration(
            errs,
            &key("retry_budget_window"),
            s.retry_budget_window.as_ref(),
            d.retry_budget_window,
        ),
        max_conns,
        queue_timeout: duration(
            errs,
            &key("queue_timeout"),
            s.queue_timeout.as_ref(),
            d.queue_timeout,
        ),
        origin_sni: s.origin_sni.clone().filter(|n| {
            let ok = rustls_pki_types::ServerName::try_from(n.as_str()).is_ok();
            if !ok {
                errs.push(key("origin_sni"), format!("`{n}` is not a host name"));
            }
            ok
        }),
        origin_ca: s.origin_ca.as_ref().map(std::path::PathBuf::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("200-399"), Some((200, 399)));
        assert_eq!(status_range("204"), Some((204, 204)));
        assert_eq!(status_range(" 200 - 299 "), Some((200, 299)));
        for bad in ["", "99", "300-200", "200-600", "abc", "200-"] {
            assert_eq!(status_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cookie_names_are_tokens() {
        assert!(is_token("OUTPOST_ORIGIN"));
        assert!(is_token("a.b-c~1"));
        for bad in ["", "a b", "a=b", "a;b", "a,b", "é", "a\"b"] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn balance_names_round_trip() {
        for b in [
            "round_robin",
            "least_conn",
            "random_two",
            "hash",
            "client_ip",
        ] {
            assert_eq!(Balance::parse(b).map(Balance::as_str), Some(b));
        }
        assert_eq!(Balance::parse("ip_hash"), None);
    }
}

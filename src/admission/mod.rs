//! Admission: what is decided about a request before any cache or origin
//! work: the real client address ([`Admission::client_ip`]), the access
//! lists ([`AccessList`], global and per site; a refusal is a 403) and rate
//! limits per client ([`RateLimiter`]; a refusal is a 429) and path safety
//! ([`path`]; a refusal is a 400), each refusal with a log line and a
//! counter.
//!
//! It knows nothing of caching, storage or origins: the pipeline asks it
//! and acts on the answer.

pub mod conns;
pub mod ipset;
pub mod path;
pub mod ratelimit;
pub mod rules;

use std::net::IpAddr;

use http::HeaderMap;

pub use conns::{ConnGuard, ConnLimits};
pub use ipset::IpSet;
pub use ratelimit::RateLimiter;

use crate::config::{AccessConfig, Config};
use crate::error::{Error, ErrorKind};

/// Allow and deny sets: deny wins; an empty allow set allows everyone.
#[derive(Debug, Default)]
pub struct AccessList {
    allow: Option<IpSet>,
    deny: IpSet,
}

impl AccessList {
    /// From CIDR lists (and a deny set read from a file, if any).
    pub fn new(
        allow: &[ipnet::IpNet],
        deny: &[ipnet::IpNet],
        deny_more: Option<IpSet>,
    ) -> AccessList {
        let mut deny_set = IpSet::from_nets(deny.iter().copied());
        if let Some(more) = deny_more {
            deny_set = deny_set.union(&more);
        }
        AccessList {
            allow: (!allow.is_empty()).then(|| IpSet::from_nets(allow.iter().copied())),
            deny: deny_set,
        }
    }

    /// Whether `ip` may use what the list guards.
    #[inline]
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.contains(ip) && self.allow.as_ref().is_none_or(|a| a.contains(ip))
    }

    /// Whether the list lets everyone in (nothing to check).
    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }
}

/// The node-wide admission settings.
#[derive(Debug, Default)]
pub struct Admission {
    trusted: IpSet,
    global: AccessList,
}

impl Admission {
    /// From the configuration; reads `[access] deny_file`.
    pub fn new(cfg: &Config) -> Result<Admission, Error> {
        Ok(Admission {
            trusted: IpSet::from_nets(cfg.server.trusted_proxies.iter().copied()),
            global: global_list(&cfg.access)?,
        })
    }

    /// The client's address: the peer's, or, when the peer is a trusted
    /// proxy, the rightmost address of `X-Forwarded-For` that is not a
    /// trusted proxy (the hops a client can write itself are to its left).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.trusted.is_empty() || !self.trusted.contains(peer) {
            return peer;
        }
        let mut client = peer;
        // Every field and every member, last first.
        let values: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for v in values.iter().rev() {
            for hop in v.rsplit(',') {
                let Some(ip) = parse_hop(hop) else {
                    // Not an address: nothing left of it can be believed.
                    return client;
                };
                client = ip;
                if !self.trusted.contains(ip) {
                    return ip;
                }
            }
        }
        client
    }

    /// Whether `peer` is a trusted proxy.
    #[inline]
    pub fn trusts(&self, peer: IpAddr) -> bool {
        !self.trusted.is_empty() && self.trusted.contains(peer)
    }

    /// Whether the node-wide access list lets `ip` in.
    #[inline]
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.global.permits(ip)
    }
}

/// One member of `X-Forwarded-For`: an address, perhaps with a port or in
/// brackets (RFC 7239 style `[2001:db8::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let h = hop.trim().trim_matches('"');
    if let Ok(ip) = h.parse() {
        return Some(ip);
    }
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (addr, port) = h.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse().ok()
}

/// `[access]` with its `deny_file`.
fn global_list(a: &AccessConfig) -> Result<AccessList, Error> {
    let file = match &a.deny_file {
        None => None,
        Some(p) => Some(
            IpSet::from_file(p)
                .map_err(|e| Error::new(ErrorKind::Setup, format!("access.deny_file: {e}")))?,
        ),
    };
    Ok(AccessList::new(&a.allow, &a.deny, file))
}

/// What `outpost check` says of `[access] deny_file`.
pub fn check(cfg: &Config) -> Vec<String> {
    match global_list(&cfg.access) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e.detail().to_owned()],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn admission(trusted: &[&str]) -> Admission {
        Admission {
            trusted: IpSet::from_nets(trusted.iter().map(|t| t.parse().unwrap())),
            global: AccessList::default(),
        }
    }

    fn xff(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for x in v {
            h.append("x-forwarded-for", x.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let a = admission(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let untrusted: IpAddr = "198.51.100.7".parse().unwrap();
        let h = xff(&["203.0.113.9, 10.0.0.9"]);
        assert_eq!(
            a.client_ip(peer, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(a.client_ip(untrusted, &h), untrusted);
        // A spoofed left part is ignored: the rightmost untrusted hop wins.
        let h = xff(&["1.2.3.4", "203.0.113.9"]);
        assert_eq!(
            a.client_ip(peer, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // Garbage stops the walk at the last believed hop.
        let h = xff(&["203.0.113.9, nonsense, 10.0.0.8"]);
        assert_eq!(a.client_ip(peer, &h), "10.0.0.8".parse::<IpAddr>().unwrap());
        // Ports and brackets.
        let h = xff(&["[2001:db8::1]:443"]);
        assert_eq!(
            a.client_ip(peer, &h),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let h = xff(&["203.0.113.9:5000"]);
        assert_eq!(
            a.client_ip(peer, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // No field: the peer.
        assert_eq!(a.client_ip(peer, &HeaderMap::new()), peer);
        assert_eq!(admission(&[]).client_ip(peer, &xff(&["1.1.1.1"])), peer);
    }

    #[test]
    fn deny_wins_and_an_empty_allow_list_allows_all() {
        let nets = |v: &[&str]| {
            v.iter()
                .map(|n| n.parse().unwrap())
                .collect::<Vec<ipnet::IpNet>>()
        };
        let l = AccessList::new(&nets(&["10.0.0.0/8"]), &nets(&["10.1.0.0/16"]), None);
        assert!(l.permits("10.2.3.4".parse().unwrap()));
        assert!(!l.permits("10.1.3.4".parse().unwrap()));
        assert!(!l.permits("192.0.2.1".parse().unwrap()));
        let open = AccessList::new(&[], &nets(&["192.0.2.0/24"]), None);
        assert!(open.permits("198.51.100.1".parse().unwrap()));
        assert!(!open.permits("192.0.2.200".parse().unwrap()));
        assert!(AccessList::new(&[], &[], None).is_open());
    }
}

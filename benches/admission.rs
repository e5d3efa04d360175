//! Criterion benchmarks of what the admission layer does per request with a
//! large configuration: an address looked up in a 100,000-entry deny set
//! (sorted, merged ranges: one binary search), twenty request rules asked
//! for a request none of them matches (the common case: every matcher of
//! every rule runs until one fails), and a rate limiter's check.
//!
//! Run: `cargo bench --bench admission` (`-- --warm-up-time 1
//! --measurement-time 2` for a quick pass). Medians are in
//! `benches/load/RESULTS.md` ("Edge security"): 29 ns, 258 ns and 20 ns
//! at 3d2ea27.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method, Uri};
use outpost::admission::IpSet;
use outpost::admission::RateLimiter;
use outpost::admission::rules::Rules;
use outpost::config::{RuleAction, RuleConfig};

/// A deterministic spread of addresses (xorshift).
fn addresses(n: usize, mut seed: u64) -> Vec<u32> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u32
        })
        .collect()
}

/// 100,000 entries: 90,000 single IPv4 addresses, 9,000 /24 networks and
/// 1,000 IPv6 /48s.
fn deny_set() -> IpSet {
    let mut nets: Vec<ipnet::IpNet> = Vec::with_capacity(100_000);
    for a in addresses(90_000, 7) {
        nets.push(ipnet::Ipv4Net::new(Ipv4Addr::from(a), 32).unwrap().into());
    }
    for a in addresses(9_000, 11) {
        nets.push(
            ipnet::Ipv4Net::new(Ipv4Addr::from(a & 0xffff_ff00), 24)
                .unwrap()
                .into(),
        );
    }
    for a in addresses(1_000, 13) {
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, (a >> 16) as u16, 0, 0, 0, 0, 0);
        nets.push(ipnet::Ipv6Net::new(v6, 48).unwrap().into());
    }
    IpSet::from_nets(nets)
}

fn rule(i: usize) -> RuleConfig {
    let mut r = RuleConfig {
        name: format!("rule-{i}"),
        methods: Vec::new(),
        path_prefix: None,
        path_regex: None,
        query_regex: None,
        header: None,
        client: Vec::new(),
        action: RuleAction::Deny {
            status: 403,
            body: "no\n".into(),
        },
    };
    match i % 5 {
        0 => r.path_prefix = Some(format!("/private-{i}/")),
        1 => r.path_regex = Some(format!(r"^/(wp-admin|phpmyadmin|cgi-bin)/{i}\.php$")),
        2 => {
            r.header = Some((
                "user-agent".parse().unwrap(),
                format!("(?i)(sqlmap|nikto|scanner-{i})"),
            ))
        }
        3 => r.client = vec![format!("198.51.{i}.0/24").parse().unwrap()],
        _ => r.query_regex = Some(format!("(^|&)debug{i}=1(&|$)")),
    }
    r
}

fn bench(c: &mut Criterion) {
    let set = deny_set();
    let probes: Vec<IpAddr> = addresses(4096, 99)
        .into_iter()
        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
        .collect();
    let mut i = 0usize;
    c.bench_function("deny_set_100k_lookup", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(set.contains(black_box(probes[i])))
        })
    });

    let rules = Rules::new(&(0..20).map(rule).collect::<Vec<_>>()).unwrap();
    let uri: Uri = "/static/app.js?v=3".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64)".parse().unwrap(),
    );
    headers.insert("accept", "*/*".parse().unwrap());
    let client: IpAddr = "203.0.113.9".parse().unwrap();
    c.bench_function("rules_20_no_match", |b| {
        b.iter(|| {
            black_box(rules.first_match(
                black_box(&Method::GET),
                black_box(&uri),
                black_box(&headers),
                client,
            ))
            .is_none()
        })
    });

    let limiter = RateLimiter::new(1_000_000, Duration::from_secs(1), 1_000_000, 100_000);
    c.bench_function("rate_limit_check", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(limiter.check(black_box(probes[i])).is_ok())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! A differential test of the cache's RFC 9111 rules against `http-cache-semantics` 3
//! (RFC 7234, in shared-cache mode): 30,000 random responses (status, `Cache-Control`
//! members, `Expires`, `Date`, `Last-Modified`) to GET requests with and without
//! `Authorization` are judged by both, and must get the same answer on whether a shared
//! cache may store them and, when they may, for how long they are fresh.
//!
//! Where the two RFCs (or the crate) differ, the case is counted, not compared; the
//! list is the documentation of the differences:
//! - `no-cache`, `must-understand`, `immutable`, `stale-while-revalidate` are not generated:
//!   RFC 9111 qualifies `no-cache` per field and adds `must-understand`; the crate stretches
//!   `immutable` and counts the stale-while-revalidate window into its time to live.
//! - an `Expires` that is not a date: RFC 9111 §5.3 (and this cache) read it as already
//!   expired but storable; the crate ignores the field (then a heuristic may apply).
//! - a status outside the crate's list of understood ones (500 and 503 here) is never
//!   stored by it; RFC 9111 §3 stores any final status with explicit freshness (or
//!   `public`), and so does this cache.
//! - `proxy-revalidate`: the crate gives the response no freshness in a shared cache;
//!   RFC 9111 §5.2.2.8 makes it `must-revalidate` for shared caches, which bounds reuse
//!   once stale and leaves the lifetime alone (as here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_cache_semantics::{CacheOptions, CachePolicy};
use outpost::cache::control::{RequestDirectives, effective_response_control};
use outpost::cache::freshness::{HeuristicConfig, freshness_lifetime, storability};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STATUSES: [u16; 12] = [200, 203, 204, 300, 301, 302, 307, 404, 410, 500, 501, 503];
const DIRECTIVES: [&str; 6] = [
    "public",
    "private",
    "no-store",
    "must-revalidate",
    "proxy-revalidate",
    "no-transform",
];
const AGES: [u64; 5] = [0, 1, 60, 3600, 86_400];

struct Case {
    status: u16,
    headers: HeaderMap,
    authorization: bool,
    invalid_expires: bool,
}

fn date(t: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap()
}

fn case(r: &mut StdRng, now: SystemTime) -> Case {
    let mut h = HeaderMap::new();
    let mut cc: Vec<String> = Vec::new();
    for d in DIRECTIVES {
        if r.random_bool(0.15) {
            cc.push(d.to_owned());
        }
    }
    if r.random_bool(0.5) {
        cc.push(format!("max-age={}", AGES[r.random_range(0..AGES.len())]));
    }
    if r.random_bool(0.25) {
        cc.push(format!("s-maxage={}", AGES[r.random_range(0..AGES.len())]));
    }
    if !cc.is_empty() {
        h.insert(
            "cache-control",
            HeaderValue::from_str(&cc.join(", ")).unwrap(),
        );
    }
    // Whole seconds: HTTP dates have no fractions.
    let now_s = SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    if r.random_bool(0.8) {
        h.insert("date", date(now_s));
    }
    let mut invalid_expires = false;
    match r.random_range(0..5) {
        0 => h
            .insert("expires", date(now_s + Duration::from_secs(3600)))
            .map(drop)
            .unwrap_or(()),
        1 => h
            .insert("expires", date(now_s - Duration::from_secs(3600)))
            .map(drop)
            .unwrap_or(()),
        2 => {
            invalid_expires = true;
            h.insert("expires", HeaderValue::from_static("0"));
        }
        _ => {}
    }
    if r.random_bool(0.5) {
        let back = [3600u64, 86_400, 3 * 86_400][r.random_range(0..3)];
        h.insert("last-modified", date(now_s - Duration::from_secs(back)));
    }
    Case {
        status: STATUSES[r.random_range(0..STATUSES.len())],
        headers: h,
        authorization: r.random_bool(0.2),
        invalid_expires,
    }
}

#[test]
fn storability_and_lifetime_agree_with_http_cache_semantics() {
    let mut r = StdRng::seed_from_u64(9111);
    let now = SystemTime::now();
    let heuristic = HeuristicConfig::default();
    let (mut compared, mut skipped) = (0, 0);
    let mut disagreements = Vec::new();
    let mut lifetimes = 0;
    for _ in 0..30_000 {
        let c = case(&mut r, now);
        let mut req = Request::get("https://example.test/a");
        if c.authorization {
            req = req.header("authorization", "Bearer x");
        }
        let req = req.body(()).unwrap();
        let mut res = Response::builder().status(c.status);
        for (n, v) in &c.headers {
            res = res.header(n, v);
        }
        let res = res.body(()).unwrap();
        let policy = CachePolicy::new_options(
            &req,
            &res,
            now,
            CacheOptions {
                shared: true,
                ..CacheOptions::default()
            },
        );

        let status = StatusCode::from_u16(c.status).unwrap();
        let control = effective_response_control(&c.headers, &[]);
        let ours = storability(
            &Method::GET,
            req.headers(),
            &RequestDirectives::default(),
            status,
            &c.headers,
            &control,
        )
        .is_ok();
        let cc = c
            .headers
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        if c.invalid_expires || matches!(c.status, 500 | 503) {
            skipped += 1;
            continue;
        }
        compared += 1;
        let theirs = policy.is_storable();
        if ours != theirs {
            disagreements.push(format!(
                "{} {:?} auth={}: storable ours={ours} theirs={theirs}",
                c.status, c.headers, c.authorization
            ));
            continue;
        }
        if !ours || cc.contains("proxy-revalidate") {
            continue;
        }
        let lifetime = freshness_lifetime(status, &c.headers, &control, now, &heuristic).secs;
        let ttl = policy.time_to_live(now).as_secs();
        lifetimes += 1;
        // The crate counts from its own clock reading: a second either way.
        if lifetime.abs_diff(ttl) > 1 {
            disagreements.push(format!(
                "{} {:?}: lifetime ours={lifetime} theirs={ttl}",
                c.status, c.headers
            ));
        }
    }
    assert!(
        compared > 18_000 && lifetimes > 5_000,
        "{compared} compared ({lifetimes} lifetimes), {skipped} skipped"
    );
    assert!(
        disagreements.is_empty(),
        "{} of {compared} disagree, e.g.:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

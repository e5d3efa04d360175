use super::*;
use crate::cache::control::{ControlSource, effective_response_control, target_list};
use std::time::UNIX_EPOCH;

fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn cc(h: &HeaderMap) -> EffectiveControl {
    effective_response_control(h, &target_list(None))
}

fn store(
    req: &[(&str, &str)],
    status: u16,
    resp: &[(&str, &str)],
) -> Result<Storable, NoCacheReason> {
    let rq = hm(req);
    let rs = hm(resp);
    storability(
        &Method::GET,
        &rq,
        &RequestDirectives::from_headers(&rq),
        StatusCode::from_u16(status).unwrap(),
        &rs,
        &cc(&rs),
    )
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(t(secs))
}

#[test]
fn heuristic_status_list() {
    // RFC 9110 §15.1
    for s in [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501] {
        assert!(is_heuristically_cacheable(s), "{s}");
    }
    for s in [201, 302, 303, 307, 400, 403, 500, 502, 503] {
        assert!(!is_heuristically_cacheable(s), "{s}");
    }
}

#[test]
fn storable_basics() {
    // RFC 9111 §3
    assert!(store(&[], 200, &[]).is_ok()); // heuristically cacheable
    assert_eq!(store(&[], 302, &[]), Err(NoCacheReason::NotCacheable));
    assert!(store(&[], 302, &[("cache-control", "max-age=5")]).is_ok());
    assert!(store(&[], 500, &[("expires", "0")]).is_ok());
    assert!(store(&[], 500, &[("cache-control", "public")]).is_ok());
    assert_eq!(store(&[], 100, &[]), Err(NoCacheReason::Status));
    assert_eq!(store(&[], 304, &[]), Err(NoCacheReason::Status));
    assert_eq!(store(&[], 206, &[]), Err(NoCacheReason::PartialContent));
}

#[test]
fn storable_method() {
    // RFC 9111 §3: GET only here; HEAD updates (§4.3.5).
    let h = HeaderMap::new();
    let c = cc(&h);
    for m in [Method::HEAD, Method::POST, Method::PUT] {
        assert_eq!(
            storability(
                &m,
                &h,
                &RequestDirectives::default(),
                StatusCode::OK,
                &h,
                &c
            ),
            Err(NoCacheReason::Method)
        );
    }
    assert!(is_cacheable_method(&Method::HEAD));
    assert!(!is_cacheable_method(&Method::OPTIONS));
}

#[test]
fn no_store_request_and_response() {
    // RFC 9111 §5.2.1.5, §5.2.2.5
    assert_eq!(
        store(&[("cache-control", "no-store")], 200, &[]),
        Err(NoCacheReason::RequestNoStore)
    );
    assert_eq!(
        store(&[], 200, &[("cache-control", "no-store, max-age=60")]),
        Err(NoCacheReason::NoStore)
    );
}

#[test]
fn must_understand_overrides_no_store_for_understood_status() {
    // RFC 9111 §5.2.2.3
    assert!(
        store(
            &[],
            200,
            &[("cache-control", "no-store, must-understand, max-age=9")]
        )
        .is_ok()
    );
    assert_eq!(
        store(
            &[],
            299,
            &[("cache-control", "no-store, must-understand, max-age=9")]
        ),
        Err(NoCacheReason::Status)
    );
}

#[test]
fn private_unqualified_and_qualified() {
    // RFC 9111 §5.2.2.7: a shared cache must not store private responses,
    // and must not store the named fields of qualified private.
    assert_eq!(
        store(&[], 200, &[("cache-control", "private, max-age=5")]),
        Err(NoCacheReason::Private)
    );
    let s = store(
        &[],
        200,
        &[(
            "cache-control",
            "private=\"set-cookie\", no-cache=\"x-a\", max-age=5",
        )],
    )
    .unwrap();
    assert!(
        s.strip_fields
            .contains(&HeaderName::from_static("set-cookie"))
    );
    assert!(s.strip_fields.contains(&HeaderName::from_static("x-a")));
    assert!(s.strip_fields.contains(&http::header::CONNECTION));
}

#[test]
fn authorization_needs_explicit_permission() {
    // RFC 9111 §3.5
    let auth = [("authorization", "Bearer x")];
    assert_eq!(
        store(&auth, 200, &[("cache-control", "max-age=60")]),
        Err(NoCacheReason::Authorization)
    );
    assert!(store(&auth, 200, &[("cache-control", "public")]).is_ok());
    assert!(store(&auth, 200, &[("cache-control", "s-maxage=5")]).is_ok());
    assert!(store(&auth, 200, &[("cache-control", "must-revalidate")]).is_ok());
}

#[test]
fn vary_star_is_not_stored() {
    // RFC 9111 §4.1
    assert_eq!(
        store(&[], 200, &[("vary", "accept, *")]),
        Err(NoCacheReason::VaryStar)
    );
    assert!(store(&[], 200, &[("vary", "accept")]).is_ok());
}

#[test]
fn targeted_field_governs_storability() {
    // RFC 9213 §2.2: CDN-Cache-Control replaces Cache-Control for this cache.
    assert!(
        store(
            &[],
            200,
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60")
            ]
        )
        .is_ok()
    );
    assert_eq!(
        store(
            &[],
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store")
            ]
        ),
        Err(NoCacheReason::NoStore)
    );
    // Expires does not count under a targeted field.
    assert_eq!(
        store(
            &[],
            302,
            &[
                ("expires", &date(100)),
                ("cdn-cache-control", "must-revalidate")
            ]
        ),
        Err(NoCacheReason::NotCacheable)
    );
}

fn lifetime(status: u16, resp: &[(&str, &str)], rt: u64) -> Lifetime {
    let h = hm(resp);
    freshness_lifetime(
        StatusCode::from_u16(status).unwrap(),
        &h,
        &cc(&h),
        t(rt),
        &HeuristicConfig::default(),
    )
}

#[test]
fn lifetime_precedence() {
    // RFC 9111 §4.2.1: s-maxage > max-age > Expires.
    let e = date(1_000_500);
    let d = date(1_000_000);
    let all = [
        ("cache-control", "max-age=10, s-maxage=20"),
        ("expires", e.as_str()),
        ("date", d.as_str()),
    ];
    assert_eq!(
        lifetime(200, &all, 1_000_000),
        Lifetime {
            secs: 20,
            source: LifetimeSource::SMaxAge
        }
    );
    let two = [
        ("cache-control", "max-age=10"),
        ("expires", e.as_str()),
        ("date", d.as_str()),
    ];
    assert_eq!(lifetime(200, &two, 1_000_000).secs, 10);
    let one = [("expires", e.as_str()), ("date", d.as_str())];
    assert_eq!(
        lifetime(200, &one, 1_000_000),
        Lifetime {
            secs: 500,
            source: LifetimeSource::Expires
        }
    );
    // No Date: the response time stands in.
    assert_eq!(
        lifetime(200, &[("expires", e.as_str())], 1_000_100).secs,
        400
    );
}

#[test]
fn invalid_or_past_expires_is_expired() {
    // RFC 9111 §5.3: invalid Expires (e.g. "0") is in the past.
    assert_eq!(lifetime(200, &[("expires", "0")], 5).secs, 0);
    assert_eq!(lifetime(200, &[("expires", "next tuesday")], 5).secs, 0);
    assert_eq!(
        lifetime(200, &[("expires", &date(10)), ("date", &date(20))], 20).secs,
        0
    );
    // Differing duplicate Expires: stale (§4.2.1).
    assert_eq!(
        lifetime(200, &[("expires", &date(100)), ("expires", &date(200))], 5).secs,
        0
    );
}

#[test]
fn heuristic_freshness() {
    // RFC 9111 §4.2.2: 10% of Date − Last-Modified, capped.
    let r = [("last-modified", date(0)), ("date", date(1000))];
    let r: Vec<(&str, &str)> = r.iter().map(|(a, b)| (*a, b.as_str())).collect();
    assert_eq!(
        lifetime(200, &r, 1000),
        Lifetime {
            secs: 100,
            source: LifetimeSource::Heuristic
        }
    );
    // Not for a status that is not heuristically cacheable ...
    assert_eq!(lifetime(302, &r, 1000).source, LifetimeSource::None);
    // ... unless it is marked explicitly cacheable (found by tests/rfc_oracle.rs).
    let mut public = r.clone();
    public.push(("cache-control", "public"));
    assert_eq!(lifetime(302, &public, 1000).secs, 100);
    // Capped.
    let long = [("last-modified", date(0)), ("date", date(100_000_000))];
    let long: Vec<(&str, &str)> = long.iter().map(|(a, b)| (*a, b.as_str())).collect();
    assert_eq!(lifetime(200, &long, 100_000_000).secs, 86_400);
    // Not when explicit freshness exists.
    let mut ex = r.clone();
    ex.push(("cache-control", "max-age=3"));
    assert_eq!(lifetime(200, &ex, 1000).secs, 3);
    // Future Last-Modified or none: 0.
    assert_eq!(
        lifetime(
            200,
            &[("last-modified", &date(2000)), ("date", &date(1000))],
            1000
        )
        .secs,
        0
    );
    assert_eq!(lifetime(200, &[], 1000).source, LifetimeSource::None);
    // Hostile fraction.
    let h = hm(&r);
    let nan = HeuristicConfig {
        fraction: f64::NAN,
        max: Duration::from_secs(10),
    };
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &h, &cc(&h), t(1000), &nan).secs,
        0
    );
    let huge = HeuristicConfig {
        fraction: 1e300,
        max: Duration::MAX,
    };
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &h, &cc(&h), t(1000), &huge).secs,
        u64::MAX
    );
}

#[test]
fn expires_ignored_under_targeted_field() {
    // RFC 9213 §2.2
    let e = date(1500);
    let h = hm(&[("expires", e.as_str()), ("cdn-cache-control", "public")]);
    let c = cc(&h);
    assert!(matches!(c.source, ControlSource::Targeted(_)));
    let l = freshness_lifetime(StatusCode::OK, &h, &c, t(1000), &HeuristicConfig::default());
    assert_eq!(l.secs, 0);
}

#[test]
fn age_calculation() {
    // RFC 9111 §4.2.3
    assert_eq!(apparent_age(Some(t(100)), t(110)), 10);
    assert_eq!(apparent_age(Some(t(200)), t(110)), 0);
    assert_eq!(apparent_age(None, t(110)), 0);
    assert_eq!(corrected_age_value(30, t(100), t(105)), 35);
    assert_eq!(corrected_initial_age(10, 35), 35);
    assert_eq!(resident_time(t(105), t(165)), 60);
    assert_eq!(current_age(35, t(105), t(165)), 95);
    let h = hm(&[("age", "30"), ("date", &date(100))]);
    assert_eq!(initial_age(&h, t(100), t(105)), 35);
    // Clock skew: a Date far in the past dominates.
    let h = hm(&[("date", &date(0))]);
    assert_eq!(initial_age(&h, t(100), t(100)), 100);
}

#[test]
fn age_header_parsing_is_robust() {
    // RFC 9111 §5.1, §1.2.2: the first member of a list or of repeated
    // lines; an invalid one makes the response stale (the largest age).
    let stale = 1u64 << 31;
    assert_eq!(age_value(&hm(&[])), 0);
    assert_eq!(age_value(&hm(&[("age", "x")])), stale);
    assert_eq!(age_value(&hm(&[("age", "-5")])), stale);
    assert_eq!(age_value(&hm(&[("age", "")])), stale);
    assert_eq!(age_value(&hm(&[("age", "x, 10")])), stale);
    assert_eq!(age_value(&hm(&[("age", "7200, 0")])), 7200);
    assert_eq!(age_value(&hm(&[("age", " 15 ,x")])), 15);
    assert_eq!(age_value(&hm(&[("age", "5"), ("age", "9")])), 5);
    assert_eq!(age_value(&hm(&[("age", "9"), ("age", "5")])), 9);
    assert_eq!(
        age_value(&hm(&[("age", "99999999999999999999999")])),
        1 << 31
    );
    assert_eq!(age_header_value(u64::MAX), "2147483648");
    assert_eq!(age_header_value(7), "7");
    assert_eq!(current_age(u64::MAX, t(0), t(10)), u64::MAX);
}

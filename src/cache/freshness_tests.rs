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
    // Not for a status that is not heuristically cacheable.
    assert_eq!(lifetime(302, &r, 1000).source, LifetimeSource::None);
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
    // RFC 9111 §5.1, §1.2.2
    assert_eq!(age_value(&hm(&[("age", "x")])), 0);
    assert_eq!(age_value(&hm(&[("age", "-5")])), 0);
    assert_eq!(age_value(&hm(&[("age", "5"), ("age", "9")])), 9);
    assert_eq!(
        age_value(&hm(&[("age", "99999999999999999999999")])),
        1 << 31
    );
    assert_eq!(age_header_value(u64::MAX), "2147483648");
    assert_eq!(age_header_value(7), "7");
    assert_eq!(current_age(u64::MAX, t(0), t(10)), u64::MAX);
}

fn facts(lifetime: u64, age: u64) -> StoredFacts {
    StoredFacts {
        lifetime,
        current_age: age,
        ..Default::default()
    }
}

fn rq(v: &str) -> RequestDirectives {
    RequestDirectives::parse([v.as_bytes()])
}

#[test]
fn fresh_and_stale() {
    // RFC 9111 §4.2: fresh iff lifetime > age.
    let d = decide(&facts(60, 10), &rq(""), &ReuseOptions::default());
    assert_eq!((d.reuse, d.ttl), (Reuse::Fresh, 50));
    assert!(d.serve_without_origin());
    let d = decide(&facts(60, 60), &rq(""), &ReuseOptions::default());
    assert_eq!(d.ttl, 0);
    assert!(matches!(
        d.reuse,
        Reuse::Stale {
            client_allows: false,
            ..
        }
    ));
    assert!(!d.serve_without_origin());
    let d = decide(
        &StoredFacts {
            forced_stale: true,
            ..facts(60, 1)
        },
        &rq(""),
        &ReuseOptions::default(),
    );
    assert!(matches!(d.reuse, Reuse::Stale { .. }));
}

#[test]
fn response_no_cache_always_revalidates() {
    // RFC 9111 §5.2.2.4, §4.2.4: and never serves stale.
    let f = StoredFacts {
        no_cache: true,
        stale_if_error: Some(100),
        ..facts(60, 0)
    };
    let d = decide(&f, &rq(""), &ReuseOptions::default());
    assert_eq!(
        d.reuse,
        Reuse::MustRevalidate {
            reason: RevalidateReason::ResponseNoCache,
            can_serve_stale_if_error: false
        }
    );
    assert_eq!(d.detail(), Some("no-cache"));
}

#[test]
fn request_no_cache_and_reload_switch() {
    // RFC 9111 §5.2.1.4 (+ configuration may ignore reloads).
    let d = decide(&facts(60, 0), &rq("no-cache"), &ReuseOptions::default());
    assert!(matches!(
        d.reuse,
        Reuse::MustRevalidate {
            reason: RevalidateReason::RequestNoCache,
            ..
        }
    ));
    assert!(RevalidateReason::RequestNoCache.is_request_driven());
    let ign = ReuseOptions {
        ignore_client_reload: true,
        ..Default::default()
    };
    assert_eq!(
        decide(&facts(60, 5), &rq("no-cache"), &ign).reuse,
        Reuse::Fresh
    );
    assert_eq!(
        decide(&facts(60, 5), &rq("max-age=0"), &ign).reuse,
        Reuse::Fresh
    );
    // The switch covers reloads only: max-age=2 is still honoured.
    assert!(matches!(
        decide(&facts(60, 5), &rq("max-age=2"), &ign).reuse,
        Reuse::MustRevalidate { .. }
    ));
}

#[test]
fn request_max_age_and_min_fresh() {
    // RFC 9111 §5.2.1.1, §5.2.1.3
    let d = decide(&facts(60, 10), &rq("max-age=5"), &ReuseOptions::default());
    assert!(matches!(
        d.reuse,
        Reuse::MustRevalidate {
            reason: RevalidateReason::RequestMaxAge,
            ..
        }
    ));
    assert_eq!(
        decide(&facts(60, 10), &rq("max-age=10"), &ReuseOptions::default()).reuse,
        Reuse::Fresh
    );
    let d = decide(
        &facts(60, 10),
        &rq("min-fresh=51"),
        &ReuseOptions::default(),
    );
    assert!(matches!(
        d.reuse,
        Reuse::MustRevalidate {
            reason: RevalidateReason::RequestMinFresh,
            ..
        }
    ));
    assert_eq!(
        decide(
            &facts(60, 10),
            &rq("min-fresh=50"),
            &ReuseOptions::default()
        )
        .reuse,
        Reuse::Fresh
    );
}

#[test]
fn max_stale() {
    // RFC 9111 §5.2.1.2
    let d = decide(
        &facts(60, 70),
        &rq("max-stale=10"),
        &ReuseOptions::default(),
    );
    assert!(d.serve_without_origin());
    assert_eq!(d.detail(), Some("max-stale"));
    assert!(
        !decide(
            &facts(60, 71),
            &rq("max-stale=10"),
            &ReuseOptions::default()
        )
        .serve_without_origin()
    );
    assert!(
        decide(
            &facts(60, 1_000_000),
            &rq("max-stale"),
            &ReuseOptions::default()
        )
        .serve_without_origin()
    );
    // must-revalidate forbids it (§5.2.2.2); s-maxage too (§5.2.2.10).
    let mr = StoredFacts {
        must_revalidate: true,
        ..facts(60, 70)
    };
    assert!(!decide(&mr, &rq("max-stale"), &ReuseOptions::default()).serve_without_origin());
    let sm = StoredFacts {
        s_maxage: true,
        ..facts(60, 70)
    };
    assert!(!decide(&sm, &rq("max-stale"), &ReuseOptions::default()).serve_without_origin());
}

#[test]
fn stale_while_revalidate_and_if_error_windows() {
    // RFC 5861 §3, §4
    let f = StoredFacts {
        stale_while_revalidate: Some(30),
        stale_if_error: Some(100),
        ..facts(60, 80)
    };
    let d = decide(&f, &rq(""), &ReuseOptions::default());
    assert!(d.stale_while_revalidate() && d.can_serve_stale_if_error());
    let d = decide(
        &StoredFacts {
            current_age: 91,
            ..f
        },
        &rq(""),
        &ReuseOptions::default(),
    );
    assert!(!d.stale_while_revalidate() && d.can_serve_stale_if_error());
    let d = decide(
        &StoredFacts {
            current_age: 161,
            ..f
        },
        &rq(""),
        &ReuseOptions::default(),
    );
    assert!(!d.stale_while_revalidate() && !d.can_serve_stale_if_error());
    // Request stale-if-error also grants it.
    let d = decide(
        &facts(60, 65),
        &rq("stale-if-error=10"),
        &ReuseOptions::default(),
    );
    assert!(d.can_serve_stale_if_error());
}

#[test]
fn revalidate_directives_forbid_stale() {
    // RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8
    let base = StoredFacts {
        stale_while_revalidate: Some(30),
        stale_if_error: Some(100),
        ..facts(60, 70)
    };
    for (f, r) in [
        (
            StoredFacts {
                must_revalidate: true,
                ..base
            },
            RevalidateReason::MustRevalidate,
        ),
        (
            StoredFacts {
                proxy_revalidate: true,
                ..base
            },
            RevalidateReason::ProxyRevalidate,
        ),
    ] {
        let d = decide(&f, &rq(""), &ReuseOptions::default());
        assert_eq!(
            d.reuse,
            Reuse::MustRevalidate {
                reason: r,
                can_serve_stale_if_error: false
            }
        );
        assert!(!d.stale_while_revalidate());
        // While fresh, they change nothing.
        assert_eq!(
            decide(
                &StoredFacts {
                    current_age: 1,
                    ..f
                },
                &rq(""),
                &ReuseOptions::default()
            )
            .reuse,
            Reuse::Fresh
        );
    }
}

#[test]
fn s_maxage_and_rfc5861() {
    // RFC 9111 §5.2.2.10 vs RFC 5861: explicit grants honoured unless strict.
    let f = StoredFacts {
        s_maxage: true,
        stale_while_revalidate: Some(30),
        ..facts(60, 70)
    };
    assert!(decide(&f, &rq(""), &ReuseOptions::default()).stale_while_revalidate());
    let strict = ReuseOptions {
        strict_s_maxage: true,
        ..Default::default()
    };
    let d = decide(&f, &rq(""), &strict);
    assert_eq!(
        d.reuse,
        Reuse::MustRevalidate {
            reason: RevalidateReason::SMaxAge,
            can_serve_stale_if_error: false
        }
    );
}

#[test]
fn only_if_cached() {
    // RFC 9111 §5.2.1.7: 504 unless a stored response can be used.
    let r = rq("only-if-cached");
    assert!(!decide(&facts(60, 1), &r, &ReuseOptions::default()).only_if_cached_fails(&r));
    assert!(decide(&facts(60, 61), &r, &ReuseOptions::default()).only_if_cached_fails(&r));
    let r = rq("only-if-cached, max-stale");
    assert!(!decide(&facts(60, 61), &r, &ReuseOptions::default()).only_if_cached_fails(&r));
}

#[test]
fn extreme_numbers_do_not_panic() {
    let d = decide(
        &facts(u64::MAX, 0),
        &rq("min-fresh=4294967295"),
        &ReuseOptions::default(),
    );
    assert_eq!(d.ttl, i64::MAX);
    let d = decide(
        &facts(0, u64::MAX),
        &rq("max-stale=1"),
        &ReuseOptions::default(),
    );
    assert_eq!(d.ttl, -i64::MAX);
}

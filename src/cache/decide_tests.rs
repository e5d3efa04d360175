//! Reuse-decision tests (RFC 9111 §4.2.4, §5.2; RFC 5861).
use super::*;

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

#[test]
fn a_sites_stale_on_error_grants_what_stale_if_error_would_but_never_past_forbidding_directives() {
    // RFC 9111 §4.2.4: a cache may serve stale when disconnected, unless a
    // directive forbids it (§5.2.2.2, §5.2.2.4, §5.2.2.8, §5.2.2.10).
    let soe = ReuseOptions {
        stale_on_error: Some(3600),
        ..ReuseOptions::default()
    };
    let stale = facts(60, 600);
    assert!(!decide(&stale, &rq(""), &ReuseOptions::default()).can_serve_stale_if_error());
    assert!(decide(&stale, &rq(""), &soe).can_serve_stale_if_error());
    assert!(!decide(&facts(60, 60 + 3601), &rq(""), &soe).can_serve_stale_if_error());
    for forbid in [
        StoredFacts {
            must_revalidate: true,
            ..stale
        },
        StoredFacts {
            proxy_revalidate: true,
            ..stale
        },
        StoredFacts {
            no_cache: true,
            ..stale
        },
        StoredFacts {
            s_maxage: true,
            ..stale
        },
    ] {
        assert!(
            !decide(&forbid, &rq(""), &soe).can_serve_stale_if_error(),
            "{forbid:?}"
        );
    }
}

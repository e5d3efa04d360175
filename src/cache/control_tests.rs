use super::*;
use http::HeaderValue;

fn resp(values: &[&[u8]]) -> ResponseDirectives {
    ResponseDirectives::parse(values.iter().copied())
}

fn req(values: &[&[u8]]) -> RequestDirectives {
    RequestDirectives::parse(values.iter().copied())
}

fn hm(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

#[test]
fn response_basic_directives() {
    // RFC 9111 §5.2.2
    let d = resp(&[b"public, max-age=60, s-maxage=120, must-revalidate, proxy-revalidate, no-transform, immutable, must-understand, no-store"]);
    assert_eq!(d.max_age, Some(60));
    assert_eq!(d.s_maxage, Some(120));
    assert!(d.public && d.must_revalidate && d.proxy_revalidate && d.no_transform);
    assert!(d.immutable && d.must_understand && d.no_store);
    assert!(!d.malformed);
    assert_eq!(d.no_cache, FieldScope::Absent);
}

#[test]
fn names_are_case_insensitive_and_lines_combine() {
    // RFC 9111 §5.2: directive names are case-insensitive; RFC 9110 §5.3 combining.
    let d = resp(&[b"MAX-AGE=10", b"No-Cache", b" Stale-While-Revalidate=5 "]);
    assert_eq!(d.max_age, Some(10));
    assert!(d.no_cache.is_all());
    assert_eq!(d.stale_while_revalidate, Some(5));
}

#[test]
fn quoted_arguments_are_accepted() {
    // RFC 9111 §5.2: arguments are token or quoted-string.
    let d = resp(&[b"max-age=\"30\""]);
    assert_eq!(d.max_age, Some(30));
}

#[test]
fn duplicate_max_age_differing_is_stale() {
    // RFC 9111 §4.2.1: conflicting duplicates → consider stale.
    let d = resp(&[b"max-age=60", b"max-age=120"]);
    assert_eq!(d.max_age, Some(0));
    assert!(d.malformed);
    // Equal duplicates are not a conflict.
    let d = resp(&[b"max-age=60, max-age=60"]);
    assert_eq!(d.max_age, Some(60));
    assert!(!d.malformed);
    let d = resp(&[b"s-maxage=1, s-maxage=2"]);
    assert_eq!(d.s_maxage, Some(0));
}

#[test]
fn invalid_max_age_is_stale() {
    // RFC 9111 §4.2.1: invalid freshness information → stale.
    for v in [
        &b"max-age=abc"[..],
        b"max-age=",
        b"max-age=-1",
        b"max-age=1.5",
        b"max-age=\"x\"",
        b"max-age=\"unterminated",
    ] {
        let d = resp(&[v]);
        assert_eq!(d.max_age, Some(0), "{:?}", String::from_utf8_lossy(v));
        assert!(d.malformed);
    }
}

#[test]
fn delta_seconds_overflow_clamps() {
    // RFC 9111 §1.2.2
    let d = resp(&[b"max-age=99999999999999999999999, stale-if-error=4294967296"]);
    assert_eq!(d.max_age, Some(DELTA_SECONDS_MAX));
    assert_eq!(d.stale_if_error, Some(DELTA_SECONDS_MAX));
}

#[test]
fn swr_sie_duplicates_take_smallest_invalid_ignored() {
    // RFC 5861 §3, §4; conservative reading of RFC 9111 §4.2.1.
    let d = resp(&[b"stale-while-revalidate=60, stale-while-revalidate=30, stale-if-error=x"]);
    assert_eq!(d.stale_while_revalidate, Some(30));
    assert_eq!(d.stale_if_error, None);
    assert!(d.malformed);
}

#[test]
fn qualified_no_cache_and_private() {
    // RFC 9111 §5.2.2.4, §5.2.2.7: qualified forms carry field names.
    let d = resp(&[b"no-cache=\"Set-Cookie, X-Foo\", private=\"x-bar\""]);
    assert_eq!(
        d.no_cache,
        FieldScope::Fields(vec![
            HeaderName::from_static("set-cookie"),
            HeaderName::from_static("x-foo")
        ])
    );
    assert_eq!(d.private.fields(), &[HeaderName::from_static("x-bar")]);
    // Token form is accepted from senders that use it.
    let d = resp(&[b"no-cache=set-cookie"]);
    assert_eq!(
        d.no_cache.fields(),
        &[HeaderName::from_static("set-cookie")]
    );
    // Repeated qualified lists unite; unqualified wins.
    let d = resp(&[b"private=\"a\"", b"private=\"b\""]);
    assert_eq!(d.private.fields().len(), 2);
    let d = resp(&[b"private=\"a\", private"]);
    assert!(d.private.is_all());
    let d = resp(&[b"no-cache, no-cache=\"a\""]);
    assert!(d.no_cache.is_all());
}

#[test]
fn invalid_field_list_is_unqualified() {
    // Conservative reading: a list that is not field names applies to everything.
    for v in [
        &b"private=\"a b\""[..],
        b"private=\"\"",
        b"no-cache=\"\xc3\xa9\"",
        b"private=\"a\\",
    ] {
        let d = resp(&[v]);
        assert!(
            d.private.is_all() || d.no_cache.is_all(),
            "{:?}",
            String::from_utf8_lossy(v)
        );
        assert!(d.malformed);
    }
}

#[test]
fn unknown_and_garbage_directives_are_ignored() {
    // RFC 9111 §5.2.3: unrecognised directives are ignored.
    let d = resp(&[b"foo=bar, \xff\xfe, =5, max-age=5, ,,, x=\"a,b\""]);
    assert_eq!(d.max_age, Some(5));
    assert!(d.malformed); // the non-token names
    let d = resp(&[b""]);
    assert_eq!(d, ResponseDirectives::default());
}

#[test]
fn request_directives() {
    // RFC 9111 §5.2.1
    let d = req(&[b"max-age=5, max-stale, min-fresh=3, no-cache, no-store, only-if-cached, no-transform, stale-if-error=9"]);
    assert_eq!(d.max_age, Some(5));
    assert_eq!(d.max_stale, Some(MaxStale::Any));
    assert_eq!(d.min_fresh, Some(3));
    assert!(d.no_cache && d.no_store && d.only_if_cached && d.no_transform);
    assert_eq!(d.stale_if_error, Some(9));
    let d = req(&[b"max-stale=10"]);
    assert_eq!(d.max_stale, Some(MaxStale::Secs(10)));
}

#[test]
fn request_conflicts_are_conservative() {
    // RFC 9111 §5.2.1.1: invalid max-age reads as 0; duplicates take the smallest.
    assert_eq!(req(&[b"max-age=x"]).max_age, Some(0));
    assert_eq!(req(&[b"max-age=9, max-age=3"]).max_age, Some(3));
    // §5.2.1.3: min-fresh duplicates take the largest, invalid ignored.
    assert_eq!(req(&[b"min-fresh=1, min-fresh=7"]).min_fresh, Some(7));
    assert_eq!(req(&[b"min-fresh=y"]).min_fresh, None);
    // §5.2.1.2: max-stale with a value beats the bare form; invalid → 0.
    assert_eq!(
        req(&[b"max-stale, max-stale=4"]).max_stale,
        Some(MaxStale::Secs(4))
    );
    assert_eq!(
        req(&[b"max-stale=4, max-stale"]).max_stale,
        Some(MaxStale::Secs(4))
    );
    assert_eq!(req(&[b"max-stale=z"]).max_stale, Some(MaxStale::Secs(0)));
}

#[test]
fn headers_entry_points() {
    let h = hm(&[
        ("cache-control", b"max-age=1"),
        ("cache-control", b"no-cache"),
    ]);
    let r = ResponseDirectives::from_headers(&h);
    assert_eq!(r.max_age, Some(1));
    assert!(r.no_cache.is_all());
    assert!(RequestDirectives::from_headers(&h).no_cache);
}

#[test]
fn targeted_field_takes_precedence() {
    // RFC 9213 §2.2: the first valid targeted field wins over Cache-Control entirely.
    let outpost = HeaderName::from_static("outpost-cache-control");
    let targets = target_list(Some(&outpost));
    assert_eq!(targets, vec![outpost.clone(), CDN_CACHE_CONTROL.clone()]);
    let h = hm(&[
        ("cache-control", b"no-store"),
        ("cdn-cache-control", b"max-age=60"),
        (
            "outpost-cache-control",
            b"max-age=600, stale-while-revalidate=30",
        ),
    ]);
    let e = effective_response_control(&h, &targets);
    assert_eq!(e.source, ControlSource::Targeted(outpost.clone()));
    assert_eq!(e.directives.max_age, Some(600));
    assert_eq!(e.directives.stale_while_revalidate, Some(30));
    assert!(!e.directives.no_store);
    assert!(e.ignores_expires());
    let strip = targeted_fields_to_strip(&h, &targets);
    assert_eq!(strip, vec![outpost.clone(), CDN_CACHE_CONTROL.clone()]);
}

#[test]
fn invalid_targeted_field_falls_through() {
    // RFC 9213 §2.1: empty or unparsable targeted fields are ignored.
    let outpost = HeaderName::from_static("outpost-cache-control");
    let targets = target_list(Some(&outpost));
    let h = hm(&[
        ("cache-control", b"max-age=5"),
        ("outpost-cache-control", b"Max-Age=600"), // uppercase key: not sf
        ("cdn-cache-control", b""),
    ]);
    let e = effective_response_control(&h, &targets);
    assert_eq!(e.source, ControlSource::CacheControl);
    assert_eq!(e.directives.max_age, Some(5));
    assert!(!e.ignores_expires());
    // Both are still stripped before forwarding.
    assert_eq!(targeted_fields_to_strip(&h, &targets).len(), 2);
    let h = hm(&[("cdn-cache-control", b"max-age=7")]);
    let e = effective_response_control(&h, &targets);
    assert_eq!(e.source, ControlSource::Targeted(CDN_CACHE_CONTROL.clone()));
    assert_eq!(e.directives.max_age, Some(7));
}

#[test]
fn targeted_values() {
    // RFC 9213 §2.1 with RFC 8941 Dictionary values.
    let h = hm(&[(
        "cdn-cache-control",
        b"max-age=-1, private=\"set-cookie\", no-store=?0, s-maxage=9999999999",
    )]);
    let d = parse_targeted(&h, &CDN_CACHE_CONTROL).unwrap();
    assert_eq!(d.max_age, Some(0)); // negative: invalid → stale
    assert!(d.malformed);
    assert_eq!(d.private.fields(), &[HeaderName::from_static("set-cookie")]);
    assert!(!d.no_store); // ?0 is false
    assert_eq!(d.s_maxage, Some(DELTA_SECONDS_MAX));
    // Multiple lines combine as one dictionary.
    let h = hm(&[
        ("cdn-cache-control", b"max-age=7"),
        ("cdn-cache-control", b"no-cache"),
    ]);
    let d = parse_targeted(&h, &CDN_CACHE_CONTROL).unwrap();
    assert_eq!(d.max_age, Some(7));
    assert!(d.no_cache.is_all());
    assert!(parse_targeted(&HeaderMap::new(), &CDN_CACHE_CONTROL).is_none());
}

#[test]
fn hostile_inputs_do_not_panic() {
    let long = vec![b'a'; 100_000];
    let _ = resp(&[&long]);
    let mut many = Vec::new();
    for _ in 0..10_000 {
        many.extend_from_slice(b"no-cache=\"a\",");
    }
    let d = resp(&[&many]);
    assert_eq!(d.no_cache.fields().len(), 1);
    let _ = req(&[b"\"\"\"\"===,,,\\"]);
    let _ = resp(&[b"max-age==5", b"private=\"", b"\x00\x01"]);
}

#[test]
fn fields_present_finds_each_name_once_scanned() {
    let outpost = HeaderName::from_static("outpost-cache-control");
    let names = [
        outpost.clone(),
        CDN_CACHE_CONTROL.clone(),
        http::header::ETAG,
        HeaderName::from_static("surrogate-key"),
    ];
    let h = hm(&[
        ("cache-control", b"no-store"),
        ("etag", b"\"x\""),
        ("cdn-cache-control", b"max-age=1"),
        ("cdn-cache-control", b"private"),
        ("x-other", b"1"),
    ]);
    let p = fields_present(&h, &names);
    assert!(!p.has(0));
    assert!(p.has(1));
    assert!(p.has(2));
    assert!(!p.has(3));
    assert!(!fields_present(&HeaderMap::new(), &names).has(1));
    // Names past the 64th are reported present (looked up by the caller).
    let many: Vec<HeaderName> = (0..70)
        .map(|i| HeaderName::from_bytes(format!("x-f{i}").as_bytes()).unwrap())
        .collect();
    assert!(fields_present(&h, &many).has(65));
}

#[test]
fn a_memoised_line_reads_as_a_fresh_parse() {
    let lines = [
        "no-store",
        "public, max-age=86400",
        "max-age=60, no-cache=\"set-cookie\"",
        "MAX-AGE=5",
        "max-age=5",
        "private, max-age=1, stale-while-revalidate=30",
        "max-age=\"7\"",
        "a-line-longer-than-the-memo-keeps-for-its-key, max-age=9",
    ];
    // Twice round, more lines than the memo has slots: misses, evictions
    // and hits all read as the parser does.
    for _ in 0..2 {
        for l in lines {
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, HeaderValue::from_static(l));
            assert_eq!(
                ResponseDirectives::from_headers(&h),
                ResponseDirectives::parse([l.as_bytes()]),
                "{l}"
            );
        }
    }
    // Two lines: both read.
    let mut h = HeaderMap::new();
    h.append(CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
    h.append(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let d = ResponseDirectives::from_headers(&h);
    assert_eq!(d.max_age, Some(5));
    assert!(d.no_store);
}

#[test]
fn a_request_without_cache_control_has_the_directives_of_no_lines() {
    let none = RequestDirectives::from_headers(&hm(&[("pragma", b"no-cache")]));
    assert_eq!(none, req(&[]));
    assert_eq!(none, RequestDirectives::default());
    // With lines, they are read (the early return is only for none).
    let some = RequestDirectives::from_headers(&hm(&[("cache-control", b"no-cache")]));
    assert!(some.no_cache);
    let two = RequestDirectives::from_headers(&hm(&[
        ("cache-control", b"max-age=5"),
        ("cache-control", b"only-if-cached"),
    ]));
    assert_eq!(two, req(&[b"max-age=5", b"only-if-cached"]));
}

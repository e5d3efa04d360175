use super::*;
use http::HeaderName;
use std::time::{Duration, UNIX_EPOCH};

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
fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}
fn d(s: u64) -> String {
    httpdate::fmt_http_date(t(s))
}
fn tag(s: &str) -> EntityTag {
    EntityTag::parse(s.as_bytes()).unwrap()
}
fn stored(etag: Option<&str>, lm: Option<u64>, date: Option<u64>) -> Validators {
    Validators {
        etag: etag.map(tag),
        last_modified: lm.map(t),
        date: date.map(t),
        received: Some(t(5000)),
    }
}

#[test]
fn entity_tag_parsing() {
    // RFC 9110 §8.8.3
    assert_eq!(
        tag("\"abc\""),
        EntityTag {
            weak: false,
            opaque: b"abc".to_vec()
        }
    );
    assert_eq!(
        tag(" W/\"abc\" "),
        EntityTag {
            weak: true,
            opaque: b"abc".to_vec()
        }
    );
    assert_eq!(
        tag("\"\""),
        EntityTag {
            weak: false,
            opaque: vec![]
        }
    );
    for bad in [
        "abc", "\"a\"b\"", "w/\"a\"", "W/abc", "\"abc", "\"a b\"", "",
    ] {
        assert!(EntityTag::parse(bad.as_bytes()).is_none(), "{bad}");
    }
    assert!(EntityTag::parse(b"\"\xc3\xa9\"").is_some()); // obs-text allowed
    assert_eq!(tag("W/\"x\"").to_bytes(), b"W/\"x\"");
}

#[test]
fn strong_and_weak_comparison() {
    // RFC 9110 §8.8.3.2 table
    let (w1, w1b, w2, s1) = (tag("W/\"1\""), tag("W/\"1\""), tag("W/\"2\""), tag("\"1\""));
    assert!(!w1.strong_eq(&w1b) && w1.weak_eq(&w1b));
    assert!(!w1.strong_eq(&w2) && !w1.weak_eq(&w2));
    assert!(!w1.strong_eq(&s1) && w1.weak_eq(&s1));
    assert!(s1.strong_eq(&s1.clone()) && s1.weak_eq(&s1));
}

#[test]
fn if_none_match_weak_comparison_and_star() {
    // RFC 9110 §13.1.2
    let v = stored(Some("\"a\""), None, None);
    let g = Method::GET;
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-none-match", "W/\"a\"")]), &v),
        Precondition::NotModified
    );
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-none-match", "\"x\", \"a\"")]), &v),
        Precondition::NotModified
    );
    assert_eq!(
        evaluate_for_cache(
            &g,
            &hm(&[("if-none-match", "\"x\""), ("if-none-match", "\"a\"")]),
            &v
        ),
        Precondition::NotModified
    );
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-none-match", "\"x\"")]), &v),
        Precondition::Proceed
    );
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-none-match", "*")]), &v),
        Precondition::NotModified
    );
    assert_eq!(
        evaluate_for_cache(&Method::HEAD, &hm(&[("if-none-match", "*")]), &v),
        Precondition::NotModified
    );
    // Stored response without ETag: no match.
    assert_eq!(
        evaluate_for_cache(
            &g,
            &hm(&[("if-none-match", "\"a\"")]),
            &stored(None, None, None)
        ),
        Precondition::Proceed
    );
    // Unsafe method: 412.
    assert_eq!(
        evaluate_for_cache(&Method::POST, &hm(&[("if-none-match", "*")]), &v),
        Precondition::PreconditionFailed
    );
    // Invalid field: ignored.
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-none-match", "a, \"a\"")]), &v),
        Precondition::Proceed
    );
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-none-match", "*, \"a\"")]), &v),
        Precondition::Proceed
    );
}

#[test]
fn if_modified_since() {
    // RFC 9110 §13.1.3
    let v = stored(None, Some(1000), Some(2000));
    let g = Method::GET;
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-modified-since", &d(1000))]), &v),
        Precondition::NotModified
    );
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-modified-since", &d(1500))]), &v),
        Precondition::NotModified
    );
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-modified-since", &d(999))]), &v),
        Precondition::Proceed
    );
    // Only GET/HEAD.
    assert_eq!(
        evaluate_for_cache(&Method::POST, &hm(&[("if-modified-since", &d(1500))]), &v),
        Precondition::Proceed
    );
    // Invalid or multiple values are ignored.
    assert_eq!(
        evaluate_for_cache(&g, &hm(&[("if-modified-since", "yesterday")]), &v),
        Precondition::Proceed
    );
    assert_eq!(
        evaluate_for_cache(
            &g,
            &hm(&[
                ("if-modified-since", &d(1500)),
                ("if-modified-since", &d(1500))
            ]),
            &v
        ),
        Precondition::Proceed
    );
}

#[test]
fn if_modified_since_falls_back_to_date_then_receipt() {
    // RFC 9111 §4.3.2
    let g = Method::GET;
    let ims = hm(&[("if-modified-since", &d(2500))]);
    assert_eq!(
        evaluate_for_cache(&g, &ims, &stored(None, None, Some(2000))),
        Precondition::NotModified
    );
    assert_eq!(
        evaluate_for_cache(&g, &ims, &stored(None, None, Some(3000))),
        Precondition::Proceed
    );
    assert_eq!(
        evaluate_for_cache(&g, &ims, &stored(None, None, None)),
        Precondition::Proceed
    ); // received 5000
}

#[test]
fn if_none_match_takes_precedence_over_ims() {
    // RFC 9110 §13.2.2 step 3 before 4; RFC 9111 §4.3.2
    let v = stored(Some("\"a\""), Some(1000), None);
    let h = hm(&[("if-none-match", "\"b\""), ("if-modified-since", &d(2000))]);
    assert_eq!(
        evaluate_for_cache(&Method::GET, &h, &v),
        Precondition::Proceed
    );
}

#[test]
fn full_precedence_with_if_match() {
    // RFC 9110 §13.2.2, §13.1.1 (strong), §13.1.4
    let v = stored(Some("\"a\""), Some(1000), None);
    let g = Method::GET;
    assert_eq!(
        evaluate(&g, &hm(&[("if-match", "\"a\"")]), &v),
        Precondition::Proceed
    );
    assert_eq!(
        evaluate(&g, &hm(&[("if-match", "W/\"a\"")]), &v),
        Precondition::PreconditionFailed
    );
    assert_eq!(
        evaluate(&g, &hm(&[("if-match", "*")]), &v),
        Precondition::Proceed
    );
    assert_eq!(
        evaluate(&g, &hm(&[("if-match", "garbage")]), &v),
        Precondition::PreconditionFailed
    );
    assert_eq!(
        evaluate(&g, &hm(&[("if-unmodified-since", &d(999))]), &v),
        Precondition::PreconditionFailed
    );
    assert_eq!(
        evaluate(&g, &hm(&[("if-unmodified-since", &d(1000))]), &v),
        Precondition::Proceed
    );
    assert_eq!(
        evaluate(&g, &hm(&[("if-unmodified-since", "bad")]), &v),
        Precondition::Proceed
    );
    // If-Match present → If-Unmodified-Since not evaluated.
    let h = hm(&[("if-match", "\"a\""), ("if-unmodified-since", &d(1))]);
    assert_eq!(evaluate(&g, &h, &v), Precondition::Proceed);
    // Then If-None-Match.
    let h = hm(&[("if-match", "\"a\""), ("if-none-match", "\"a\"")]);
    assert_eq!(evaluate(&g, &h, &v), Precondition::NotModified);
    assert!(has_origin_preconditions(&h));
    assert!(!has_origin_preconditions(&hm(&[("if-none-match", "*")])));
}

#[test]
fn if_range() {
    // RFC 9110 §13.1.5
    let v = stored(Some("\"a\""), Some(1000), Some(1060));
    assert!(if_range_allows(&hm(&[]), &v));
    assert!(if_range_allows(&hm(&[("if-range", "\"a\"")]), &v));
    assert!(!if_range_allows(&hm(&[("if-range", "\"b\"")]), &v));
    assert!(!if_range_allows(&hm(&[("if-range", "W/\"a\"")]), &v)); // weak never matches
    assert!(if_range_allows(&hm(&[("if-range", &d(1000))]), &v)); // strong LM (60 s before Date)
    assert!(!if_range_allows(&hm(&[("if-range", &d(1001))]), &v)); // exact match only
    let weak_lm = stored(None, Some(1000), Some(1059));
    assert!(!if_range_allows(&hm(&[("if-range", &d(1000))]), &weak_lm)); // §8.8.2.2
    assert!(!if_range_allows(
        &hm(&[("if-range", &d(1000))]),
        &stored(None, Some(1000), None)
    ));
    assert!(!if_range_allows(&hm(&[("if-range", "nonsense")]), &v));
    assert!(!if_range_allows(
        &hm(&[("if-range", "\"a\""), ("if-range", "\"a\"")]),
        &v
    ));
}

#[test]
fn revalidation_request() {
    // RFC 9111 §4.3.1
    let s = hm(&[("etag", "W/\"v1\""), ("last-modified", &d(1000))]);
    let client = hm(&[
        ("accept", "*/*"),
        ("if-none-match", "\"client\""),
        ("range", "bytes=0-1"),
        ("if-range", "\"client\""),
        ("if-modified-since", &d(1)),
    ]);
    let h = revalidation_request_headers(&client, &s);
    assert_eq!(h.get(IF_NONE_MATCH).unwrap(), "W/\"v1\"");
    assert_eq!(h.get(IF_MODIFIED_SINCE).unwrap(), d(1000).as_str());
    assert!(h.get(RANGE).is_none() && h.get(IF_RANGE).is_none());
    assert_eq!(h.get("accept").unwrap(), "*/*");
    // Invalid stored validators are not sent.
    let bad = hm(&[("etag", "noquotes"), ("last-modified", "never")]);
    assert!(validation_headers(&bad).is_empty());
}

#[test]
fn validators_from_headers() {
    let h = hm(&[
        ("etag", "\"x\""),
        ("last-modified", &d(10)),
        ("date", &d(100)),
    ]);
    let v = Validators::from_headers(&h, None);
    assert_eq!(v.etag, Some(tag("\"x\"")));
    assert!(v.last_modified_is_strong());
    // Two ETag lines: not a usable validator.
    let h = hm(&[("etag", "\"x\""), ("etag", "\"y\"")]);
    assert_eq!(Validators::from_headers(&h, None).etag, None);
}

use super::*;
use http::{HeaderName, HeaderValue};

fn base() -> Target<'static> {
    Target {
        scheme: "http",
        authority: "a",
        path_and_query: "/b/c/d;p?q",
    }
}

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

#[test]
fn unsafe_methods_and_statuses() {
    // RFC 9111 §4.4; RFC 9110 §9.2.1
    for m in ["POST", "PUT", "DELETE", "PATCH", "PURGE", "FOO"] {
        assert!(
            is_unsafe_method(&Method::from_bytes(m.as_bytes()).unwrap()),
            "{m}"
        );
    }
    for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
        assert!(!is_unsafe_method(&m));
    }
    assert!(is_non_error_status(StatusCode::OK));
    assert!(is_non_error_status(StatusCode::SEE_OTHER));
    assert!(!is_non_error_status(StatusCode::NOT_FOUND));
    assert!(!is_non_error_status(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(!is_non_error_status(StatusCode::CONTINUE));
    assert!(should_invalidate(&Method::POST, StatusCode::CREATED));
    assert!(!should_invalidate(&Method::POST, StatusCode::BAD_REQUEST));
    assert!(!should_invalidate(&Method::GET, StatusCode::OK));
}

#[test]
fn rfc3986_normal_examples() {
    // RFC 3986 §5.4.1 (fragments dropped, as for keys).
    let cases = [
        ("g", "/b/c/g"),
        ("./g", "/b/c/g"),
        ("g/", "/b/c/g/"),
        ("/g", "/g"),
        ("?y", "/b/c/d;p?y"),
        ("g?y", "/b/c/g?y"),
        ("#s", "/b/c/d;p?q"),
        ("g#s", "/b/c/g"),
        (";x", "/b/c/;x"),
        ("", "/b/c/d;p?q"),
        (".", "/b/c/"),
        ("./", "/b/c/"),
        ("..", "/b/"),
        ("../", "/b/"),
        ("../g", "/b/g"),
        ("../..", "/"),
        ("../../", "/"),
        ("../../g", "/g"),
    ];
    for (r, want) in cases {
        let got = resolve_reference(&base(), r).unwrap();
        assert_eq!(got.path_and_query, want, "{r}");
        assert_eq!((got.scheme.as_str(), got.authority.as_str()), ("http", "a"));
    }
}

#[test]
fn rfc3986_abnormal_examples() {
    // RFC 3986 §5.4.2
    for (r, want) in [
        ("../../../g", "/g"),
        ("/./g", "/g"),
        ("/../g", "/g"),
        ("g.", "/b/c/g."),
        ("..g", "/b/c/..g"),
        ("./../g", "/b/g"),
        ("g/./h", "/b/c/g/h"),
        ("g/../h", "/b/c/h"),
        ("g;x=1/../y", "/b/c/y"),
    ] {
        assert_eq!(
            resolve_reference(&base(), r).unwrap().path_and_query,
            want,
            "{r}"
        );
    }
    let g = resolve_reference(&base(), "//g").unwrap();
    assert_eq!(
        (g.authority.as_str(), g.path_and_query.as_str()),
        ("g", "/")
    );
    let abs = resolve_reference(&base(), "HTTP://A:80/x?y#z").unwrap();
    assert_eq!(
        (
            abs.scheme.as_str(),
            abs.authority.as_str(),
            abs.path_and_query.as_str()
        ),
        ("http", "A:80", "/x?y")
    );
    assert!(resolve_reference(&base(), "mailto:x@y").is_none());
}

#[test]
fn same_origin_only() {
    // RFC 9111 §4.4: cross-origin Location/Content-Location are ignored.
    let t = Target {
        scheme: "http",
        authority: "Example.com",
        path_and_query: "/items",
    };
    let h = hm(&[
        ("location", "/items/42"),
        ("content-location", "http://example.com:80/items/42?v=1"),
        ("location", "https://example.com/x"),
        ("location", "http://evil.com/items"),
        ("content-location", "//example.com:8080/y"),
        ("content-location", "/items"),
    ]);
    assert_eq!(
        extra_targets(&t, &h),
        vec!["/items/42".to_string(), "/items/42?v=1".to_string()]
    );
    assert!(same_origin("HTTP", "a:80", "http", "A"));
    assert!(!same_origin("http", "a", "https", "a"));
}

#[test]
fn invalidation_keys_cover_target_and_extras() {
    // RFC 9111 §4.4
    let t = Target {
        scheme: "http",
        authority: "example.com",
        path_and_query: "/items",
    };
    let h = hm(&[("location", "/items/42")]);
    let keys = invalidation_keys("s", &Method::POST, StatusCode::CREATED, &t, &h);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], primary_key("s", "http", "example.com", b"/items"));
    assert_eq!(
        keys[1],
        crate::cache::key::key_for_uri("s", &"http://example.com/items/42".parse().unwrap())
            .unwrap()
    );
    assert!(invalidation_keys("s", &Method::POST, StatusCode::BAD_GATEWAY, &t, &h).is_empty());
    assert!(invalidation_keys("s", &Method::GET, StatusCode::OK, &t, &h).is_empty());
}

#[test]
fn hostile_references() {
    let t = base();
    let long = "../".repeat(10_000);
    assert_eq!(resolve_reference(&t, &long).unwrap().path_and_query, "/");
    for r in ["::::", "//", "http://", "?", "#", "a:", ":/x", "//@:99999"] {
        let _ = resolve_reference(&t, r);
    }
    let mut h = HeaderMap::new();
    h.insert(LOCATION, HeaderValue::from_bytes(b"/\xff\xfe").unwrap());
    assert!(extra_targets(&t, &h).is_empty());
}

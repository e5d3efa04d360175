//! RFC 9111 behaviour of the cache, black-box through real sockets against
//! counting origins. Each test names the section it checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;

/// An origin whose response for a request is `f(request number, request)`.
async fn scripted<F>(f: F) -> TestOrigin
where
    F: Fn(usize, &http::request::Parts) -> http::Response<TestBody> + Send + Sync + 'static,
{
    let n = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    TestOrigin::start(move |req: Request<hyper::body::Incoming>| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let f = f.clone();
        async move {
            let (parts, _) = req.into_parts();
            f(i, &parts)
        }
    })
    .await
}

#[tokio::test]
async fn fresh_hit_never_reaches_the_origin() {
    // RFC 9111 §4.2: a fresh response is served without contacting the origin.
    let o =
        scripted(|i, _| resp_with(200, &[("cache-control", "max-age=60")], format!("v{i}"))).await;
    let n = TestNode::start(&o.url(), "").await;
    let (s, h, b) = get(&n.url("/a")).await;
    assert_eq!((s.as_u16(), &b[..]), (200, &b"v0"[..]));
    let cs = cache_status(&h);
    assert!(cs.contains("fwd=uri-miss") && cs.contains("stored"), "{cs}");
    for _ in 0..5 {
        let (s, h, b) = get(&n.url("/a")).await;
        assert_eq!((s.as_u16(), &b[..]), (200, &b"v0"[..]));
        assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
        // RFC 9111 §5.1: Age on every response from cache.
        assert!(h.contains_key("age"));
    }
    assert_eq!(o.count(), 1);
    // A different query is a different key (RFC 9111 §2).
    get(&n.url("/a?x=1")).await;
    assert_eq!(o.count(), 2);
}

#[tokio::test]
async fn s_maxage_beats_max_age_beats_expires() {
    // RFC 9111 §4.2.1
    let o = scripted(|i, p| {
        let cc = match p.uri.path() {
            "/s" => "max-age=0, s-maxage=60",
            "/m" => "max-age=60",
            _ => "",
        };
        let mut h = vec![("expires", http_date(-10))];
        if !cc.is_empty() {
            h.push(("cache-control", cc.to_string()));
        }
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        resp_with(200, &h, format!("v{i}"))
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    for path in ["/s", "/m", "/e"] {
        get(&n.url(path)).await;
        get(&n.url(path)).await;
    }
    assert_eq!(o.count_path("/s"), 1, "s-maxage=60 wins over max-age=0");
    assert_eq!(o.count_path("/m"), 1, "max-age wins over a past Expires");
    assert_eq!(o.count_path("/e"), 2, "a past Expires is stale at once");
}

#[tokio::test]
async fn invalid_expires_means_already_expired() {
    // RFC 9111 §5.3: an invalid Expires (e.g. "0") represents a time in the past.
    let o = scripted(|_, _| {
        resp_with(
            200,
            &[("expires", "0"), ("last-modified", &http_date(-86400))],
            "x",
        )
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/x")).await;
    get(&n.url("/x")).await;
    assert_eq!(o.count(), 2);
}

#[tokio::test]
async fn heuristic_freshness_from_last_modified() {
    // RFC 9111 §4.2.2: heuristically cacheable status, no explicit lifetime.
    let o = scripted(|_, p| {
        let status = if p.uri.path() == "/created" { 201 } else { 200 };
        resp_with(status, &[("last-modified", &http_date(-10 * 86400))], "h")
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/page")).await;
    let (_, h, _) = get(&n.url("/page")).await;
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(o.count_path("/page"), 1);
    // 201 is not heuristically cacheable (RFC 9110 §15.1).
    get(&n.url("/created")).await;
    get(&n.url("/created")).await;
    assert_eq!(o.count_path("/created"), 2);
}

#[tokio::test]
async fn what_a_shared_cache_must_not_store() {
    // RFC 9111 §3, §5.2.2.3 no-store, §5.2.2.7 private, §3.5 Authorization.
    let o = scripted(|_, p| match p.uri.path() {
        "/nostore" => resp_with(200, &[("cache-control", "no-store, max-age=60")], "x"),
        "/private" => resp_with(200, &[("cache-control", "private, max-age=60")], "x"),
        "/auth" => resp_with(200, &[("cache-control", "max-age=60")], "x"),
        "/auth-public" => resp_with(200, &[("cache-control", "public, max-age=60")], "x"),
        _ => resp_with(200, &[("cache-control", "max-age=60")], "x"),
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    for p in ["/nostore", "/private"] {
        get(&n.url(p)).await;
        get(&n.url(p)).await;
        assert_eq!(o.count_path(p), 2, "{p}");
    }
    for _ in 0..2 {
        get_with(&n.url("/auth"), &[("authorization", "Bearer x")]).await;
        get_with(&n.url("/auth-public"), &[("authorization", "Bearer x")]).await;
        get_with(&n.url("/reqnostore"), &[("cache-control", "no-store")]).await;
    }
    assert_eq!(o.count_path("/auth"), 2);
    assert_eq!(o.count_path("/auth-public"), 1);
    assert_eq!(o.count_path("/reqnostore"), 2);
}

#[tokio::test]
async fn qualified_private_stores_without_the_named_fields() {
    // RFC 9111 §5.2.2.7: private="field" — store, but without that field.
    let o = scripted(|_, _| {
        resp_with(
            200,
            &[
                ("cache-control", "max-age=60, private=\"x-user\""),
                ("x-user", "alice"),
                ("x-shared", "yes"),
            ],
            "p",
        )
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/p")).await;
    let (_, h, b) = get(&n.url("/p")).await;
    assert_eq!(b, "p");
    assert!(cache_status(&h).contains("hit"));
    assert!(!h.contains_key("x-user"));
    assert_eq!(h.get("x-shared").unwrap(), "yes");
    assert_eq!(o.count(), 1);
}

#[tokio::test]
async fn request_directives() {
    // RFC 9111 §5.2.1
    let o = scripted(|i, _| {
        resp_with(
            200,
            &[("cache-control", "max-age=2"), ("etag", "\"e\"")],
            format!("v{i}"),
        )
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    let u = n.url("/d");
    // only-if-cached on a miss → 504 (§5.2.1.7).
    let (s, _, _) = get_with(&u, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(s, 504);
    assert_eq!(o.count(), 0);
    get(&u).await;
    let (s, _, _) = get_with(&u, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(s, 200);
    // no-cache → revalidate with the origin (§5.2.1.4).
    get_with(&u, &[("cache-control", "no-cache")]).await;
    assert_eq!(o.count(), 2);
    // max-age=0 → not fresh enough (§5.2.1.1).
    get_with(&u, &[("cache-control", "max-age=0")]).await;
    assert_eq!(o.count(), 3);
    // min-fresh=10 with a 2 s lifetime → not fresh enough (§5.2.1.3).
    get_with(&u, &[("cache-control", "min-fresh=10")]).await;
    assert_eq!(o.count(), 4);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // Stale now; max-stale=60 accepts it (§5.2.1.2).
    let (_, h, _) = get_with(&u, &[("cache-control", "max-stale=60")]).await;
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(o.count(), 4);
    // Without max-stale the stale entry is revalidated.
    get(&u).await;
    assert_eq!(o.count(), 5);
}

#[tokio::test]
async fn ignoring_client_reloads_is_a_site_switch() {
    let o =
        scripted(|i, _| resp_with(200, &[("cache-control", "max-age=60")], format!("v{i}"))).await;
    let n = TestNode::start(&o.url(), "[cache]\nignore_client_reload = true\n").await;
    get(&n.url("/r")).await;
    get_with(&n.url("/r"), &[("cache-control", "no-cache")]).await;
    get_with(
        &n.url("/r"),
        &[("cache-control", "max-age=0"), ("pragma", "no-cache")],
    )
    .await;
    assert_eq!(o.count(), 1);
}

#[tokio::test]
async fn revalidation_304_refreshes_stored_headers() {
    // RFC 9111 §4.3.1 (conditional request), §4.3.4 (freshening).
    let o = scripted(|i, p| {
        if i > 0 {
            assert_eq!(p.headers.get("if-none-match").unwrap(), "\"v1\"");
            return resp_with(
                304,
                &[
                    ("cache-control", "max-age=60"),
                    ("etag", "\"v1\""),
                    ("x-fresh", &format!("{i}")),
                ],
                Bytes::new(),
            );
        }
        resp_with(
            200,
            &[
                ("cache-control", "max-age=0"),
                ("etag", "\"v1\""),
                ("x-fresh", "0"),
                ("content-type", "text/plain"),
            ],
            "body-v1",
        )
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/r")).await;
    let (s, h, b) = get(&n.url("/r")).await;
    assert_eq!((s.as_u16(), &b[..]), (200, &b"body-v1"[..]));
    assert_eq!(h.get("x-fresh").unwrap(), "1");
    assert_eq!(h.get("content-type").unwrap(), "text/plain");
    assert!(
        cache_status(&h).contains("fwd=stale"),
        "{}",
        cache_status(&h)
    );
    // Now fresh for 60 s with the refreshed headers: a hit.
    let (_, h, b) = get(&n.url("/r")).await;
    assert_eq!(b, "body-v1");
    assert_eq!(h.get("x-fresh").unwrap(), "1");
    assert!(cache_status(&h).contains("hit"));
    assert_eq!(o.count(), 2);
}

#[tokio::test]
async fn a_304_for_a_hot_object_answers_with_the_refreshed_headers() {
    // RFC 9111 §4.3.4: the response after a 304 carries the updated
    // fields, even when the stored head's client headers were memoised
    // by repeated hits (cache::meta_memo).
    let o = scripted(|i, _| {
        if i > 0 {
            return resp_with(
                304,
                &[("etag", "\"v1\""), ("x-fresh", &format!("{i}"))],
                Bytes::new(),
            );
        }
        resp_with(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"v1\""),
                ("x-fresh", "0"),
            ],
            "body-v1",
        )
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/hot")).await;
    for _ in 0..4 {
        let (_, h, _) = get(&n.url("/hot")).await;
        assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
        assert_eq!(h.get("x-fresh").unwrap(), "0");
    }
    // The client asks for validation (RFC 9111 §5.2.1.1).
    let (s, h, b) = get_with(&n.url("/hot"), &[("cache-control", "max-age=0")]).await;
    assert_eq!((s.as_u16(), &b[..]), (200, &b"body-v1"[..]));
    assert_eq!(h.get("x-fresh").unwrap(), "1");
    let (_, h, _) = get(&n.url("/hot")).await;
    assert_eq!(h.get("x-fresh").unwrap(), "1");
    assert_eq!(o.count(), 2);
}

#[tokio::test]
async fn must_revalidate_never_serves_stale_and_504s_without_origin() {
    // RFC 9111 §5.2.2.2
    let o = scripted(|_, _| {
        resp_with(
            200,
            &[(
                "cache-control",
                "max-age=1, must-revalidate, stale-if-error=600",
            )],
            "m",
        )
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/m")).await;
    o.stop();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, _, _) = get_with(&n.url("/m"), &[("cache-control", "max-stale=600")]).await;
    assert_eq!(s, 504);
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    // RFC 5861 §3
    let o = scripted(|i, _| {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        resp_with(
            200,
            &[("cache-control", "max-age=1, stale-while-revalidate=60")],
            format!("v{i}"),
        )
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/swr")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let u = n.url("/swr");
        tasks.push(tokio::spawn(async move {
            let t = std::time::Instant::now();
            let (_, h, b) = get(&u).await;
            (t.elapsed(), cache_status(&h), b)
        }));
    }
    for t in tasks {
        let (_elapsed, cs, b) = t.await.unwrap();
        assert_eq!(b, "v0", "stale body served at once");
        assert!(cs.contains("hit") && cs.contains("stale"), "{cs}");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(o.count(), 2, "exactly one background refresh");
    let (_, _, b) = get(&n.url("/swr")).await;
    assert_eq!(b, "v1");
}

#[tokio::test]
async fn stale_if_error_serves_stale_on_500_and_when_the_origin_is_down() {
    // RFC 5861 §4
    let o = scripted(|i, _| {
        if i == 0 {
            resp_with(
                200,
                &[("cache-control", "max-age=1, stale-if-error=60")],
                "good",
            )
        } else {
            resp_with(500, &[], "broken")
        }
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/sie")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, h, b) = get(&n.url("/sie")).await;
    assert_eq!((s.as_u16(), &b[..]), (200, &b"good"[..]));
    assert!(cache_status(&h).contains("stale"), "{}", cache_status(&h));
    o.stop();
    let (s, _, b) = get(&n.url("/sie")).await;
    assert_eq!((s.as_u16(), &b[..]), (200, &b"good"[..]));
}

#[tokio::test]
async fn vary_keeps_one_variant_per_normalised_value() {
    // RFC 9111 §4.1
    let o = scripted(|_, p| {
        let enc = p
            .headers
            .get("accept-encoding")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        resp_with(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
            format!("enc:{enc}"),
        )
    })
    .await;
    // A node that does not compress passes `Accept-Encoding` on (one that does asks the
    // origin for identity: tests/compression.rs).
    let n = TestNode::start(&o.url(), "[compression]\nenabled = false\n").await;
    let (_, _, b) = get_with(&n.url("/v"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(b, "enc:gzip");
    let (_, _, b) = get_with(&n.url("/v"), &[("accept-encoding", "br")]).await;
    assert_eq!(b, "enc:br");
    let (_, h, b) = get_with(&n.url("/v"), &[("accept-encoding", " GZIP ")]).await;
    assert_eq!(b, "enc:gzip");
    assert!(cache_status(&h).contains("hit"));
    let (_, h, b) = get_with(&n.url("/v"), &[("accept-encoding", "br")]).await;
    assert_eq!(b, "enc:br");
    assert!(cache_status(&h).contains("hit"));
    assert_eq!(o.count(), 2);
}

#[tokio::test]
async fn vary_star_never_matches() {
    // RFC 9111 §4.1
    let o = scripted(|_, _| resp_with(200, &[("cache-control", "max-age=60"), ("vary", "*")], "s"))
        .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/s")).await;
    get(&n.url("/s")).await;
    assert_eq!(o.count(), 2);
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    // RFC 9111 §4 (GET and HEAD share entries), RFC 9110 §9.3.2.
    let o = scripted(|_, _| resp_with(200, &[("cache-control", "max-age=60")], "0123456789")).await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/h")).await;
    let (s, h, b) = send(Request::head(n.url("/h")).body(full(Bytes::new())).unwrap()).await;
    assert_eq!(s, 200);
    assert!(b.is_empty());
    assert_eq!(h.get("content-length").unwrap(), "10");
    assert!(cache_status(&h).contains("hit"));
    assert_eq!(o.count(), 1);
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_uri_and_same_origin_location() {
    // RFC 9111 §4.4
    let o = scripted(|i, p| {
        if p.method == http::Method::POST {
            return resp_with(
                201,
                &[
                    ("location", "/other"),
                    ("content-location", "http://elsewhere.example/x"),
                ],
                "made",
            );
        }
        resp_with(200, &[("cache-control", "max-age=60")], format!("v{i}"))
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/target")).await;
    get(&n.url("/other")).await;
    assert_eq!(o.count(), 2);
    let (s, _, _) = send(Request::post(n.url("/target")).body(full("x")).unwrap()).await;
    assert_eq!(s, 201);
    get(&n.url("/target")).await;
    get(&n.url("/other")).await;
    assert_eq!(o.count_path("/target"), 3, "POST target invalidated");
    assert_eq!(
        o.count_path("/other"),
        2,
        "same-origin Location invalidated"
    );
}

#[tokio::test]
async fn conditional_client_requests_are_answered_from_cache() {
    // RFC 9110 §13.1.2, §13.1.3, §13.1.1, §13.2.2
    let lm = http_date(-3600);
    let lm2 = lm.clone();
    let o = scripted(move |_, _| {
        resp_with(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("etag", "W/\"abc\""),
                ("last-modified", &lm2),
            ],
            "c",
        )
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    let u = n.url("/c");
    get(&u).await;
    let (s, h, b) = get_with(&u, &[("if-none-match", "\"abc\"")]).await;
    assert_eq!(s, 304, "weak comparison for If-None-Match");
    assert!(b.is_empty());
    assert!(h.contains_key("etag"));
    let (s, _, _) = get_with(&u, &[("if-none-match", "*")]).await;
    assert_eq!(s, 304);
    let (s, _, _) = get_with(&u, &[("if-none-match", "\"zzz\"")]).await;
    assert_eq!(s, 200);
    let (s, _, _) = get_with(&u, &[("if-modified-since", &lm)]).await;
    assert_eq!(s, 304);
    let (s, _, _) = get_with(&u, &[("if-modified-since", &http_date(-7200))]).await;
    assert_eq!(s, 200);
    let (s, _, _) = get_with(&u, &[("if-match", "W/\"abc\"")]).await;
    assert_eq!(s, 412, "If-Match uses strong comparison");
    let (s, _, _) = get_with(&u, &[("if-unmodified-since", &http_date(-7200))]).await;
    assert_eq!(s, 412);
    assert_eq!(o.count(), 1);
}

#[tokio::test]
async fn cdn_cache_control_takes_precedence_and_is_forwarded_unless_stripped() {
    // RFC 9213 §2.1: a further CDN may need the field; a site may strip it.
    for strip in [false, true] {
        targeted_fields(strip).await;
    }
}

async fn targeted_fields(strip: bool) {
    let o = scripted(|_, p| match p.uri.path() {
        "/cdn" => resp_with(
            200,
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60"),
            ],
            "x",
        ),
        "/own" => resp_with(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "max-age=60"),
                ("outpost-cache-control", "no-store"),
            ],
            "x",
        ),
        _ => resp_with(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store"),
            ],
            "x",
        ),
    })
    .await;
    let site = format!(
        "origins = [\"{}\"]\nstrip_targeted_fields = {strip}\n",
        o.url()
    );
    let n = TestNode::start_site(&site, "").await;
    for p in ["/cdn", "/own", "/deny"] {
        for _ in 0..2 {
            let (_, h, _) = get(&n.url(p)).await;
            assert_eq!(h.contains_key("cdn-cache-control"), !strip, "{p}");
            assert_eq!(
                h.contains_key("outpost-cache-control"),
                !strip && p == "/own",
                "{p}"
            );
        }
    }
    assert_eq!(o.count_path("/cdn"), 1);
    assert_eq!(
        o.count_path("/own"),
        2,
        "the targeted Outpost-Cache-Control wins"
    );
    assert_eq!(o.count_path("/deny"), 2);
}

#[tokio::test]
async fn cache_status_on_every_response() {
    // RFC 9211
    let o = scripted(|_, p| match p.method.as_str() {
        "POST" => resp_with(200, &[], "p"),
        _ => resp_with(200, &[("cache-control", "max-age=60")], "g"),
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    let (_, h, _) = get(&n.url("/cs")).await;
    let cs = cache_status(&h);
    assert!(cs.starts_with("Outpost; fwd=uri-miss"), "{cs}");
    assert!(
        cs.contains("fwd-status=200") && cs.contains("stored") && cs.contains("ttl="),
        "{cs}"
    );
    let (_, h, _) = get(&n.url("/cs")).await;
    assert!(
        cache_status(&h).starts_with("Outpost; hit"),
        "{}",
        cache_status(&h)
    );
    let (_, h, _) = send(Request::post(n.url("/cs")).body(full("x")).unwrap()).await;
    assert!(
        cache_status(&h).contains("fwd=bypass"),
        "{}",
        cache_status(&h)
    );
}

//! Coalescing edge cases and HEAD freshening, black-box through real
//! sockets against counting origins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http::Request;
use http_body_util::BodyExt;

#[tokio::test]
async fn an_uncacheable_answer_releases_the_waiters_to_the_origin() {
    // Hit-for-pass: every waiter gets its own origin answer, none is shared.
    let o = TestOrigin::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        resp_with(200, &[("cache-control", "no-store")], "private")
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let u = n.url("/p");
        tasks.push(tokio::spawn(async move { get(&u).await }));
    }
    for t in tasks {
        let (s, h, b) = t.await.unwrap();
        assert_eq!((s.as_u16(), &b[..]), (200, &b"private"[..]));
        let cs = cache_status(&h);
        assert!(cs.contains("fwd=") && !cs.contains("hit"), "{cs}");
    }
    assert_eq!(o.count(), 10, "each request answered by the origin");
    // Remembered as uncacheable: later requests go straight through.
    let (_, h, _) = get(&n.url("/p")).await;
    assert!(cache_status(&h).contains("fwd=uri-miss"));
    assert_eq!(o.count(), 11);
}

#[tokio::test]
async fn a_hit_for_pass_uri_is_cached_again_once_its_answer_is_storable() {
    // Two uncacheable answers, then a storable one.
    let n_req = Arc::new(AtomicUsize::new(0));
    let n2 = n_req.clone();
    let o = TestOrigin::start(move |_req| {
        let i = n2.fetch_add(1, Ordering::SeqCst);
        async move {
            let cc = if i < 2 { "no-store" } else { "max-age=60" };
            resp_with(200, &[("cache-control", cc)], format!("r{i}"))
        }
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    let u = n.url("/turns");
    let (_, h, b) = get(&u).await;
    assert_eq!(b, "r0");
    assert!(
        cache_status(&h).contains("detail=\"no-store\""),
        "{}",
        cache_status(&h)
    );
    // Marked hit-for-pass: straight to the origin.
    let (_, h, b) = get(&u).await;
    assert_eq!(b, "r1");
    assert!(cache_status(&h).contains("fwd=uri-miss"));
    // The mark still stands, but this answer is stored...
    let (_, h, b) = get(&u).await;
    assert_eq!(b, "r2");
    assert!(cache_status(&h).contains("stored"), "{}", cache_status(&h));
    // ...and from then on the URI is served from the store.
    let (_, h, b) = get(&u).await;
    assert_eq!(b, "r2");
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(o.count(), 3);
}

#[tokio::test]
async fn a_range_request_for_a_hit_for_pass_uri_keeps_its_range() {
    let o = TestOrigin::start(|_req| async {
        resp_with(200, &[("cache-control", "no-store")], "whole")
    })
    .await;
    // Misses for ranges are forwarded as they are (not fetched whole).
    let n = TestNode::start(&o.url(), "[cache]\nrange_fetch_whole = false\n").await;
    let u = n.url("/never");
    get(&u).await; // now hit-for-pass
    let (s, _, _) = get_with(&u, &[("range", "bytes=0-0")]).await;
    assert_eq!(s, 200);
    assert_eq!(o.count(), 2);
    assert_eq!(o.last().headers.get("range").unwrap(), "bytes=0-0");
}

#[tokio::test]
async fn a_waiter_goes_to_the_origin_when_the_lock_times_out() {
    let n_req = Arc::new(AtomicUsize::new(0));
    let n2 = n_req.clone();
    let o = TestOrigin::start(move |_req| {
        let i = n2.fetch_add(1, Ordering::SeqCst);
        async move {
            if i == 0 {
                // The leader's origin answer takes long.
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            resp_with(200, &[("cache-control", "max-age=60")], format!("r{i}"))
        }
    })
    .await;
    let n = TestNode::start(&o.url(), "[cache]\nlock_timeout = \"200ms\"\n").await;
    let u = n.url("/slow");
    let leader = tokio::spawn(async move { get(&u).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (s, h, b) = get(&n.url("/slow")).await;
    assert_eq!(s, 200);
    assert_eq!(b, "r1", "the waiter fetched on its own");
    assert!(!cache_status(&h).contains("collapsed"));
    let (_, _, b) = leader.await.unwrap();
    assert_eq!(b, "r0");
    assert_eq!(o.count(), 2);
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_abort_the_store_write() {
    // 5 MiB arriving slowly; the only client goes away after the first bytes.
    let size = 5usize << 20;
    let o = TestOrigin::start(move |_req| async move {
        let s = futures_util::stream::iter(0..20usize).then(move |_| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(vec![7u8; size / 20])))
        });
        let mut r = http::Response::new(http_body_util::StreamBody::new(s).boxed_unsync());
        r.headers_mut()
            .insert("cache-control", "max-age=600".parse().unwrap());
        r.headers_mut()
            .insert("content-length", size.to_string().parse().unwrap());
        r
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    {
        let r = client()
            .request(
                Request::get(n.url("/big"))
                    .body(full(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let mut body = r.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        // Dropping the body closes this client's stream.
    }
    // The fetch goes on and is stored; poll until it is a hit.
    let mut hit = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, h, b) = get(&n.url("/big")).await;
        assert_eq!(s, 200);
        assert_eq!(b.len(), size);
        if cache_status(&h).contains("hit") {
            hit = true;
            break;
        }
    }
    assert!(hit, "stored despite the disconnect");
    assert_eq!(o.count(), 1, "one origin request in all");
}

#[tokio::test]
async fn a_head_response_freshens_a_stored_get() {
    // RFC 9111 §4.3.5: a 200 to HEAD whose validators match updates the
    // stored GET response's header fields.
    let o = TestOrigin::start(|req: Request<hyper::body::Incoming>| async move {
        if req.method() == http::Method::HEAD {
            return resp_with(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("etag", "\"a\""),
                    ("x-version", "head"),
                    ("content-length", "4"),
                ],
                Bytes::new(),
            );
        }
        resp_with(
            200,
            &[
                ("cache-control", "max-age=1"),
                ("etag", "\"a\""),
                ("x-version", "get"),
            ],
            "body",
        )
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/h")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, h, b) = send(Request::head(n.url("/h")).body(full(Bytes::new())).unwrap()).await;
    assert_eq!(s, 200);
    assert!(b.is_empty());
    assert_eq!(h.get("x-version").unwrap(), "head");
    assert_eq!(o.last().method, http::Method::HEAD, "forwarded as HEAD");
    // The stored GET now carries the new fields and lifetime: a hit.
    let (_, h, b) = get(&n.url("/h")).await;
    assert_eq!(b, "body");
    assert_eq!(h.get("x-version").unwrap(), "head");
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(o.count(), 2);
}

#[tokio::test]
async fn http1_and_http2_share_one_entry() {
    // RFC 9111 §2: the key is the target URI, not the protocol version.
    let o = TestOrigin::start(|_req| async {
        resp_with(200, &[("cache-control", "max-age=60")], "shared")
    })
    .await;
    let n = TestNode::start(&o.url(), "").await;
    get(&n.url("/v")).await;
    let r = h2_client()
        .request(Request::get(n.url("/v")).body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert!(cache_status(r.headers()).contains("hit"));
    let b = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(b, "shared");
    assert_eq!(o.count(), 1);
}

//! A POST's response answers later GETs of its URI when the site allows it,
//! the response names the target in `Content-Location` and has explicit
//! freshness (RFC 9110 §9.3.3, RFC 9111 §4); a POST is never answered from
//! the cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;

async fn origin() -> TestOrigin {
    TestOrigin::start(|req| async move {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let mut r = resp(200, format!("{method} {path}"));
        let h = r.headers_mut();
        match path.as_str() {
            "/cart" => {
                h.insert("content-location", "/cart".parse().unwrap());
                h.insert("cache-control", "max-age=60".parse().unwrap());
            }
            "/elsewhere" => {
                h.insert("content-location", "/cart".parse().unwrap());
                h.insert("cache-control", "max-age=60".parse().unwrap());
            }
            "/heuristic" => {
                h.insert("content-location", "/heuristic".parse().unwrap());
                h.insert("last-modified", http_date(0).parse().unwrap());
            }
            _ => {}
        }
        r
    })
    .await
}

async fn post(url: &str) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let req = http::Request::post(url)
        .body(full(Bytes::from_static(b"item=1")))
        .unwrap();
    send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_response_naming_its_target_answers_later_gets() {
    let o = origin().await;
    let node = TestNode::start_site(
        &format!("origins = [\"{}\"]\ncache_post_responses = true\n", o.url()),
        "",
    )
    .await;
    let (s, h, body) = post(&node.url("/cart")).await;
    assert_eq!(s, 200);
    assert_eq!(&body[..], b"POST /cart");
    assert!(cache_status(&h).contains("stored"), "{}", cache_status(&h));
    until_stored(&node.url("/cart"), &[], node.admin).await;
    let (s, h, body) = get(&node.url("/cart")).await;
    assert_eq!(s, 200);
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(
        &body[..],
        b"POST /cart",
        "the POST's response, from the cache"
    );
    assert_eq!(o.count(), 1, "no GET reached the origin");
    // A POST is never answered from the cache.
    let (_, _, body) = post(&node.url("/cart")).await;
    assert_eq!(&body[..], b"POST /cart");
    assert_eq!(o.count(), 2);

    // Content-Location naming another URI, or no explicit freshness: the
    // GET goes to the origin.
    for path in ["/elsewhere", "/heuristic", "/plain"] {
        post(&node.url(path)).await;
        let (_, _, body) = get(&node.url(path)).await;
        assert_eq!(body, format!("GET {path}"), "{path}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_responses_are_not_stored_unless_the_site_says_so() {
    let o = origin().await;
    let node = TestNode::start(&o.url(), "").await;
    post(&node.url("/cart")).await;
    let (_, h, body) = get(&node.url("/cart")).await;
    assert_eq!(&body[..], b"GET /cart", "{}", cache_status(&h));
    node.shutdown().await;
}

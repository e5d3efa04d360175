//! Vary through real sockets (RFC 9111 §4.1): requests whose `Accept-Language` or
//! `Accept-Encoding` mean the same (equal weights in any order, any spelling of a weight,
//! case, whitespace) select the same stored variant; a different preference does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Request;

async fn varying_on(field: &'static str) -> TestOrigin {
    TestOrigin::start(move |req: Request<hyper::body::Incoming>| async move {
        let v = req
            .headers()
            .get(field)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        resp_with(
            200,
            &[("cache-control", "max-age=600"), ("vary", field)],
            format!("for {v}"),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_language_in_any_order_selects_one_variant() {
    let o = varying_on("accept-language").await;
    let n = TestNode::start(&o.url(), "").await;
    let url = n.url("/page");
    let (_, _, first) = get_with(&url, &[("accept-language", "en-US, fr, de;q=0.5")]).await;
    until_stored(&url, &[("accept-language", "en-US, fr, de;q=0.5")], n.admin).await;
    for same in [
        "fr,en-us ,DE;Q=0.50",
        "de;q=0.500, fr;q=1.0, en-US;q=1",
        "fr, en-US, de;q=0.5, fr",
    ] {
        let (st, h, body) = get_with(&url, &[("accept-language", same)]).await;
        assert_eq!(st, 200);
        assert!(cache_status(&h).contains("hit"), "{same}: {h:?}");
        assert_eq!(body, first, "{same}");
    }
    assert_eq!(o.count(), 1);
    // Another preference is another variant.
    let (_, h, body) = get_with(&url, &[("accept-language", "fr, en-US;q=0.5, de;q=0.5")]).await;
    assert!(!cache_status(&h).contains("hit"), "{h:?}");
    assert_eq!(body, "for fr, en-US;q=0.5, de;q=0.5");
    assert_eq!(o.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_encoding_in_any_order_selects_one_variant() {
    // A node that does not compress passes the field on, so the origin's Vary
    // selects by it.
    let o = varying_on("accept-encoding").await;
    let n = TestNode::start(&o.url(), "[compression]\nenabled = false\n").await;
    let url = n.url("/page");
    get_with(&url, &[("accept-encoding", "gzip, br, zstd;q=0.9")]).await;
    until_stored(
        &url,
        &[("accept-encoding", "gzip, br, zstd;q=0.9")],
        n.admin,
    )
    .await;
    let (_, h, body) = get_with(&url, &[("accept-encoding", "BR,gzip , zstd;q=0.90")]).await;
    assert!(cache_status(&h).contains("hit"), "{h:?}");
    assert_eq!(body, "for gzip, br, zstd;q=0.9");
    assert_eq!(o.count(), 1);
}

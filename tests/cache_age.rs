//! `Age` field shapes through real sockets (RFC 9111 §5.1): a list or
//! repeated lines count by their first member, and an invalid first member
//! makes the response stale, so it is not served from the cache as fresh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Response;

/// An origin answering `/p` with `max-age=3600` and the `Age` lines given
/// for it in the path.
async fn origin() -> TestOrigin {
    TestOrigin::start(|req| async move {
        let lines: Vec<&str> = match req.uri().path() {
            "/list" => vec!["7200, 0"],
            "/lines" => vec!["10", "5000"],
            "/lines-stale" => vec!["5000", "10"],
            "/invalid" => vec!["x"],
            _ => vec!["20"],
        };
        let mut r = Response::builder()
            .status(200)
            .header("cache-control", "max-age=3600")
            .header(
                "date",
                httpdate::fmt_http_date(std::time::SystemTime::now()),
            );
        for l in lines {
            r = r.header("age", l);
        }
        r.body(full("x")).unwrap()
    })
    .await
}

#[tokio::test]
async fn the_first_member_counts_and_an_invalid_one_means_stale() {
    let o = origin().await;
    let node = TestNode::start(&o.url(), "").await;
    for (path, fresh) in [
        ("/plain", true),
        ("/lines", true),
        ("/list", false),
        ("/lines-stale", false),
        ("/invalid", false),
    ] {
        let url = node.url(path);
        assert_eq!(get(&url).await.0, 200);
        // The fill is committed before the second request.
        for _ in 0..250 {
            let st: serde_json::Value =
                serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2)
                    .unwrap();
            if st["fills_in_flight"].as_u64() == Some(0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let before = o.count_path(path);
        let (st, h, _) = get(&url).await;
        assert_eq!(st, 200);
        let hit = cache_status(&h).contains("hit") && o.count_path(path) == before;
        assert_eq!(hit, fresh, "{path}: {}", cache_status(&h));
    }
}

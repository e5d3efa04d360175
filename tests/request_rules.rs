//! Request rules and the limits on a request's fields and content, through
//! real sockets: rule order (first match wins; allow, deny with its own
//! status and body, bypass_cache, a rate limit of a rule's own), each rule
//! counted by name; 431 for fields over a site's limits; 413 for chunked
//! content over `max_body_bytes` as it streams; 408 for content slower than
//! `body_read_timeout`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn stats(node: &TestNode) -> serde_json::Value {
    serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap()
}

#[tokio::test]
async fn the_first_matching_rule_decides_and_each_is_counted_by_name() {
    let o =
        TestOrigin::start(|_| async { resp_with(200, &[("cache-control", "max-age=600")], "ok") })
            .await;
    let site = format!(
        "origins = [\"{}\"]\n\
         [[site.rules]]\nname = \"office\"\npath_prefix = \"/admin\"\nclient = \"127.0.0.7\"\naction = \"allow\"\n\
         [[site.rules]]\nname = \"no-admin\"\npath_prefix = \"/admin\"\naction = \"deny\"\nstatus = 404\nbody = \"nope\\n\"\n\
         [[site.rules]]\nname = \"scanners\"\nheader = {{ name = \"User-Agent\", regex = \"(?i)sqlmap|nikto\" }}\naction = \"deny\"\n\
         [[site.rules]]\nname = \"api\"\npath_regex = \"^/api/\"\nmethod = [\"GET\", \"HEAD\"]\naction = \"bypass_cache\"\n\
         [[site.rules]]\nname = \"login\"\npath_prefix = \"/login\"\naction = \"rate_limit\"\n\
         rate_limit = {{ requests = 2, period = \"1m\" }}\n\
         [[site.rules]]\nname = \"debug\"\nquery_regex = \"(^|&)debug=1(&|$)\"\naction = \"deny\"\nstatus = 400\n",
        o.url()
    );
    let node = TestNode::start_site(&site, "").await;
    let url = |p: &str| node.url(p);

    // Allowed from the office, refused with the rule's status and body
    // from anywhere else, and the origin never sees the refused one.
    assert_eq!(
        get_from_full("127.0.0.7", &url("/admin/x"), &[]).await.0,
        200
    );
    let (st, _, body) = get_from_full("127.0.0.2", &url("/admin/x"), &[]).await;
    assert_eq!((st, body.as_str()), (404, "nope\n"));
    assert_eq!(o.count_path("/admin/x"), 1);

    let (st, _, body) =
        get_from_full("127.0.0.2", &url("/a"), &[("user-agent", "sqlmap/1.7")]).await;
    assert_eq!(st, 403);
    assert_eq!(body, "forbidden: the request was refused by a rule\n");
    assert_eq!(o.count_path("/a"), 0);

    // bypass_cache: a cacheable answer is fetched every time.
    for _ in 0..2 {
        let (st, h, _) = get_from_full("127.0.0.2", &url("/api/v1"), &[]).await;
        assert_eq!(st, 200);
        assert!(cache_status(&h).contains("fwd=bypass"), "{h:?}");
    }
    assert_eq!(o.count_path("/api/v1"), 2);
    // ... while a path no rule matches is cached.
    for _ in 0..2 {
        assert_eq!(get_from_full("127.0.0.2", &url("/page"), &[]).await.0, 200);
    }
    assert_eq!(o.count_path("/page"), 1);

    // The rule's own limit, per client address.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(get_from_full("127.0.0.2", &url("/login"), &[]).await.0);
    }
    assert_eq!(codes, [200, 200, 429]);
    assert_eq!(get_from_full("127.0.0.3", &url("/login"), &[]).await.0, 200);

    assert_eq!(
        get_from_full("127.0.0.2", &url("/p?x=1&debug=1"), &[])
            .await
            .0,
        400
    );
    assert_eq!(
        get_from_full("127.0.0.2", &url("/p?debug=10"), &[]).await.0,
        200
    );

    let s = stats(&node).await;
    let rules = &s["rules"];
    assert_eq!(rules["default/office"], 1, "{s}");
    assert_eq!(rules["default/no-admin"], 1, "{s}");
    assert_eq!(rules["default/scanners"], 1, "{s}");
    assert_eq!(rules["default/api"], 2, "{s}");
    assert_eq!(rules["default/login"], 4, "{s}");
    assert_eq!(rules["default/debug"], 1, "{s}");
    assert!(s["refusals"]["rule"].as_u64().unwrap() >= 3, "{s}");
}

#[tokio::test]
async fn bad_rules_are_refused_at_load_with_their_key_paths() {
    let text = "[[site]]\nname = \"a\"\norigins = [\"http://127.0.0.1:1\"]\n\
                [[site.rules]]\nname = \"x\"\npath_regex = \"(unclosed\"\naction = \"deny\"\n\
                [[site.rules]]\nname = \"x\"\naction = \"explode\"\n\
                [[site.rules]]\nname = \"y\"\naction = \"rate_limit\"\n";
    let err = outpost::config::Config::from_toml(text)
        .unwrap_err()
        .to_string();
    for key in [
        "site[0].rules[0].path_regex",
        "site[0].rules[1].name",
        "site[0].rules[1].action",
        "site[0].rules[2].rate_limit",
    ] {
        assert!(err.contains(key), "{key} missing in: {err}");
    }
}

#[tokio::test]
async fn fields_over_a_sites_limits_get_431_and_the_origin_sees_nothing() {
    let o = TestOrigin::start(|_| async { resp_with(200, &[("cache-control", "no-store")], "ok") })
        .await;
    let site = format!(
        "origins = [\"{}\"]\nmax_header_count = 6\nmax_header_bytes = \"2KiB\"\n",
        o.url()
    );
    let node = TestNode::start_site(&site, "").await;
    let few: Vec<(String, String)> = (0..3).map(|i| (format!("x-a{i}"), "v".into())).collect();
    let many: Vec<(String, String)> = (0..8).map(|i| (format!("x-a{i}"), "v".into())).collect();
    let big = vec![("x-big".to_string(), "b".repeat(3000))];
    let as_refs = |v: &[(String, String)]| -> Vec<(String, String)> { v.to_vec() };
    for (hs, want) in [(as_refs(&few), 200), (many, 431), (big, 431)] {
        let h: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            get_from_full("127.0.0.2", &node.url("/h"), &h).await.0,
            want,
            "{h:?}"
        );
    }
    assert_eq!(o.count(), 1);
    assert!(
        stats(&node).await["refusals"]["headers_too_large"]
            .as_u64()
            .unwrap()
            >= 2
    );
}

/// Writes a chunked POST head, then `chunks` (each after `pause`), and
/// returns the status line of the answer.
async fn chunked_post(at: SocketAddr, chunks: &[&[u8]], pause: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    for c in chunks {
        tokio::time::sleep(pause).await;
        let mut out = format!("{:x}\r\n", c.len()).into_bytes();
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
        if s.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn chunked_content_over_the_limit_gets_413_and_slow_content_408() {
    let o = TestOrigin::start(|req| async move {
        let n = req.into_body().collect().await.map(|b| b.to_bytes().len());
        match n {
            Ok(n) => resp_with(200, &[("cache-control", "no-store")], format!("got {n}")),
            Err(_) => resp(500, "broken body"),
        }
    })
    .await;
    let site = format!("origins = [\"{}\"]\n", o.url());
    let node = TestNode::start_site(
        &site,
        "[limits]\nmax_body_bytes = 1000\nbody_read_timeout = \"300ms\"\n",
    )
    .await;
    let piece: &[u8] = &[b'a'; 400];
    let fast = Duration::from_millis(1);
    // Within the limit: the origin gets it all.
    assert_eq!(
        chunked_post(node.proxy, &[piece, piece], fast).await,
        "HTTP/1.1 200 OK"
    );
    // Over it, with no Content-Length to refuse it by: cut off as it streams.
    assert_eq!(
        chunked_post(node.proxy, &[piece; 5], fast).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    // A pause longer than body_read_timeout between two pieces.
    assert_eq!(
        chunked_post(node.proxy, &[piece, piece], Duration::from_millis(1200)).await,
        "HTTP/1.1 408 Request Timeout"
    );
    let s = stats(&node).await;
    assert_eq!(s["refusals"]["body_too_large"], 1, "{s}");
    assert_eq!(s["refusals"]["body_timeout"], 1, "{s}");
}

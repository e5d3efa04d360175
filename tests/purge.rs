//! Purging through real sockets: `POST /purge` by URL (every Vary
//! variant, HEAD too), by prefix, by tag, soft purges (conditional
//! revalidation, stale-if-error), authentication (401, 503, 403 for
//! `PURGE` from outside `[purge] allow`), persistence across a restart and
//! fan-out to peers with one peer down. Origins count what they receive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use outpost::config::Config;

const TOKEN: &str = "s3cret-token";

fn admin_cfg(extra: &str) -> String {
    format!("[admin]\ntoken = \"{TOKEN}\"\n{extra}")
}

/// An origin: max-age=300, an ETag, tags `all` and `t-<first path segment>`;
/// `/vary/*` varies on Accept-Language; answers a matching If-None-Match
/// with 304.
async fn origin() -> TestOrigin {
    TestOrigin::start(|req| async move {
        let path = req.uri().path().to_owned();
        let seg = path.split('/').nth(1).unwrap_or("").to_owned();
        let lang = req
            .headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let etag = "\"v1\"";
        if req
            .headers()
            .get("if-none-match")
            .is_some_and(|v| v.as_bytes() == etag.as_bytes())
        {
            return resp_with(
                304,
                &[
                    ("etag", etag),
                    ("cache-control", "max-age=300, stale-if-error=600"),
                ],
                "",
            );
        }
        let tags = format!("all t-{seg}");
        let mut h = vec![
            ("cache-control", "max-age=300, stale-if-error=600"),
            ("etag", etag),
            ("surrogate-key", tags.as_str()),
        ];
        if seg == "vary" {
            h.push(("vary", "accept-language"));
        }
        resp_with(200, &h, format!("{path} {lang}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_url_removes_every_variant_and_head() {
    test_logging();
    let o = origin().await;
    let n = TestNode::start(&o.url(), &admin_cfg("")).await;
    let url = n.url("/vary/x");
    for lang in ["en", "fr"] {
        until_hit(&url, &[("accept-language", lang)]).await;
    }
    let head_url = n.url("/head/y");
    until_hit(&head_url, &[]).await;
    let (s, h, _) = request_with("HEAD", &head_url, &[]).await;
    assert_eq!(s, 200);
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    let before = o.count_path("/vary/x");
    let heads = o.count_path("/head/y");

    let body = format!(r#"{{"urls": ["{url}", "{head_url}"]}}"#);
    let (s, j) = admin_purge(n.admin, Some(TOKEN), &body).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["purged"]["urls"], 2, "{j}");
    assert_eq!(j["soft"], false);
    assert_eq!(j["peers"], serde_json::json!([]));

    // Every variant goes to the origin again, then is a hit again.
    for (i, lang) in ["en", "fr"].into_iter().enumerate() {
        let (s, h, b) = get_with(&url, &[("accept-language", lang)]).await;
        assert_eq!(s, 200);
        assert!(!cache_status(&h).contains("hit"), "{}", cache_status(&h));
        assert_eq!(b, format!("/vary/x {lang}"));
        assert_eq!(o.count_path("/vary/x"), before + i + 1);
    }
    // HEAD after a purge reaches the origin too.
    let (s, h, _) = request_with("HEAD", &head_url, &[]).await;
    assert_eq!(s, 200);
    assert!(!cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(o.count_path("/head/y"), heads + 1);
    assert_eq!(o.last().method, http::Method::HEAD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_prefix() {
    test_logging();
    let o = origin().await;
    let n = TestNode::start(&o.url(), &admin_cfg("")).await;
    for p in ["/img/a", "/img/b", "/other/c"] {
        until_hit(&n.url(p), &[]).await;
    }
    let counts: Vec<usize> = ["/img/a", "/img/b", "/other/c"]
        .iter()
        .map(|p| o.count_path(p))
        .collect();
    let prefix = format!("{}/img/", n.proxy);
    let (s, j) = admin_purge(
        n.admin,
        Some(TOKEN),
        &format!(r#"{{"prefixes":["{prefix}"]}}"#),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["purged"]["prefixes"], 1);
    for (p, c) in ["/img/a", "/img/b", "/other/c"].iter().zip(counts) {
        get(&n.url(p)).await;
        let expect = if p.starts_with("/img/") { c + 1 } else { c };
        assert_eq!(o.count_path(p), expect, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_tag() {
    test_logging();
    let o = origin().await;
    let n = TestNode::start(&o.url(), &admin_cfg("")).await;
    for p in ["/red/1", "/red/2", "/blue/3"] {
        until_hit(&n.url(p), &[]).await;
    }
    // Tags are stored with the object but not sent to clients by default.
    let (_, h, _) = get(&n.url("/red/1")).await;
    assert!(h.get("surrogate-key").is_none(), "tag header stripped");
    let counts: Vec<usize> = ["/red/1", "/red/2", "/blue/3"]
        .iter()
        .map(|p| o.count_path(p))
        .collect();
    let (s, j) = admin_purge(n.admin, Some(TOKEN), r#"{"tags":["t-red"]}"#).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["purged"]["tags"], 1);
    for (p, c) in ["/red/1", "/red/2", "/blue/3"].iter().zip(counts) {
        let (_, h, _) = get(&n.url(p)).await;
        let expect = if p.starts_with("/red/") { c + 1 } else { c };
        assert_eq!(o.count_path(p), expect, "{p}: {}", cache_status(&h));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_revalidates_and_serves_stale_if_error() {
    test_logging();
    let o = origin().await;
    let n = TestNode::start(&o.url(), &admin_cfg("")).await;
    let url = n.url("/soft/a");
    until_hit(&url, &[]).await;
    let before = o.count();
    let body = format!(r#"{{"urls":["{url}"],"soft":true}}"#);
    let (s, j) = admin_purge(n.admin, Some(TOKEN), &body).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["soft"], true);

    // The next request revalidates with a conditional request.
    let (s, _, b) = get(&url).await;
    assert_eq!(s, 200);
    assert_eq!(b, "/soft/a -");
    assert_eq!(o.count(), before + 1);
    let seen = o.last();
    assert_eq!(seen.headers.get("if-none-match").unwrap(), "\"v1\"");
    // Freshened by the 304: a hit again.
    let (_, h, _) = get(&url).await;
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));

    // Soft purge again, origin down: stale-if-error still serves it.
    let (s, _) = admin_purge(n.admin, Some(TOKEN), &body).await;
    assert_eq!(s, 200);
    o.stop();
    let (s, _, b) = get(&url).await;
    assert_eq!(s, 200);
    assert_eq!(b, "/soft/a -");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_authentication_and_malformed_requests() {
    test_logging();
    let o = origin().await;
    let n = TestNode::start(&o.url(), &admin_cfg("")).await;
    let ok = r#"{"urls":["http://example.com/a"]}"#;
    let (s, j) = admin_purge(n.admin, Some("wrong"), ok).await;
    assert_eq!(s, 401, "{j}");
    assert_eq!(j["error"], "wrong token");
    let (s, j) = admin_purge(n.admin, None, ok).await;
    assert_eq!(s, 401);
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("missing bearer token")
    );
    let (s, j) = admin_purge(n.admin, Some(TOKEN), "{\"urls\": [").await;
    assert_eq!(s, 400);
    assert!(
        j["error"].as_str().unwrap().contains("malformed JSON"),
        "{j}"
    );
    let (s, j) = admin_purge(n.admin, Some(TOKEN), r#"{"urls":["not a url"]}"#).await;
    assert_eq!(s, 400);
    assert!(j["error"].as_str().unwrap().starts_with("urls[0]"), "{j}");
    let (s, j) = admin_purge(n.admin, Some(TOKEN), "{}").await;
    assert_eq!(s, 400);
    assert!(j["error"].as_str().unwrap().contains("empty purge"), "{j}");
    let (s, j) = admin_purge(n.admin, Some(TOKEN), r#"{"url":["x"]}"#).await;
    assert_eq!(s, 400);
    assert!(
        j["error"].as_str().unwrap().contains("unknown field `url`"),
        "{j}"
    );
    let (s, _) = admin_purge(n.admin, Some(TOKEN), ok).await;
    assert_eq!(s, 200);

    // No token configured: purge is disabled and says so.
    let n2 = TestNode::start(&o.url(), "").await;
    let (s, j) = admin_purge(n2.admin, Some(TOKEN), ok).await;
    assert_eq!(s, 503);
    assert_eq!(j["error"], "purge disabled: no admin token configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_method_is_limited_to_allowed_networks_or_the_token() {
    test_logging();
    let o = origin().await;
    let n = TestNode::start(&o.url(), &admin_cfg("[purge]\nallow = [\"10.0.0.0/8\"]\n")).await;
    let url = n.url("/m/a");
    until_hit(&url, &[]).await;
    let before = o.count();
    let (s, _, b) = request_with("PURGE", &url, &[]).await;
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("not allowed from 127.0.0.1"));
    let (_, h, _) = get(&url).await;
    assert!(cache_status(&h).contains("hit"), "still cached");
    assert_eq!(o.count(), before, "PURGE is never forwarded to the origin");

    // With the token it is allowed.
    let bearer = format!("Bearer {TOKEN}");
    let (s, _, b) = request_with("PURGE", &url, &[("authorization", &bearer)]).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    get(&url).await;
    assert_eq!(o.count(), before + 1);

    // From an allowed network no token is needed.
    let n2 = TestNode::start(&o.url(), "[purge]\nallow = [\"127.0.0.0/8\"]\n").await;
    let url2 = n2.url("/m/b");
    until_hit(&url2, &[]).await;
    let before = o.count_path("/m/b");
    let (s, _, _) = request_with("PURGE", &url2, &[]).await;
    assert_eq!(s, 200);
    get(&url2).await;
    assert_eq!(o.count_path("/m/b"), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_survive_a_restart() {
    test_logging();
    let o = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = node_config_sized(
        &o.url(),
        dir.path(),
        "memory = \"64MiB\"\ndisk = \"256MiB\"\n",
        &admin_cfg(""),
    );
    let start = || async {
        outpost::Node::start(Config::from_toml(&text).unwrap())
            .await
            .unwrap()
    };
    let host = [("host", "cdn.example")];

    let node = start().await;
    let url = |node: &outpost::Node, p: &str| format!("http://{}{p}", node.proxy_addr());
    until_hit(&url(&node, "/r/gone"), &host).await;
    until_hit(&url(&node, "/r/kept"), &host).await;
    node.shutdown().await;

    let node = start().await;
    let (_, h, _) = get_with(&url(&node, "/r/gone"), &host).await;
    assert!(cache_status(&h).contains("hit"), "stored across restarts");
    let (s, j) = admin_purge(
        node.admin_addr(),
        Some(TOKEN),
        r#"{"urls":["http://cdn.example/r/gone"]}"#,
    )
    .await;
    assert_eq!(s, 200, "{j}");
    let log = std::fs::read_to_string(dir.path().join("purge.log")).unwrap();
    assert!(log.contains("cdn.example/r/gone"), "{log}");
    node.shutdown().await;

    let before = o.count_path("/r/gone");
    let node = start().await;
    let (s, h, _) = get_with(&url(&node, "/r/gone"), &host).await;
    assert_eq!(s, 200);
    assert!(!cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(
        o.count_path("/r/gone"),
        before + 1,
        "the origin sees it again"
    );
    let (_, h, _) = get_with(&url(&node, "/r/kept"), &host).await;
    assert!(cache_status(&h).contains("hit"), "other content stays");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reports_each_peer_and_does_not_wait_for_a_dead_one() {
    test_logging();
    let o = origin().await;
    let b = TestNode::start(&o.url(), "[admin]\ntoken = \"peer-b\"\n").await;
    let dead_port = dead_port::DeadPort::bind();
    let dead = dead_port.addr;
    let cluster = format!(
        "[cluster]\ntimeout = \"1s\"\npeers = [\n\
         {{ name = \"b\", admin = \"http://{}\", token = \"peer-b\" }},\n\
         {{ name = \"dead\", admin = \"http://{dead}\", token = \"x\" }},\n]\n",
        b.admin
    );
    let a = TestNode::start(&o.url(), &admin_cfg(&cluster)).await;
    // The same object through both nodes (same Host, so the same URL).
    let host = [("host", "fleet.example")];
    until_hit(&format!("http://{}/f/x", a.proxy), &host).await;
    until_hit(&format!("http://{}/f/x", b.proxy), &host).await;
    let before = o.count_path("/f/x");

    let t0 = Instant::now();
    let (s, j) = admin_purge(
        a.admin,
        Some(TOKEN),
        r#"{"urls":["http://fleet.example/f/x"],"fan_out":true}"#,
    )
    .await;
    let took = t0.elapsed();
    assert_eq!(s, 200, "{j}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let peers = j["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{j}");
    let pb = peers.iter().find(|p| p["peer"] == "b").unwrap();
    assert_eq!(pb["ok"], true, "{j}");
    assert_eq!(pb["status"], 200);
    assert_eq!(pb["purged"]["urls"], 1);
    let pd = peers.iter().find(|p| p["peer"] == "dead").unwrap();
    assert_eq!(pd["ok"], false, "{j}");
    assert!(pd["status"].is_null());
    assert!(pd["error"].as_str().unwrap().contains("connect"), "{j}");

    get_with(&format!("http://{}/f/x", a.proxy), &host).await;
    get_with(&format!("http://{}/f/x", b.proxy), &host).await;
    assert_eq!(o.count_path("/f/x"), before + 2, "purged on both nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_storage_and_counters() {
    test_logging();
    let o = origin().await;
    let n = TestNode::start(&o.url(), "").await;
    until_hit(&n.url("/st/a"), &[]).await;
    let (s, _, body) = get(&format!("http://{}/stats", n.admin)).await;
    assert_eq!(s, 200);
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for k in [
        "entries",
        "memory_bytes",
        "disk_bytes",
        "memory_capacity",
        "disk_capacity",
        "hits",
        "misses",
        "hit_ratio",
        "origin_requests",
        "uptime_secs",
    ] {
        assert!(j.get(k).is_some(), "{k} missing in {j}");
    }
    assert!(j["entries"].as_u64().unwrap() >= 1, "{j}");
    assert_eq!(j["memory_capacity"], 64u64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_purges_survive_a_restart_and_soft_tag_purges_revalidate() {
    test_logging();
    let o = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = node_config_sized(
        &o.url(),
        dir.path(),
        "memory = \"64MiB\"\ndisk = \"256MiB\"\n",
        &admin_cfg(""),
    );
    let start = || async {
        outpost::Node::start(Config::from_toml(&text).unwrap())
            .await
            .unwrap()
    };
    let host = [("host", "cdn.example")];
    let url = |node: &outpost::Node, p: &str| format!("http://{}{p}", node.proxy_addr());

    let node = start().await;
    until_hit(&url(&node, "/gone/1"), &host).await;
    until_hit(&url(&node, "/soft/2"), &host).await;
    let (s, _) = admin_purge(node.admin_addr(), Some(TOKEN), r#"{"tags":["t-gone"]}"#).await;
    assert_eq!(s, 200);
    node.shutdown().await;

    let node = start().await;
    let before = o.count_path("/gone/1");
    let (_, h, _) = get_with(&url(&node, "/gone/1"), &host).await;
    assert!(!cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(o.count_path("/gone/1"), before + 1);

    let before = o.count_path("/soft/2");
    let (s, _) = admin_purge(
        node.admin_addr(),
        Some(TOKEN),
        r#"{"tags":["t-soft"],"soft":true}"#,
    )
    .await;
    assert_eq!(s, 200);
    get_with(&url(&node, "/soft/2"), &host).await;
    assert_eq!(o.count_path("/soft/2"), before + 1);
    assert_eq!(o.last().headers.get("if-none-match").unwrap(), "\"v1\"");
    let (_, h, _) = get_with(&url(&node, "/soft/2"), &host).await;
    assert!(
        cache_status(&h).contains("hit"),
        "revalidated: {}",
        cache_status(&h)
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_hits_misses_and_origin_requests() {
    test_logging();
    let o = origin().await;
    let n = TestNode::start(&o.url(), "").await;
    let stats = || async {
        let (_, _, body) = get(&format!("http://{}/stats", n.admin)).await;
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    let before = stats().await;
    until_hit(&n.url("/count/a"), &[]).await;
    let after = stats().await;
    let d = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    // Counters are process-wide: other tests may add to them meanwhile.
    assert!(d("hits") >= 1, "{before} {after}");
    assert!(d("misses") >= 1, "{before} {after}");
    assert!(d("origin_requests") >= 1, "{before} {after}");
    assert!(after["hit_ratio"].as_f64().unwrap() > 0.0);
}

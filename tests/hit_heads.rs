//! The head of a hit on the node's own HTTP/1.1 path, read off the socket:
//! a plain hit has its stored fields sent in wire form (made from the
//! stored list at first, then kept per thread), and the client must get
//! the fields a request that takes the usual path gets (one with a
//! precondition that lets it proceed, answered 200 from a header map
//! built field by field): each stored
//! line once, in order, `Age`, `Cache-Status`, `Content-Length`, `Date`
//! and `Accept-Ranges` once each, and fields the site or the node sets
//! (`response_set`, `Server`) set, not added twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Response;
use std::net::SocketAddr;

/// One GET on a connection of its own: the response's field lines (names
/// lower-cased) and its body.
async fn fetch(addr: SocketAddr, path: &str, extra: &str) -> (Vec<(String, String)>, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n{extra}Connection: close\r\n\r\n");
    let text = raw(addr, req.as_bytes()).await;
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    assert!(status.starts_with("HTTP/1.1 200 "), "{text}");
    let fields = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("name: value");
            (n.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    (fields, body.to_string())
}

fn values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The lines that do not change from hit to hit, sorted by name (their
/// order within one name kept).
fn stable(fields: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<_> = fields
        .iter()
        .filter(|(n, _)| n != "age" && n != "date" && n != "cache-status")
        .cloned()
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn origin() -> TestOrigin {
    TestOrigin::start(|_req| async {
        Response::builder()
            .header("cache-control", "max-age=600")
            .header("content-type", "text/plain")
            .header("etag", "\"v1\"")
            .header("x-list", "one")
            .header("x-list", "two")
            .header("x-frame-options", "SAMEORIGIN")
            .header("server", "origin-software")
            .body(full("hello, hits"))
            .unwrap()
    })
    .await
}

#[tokio::test]
async fn a_hit_sent_from_its_wire_form_has_the_head_it_had_before() {
    let origin = origin().await;
    let node = TestNode::start(&origin.url(), "").await;
    let (miss, body) = fetch(node.proxy, "/o", "").await;
    assert_eq!(body, "hello, hits");
    assert!(
        values(&miss, "cache-status")[0].contains("fwd="),
        "{miss:?}"
    );
    // The usual path's head: a precondition that lets the request proceed.
    let (built, body) = fetch(node.proxy, "/o", "If-None-Match: \"other\"\r\n").await;
    assert_eq!(body, "hello, hits");
    let mut hits = Vec::new();
    for _ in 0..6 {
        hits.push(fetch(node.proxy, "/o", "").await);
    }
    for (fields, body) in std::iter::once(&(built.clone(), body)).chain(&hits) {
        assert_eq!(body, "hello, hits");
        assert_eq!(stable(fields), stable(&built), "{fields:?}");
        for once in [
            "age",
            "cache-status",
            "content-length",
            "date",
            "accept-ranges",
            "etag",
            "via",
        ] {
            assert_eq!(values(fields, once).len(), 1, "{once} in {fields:?}");
        }
        assert_eq!(values(fields, "x-list"), ["one", "two"], "{fields:?}");
        assert_eq!(values(fields, "content-length"), ["11"]);
        assert!(
            values(fields, "cache-status")[0].contains("hit"),
            "{fields:?}"
        );
        // The origin's software is not told.
        assert!(values(fields, "server").is_empty(), "{fields:?}");
    }
    assert_eq!(origin.count(), 1);
    // A conditional request and a range still get theirs.
    let req =
        "GET /o HTTP/1.1\r\nHost: a.test\r\nIf-None-Match: \"v1\"\r\nConnection: close\r\n\r\n";
    assert!(
        raw(node.proxy, req.as_bytes())
            .await
            .starts_with("HTTP/1.1 304 ")
    );
    let req = "GET /o HTTP/1.1\r\nHost: a.test\r\nRange: bytes=0-4\r\nConnection: close\r\n\r\n";
    let text = raw(node.proxy, req.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 206 "), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    node.shutdown().await;
}

#[tokio::test]
async fn fields_the_site_sets_are_set_once_on_every_hit() {
    let origin = origin().await;
    let site = format!(
        "origins = [\"{}\"]\n[site.headers]\nresponse_set = {{ \"x-frame-options\" = \"DENY\" }}\n",
        origin.url()
    );
    let node = TestNode::start_site(&site, "[server]\nserver_header = \"outpost\"\n").await;
    fetch(node.proxy, "/o", "").await;
    for _ in 0..6 {
        let (fields, body) = fetch(node.proxy, "/o", "").await;
        assert_eq!(body, "hello, hits");
        assert_eq!(values(&fields, "x-frame-options"), ["DENY"], "{fields:?}");
        assert_eq!(values(&fields, "server"), ["outpost"], "{fields:?}");
        assert_eq!(values(&fields, "x-list"), ["one", "two"], "{fields:?}");
        assert_eq!(values(&fields, "age").len(), 1, "{fields:?}");
    }
    // HEAD answers with the GET's length and no body.
    let req = "HEAD /o HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    let text = raw(node.proxy, req.as_bytes()).await;
    assert!(text.contains("content-length: 11\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
    node.shutdown().await;
}

#[tokio::test]
async fn fields_kept_from_clients_stay_out_of_every_hit() {
    // The purge-tag field (kept from clients by default) and, for a site
    // that strips them, the targeted fields (RFC 9213 §2.1): left out of
    // the first plain hit (its lines made from the decoded record) and of
    // the hits after it (the lines kept per thread), as of a hit built the
    // usual way.
    let origin = TestOrigin::start(|_req| async {
        Response::builder()
            .header("cache-control", "max-age=600")
            .header("cdn-cache-control", "max-age=600")
            .header("surrogate-key", "t-one t-two")
            .header("content-type", "text/plain")
            .header("x-after", "kept")
            .body(full("hello, hits"))
            .unwrap()
    })
    .await;
    let site = format!(
        "origins = [\"{}\"]\nstrip_targeted_fields = true\n",
        origin.url()
    );
    let node = TestNode::start_site(&site, "").await;
    let (miss, _) = fetch(node.proxy, "/o", "").await;
    let (built, _) = fetch(node.proxy, "/o", "If-None-Match: \"other\"\r\n").await;
    let mut heads = vec![miss, built];
    for _ in 0..4 {
        heads.push(fetch(node.proxy, "/o", "").await.0);
    }
    for fields in &heads {
        assert!(values(fields, "surrogate-key").is_empty(), "{fields:?}");
        assert!(values(fields, "cdn-cache-control").is_empty(), "{fields:?}");
        assert_eq!(values(fields, "x-after"), ["kept"], "{fields:?}");
        assert_eq!(values(fields, "content-type"), ["text/plain"], "{fields:?}");
    }
    assert_eq!(stable(&heads[1]), stable(&heads[2]));
    assert_eq!(stable(&heads[2]), stable(&heads[5]));
    assert_eq!(origin.count(), 1);
    node.shutdown().await;
}

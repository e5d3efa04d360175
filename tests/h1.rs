//! Black-box tests of the proxy listener's own HTTP/1.1 path
//! (src/server/h1.rs): pipelining, the hand-over to hyper in the middle of
//! a connection, response framing (chunked, HEAD, 304), limits answered by
//! hyper (431, 400), and graceful shutdown of its connections. The
//! connection-level tests run with the path on and off
//! (`server.fast_http1`): both must give the same answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MODES: [&str; 2] = [
    "[server]\nfast_http1 = true\n",
    "[server]\nfast_http1 = false\n",
];

/// An origin that answers `METHOD PATH LEN` (LEN: request content bytes);
/// `/stream` streams 3 × 1000 bytes without a length; `/etag` answers 304
/// to `If-None-Match: "v"`.
async fn echo_origin() -> TestOrigin {
    TestOrigin::start(|req: http::Request<hyper::body::Incoming>| async move {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if path == "/stream" {
            let mut r = http::Response::new(generated_body(3000, 1000));
            r.headers_mut()
                .insert("cache-control", "no-store".parse().unwrap());
            return r;
        }
        if path == "/etag" {
            let mut r = if req.headers().get("if-none-match").is_some() {
                resp(304, "")
            } else {
                resp(200, "tagged body")
            };
            r.headers_mut().insert("etag", "\"v\"".parse().unwrap());
            return r;
        }
        let n = req.into_body().collect().await.unwrap().to_bytes().len();
        let mut r = resp(200, format!("{method} {path} {n}"));
        r.headers_mut()
            .insert("cache-control", "no-store".parse().unwrap());
        r
    })
    .await
}

/// Writes `request` to `addr` and reads until the peer closes.
async fn raw_bytes(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// Splits a stream of responses (each with Content-Length, or none for
/// HEAD/304) into (status line, body) pairs.
fn split_responses(mut raw: &[u8], bodiless: &[usize]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let status = head.lines().next().unwrap().to_owned();
        let len: usize = if bodiless.contains(&out.len()) {
            0
        } else {
            head.lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0)
        };
        let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + len]).into_owned();
        out.push((status, body));
        raw = &raw[end + 4 + len..];
    }
    out
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_the_hand_over_to_hyper() {
    for mode in MODES {
        let origin = echo_origin().await;
        let node = TestNode::start(&origin.url(), mode).await;
        // Two GETs, a POST with content (hyper's from there on), a GET.
        let out = raw(
            node.proxy,
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz\
              GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let rs = split_responses(out.as_bytes(), &[]);
        let bodies: Vec<&str> = rs.iter().map(|(_, b)| b.as_str()).collect();
        assert_eq!(
            bodies,
            ["GET /a 0", "GET /b 0", "POST /c 3", "GET /d 0"],
            "{mode}: {out}"
        );
        assert!(
            rs.iter().all(|(s, _)| s == "http/1.1 200 ok"),
            "{mode}: {out}"
        );
        assert_eq!(origin.count(), 4);
        assert!(node.shutdown().await);
    }
}

#[tokio::test]
async fn a_body_of_unknown_length_is_sent_chunked_and_the_connection_stays_usable() {
    for mode in MODES {
        let origin = echo_origin().await;
        let node = TestNode::start(&origin.url(), mode).await;
        let out = raw_bytes(
            node.proxy,
            b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
        assert!(
            head.contains("transfer-encoding: chunked"),
            "{mode}: {head}"
        );
        assert!(!head.contains("content-length"), "{mode}: {head}");
        // Decode the chunks.
        let mut rest = &out[end + 4..];
        let mut body = Vec::new();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                assert_eq!(&rest[..2], b"\r\n", "{mode}");
                rest = &rest[2..];
                break;
            }
            body.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n", "{mode}");
            rest = &rest[size + 2..];
        }
        let want: Vec<u8> = (0..3)
            .flat_map(|_| (0..1000).map(|i| (i % 251) as u8))
            .collect();
        assert_eq!(body, want, "{mode}");
        let next = split_responses(rest, &[]);
        assert_eq!(next.len(), 1, "{mode}");
        assert_eq!(next[0].1, "GET /after 0", "{mode}");
        assert!(node.shutdown().await);
    }
}

#[tokio::test]
async fn head_and_304_answers_carry_no_content_and_keep_the_connection() {
    for mode in MODES {
        let origin = echo_origin().await;
        let node = TestNode::start(&origin.url(), mode).await;
        let out = raw(
            node.proxy,
            b"GET /etag HTTP/1.1\r\nHost: x\r\n\r\n\
              HEAD /etag HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /etag HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v\"\r\n\r\n\
              GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let rs = split_responses(out.as_bytes(), &[1, 2]);
        assert_eq!(rs.len(), 4, "{mode}: {out}");
        assert_eq!(rs[0], ("http/1.1 200 ok".into(), "tagged body".into()));
        assert_eq!(rs[1].0, "http/1.1 200 ok", "{mode}");
        assert_eq!(rs[2].0, "http/1.1 304 not modified", "{mode}");
        assert_eq!(rs[3].1, "GET /last 0", "{mode}: {out}");
        // The HEAD answer tells the GET's length.
        let head_of_head = out.split("\r\n\r\n").nth(1).unwrap().to_ascii_lowercase();
        assert!(
            head_of_head.contains("content-length: 11"),
            "{mode}: {head_of_head}"
        );
        assert!(node.shutdown().await);
    }
}

#[tokio::test]
async fn oversized_and_malformed_heads_get_hypers_answers() {
    let origin = echo_origin().await;
    let node = TestNode::start(&origin.url(), "").await;
    let mut big = b"GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let out = raw(node.proxy, &big).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let out = raw(node.proxy, b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // After a good request on the same connection, too.
    let out = raw(
        node.proxy,
        b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo st: x\r\n\r\n",
    )
    .await;
    let rs = split_responses(out.as_bytes(), &[]);
    assert_eq!(rs[0].1, "GET /ok 0", "{out}");
    assert!(rs[1].0.starts_with("http/1.1 400"), "{out}");
    assert_eq!(origin.count(), 1);
    assert!(node.shutdown().await);
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_finishes_busy_ones() {
    let origin = TestOrigin::start(|req: http::Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let mut r = resp(200, "done");
        r.headers_mut()
            .insert("cache-control", "no-store".parse().unwrap());
        r
    })
    .await;
    let node = TestNode::start(&origin.url(), "").await;
    let mut idle = TcpStream::connect(node.proxy).await.unwrap();
    // Three requests: the connection waits idle between them, each wait
    // after the first without asking the stop signal's token again.
    for path in ["/first", "/second", "/third"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        idle.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"done") {
            let mut buf = vec![0u8; 4096];
            let n = idle.read(&mut buf).await.unwrap();
            assert!(n > 0, "{path}: closed");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "{path}");
    }
    let mut busy = TcpStream::connect(node.proxy).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stop = tokio::spawn(node.shutdown());
    // The idle connection is closed at once.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest)).await;
    assert!(r.is_ok() && rest.is_empty(), "idle connection not closed");
    // The busy one gets its answer, marked as the last, then the close.
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), busy.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 200"), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert!(out.ends_with("done"), "{out}");
    assert!(stop.await.unwrap(), "drain did not finish cleanly");
}

#[tokio::test]
async fn the_nodes_own_answers_carry_a_date() {
    for mode in MODES {
        let origin = echo_origin().await;
        let node = TestNode::start(&origin.url(), mode).await;
        // A 502 for an origin that is down is the node's own answer.
        origin.stop();
        let out = raw(
            node.proxy,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 502"), "{mode}: {out}");
        let date = out
            .lines()
            .find_map(|l| l.strip_prefix("date: "))
            .unwrap_or_else(|| panic!("{mode}: {out}"));
        let when = httpdate::parse_http_date(date.trim()).unwrap();
        let skew = std::time::SystemTime::now()
            .duration_since(when)
            .unwrap_or_default();
        assert!(skew < Duration::from_secs(5), "{date}");
        assert!(node.shutdown().await);
    }
}

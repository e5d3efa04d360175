//! Keep-alive policy through real sockets: an HTTP/1.1 connection idle for
//! `keepalive_timeout` between requests is closed (and one that comes back
//! in time is served), a connection is closed after `keepalive_requests`
//! (its last response says `Connection: close`), and an HTTP/2 connection
//! without a request for `h2_idle_timeout` gets GOAWAY and is closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::h2::{PREFACE, frame, frame_kinds};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn node() -> (TestNode, TestOrigin) {
    let o =
        TestOrigin::start(|_| async { resp_with(200, &[("cache-control", "max-age=60")], "ok") })
            .await;
    let n = TestNode::start_site(
        &format!("origins = [\"{}\"]\n", o.url()),
        "[server]\nkeepalive_timeout = \"400ms\"\nkeepalive_requests = 3\nh2_idle_timeout = \"400ms\"\nheader_read_timeout = \"5s\"\n",
    )
    .await;
    (n, o)
}

/// Sends one GET and reads its whole response (it ends with `ok`).
async fn one(s: &mut TcpStream) -> String {
    s.write_all(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed mid-response");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Waits for the peer to close; how long it took.
async fn closed(s: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {within:?}"),
        }
    }
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_after_the_keepalive_timeout() {
    let (n, _o) = node().await;
    let mut s = TcpStream::connect(n.proxy).await.unwrap();
    assert!(one(&mut s).await.starts_with("HTTP/1.1 200"));
    // Back within the timeout: served.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(one(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle past it: closed, well before the header-read timeout (5 s).
    let took = closed(&mut s, Duration::from_secs(3)).await;
    assert!(took >= Duration::from_millis(300), "{took:?}");
}

#[tokio::test]
async fn a_connection_is_closed_after_keepalive_requests() {
    let (n, _o) = node().await;
    let mut s = TcpStream::connect(n.proxy).await.unwrap();
    for i in 1..=3 {
        let r = one(&mut s).await.to_ascii_lowercase();
        assert!(r.starts_with("http/1.1 200"), "{r}");
        assert_eq!(r.contains("connection: close"), i == 3, "request {i}: {r}");
    }
    closed(&mut s, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn an_idle_http2_connection_gets_goaway_after_its_idle_timeout() {
    let (n, _o) = node().await;
    let mut s = TcpStream::connect(n.proxy).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    s.write_all(&out).await.unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("still open after 5 s")
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(350),
        "{:?}",
        start.elapsed()
    );
    let kinds = frame_kinds(&got);
    assert!(kinds.contains(&0x7), "no GOAWAY: {kinds:?}");
}

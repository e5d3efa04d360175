//! Black-box tests of the per-request timeouts that keep one timer per
//! connection instead of one per request (src/deadline.rs): the client
//! header-read timeout (src/server/timer.rs) and the origin
//! response-header timeout on pooled connections (src/origin/h1.rs).
//! Each checks that a deadline is enforced after the connection's earlier
//! deadlines have passed, which is where a re-used timer could go wrong.
//! Also: a client that half-closes after its request still gets the answer
//! (hyper's `half_close`, set in src/server.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one response with a `Content-Length` body; `None` if the peer
/// closed first.
async fn read_response(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits (up to 10 s) for the peer to close; how long it took.
async fn closed_after(s: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "the node did not close the connection");
    start.elapsed()
}

#[tokio::test]
async fn a_client_stalling_in_its_request_head_is_cut_off() {
    let origin = TestOrigin::start(|_req| async { resp(200, "ok") }).await;
    let node = TestNode::start(&origin.url(), "[server]\nheader_read_timeout = \"300ms\"\n").await;
    let mut s = TcpStream::connect(node.proxy).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let took = closed_after(&mut s).await;
    assert!(
        took >= Duration::from_millis(250),
        "cut off early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "cut off late: {took:?}");
    assert_eq!(origin.count(), 0);
}

#[tokio::test]
async fn a_keep_alive_connection_outlives_the_header_timeout_while_requests_come() {
    let origin = TestOrigin::start(|_req| async { resp(200, "ok") }).await;
    let node = TestNode::start(
        &origin.url(),
        "[server]\nheader_read_timeout = \"400ms\"\nkeepalive_timeout = \"400ms\"\n",
    )
    .await;
    let mut s = TcpStream::connect(node.proxy).await.unwrap();
    // Eight requests 150 ms apart: 1.2 s on one connection, three times
    // the header-read timeout, each head well within it.
    for i in 0..8 {
        s.write_all(format!("GET /ka/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut s)
            .await
            .unwrap_or_else(|| panic!("closed before response {i}"));
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(origin.count(), 8);
    // Idle past the keep-alive timeout: the node closes the connection.
    let took = closed_after(&mut s).await;
    assert!(
        took < Duration::from_secs(5),
        "idle connection kept: {took:?}"
    );
}

/// An origin on raw sockets that counts connections and answers every
/// request on a keep-alive connection, except those for `/hang`.
async fn counting_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        if !head.contains(" /hang ") {
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn a_pooled_origin_connection_keeps_its_response_header_timeout() {
    let (addr, conns) = counting_origin().await;
    let node = TestNode::start(
        &format!("http://{addr}"),
        "[timeouts]\nresponse_header = \"300ms\"\n",
    )
    .await;
    let (status, _, _) = get(&node.url("/a")).await;
    assert_eq!(status, 200);
    // Past the first exchange's deadline: answered on the pooled
    // connection, not cut off by the timer left from the first exchange.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, _) = get(&node.url("/b")).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The origin holds this one: 504 after the timeout, on the same
    // pooled connection.
    let start = Instant::now();
    let (status, _, body) = get(&node.url("/hang")).await;
    let took = start.elapsed();
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert!(
        took >= Duration::from_millis(250),
        "timed out early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "timed out late: {took:?}");
    assert_eq!(conns.load(Ordering::SeqCst), 1, "one pooled connection");
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    // RFC 9112 §9.6: the client shuts down its sending side once the
    // request is out; the answer still arrives. The origin is slow, so the
    // half-close is seen while the node waits for it.
    let origin = TestOrigin::start(|_req| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        resp(200, "slow answer")
    })
    .await;
    let node = TestNode::start(&origin.url(), "").await;
    let mut s = TcpStream::connect(node.proxy).await.unwrap();
    s.write_all(b"GET /half HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("slow answer"), "{text}");
    assert_eq!(origin.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_origin_connections_are_closed_after_the_pool_timeout_without_traffic() {
    // An origin that answers one request on a keep-alive connection, then
    // reports when the node closes that connection.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let origin = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        raw::read_head(&mut s)
            .await
            .expect("closed before the request");
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok")
            .await
            .unwrap();
        let answered = Instant::now();
        // Nothing more is asked: the next read ends when the node closes.
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap_or(0);
        let _ = tx.send((n, answered.elapsed()));
        // No second connection either.
        tokio::time::timeout(Duration::from_millis(300), l.accept())
            .await
            .is_err()
    });
    let node = TestNode::start(
        &format!("http://{addr}"),
        "[timeouts]\npool_idle = \"300ms\"\n",
    )
    .await;
    let (status, _, body) = get(&node.url("/once")).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"ok");
    let (n, after) = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("the idle connection was never closed")
        .unwrap();
    assert_eq!(n, 0, "the node sent more on the idle connection");
    // Kept for reuse first (not closed with the response), then closed by
    // the sweep: within 1.5 idle timeouts plus scheduling slack.
    assert!(
        after >= Duration::from_millis(200),
        "closed after {after:?}"
    );
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
    assert!(origin.await.unwrap(), "the node opened another connection");
    node.shutdown().await;
}

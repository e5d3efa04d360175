//! HTTP/2 rapid reset through real sockets: a client writing 10,000
//! HEADERS + RST_STREAM pairs gets GOAWAY and a closed connection, while a
//! second client's requests all succeed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::h2::{PREFACE, frame, frame_kinds, get_block};
use common::*;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_rapid_reset_client_is_disconnected_while_others_are_served() {
    let o = TestOrigin::start(|_| async {
        // Slow enough that reset streams are still in flight.
        tokio::time::sleep(Duration::from_millis(5)).await;
        resp_with(200, &[("cache-control", "no-store")], "ok")
    })
    .await;
    let node = TestNode::start_site(&format!("origins = [\"{}\"]\n", o.url()), "").await;

    let attacker = {
        let at = node.proxy;
        tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
            let mut out = PREFACE.to_vec();
            out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
            let block = get_block(&at.to_string());
            let mut sent = 0;
            let start = Instant::now();
            // 10,000 pairs in batches; the node may close before the end.
            'send: for batch in 0..100u32 {
                for i in 0..100u32 {
                    let id = 2 * (batch * 100 + i) + 1;
                    out.extend(frame(0x1, 0x5, id, &block)); // HEADERS, END_STREAM|END_HEADERS
                    out.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
                }
                if s.write_all(&out).await.is_err() {
                    break 'send;
                }
                sent += 100;
                out.clear();
            }
            // Read until the node closes; look for GOAWAY (type 7).
            let mut got = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await;
            let goaway = frame_kinds(&got).contains(&0x7);
            (sent, goaway, closed.is_ok(), start.elapsed())
        })
    };

    // Meanwhile, a well-behaved HTTP/2 client.
    let c = h2_client();
    let mut ok = 0;
    for _ in 0..50 {
        let r = c
            .request(
                Request::get(node.url("/fine"))
                    .body(full(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        if r.status() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 50);

    let (sent, goaway, closed, took) = attacker.await.unwrap();
    assert!(goaway, "no GOAWAY after {sent} pairs");
    assert!(closed, "connection still open after {took:?}");
    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    assert!(
        stats["refusals"]["h2_abuse"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    eprintln!("{sent} pairs sent in {took:?}");
}

#[tokio::test]
async fn requests_cancelled_after_they_started_count_against_the_limit_too() {
    let o = TestOrigin::start(|_| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        resp_with(200, &[("cache-control", "no-store")], "ok")
    })
    .await;
    let node = TestNode::start_site(
        &format!("origins = [\"{}\"]\n", o.url()),
        "[server]\nh2_max_resets_per_second = 50\n",
    )
    .await;
    let at = node.proxy;
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    s.write_all(&out).await.unwrap();
    let block = get_block(&at.to_string());
    // Streams opened, left to start (their origin takes 200 ms), then
    // cancelled: h2 has accepted them, so only the node's count sees them.
    let mut id = 1u32;
    let mut closed = false;
    for _ in 0..20 {
        let first = id;
        let mut out = Vec::new();
        for _ in 0..10 {
            out.extend(frame(0x1, 0x5, id, &block));
            id += 2;
        }
        if s.write_all(&out).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut out = Vec::new();
        for k in (first..id).step_by(2) {
            out.extend(frame(0x3, 0, k, &8u32.to_be_bytes()));
        }
        if s.write_all(&out).await.is_err() {
            closed = true;
            break;
        }
    }
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(closed || ended.is_ok(), "the connection stayed open");
    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    assert!(
        stats["refusals"]["h2_abuse"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    // The node still serves.
    assert_eq!(get(&node.url("/after")).await.0, 200);
}

#[tokio::test]
async fn a_continuation_flood_ends_the_connection() {
    let o = TestOrigin::start(|_| async { resp(200, "ok") }).await;
    let node = TestNode::start_site(&format!("origins = [\"{}\"]\n", o.url()), "").await;
    let at = node.proxy;
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    // HEADERS without END_HEADERS, then CONTINUATION frames without end:
    // a header block that never finishes (CVE-2024-27316 and kin).
    out.extend(frame(0x1, 0x1, 1, &get_block(&at.to_string())));
    s.write_all(&out).await.unwrap();
    // Literal fields (never indexed) of 1 KiB each, 16 KiB per frame.
    let mut field = vec![0x10, 0x03, b'x', b'-', b'a', 0x7f, 0x81, 0x07];
    field.extend(std::iter::repeat_n(b'v', 1024));
    let payload: Vec<u8> = field.iter().copied().cycle().take(16 * 1024).collect();
    let mut written = 0usize;
    for _ in 0..640 {
        // 10 MiB at most.
        if s.write_all(&frame(0x9, 0, 1, &payload)).await.is_err() {
            break;
        }
        written += payload.len();
    }
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        written < 10 << 20 || ended.is_ok(),
        "the node took {written} bytes of one header block and kept the connection"
    );
    assert_eq!(get(&node.url("/after")).await.0, 200);
}

/// Reads what the node sends until it closes (or `limit`); the frame types
/// seen, in order.
async fn frame_types(s: &mut tokio::net::TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(limit, s.read_to_end(&mut got))
        .await
        .is_ok();
    (frame_kinds(&got), closed)
}

#[tokio::test]
async fn settings_and_ping_floods_end_the_connection() {
    let o = TestOrigin::start(|_| async { resp(200, "ok") }).await;
    let node = TestNode::start_site(&format!("origins = [\"{}\"]\n", o.url()), "").await;
    let mut s = tokio::net::TcpStream::connect(node.proxy).await.unwrap();
    let mut out = PREFACE.to_vec();
    for i in 0..20_000u32 {
        if i % 2 == 0 {
            out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        } else {
            out.extend(frame(0x6, 0, 0, &i.to_be_bytes().repeat(2))); // PING
        }
    }
    let _ = s.write_all(&out).await;
    let (kinds, closed) = frame_types(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "still open");
    assert!(kinds.contains(&0x7), "no GOAWAY");
    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    assert!(
        stats["refusals"]["h2_abuse"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert_eq!(get(&node.url("/after")).await.0, 200);
}

#[tokio::test]
async fn a_window_held_shut_ends_the_connection_after_send_timeout() {
    let o = TestOrigin::start(|_| async {
        resp_with(200, &[("cache-control", "no-store")], vec![b'z'; 200_000])
    })
    .await;
    let node = TestNode::start_site(
        &format!("origins = [\"{}\"]\n", o.url()),
        "[server]\nsend_timeout = \"1s\"\n",
    )
    .await;
    let at = node.proxy;
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    let mut out = PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may be sent a byte until
    // a WINDOW_UPDATE, which never comes.
    out.extend(frame(0x4, 0, 0, &[0x00, 0x04, 0, 0, 0, 0]));
    out.extend(frame(0x1, 0x5, 1, &get_block(&at.to_string())));
    s.write_all(&out).await.unwrap();
    let start = Instant::now();
    let (kinds, closed) = frame_types(&mut s, Duration::from_secs(15)).await;
    assert!(closed, "still open after {:?}", start.elapsed());
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert!(
        kinds.contains(&0x1),
        "the response head was sent: {kinds:?}"
    );
    assert!(!kinds.contains(&0x0), "no content could be sent: {kinds:?}");
    assert!(kinds.contains(&0x7), "GOAWAY: {kinds:?}");
    // A well-behaved client is served meanwhile and after.
    let r = h2_client()
        .request(
            Request::get(node.url("/fine"))
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

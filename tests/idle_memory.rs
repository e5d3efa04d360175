//! Idle keep-alive connections cost little: 2,000 HTTP/1.1 connections, each after one
//! request, add at most about 2 KiB each to the node's memory (no read or write buffer, no request
//! state kept while they wait), and every one still answers its next request. The cost is
//! measured past a first thousand held, so one-time growth of the runtime's tables is not
//! spread over the connections measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

const CONNS: usize = 2000;

/// One GET on `s`; the response's head.
fn exchange(s: &mut TcpStream, host: &str) -> String {
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // One write: pieces would wait on Nagle and the peer's delayed ACK.
    s.set_nodelay(true).unwrap();
    s.write_all(format!("GET /size/100 HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n")
            && buf.len() >= at + 4 + 100
        {
            break;
        }
    }
    assert!(buf.starts_with(b"HTTP/1.1 200"));
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_keep_alive_connections_hold_no_buffers() {
    let origin = sized_origin().await;
    let node = NodeProcess::start(&origin.url(), "");
    let host = node.proxy.to_string();
    let addr = node.proxy;
    let open = |n: usize, host: String| {
        tokio::task::spawn_blocking(move || {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let mut s = TcpStream::connect(addr).unwrap();
                exchange(&mut s, &host);
                v.push(s);
            }
            v
        })
    };
    // Warm: the object is stored, the runtime's threads and pools exist.
    drop(open(100, host.clone()).await.unwrap());
    // What each idle connection adds: measured from a first thousand held (the runtime's
    // tables for connections, grown once, are in place by then) to CONNS more.
    let first = open(CONNS / 2, host.clone()).await.unwrap();
    // Each reading is taken once the node's memory has settled: past the idle release
    // (100 ms) and the allocator's give-back of what the requests freed, whose timing
    // depends on when a worker next runs out of work.
    let before = node.settled_rss().await;
    let mut conns = open(CONNS, host.clone()).await.unwrap();
    let after = node.settled_rss().await;
    let per = after.saturating_sub(before) / CONNS as u64;
    conns.extend(first);
    eprintln!("{per} bytes per idle connection (resident {before} → {after})");
    // 2 KiB each, with a quarter of that for the allocator's noise.
    assert!(per <= 2048 + 512, "{per} bytes per idle connection");
    // A new client is still accepted and answered from the cache while they are held.
    let host2 = node.proxy.to_string();
    let head = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        exchange(&mut s, &host2)
    })
    .await
    .unwrap();
    assert!(head.contains("; hit"), "{head}");
    // Still serving, every one.
    let host = node.proxy.to_string();
    tokio::task::spawn_blocking(move || {
        let mut conns = conns;
        for s in conns.iter_mut() {
            let _ = exchange(s, &host);
        }
    })
    .await
    .unwrap();
}

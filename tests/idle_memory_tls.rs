//! Idle TLS connections cost little: 1,000 HTTP/1.1 connections over TLS 1.3, each after one
//! request, add at most 12 KiB each to the node's memory (rustls's record buffers and keys,
//! the connection's task: about 9.5 KiB in a release build), and every one still answers its
//! next request. Measured past a first 500 held, as the cleartext test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::certs::{ca, cert_entry, issue};
use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

const CONNS: usize = 1000;

/// One GET of a 100-byte object on `s`; the response's head, lower-cased.
async fn exchange(s: &mut Tls) -> String {
    s.write_all(b"GET /size/100 HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
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

/// `n` connections, each after one request.
async fn open(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>, n: usize) -> Vec<Tls> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("www.example.test".to_owned()).unwrap();
        let mut s = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        exchange(&mut s).await;
        v.push(s);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_tls_connections_hold_little() {
    let origin = sized_origin().await;
    let dir = tempfile::tempdir().unwrap();
    issue(dir.path(), "www", &["www.example.test"], false);
    let text = node_config(
        &origin.url(),
        &dir.path().join("cache"),
        &cert_entry(dir.path(), "www", "www"),
    )
    .replace(
        "admin = \"127.0.0.1:0\"\n",
        "admin = \"127.0.0.1:0\"\ntls = \"127.0.0.1:0\"\n",
    );
    let node = NodeProcess::start_text(&text, dir);
    let addr = node.tls.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca().cert.der().clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(outpost::server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);

    // Warm: the object is stored, the runtime's threads and pools exist.
    drop(open(addr, &cfg, 100).await);
    let first = open(addr, &cfg, CONNS / 2).await;
    // Each reading once the node's memory has settled (the idle release, the allocator's
    // give-back).
    let before = node.settled_rss().await;
    let mut conns = open(addr, &cfg, CONNS).await;
    let per = node.settled_rss().await.saturating_sub(before) / CONNS as u64;
    conns.extend(first);
    eprintln!("{per} bytes per idle TLS connection");
    assert!(per <= 12 * 1024, "{per} bytes per idle TLS connection");
    // Still serving, every one, from the cache.
    for s in conns.iter_mut() {
        let head = exchange(s).await;
        assert!(head.contains("; hit"), "{head}");
    }
}

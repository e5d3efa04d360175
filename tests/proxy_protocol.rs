//! The PROXY protocol through real sockets: a header (v1 or v2) from a
//! trusted load balancer gives the client's address to every later control
//! and to the origin's `X-Forwarded-For`; one from any other peer closes
//! the connection before a request is read; a plain connection is served
//! with its socket peer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `first` then a GET from source address `ip`; what came back
/// before the node closed (empty: closed without an answer).
async fn exchange(ip: &str, node: SocketAddr, first: &[u8]) -> String {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(node).await.unwrap();
    let mut out = first.to_vec();
    out.extend_from_slice(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    // The node may close before it has read everything.
    let _ = s.write_all(&out).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

fn v2(src: &str, dst: SocketAddr) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    // Both addresses of one family (a mixed pair has no address block).
    let dst: SocketAddr = if src.is_ipv4() {
        dst
    } else {
        "[::1]:80".parse().unwrap()
    };
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (src, dst),
    )
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_trusted_balancer_is_believed_and_anyone_else_sending_a_header_refused() {
    let o = TestOrigin::start(|req| async move {
        let xff = req
            .headers()
            .get("x-forwarded-for")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        resp_with(200, &[("cache-control", "no-store")], xff)
    })
    .await;
    let node = TestNode::start_site_listen(
        &format!("origins = [\"{}\"]\n", o.url()),
        "proxy_protocol = true\n",
        "[server]\ntrusted_proxies = [\"127.0.0.5/32\"]\n\
         [access]\ndeny = [\"203.0.113.66/32\"]\n",
    )
    .await;
    let at = node.proxy;

    // v1 from the balancer: the origin sees the client, not the balancer.
    let got = exchange(
        "127.0.0.5",
        at,
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("198.51.100.7"), "{got}");
    // v2 from the balancer, IPv6 client.
    let got = exchange("127.0.0.5", at, &v2("[2001:db8::9]:5000", at)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("2001:db8::9"), "{got}");
    // The believed address is what the access list sees.
    let got = exchange("127.0.0.5", at, &v2("203.0.113.66:5000", at)).await;
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    let seen = o.count();
    assert_eq!(seen, 2);

    // An untrusted peer claiming an address: closed, nothing answered or
    // forwarded, in either version.
    let got = exchange(
        "127.0.0.2",
        at,
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n",
    )
    .await;
    assert_eq!(got, "");
    assert_eq!(
        exchange("127.0.0.2", at, &v2("198.51.100.7:1", at)).await,
        ""
    );
    // A malformed header from the balancer is refused too.
    assert_eq!(
        exchange("127.0.0.5", at, b"PROXY TCP4 nonsense\r\n").await,
        ""
    );
    assert_eq!(o.count(), seen);

    // Without a header, a client is served as itself.
    let got = exchange("127.0.0.2", at, b"").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("127.0.0.2"), "{got}");

    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    assert_eq!(
        stats["refusals"]["proxy_header"].as_u64().unwrap(),
        3,
        "{stats}"
    );
}

#[tokio::test]
async fn proxy_protocol_without_trusted_proxies_is_a_config_error() {
    let text = "[listen]\nproxy = \"127.0.0.1:0\"\nproxy_protocol = true\n\
                [[site]]\nname = \"a\"\norigins = [\"http://127.0.0.1:1\"]\n";
    let err = outpost::config::Config::from_toml(text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen.proxy_protocol"), "{err}");
}

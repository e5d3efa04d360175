//! Origin responses with transfer codings other than chunked (RFC 9112
//! §6.3 item 4, §7.2): gzip and deflate are taken off (the body then ends
//! when the origin closes, or with its last chunk when chunked is last),
//! and the content is served and cached; a coding the node cannot remove
//! is a 502, never a coded body passed on as if it were the content.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::*;

async fn compress(data: &[u8], gzip: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if gzip {
        let mut e = async_compression::tokio::bufread::GzipEncoder::new(data);
        e.read_to_end(&mut out).await.unwrap();
    } else {
        let mut e = async_compression::tokio::bufread::ZlibEncoder::new(data);
        e.read_to_end(&mut out).await.unwrap();
    }
    out
}

fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(1000) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// An origin that answers each connection's request with the response
/// for its path, then closes.
async fn raw_origin(content: Vec<u8>) -> SocketAddr {
    let gz = compress(&content, true).await;
    let zl = compress(&content, false).await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (content, gz, zl) = (content.clone(), gz.clone(), zl.clone());
            tokio::spawn(async move {
                let Some(mut buf) = raw::read_head(&mut s).await else {
                    return;
                };
                let mut b = [0u8; 4096];
                let head = String::from_utf8_lossy(&buf).to_string();
                // Read the request's content too (a POST through hyper's client).
                let end = head.find("\r\n\r\n").unwrap_or(0) + 4;
                let want = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < end + want {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let (te, body) = match path.as_str() {
                    "/gzip" => ("gzip", gz),
                    "/x-gzip" => ("x-gzip", gz),
                    "/deflate" => ("deflate", zl),
                    "/gzip-chunked" => ("gzip, chunked", chunked(&gz)),
                    "/identity" => ("identity", content),
                    "/unknown" => ("x-custom", content),
                    "/chunked-first" => ("chunked, gzip", gz),
                    _ => ("chunked", chunked(&content)),
                };
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\
                     Cache-Control: max-age=600\r\nConnection: close\r\n\r\n"
                )
                .into_bytes();
                out.extend_from_slice(&body);
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_deflate_transfer_codings_are_taken_off_and_cached() {
    let data = content(300_000);
    let origin = raw_origin(data.to_vec()).await;
    let node = TestNode::start(&format!("http://{origin}"), "").await;
    for path in [
        "/gzip",
        "/x-gzip",
        "/deflate",
        "/gzip-chunked",
        "/identity",
        "/plain",
    ] {
        let (s, h, body) = get(&node.url(path)).await;
        assert_eq!(s, 200, "{path}");
        // The node's own framing to the client, never the origin's coding.
        assert!(
            h.get("transfer-encoding").is_none_or(|v| v == "chunked"),
            "{path}: {h:?}"
        );
        assert_eq!(body.len(), data.len(), "{path}");
        assert!(body == data, "{path}: the content, byte for byte");
        // Stored as the content: the next request is a hit with it.
        until_hit(&node.url(path), &[]).await;
        let (_, _, again) = get(&node.url(path)).await;
        assert!(again == data, "{path} from the cache");
    }
    // A request with content goes through the other origin client.
    let req = http::Request::post(node.url("/gzip"))
        .body(full(bytes::Bytes::from_static(b"form=1")))
        .unwrap();
    let (s, _, body) = send(req).await;
    assert_eq!(s, 200);
    assert!(body == data, "POST /gzip: the content");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coding_the_node_cannot_remove_is_a_bad_gateway() {
    let origin = raw_origin(content(10_000).to_vec()).await;
    let node = TestNode::start(&format!("http://{origin}"), "").await;
    for path in ["/unknown", "/chunked-first"] {
        let (s, _, _) = get(&node.url(path)).await;
        assert_eq!(s, 502, "{path}");
    }
    node.shutdown().await;
}

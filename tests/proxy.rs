//! Black-box tests of the streaming reverse proxy:
//! methods and bodies, header rules (RFC 9110 §7.6), byte-exact targets,
//! h2c, WebSocket upgrade, origin failures (502/504), cut-off bodies, origins
//! that close idle connections, routing and the admin listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Origin that answers with "METHOD blake3(body) len".
async fn echo_origin() -> TestOrigin {
    TestOrigin::start(|req: Request<hyper::body::Incoming>| async move {
        let m = req.method().clone();
        let (n, h) = hash_body(req.into_body()).await.unwrap();
        resp(200, format!("{m} {h} {n}"))
    })
    .await
}

#[tokio::test]
async fn every_method_is_forwarded_with_its_body() {
    let origin = echo_origin().await;
    let node = TestNode::start(&origin.url(), "").await;
    let c = client();
    let body = Bytes::from(vec![42u8; 100_000]);
    let want = blake3::hash(&body).to_hex().to_string();
    for m in [
        "GET",
        "POST",
        "PUT",
        "DELETE",
        "OPTIONS",
        "PATCH",
        "FROBNICATE",
    ] {
        let req = Request::builder()
            .method(m)
            .uri(node.url("/m"))
            .body(full(body.clone()))
            .unwrap();
        let r = c.request(req).await.unwrap();
        assert_eq!(r.status(), 200, "{m}");
        let text = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&text),
            format!("{m} {want} 100000"),
            "{m}"
        );
    }
    // HEAD: forwarded, no body comes back.
    let req = Request::head(node.url("/m"))
        .body(full(Bytes::new()))
        .unwrap();
    let r = c.request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(origin.last().method, "HEAD");
    assert_eq!(origin.count(), 8);
}

#[tokio::test]
async fn hop_by_hop_fields_are_stripped_and_forwarding_fields_added() {
    // RFC 9110 §7.6.1 (hop-by-hop), §7.6.3 (Via).
    let origin = TestOrigin::start(|_req| async {
        let mut r = resp(200, "x");
        let h = r.headers_mut();
        h.insert("connection", "x-resp-hop".parse().unwrap());
        h.insert("x-resp-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
        r
    })
    .await;
    let node = TestNode::start(&origin.url(), "").await;
    let req = "GET /h HTTP/1.1\r\nHost: example.com\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\n\
         Keep-Alive: timeout=1\r\nProxy-Authorization: Basic abc\r\nProxy-Connection: keep-alive\r\n\
         TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Forwarded-For: 203.0.113.9\r\n\
         X-Keep: yes\r\n\r\n";
    let out = raw(node.proxy, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = origin.last().headers;
    for gone in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(!seen.contains_key(gone), "{gone} reached the origin");
    }
    assert_ne!(
        seen.get("connection").map(|v| v.as_bytes()),
        Some(&b"close, X-Hop"[..])
    );
    assert_eq!(seen.get("x-keep").unwrap(), "yes");
    assert_eq!(seen.get("host").unwrap(), "example.com");
    assert_eq!(seen.get("via").unwrap(), "1.1 outpost");
    assert_eq!(
        seen.get("x-forwarded-for").unwrap(),
        "203.0.113.9, 127.0.0.1"
    );
    assert_eq!(seen.get("x-forwarded-proto").unwrap(), "http");
    let lower = out.to_ascii_lowercase();
    assert!(!lower.contains("x-resp-hop"), "{out}");
    assert!(!lower.contains("keep-alive: timeout"), "{out}");
    assert!(!lower.contains("proxy-authenticate"), "{out}");
    assert!(lower.contains("x-end-to-end: kept"), "{out}");
    assert!(lower.contains("via: 1.1 outpost"), "{out}");
}

#[tokio::test]
async fn repeated_fields_pass_in_order_both_ways() {
    let origin = TestOrigin::start(|_req| async {
        let mut r = resp(200, "x");
        let h = r.headers_mut();
        h.append("set-cookie", "a=1".parse().unwrap());
        h.append("x-multi", "first".parse().unwrap());
        h.append("set-cookie", "b=2".parse().unwrap());
        h.append("x-multi", "second".parse().unwrap());
        r
    })
    .await;
    let node = TestNode::start(&origin.url(), "").await;
    let out = raw(
        node.proxy,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Rep: one\r\nAccept: x/y\r\nX-Rep: two\r\nX-Rep: three\r\nConnection: close\r\n\r\n",
    )
    .await;
    let seen = origin.last().headers;
    let reps: Vec<_> = seen
        .get_all("x-rep")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(reps, ["one", "two", "three"]);
    let cookies: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"], "{out}");
    let multi: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("x-multi: "))
        .collect();
    assert_eq!(multi, ["first", "second"]);
}

#[tokio::test]
async fn request_targets_reach_the_origin_as_received_but_for_normalisation() {
    let origin = TestOrigin::start(|_req| async { resp(200, "ok") }).await;
    let node = TestNode::start(&origin.url(), "").await;
    // What the origin gets: the target as received, except the path's
    // RFC 3986 normalisation (escapes of unreserved characters decoded,
    // other escapes' hex upper-cased, dot segments removed); reserved
    // escapes and the query are never touched.
    let targets = [
        ("/a%2Fb/c?x=%2F&y=&z", "/a%2Fb/c?x=%2F&y=&z"),
        ("/p;param=1;q/x?a=1;b=2", "/p;param=1;q/x?a=1;b=2"),
        (
            "/%7euser/%E2%82%AC?q=%20+%2B&&=&empty=",
            "/~user/%E2%82%AC?q=%20+%2B&&=&empty=",
        ),
        ("/?", "/?"),
        ("/x?a=1&a=2&A=3#", "/x?a=1&a=2&A=3"),
        ("/UPPER/Case%3a?%3D=%3d", "/UPPER/Case%3A?%3D=%3d"),
        ("/dup//slashes/./../x?z=%zz", "/dup//x?z=%zz"),
    ];
    for (t, want) in targets {
        let req = format!("GET {t} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
        let out = raw(node.proxy, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{t}: {out}");
        assert_eq!(origin.last().target, want, "{t}");
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_clients_are_proxied() {
    let origin = echo_origin().await;
    let node = TestNode::start(&origin.url(), "").await;
    let c = h2_client();
    let req = Request::post(node.url("/h2?q=1"))
        .body(full(Bytes::from_static(b"hello h2")))
        .unwrap();
    let r = c.request(req).await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("via").unwrap(), "1.1 outpost");
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let want = blake3::hash(b"hello h2").to_hex().to_string();
    assert_eq!(body, Bytes::from(format!("POST {want} 8")));
    let seen = origin.last();
    assert_eq!(seen.target, "/h2?q=1");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers.get("host").unwrap(), &node.proxy.to_string());
    assert_eq!(seen.headers.get("via").unwrap(), "2 outpost");
}

#[tokio::test]
async fn websocket_upgrade_echoes_end_to_end() {
    let origin = TestOrigin::start(|mut req: Request<hyper::body::Incoming>| async move {
        let ok = req.headers().get("upgrade").map(|v| v.as_bytes()) == Some(b"websocket")
            && req.headers().contains_key("sec-websocket-key");
        if !ok {
            return resp(400, "not an upgrade");
        }
        let up = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let io = up.await.unwrap();
            let mut io = hyper_util::rt::TokioIo::new(io);
            let mut buf = [0u8; 1024];
            loop {
                let n = io.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                io.write_all(&buf[..n]).await.unwrap();
            }
        });
        let mut r = resp(101, Bytes::new());
        r.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut()
            .insert("connection", "Upgrade".parse().unwrap());
        r.headers_mut().insert(
            "sec-websocket-accept",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().unwrap(),
        );
        r
    })
    .await;
    let node = TestNode::start(&origin.url(), "").await;
    let mut s = tokio::net::TcpStream::connect(node.proxy).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="));
    // A masked WebSocket text frame "hello", sent twice through the tunnel.
    let frame = [
        0x81u8,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    for _ in 0..2 {
        s.write_all(&frame).await.unwrap();
        let mut back = [0u8; 11];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, frame);
    }
}

#[tokio::test]
async fn origin_down_is_a_502_naming_the_failure() {
    let dead = dead_port::DeadPort::bind();
    let port = dead.addr.port();
    let node = TestNode::start(&format!("http://127.0.0.1:{port}"), "").await;
    let (status, headers, body) = get(&node.url("/x")).await;
    assert_eq!(status, 502);
    assert_eq!(
        headers.get("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("refused"), "{text}");
    assert!(
        !text.contains(&port.to_string()),
        "origin address leaked: {text}"
    );
}

#[tokio::test]
async fn hanging_origin_is_a_504() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            conns.push(s); // accept, read nothing, answer nothing
        }
    });
    let node = TestNode::start(
        &format!("http://{addr}"),
        "[timeouts]\nresponse_header = \"300ms\"\n",
    )
    .await;
    let (status, _, body) = get(&node.url("/slow")).await;
    assert_eq!(status, 504);
    assert!(String::from_utf8_lossy(&body).contains("did not answer in time"));
    hold.abort();
}

#[tokio::test]
async fn a_body_cut_off_by_the_origin_is_cut_off_to_the_client() {
    // The origin promises 100000 bytes, sends 10 and closes.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
                .await;
            drop(s);
        }
    });
    let node = TestNode::start(&format!("http://{addr}"), "").await;
    let out = raw(
        node.proxy,
        b"GET /cut HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("content-length: 100000"), "{out}");
    let body = out.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        body, "0123456789",
        "the client must see a short body, not made-up bytes"
    );
}

#[tokio::test]
async fn an_idle_origin_body_is_cut_off_after_the_idle_timeout() {
    let origin = TestOrigin::start(|_req| async {
        let s = futures_util::stream::once(async {
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"start")))
        })
        .chain(futures_util::stream::pending());
        let mut r = http::Response::new(http_body_util::StreamBody::new(s).boxed_unsync());
        r.headers_mut()
            .insert("content-length", "1000".parse().unwrap());
        r
    })
    .await;
    let node = TestNode::start(&origin.url(), "[timeouts]\nidle_body = \"300ms\"\n").await;
    let r = client()
        .request(
            Request::get(node.url("/idle"))
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let res = tokio::time::timeout(Duration::from_secs(10), r.into_body().collect()).await;
    assert!(matches!(res, Ok(Err(_))), "body must end in an error");
}

use futures_util::StreamExt;

#[tokio::test]
async fn routing_by_host_and_bad_hosts() {
    let a = TestOrigin::start(|_r| async { resp(200, "site a") }).await;
    let b = TestOrigin::start(|_r| async { resp(200, "site b") }).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[storage]\npath = {:?}\n\
         [[site]]\nname = \"a\"\nhosts = [\"a.example\", \"*.a.example\"]\norigins = [\"{}\"]\n\
         [[site]]\nname = \"b\"\nhosts = [\"B.example\"]\norigins = [\"{}\"]\n",
        dir.path().display().to_string(),
        a.url(),
        b.url()
    );
    let node = outpost::Node::start(outpost::config::Config::from_toml(&text).unwrap())
        .await
        .unwrap();
    let ask = |host: &'static str| {
        let addr = node.proxy_addr();
        async move {
            raw(
                addr,
                format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
        }
    };
    assert!(ask("a.example").await.ends_with("site a"));
    assert!(ask("www.A.example:8080").await.ends_with("site a"));
    assert!(ask("b.example").await.ends_with("site b"));
    assert!(ask("c.example").await.starts_with("HTTP/1.1 421"));
    let two_hosts = raw(
        node.proxy_addr(),
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");
    assert!(node.shutdown().await);
}

#[tokio::test]
async fn admin_healthz() {
    let origin = echo_origin().await;
    let node = TestNode::start(&origin.url(), "").await;
    let (status, _, body) = get(&format!("http://{}/healthz", node.admin)).await;
    assert_eq!(status, 200);
    assert_eq!(body, "ok\n");
    let (status, _, _) = get(&format!("http://{}/nope", node.admin)).await;
    assert_eq!(status, 404);
    assert_eq!(origin.count(), 0);
}

#[tokio::test]
async fn graceful_shutdown_completes_an_in_flight_slow_response() {
    // The origin streams 10 pieces 100 ms apart.
    let origin = TestOrigin::start(|_req| async {
        let s = futures_util::stream::iter(0..10).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(format!("piece{i};"))))
        });
        http::Response::new(http_body_util::StreamBody::new(s).boxed_unsync())
    })
    .await;
    let node = TestNode::start(&origin.url(), "").await;
    let url = node.url("/slow");
    let inflight = tokio::spawn(async move {
        let r = client()
            .request(Request::get(url).body(full(Bytes::new())).unwrap())
            .await
            .unwrap();
        r.into_body().collect().await.map(|c| c.to_bytes())
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let proxy = node.proxy;
    let stopping = tokio::spawn(node.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // No new connections once shutdown began.
    assert!(tokio::net::TcpStream::connect(proxy).await.is_err());
    let body = inflight
        .await
        .unwrap()
        .expect("in-flight response completes");
    let want: String = (0..10).map(|i| format!("piece{i};")).collect();
    assert_eq!(body, Bytes::from(want));
    assert!(stopping.await.unwrap(), "drained within the drain timeout");
}

#[tokio::test]
async fn an_origin_closing_idle_connections_causes_no_errors() {
    // The origin keeps nothing alive: it answers one request per connection
    // and closes, without saying `Connection: close` (as an origin whose
    // keep-alive timeout is shorter than ours looks once it fires).
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok")
                    .await;
            });
        }
    });
    let node = TestNode::start(&format!("http://{addr}"), "").await;
    let before = admin_stats(&node).await;
    for i in 0..4 {
        // GET (cached path, not storable) and DELETE (pass, idempotent).
        let method = if i % 2 == 0 { "GET" } else { "DELETE" };
        let out = raw(
            node.proxy,
            format!("{method} /r{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "request {i}: {out}");
        assert!(out.ends_with("\r\n\r\nok"), "request {i}: {out}");
        // Let the origin's close reach the pooled connection.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // One connection per request: each later request found the pooled one
    // closed, and was retried on a new one instead of failing with 502.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
    let after = admin_stats(&node).await;
    assert!(
        after["origin_stale_retries"].as_u64().unwrap()
            >= before["origin_stale_retries"].as_u64().unwrap() + 3,
        "{before} -> {after}"
    );
}

async fn admin_stats(node: &TestNode) -> serde_json::Value {
    let out = raw(
        node.admin,
        b"GET /stats HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = out.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn connect_is_refused_at_the_edge_with_405() {
    let origin = echo_origin().await;
    let node = TestNode::start(&origin.url(), "").await;
    let out = raw(
        node.proxy,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("allow: get, head, options, post, put, patch, delete, trace"),
        "{out}"
    );
    assert_eq!(origin.count(), 0, "the origin never sees a CONNECT");
}

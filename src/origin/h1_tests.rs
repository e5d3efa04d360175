//! Tests of the HTTP/1 origin client against scripted origins on loopback
//! sockets: framing, keep-alive reuse, stale connections, bad heads.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::config::OriginUrl;
use crate::origin::Origin;
use crate::origin::h1_head::ConnectionOptions;
use crate::origin::headers::Forwarding;

/// What the scripted origin does for one request.
struct Reply {
    bytes: Vec<u8>,
    close: bool,
}

fn reply(s: &str) -> Reply {
    Reply {
        bytes: s.as_bytes().to_vec(),
        close: false,
    }
}

fn reply_close(s: &str) -> Reply {
    Reply {
        bytes: s.as_bytes().to_vec(),
        close: true,
    }
}

/// An origin that answers each request with `script(n)` (n counts every
/// request it received), recording connections and request heads.
struct Scripted {
    origin: Arc<Origin>,
    conns: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

async fn scripted(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Scripted {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(script);
    let served = Arc::new(AtomicUsize::new(0));
    {
        let (conns, heads) = (conns.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let (heads, script, served) = (heads.clone(), script.clone(), served.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head: Vec<u8> = buf.drain(..end).collect();
                        heads
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        let r = script(served.fetch_add(1, Ordering::SeqCst));
                        if s.write_all(&r.bytes).await.is_err() || r.close {
                            return;
                        }
                    }
                });
            }
        });
    }
    let origin = origin_at(addr);
    Scripted {
        origin,
        conns,
        heads,
    }
}

fn origin_at(addr: std::net::SocketAddr) -> Arc<Origin> {
    Arc::new(Origin::new(
        OriginUrl::parse(&format!("http://{addr}")).unwrap(),
    ))
}

fn client() -> H1Client {
    H1Client {
        connect_timeout: Duration::from_secs(2),
        response_header_timeout: Duration::from_secs(10),
        limits: PoolLimits {
            max_idle: 8,
            idle_timeout: Duration::from_secs(30),
        },
    }
}

/// What the proxy adds to every origin request.
fn fwd() -> Forwarding<'static> {
    static VIA: HeaderValue = HeaderValue::from_static("1.1 test");
    Forwarding {
        via: Some(&VIA),
        client_ip: std::net::Ipv4Addr::new(192, 0, 2, 7).into(),
        proto: "http",
    }
}

fn headers(host: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
    h
}

async fn get(s: &Scripted, method: Method, path: &str) -> Result<(StatusCode, Bytes), String> {
    let resp = client()
        .send(&s.origin, &method, path, &headers("a"), &fwd(), &[])
        .await
        .map_err(|e| format!("{:?}: {e}", e.kind()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let s = scripted(|n| {
        let body = format!("reply {n}");
        reply(&format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
    .await;
    for n in 0..3 {
        let (st, body) = get(&s, Method::GET, "/x").await.unwrap();
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body, format!("reply {n}"));
    }
    assert_eq!(s.conns.load(Ordering::SeqCst), 1, "one connection, reused");
    assert_eq!(s.origin.idle.len(), 1);
}

#[tokio::test]
async fn request_heads_carry_the_fields_and_a_zero_length_where_content_is_defined() {
    let s = scripted(|_| reply("HTTP/1.1 204 No Content\r\n\r\n")).await;
    let mut h = headers("example.com");
    h.append("x-two", HeaderValue::from_static("1"));
    h.append("x-two", HeaderValue::from_static("2"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
    // An earlier hop's X-Forwarded-For is extended, its -Proto replaced.
    h.append(
        "x-forwarded-for",
        HeaderValue::from_static(" 198.51.100.1 "),
    );
    h.append("x-forwarded-proto", HeaderValue::from_static("https"));
    h.append(header::VIA, HeaderValue::from_static("1.0 edge"));
    let resp = client()
        .send(&s.origin, &Method::GET, "/p?q=1", &h, &fwd(), &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    drop(resp);
    get(&s, Method::POST, "/form").await.unwrap();
    let heads = s.heads.lock().unwrap().clone();
    assert_eq!(
        heads[0],
        "GET /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-two: 1\r\nx-two: 2\r\n\
         via: 1.0 edge\r\nvia: 1.1 test\r\nx-forwarded-for: 198.51.100.1, 192.0.2.7\r\n\
         x-forwarded-proto: http\r\n\r\n"
    );
    assert_eq!(
        heads[1],
        "POST /form HTTP/1.1\r\nhost: a\r\nvia: 1.1 test\r\nx-forwarded-for: 192.0.2.7\r\n\
         x-forwarded-proto: http\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(
        s.conns.load(Ordering::SeqCst),
        1,
        "204 keeps the connection"
    );
}

#[tokio::test]
async fn chunked_bodies_with_extensions_and_trailers_are_decoded() {
    let s = scripted(|_| {
        reply(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
    })
    .await;
    for _ in 0..2 {
        let (_, body) = get(&s, Method::GET, "/c").await.unwrap();
        assert_eq!(body, "Wikipedia in\r\n\r\nchunks.");
    }
    assert_eq!(
        s.conns.load(Ordering::SeqCst),
        1,
        "chunked keeps the connection"
    );
}

#[tokio::test]
async fn a_chunked_body_split_across_reads_is_decoded() {
    // The origin sends the body a few bytes at a time.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for piece in msg.chunks(3) {
            s.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = s.read(&mut buf).await;
    });
    let origin = origin_at(addr);
    let resp = client()
        .send(&origin, &Method::GET, "/", &headers("a"), &fwd(), &[])
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "abcdefghijklmnopqrstuvwxyz");
    assert_eq!(origin.idle.len(), 1);
}

#[tokio::test]
async fn a_close_delimited_body_runs_to_the_close_and_is_not_pooled() {
    let s = scripted(|_| reply_close("HTTP/1.0 200 OK\r\n\r\nuntil the end")).await;
    let (_, body) = get(&s, Method::GET, "/").await.unwrap();
    assert_eq!(body, "until the end");
    assert!(s.origin.idle.is_empty());
}

#[tokio::test]
async fn connection_close_and_http_1_0_without_keep_alive_are_not_pooled() {
    let s = scripted(|n| match n {
        0 => reply("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na"),
        1 => reply("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb"),
        _ => reply("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nc"),
    })
    .await;
    for want in ["a", "b", "c"] {
        let (_, body) = get(&s, Method::GET, "/").await.unwrap();
        assert_eq!(body, want);
    }
    assert_eq!(s.conns.load(Ordering::SeqCst), 3);
    assert_eq!(s.origin.idle.len(), 1, "only the keep-alive 1.0 answer");
}

#[tokio::test]
async fn hop_by_hop_fields_are_left_out_of_the_response_head() {
    let s = scripted(|n| match n {
        0 => reply(
            "HTTP/1.1 200 OK\r\nConnection: X-Hop, keep-alive\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Thing: 1\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-End: 1\r\nContent-Length: 1\r\n\r\na",
        ),
        1 => reply(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: Content-Length, Host\r\n\
             Host: h\r\n\r\n1\r\nb\r\n0\r\n\r\n",
        ),
        _ => reply("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: CLOSE\r\nContent-Length: 1\r\n\r\nc"),
    })
    .await;
    let mut names = Vec::new();
    for _ in 0..3 {
        let resp = client()
            .send(&s.origin, &Method::GET, "/", &headers("a"), &fwd(), &[])
            .await
            .unwrap();
        let mut n: Vec<String> = resp.headers().keys().map(|k| k.to_string()).collect();
        n.sort();
        names.push(n.join(" "));
        resp.into_body().collect().await.unwrap();
    }
    // RFC 9110 §7.6.1: Connection, the fields it names, and the fields
    // that are always hop-by-hop; Connection never removes Host or
    // Content-Length.
    assert_eq!(names, ["content-length x-end", "host", "content-length"]);
    // The first two kept the connection; `close` in any line ends it.
    assert_eq!(s.conns.load(Ordering::SeqCst), 1);
    assert_eq!(s.origin.idle.len(), 0);
}

#[test]
fn connection_options_follow_rfc_9112_9_3() {
    let opts = |lines: &[&[u8]]| {
        let mut o = ConnectionOptions::default();
        let other = lines.iter().fold(false, |acc, l| o.add_line(l) | acc);
        (
            o.keeps_alive(Version::HTTP_11),
            o.keeps_alive(Version::HTTP_10),
            other,
        )
    };
    assert_eq!(opts(&[]), (true, false, false));
    assert_eq!(opts(&[b"keep-alive"]), (true, true, false));
    assert_eq!(opts(&[b" Keep-Alive , "]), (true, true, false));
    assert_eq!(opts(&[b"keep-alive", b"close"]), (false, false, false));
    assert_eq!(opts(&[b"x-a,close"]), (false, false, true));
    // Not visible ASCII: read as close, and stripped by name.
    assert_eq!(opts(&[b"keep-alive\xff"]), (false, false, true));
}

#[test]
fn a_plain_content_length_frames_as_the_full_reading_does() {
    let heads = [
        ("Content-Length: 12", Some(12)),
        ("Content-Length: 012", Some(12)),
        ("Content-Length:  7  ", Some(7)),
        ("content-length: 0", Some(0)),
        ("Content-Length: 5, 5", None),
        ("Content-Length: 5\r\nContent-Length: 5", None),
        ("Content-Length: 99999999999999999999", None),
        ("Content-Length: +5", None),
        ("Content-Length: ", None),
        ("Transfer-Encoding: chunked", None),
        ("X-A: 1", None),
    ];
    for (fields, plain) in heads {
        for (method, status) in [
            (Method::GET, 200),
            (Method::HEAD, 200),
            (Method::GET, 204),
            (Method::GET, 304),
        ] {
            let text = format!("HTTP/1.1 {status} X\r\n{fields}\r\n\r\n");
            let mut buf = BytesMut::from(text.as_bytes());
            let head = parse_head(&mut buf, &[]).unwrap().unwrap();
            assert_eq!(head.plain_length, plain, "{fields:?}");
            if let Some(n) = head.plain_length {
                assert_eq!(
                    Ok(Framing::of_length(&method, head.status, n)),
                    Framing::of(&method, head.status, &head.headers),
                    "{fields:?} {method} {status}"
                );
            }
        }
    }
}

#[test]
fn dropped_fields_are_left_out_of_the_head_and_framing_and_connection_still_read() {
    let drop = [header::SERVER, HeaderName::from_static("x-powered-by")];
    let text = "HTTP/1.1 200 OK\r\nServer: Apache/2\r\nX-Powered-By: PHP\r\n\
                Connection: close\r\nContent-Length: 2\r\nX-Kept: 1\r\n\r\nok";
    let mut buf = BytesMut::from(text.as_bytes());
    let head = parse_head(&mut buf, &drop).unwrap().unwrap();
    assert!(head.headers.get(header::SERVER).is_none());
    assert!(head.headers.get("x-powered-by").is_none());
    assert_eq!(head.headers["x-kept"], "1");
    assert_eq!(head.headers[header::CONTENT_LENGTH], "2");
    assert_eq!(head.plain_length, Some(2));
    assert!(head.connection.close);
    assert_eq!(&buf[..], b"ok");
}

#[test]
fn the_dropped_fields_are_those_named_whatever_their_length_and_case() {
    // Names of the same length as a dropped one, longer than 63 bytes
    // (their lengths share one bit), in any case.
    let long_a = format!("x-{}", "a".repeat(70));
    let long_b = format!("x-{}", "b".repeat(80));
    let drop = [
        header::SERVER,
        HeaderName::from_static("x-powered-by"),
        HeaderName::from_bytes(long_a.as_bytes()).unwrap(),
    ];
    let sent = [
        "Server",
        "SERVER",
        "X-Powered-By",
        "Content-Type",
        "x-powered-bz",
        "Vary",
        long_a.as_str(),
        &long_a.to_uppercase(),
        long_b.as_str(),
        "X-Kept",
    ];
    let mut text = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for (i, n) in sent.iter().enumerate() {
        text.push_str(&format!("{n}: v{i}\r\n"));
    }
    text.push_str("\r\nok");
    let mut buf = BytesMut::from(text.as_bytes());
    let head = parse_head(&mut buf, &drop).unwrap().unwrap();
    for (i, n) in sent.iter().enumerate() {
        let name = HeaderName::from_bytes(n.as_bytes()).unwrap();
        let got = head
            .headers
            .get(&name)
            .map(|v| v.to_str().unwrap().to_string());
        let want = (!drop.contains(&name)).then(|| format!("v{i}"));
        assert_eq!(got, want, "{n}");
    }
    assert_eq!(head.headers.len(), 6, "{:?}", head.headers);
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let s = scripted(|_| {
        reply(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )
    })
    .await;
    let (st, body) = get(&s, Method::GET, "/").await.unwrap();
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"ok"[..]));
}

#[tokio::test]
async fn head_and_304_responses_have_no_body_whatever_their_length_says() {
    let s = scripted(|n| match n {
        0 => reply("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
        1 => reply("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"),
        _ => reply("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"),
    })
    .await;
    assert_eq!(get(&s, Method::HEAD, "/").await.unwrap().1, "");
    let (st, body) = get(&s, Method::GET, "/").await.unwrap();
    assert_eq!((st, body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(get(&s, Method::GET, "/").await.unwrap().1, "next");
    assert_eq!(s.conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bytes_after_the_body_keep_the_connection_out_of_the_pool() {
    let s = scripted(|_| reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")).await;
    let (_, body) = get(&s, Method::GET, "/").await.unwrap();
    assert_eq!(body, "ok");
    assert!(s.origin.idle.is_empty());
}

#[tokio::test]
async fn a_pooled_connection_the_origin_closed_is_retried_for_idempotent_methods() {
    // The origin advertises keep-alive but closes after every response.
    let s = scripted(|_| reply_close("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    assert_eq!(get(&s, Method::GET, "/").await.unwrap().1, "ok");
    assert_eq!(s.origin.idle.len(), 1);
    // Let the close arrive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = crate::metrics::Counters::global()
        .snapshot()
        .origin_stale_retries;
    assert_eq!(get(&s, Method::GET, "/").await.unwrap().1, "ok");
    assert!(
        crate::metrics::Counters::global()
            .snapshot()
            .origin_stale_retries
            > before
    );
    assert_eq!(s.conns.load(Ordering::SeqCst), 2);
    // A POST is not replayed (RFC 9110 §9.2.2).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.origin.idle.len(), 1);
    let e = get(&s, Method::POST, "/").await.unwrap_err();
    assert!(e.starts_with("OriginReset"), "{e}");
    assert_eq!(s.conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bad_heads_and_framing_are_protocol_errors() {
    let big = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEAD + 10)
    );
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}\r\n",
        (0..200)
            .map(|i| format!("x-{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<String> = vec![
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".into(),
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello".into(),
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n".into(),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n".into(),
        // A coding that cannot be taken off, or chunked other than last.
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: x-custom\r\n\r\nabc".into(),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n".into(),
        "HELLO WORLD\r\n\r\n".into(),
        "HTTP/1.1 101 Switching Protocols\r\n\r\n".into(),
        "HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n".into(),
        big,
        many,
    ];
    for case in cases {
        let text = case.clone();
        let s = scripted(move |_| reply_close(&text)).await;
        let e = get(&s, Method::GET, "/").await.unwrap_err();
        assert!(e.starts_with("OriginProtocol"), "{e} for {:.60}", case);
    }
    // Framing errors inside a chunked body reach the body's reader.
    let s = scripted(|_| {
        reply_close("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    })
    .await;
    let e = get(&s, Method::GET, "/").await.unwrap_err();
    assert!(e.starts_with("body:"), "{e}");
    // A length the origin does not deliver is an error, not a short body.
    let s = scripted(|_| reply_close("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")).await;
    let e = get(&s, Method::GET, "/").await.unwrap_err();
    assert!(e.contains("before the end of the body"), "{e}");
}

#[tokio::test]
async fn a_refused_connect_is_origin_refused() {
    // Bound but not listening: connects are refused, and holding the socket
    // keeps a parallel test from being given the port.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let origin = origin_at(addr);
    let e = client()
        .send(&origin, &Method::GET, "/", &headers("a"), &fwd(), &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OriginRefused);
}

#[tokio::test]
async fn idle_connections_past_the_timeout_are_not_used() {
    let s = scripted(|_| reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    let c = H1Client {
        connect_timeout: Duration::from_secs(2),
        response_header_timeout: Duration::from_secs(10),
        limits: PoolLimits {
            max_idle: 8,
            idle_timeout: Duration::from_millis(20),
        },
    };
    for _ in 0..2 {
        let resp = c
            .send(&s.origin, &Method::GET, "/", &headers("a"), &fwd(), &[])
            .await
            .unwrap();
        resp.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(s.conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn heads_with_many_fields_keep_every_field_in_order() {
    // More fields than parse_head keeps on the stack (24), fewer than the
    // limit (128); names in mixed case, known and unknown.
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for i in 0..60 {
        head.push_str(&format!("X-Field-{i}: v{i}\r\nset-cookie: c{i}\r\n"));
    }
    head.push_str("\r\nok");
    let s = scripted(move |_| reply(&head)).await;
    let resp = client()
        .send(&s.origin, &Method::GET, "/", &headers("a"), &fwd(), &[])
        .await
        .unwrap();
    let h = resp.headers().clone();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    for i in 0..60 {
        assert_eq!(h[format!("x-field-{i}").as_str()], format!("v{i}").as_str());
    }
    let cookies: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies.len(), 60);
    assert_eq!(cookies[0], "c0");
    assert_eq!(cookies[59], "c59");
}

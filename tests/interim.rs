//! Interim responses (RFC 9110 §15.2): the origin's 1xx reach the client
//! before the final response, with their fields (the site's hidden fields
//! left out), and are never stored. Early Hints (RFC 8297) of a cacheable
//! object are kept with it and, with a site's `early_hints`, sent at once
//! on a later revalidation or miss, before the origin answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const INTERIM: &str = "HTTP/1.1 100 Continue\r\n\r\n\
    HTTP/1.1 102 Processing\r\n\r\n\
    HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\nServer: origin-7\r\n\r\n";

/// An origin speaking raw HTTP/1.1: `/page` sends three 1xx, then a
/// cacheable 200; `/doc` (`no-cache`, revalidated on every request) sends a
/// 103 before its first 200, and answers a conditional request with a 304
/// only once `gate` lets it.
struct Origin {
    addr: SocketAddr,
    gate: Arc<Semaphore>,
    requests: Arc<AtomicUsize>,
}

async fn origin() -> Origin {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (g, n) = (gate.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (gate, requests) = (g.clone(), n.clone());
            tokio::spawn(async move {
                let Some(mut buf) = raw::read_head(&mut s).await else {
                    return;
                };
                requests.fetch_add(1, SeqCst);
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let out = if path == "/page" {
                    let _ = s.write_all(INTERIM.as_bytes()).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\
                     Connection: close\r\n\r\nhello"
                        .to_owned()
                } else if path == "/post" {
                    // Reads the content first, as an origin that acts on it
                    // does: whole (`x=1`) or chunked (ends `0\r\n\r\n`).
                    let mut chunk = [0u8; 256];
                    while !(buf.ends_with(b"x=1") || buf.ends_with(b"\r\n0\r\n\r\n")) {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    "HTTP/1.1 103 Early Hints\r\nLink: </p.css>; rel=preload\r\n\r\n\
                     HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        .to_owned()
                } else if path == "/v" {
                    if head.contains("accept-language: fr") {
                        let _ = gate.acquire().await.map(|p| p.forget());
                    } else {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 103 Early Hints\r\nLink: </v.css>; rel=preload\r\n\r\n",
                            )
                            .await;
                    }
                    "HTTP/1.1 200 OK\r\nVary: Accept-Language\r\nCache-Control: max-age=60\r\n\
                     Content-Length: 1\r\nConnection: close\r\n\r\nv"
                        .to_owned()
                } else if head.contains("if-none-match") {
                    let _ = gate.acquire().await.map(|p| p.forget());
                    "HTTP/1.1 304 Not Modified\r\nETag: \"d1\"\r\nCache-Control: no-cache\r\n\
                     Connection: close\r\n\r\n"
                        .to_owned()
                } else {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload; as=style\r\n\r\n",
                        )
                        .await;
                    "HTTP/1.1 200 OK\r\nETag: \"d1\"\r\nCache-Control: no-cache\r\n\
                     Content-Length: 3\r\nConnection: close\r\n\r\ndoc"
                        .to_owned()
                };
                let _ = s.write_all(out.as_bytes()).await;
            });
        }
    });
    Origin {
        addr,
        gate,
        requests,
    }
}

/// Sends a GET for `path` and reads until the text read ends with `until`.
async fn read_until(s: &mut TcpStream, until: &str) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&out).ends_with(until) {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => out.extend_from_slice(&b[..n]),
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(found, "never got {until:?}; got {text:?}");
    text
}

async fn get_raw(node: &TestNode, path: &str) -> TcpStream {
    get_raw_with(node, path, "").await
}

async fn get_raw_with(node: &TestNode, path: &str, fields: &str) -> TcpStream {
    let mut s = TcpStream::connect(node.proxy).await.unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{fields}\r\n",
        node.proxy
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// A node in front of `o` whose site replays Early Hints.
async fn with_early_hints(o: &Origin) -> TestNode {
    TestNode::start_site(
        &format!("origins = [\"http://{}\"]\nearly_hints = true\n", o.addr),
        "",
    )
    .await
}

/// Waits until the node has stored what it fetched.
async fn no_fills(node: &TestNode) {
    for _ in 0..250 {
        let (_, _, b) = get(&format!("http://{}/stats", node.admin)).await;
        let st: serde_json::Value = serde_json::from_slice(&b).unwrap();
        if st["fills_in_flight"].as_u64() == Some(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fills in flight after 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_reach_the_client_first_and_are_never_stored() {
    let o = origin().await;
    let node = TestNode::start(&format!("http://{}", o.addr), "").await;
    let mut s = get_raw(&node, "/page").await;
    let text = read_until(&mut s, "hello").await;
    let interim = "HTTP/1.1 100 Continue\r\n\r\n\
        HTTP/1.1 102 Processing\r\n\r\n\
        HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n\
        HTTP/1.1 200 OK\r\n";
    assert!(text.starts_with(interim), "{text:?}");
    // The 1xx fields are not the final response's, and the origin's
    // `Server` is hidden in both.
    let final_head = &text[interim.len()..];
    assert!(!final_head.to_ascii_lowercase().contains("link:"), "{text}");
    assert!(!text.contains("origin-7"), "{text}");

    // Stored without them: the hit has no 1xx and no Link.
    until_stored(&node.url("/page"), &[], node.admin).await;
    let mut s = get_raw(&node, "/page").await;
    let text = read_until(&mut s, "hello").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert!(!text.to_ascii_lowercase().contains("link:"), "{text}");
    assert!(text.contains("hit"), "{text}");
    assert_eq!(o.requests.load(SeqCst), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_are_sent_before_the_origin_answers_a_revalidation() {
    let o = origin().await;
    let node = with_early_hints(&o).await;
    // First request: the origin's 103 is forwarded, and kept with the object.
    let mut s = get_raw(&node, "/doc").await;
    let text = read_until(&mut s, "doc").await;
    assert!(
        text.starts_with("HTTP/1.1 103 Early Hints\r\nlink: </app.css>"),
        "{text:?}"
    );
    no_fills(&node).await;

    // `no-cache`: every request revalidates. The 103 comes while the
    // origin holds its 304.
    let before = o.requests.load(SeqCst);
    let mut s = get_raw(&node, "/doc").await;
    let hints = read_until(&mut s, "\r\n\r\n").await;
    assert_eq!(
        hints,
        "HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload; as=style\r\n\r\n"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(o.requests.load(SeqCst), before + 1, "the origin was asked");
    o.gate.add_permits(1);
    let rest = read_until(&mut s, "doc").await;
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest:?}");
    assert!(rest.contains("fwd-status=304"), "{rest}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_early_hints_a_revalidation_sends_none_of_its_own() {
    let o = origin().await;
    let node = TestNode::start(&format!("http://{}", o.addr), "").await;
    let mut s = get_raw(&node, "/doc").await;
    read_until(&mut s, "doc").await;
    no_fills(&node).await;
    o.gate.add_permits(10);
    let mut s = get_raw(&node, "/doc").await;
    let text = read_until(&mut s, "doc").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_are_sent_on_a_miss_for_a_uri_that_had_them() {
    let o = origin().await;
    let node = with_early_hints(&o).await;
    let mut s = get_raw_with(&node, "/v", "Accept-Language: en\r\n").await;
    read_until(&mut s, "\r\n\r\nv").await;
    no_fills(&node).await;
    // Another variant: a miss, and the URI's hints go out before the origin
    // answers.
    let mut s = get_raw_with(&node, "/v", "Accept-Language: fr\r\n").await;
    let hints = read_until(&mut s, "\r\n\r\n").await;
    assert_eq!(
        hints,
        "HTTP/1.1 103 Early Hints\r\nlink: </v.css>; rel=preload\r\n\r\n"
    );
    o.gate.add_permits(1);
    let rest = read_until(&mut s, "\r\n\r\nv").await;
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest:?}");
    assert!(rest.contains("vary-miss"), "{rest}");
    node.shutdown().await;
}

/// An HTTP/2 GET (cleartext, prior knowledge) for `path`: the interim
/// responses as they come, then the final one; `ready` is called after
/// the first interim response.
async fn h2_get(
    node: &TestNode,
    path: &str,
    ready: impl FnOnce(),
) -> (Vec<http::Response<()>>, http::Response<::h2::RecvStream>) {
    h2_request(node, "GET", path, None, ready).await
}

async fn h2_request(
    node: &TestNode,
    method: &str,
    path: &str,
    content: Option<&'static [u8]>,
    ready: impl FnOnce(),
) -> (Vec<http::Response<()>>, http::Response<::h2::RecvStream>) {
    let tcp = TcpStream::connect(node.proxy).await.unwrap();
    let (mut client, conn) = ::h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", node.proxy))
        .body(())
        .unwrap();
    let (mut resp, mut tx) = client.send_request(req, content.is_none()).unwrap();
    if let Some(c) = content {
        tx.send_data(bytes::Bytes::from_static(c), true).unwrap();
    }
    let mut interim = Vec::new();
    let mut ready = Some(ready);
    let poll = async {
        while let Some(r) = std::future::poll_fn(|cx| resp.poll_informational(cx)).await {
            interim.push(r.unwrap());
            if let Some(f) = ready.take() {
                f();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap();
    let fin = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .unwrap()
        .unwrap();
    (interim, fin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_get_the_interim_responses_too() {
    let o = origin().await;
    let node = with_early_hints(&o).await;
    let (interim, fin) = h2_get(&node, "/page", || {}).await;
    let codes: Vec<u16> = interim.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, [100, 102, 103]);
    assert_eq!(
        interim[2].headers()["link"],
        "</style.css>; rel=preload; as=style"
    );
    assert!(interim[2].headers().get("server").is_none());
    assert_eq!(fin.status(), 200);
    assert!(fin.headers().get("link").is_none());
    let mut body = fin.into_body();
    let data = body.data().await.unwrap().unwrap();
    assert_eq!(&data[..], b"hello");

    // Early Hints of a revalidated object, while the origin holds its 304.
    let (_, fin) = h2_get(&node, "/doc", || {}).await;
    assert_eq!(fin.status(), 200);
    no_fills(&node).await;
    let gate = o.gate.clone();
    let (interim, fin) = h2_get(&node, "/doc", move || gate.add_permits(1)).await;
    let codes: Vec<u16> = interim.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, [103]);
    assert_eq!(
        interim[0].headers()["link"],
        "</app.css>; rel=preload; as=style"
    );
    assert_eq!(fin.status(), 200);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_content_gets_the_interim_responses_over_http2() {
    let o = origin().await;
    let node = TestNode::start(&format!("http://{}", o.addr), "").await;
    let (interim, fin) = h2_request(&node, "POST", "/post", Some(b"x=1"), || {}).await;
    let codes: Vec<u16> = interim.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, [103]);
    assert_eq!(interim[0].headers()["link"], "</p.css>; rel=preload");
    assert_eq!(fin.status(), 200);
    node.shutdown().await;
}

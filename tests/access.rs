//! Admission through real sockets: the client's address (X-Forwarded-For
//! believed from trusted proxies only) and access lists (global, per site,
//! a deny file), each refusal a 403 before any origin work. Clients bind
//! loopback source addresses (127.0.0.2, 127.0.0.3, …) to play several
//! clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http::Request;

async fn origin() -> TestOrigin {
    TestOrigin::start(|_| async { resp_with(200, &[("cache-control", "no-store")], "ok") }).await
}

#[tokio::test]
async fn global_and_site_lists_refuse_before_the_origin_sees_anything() {
    let o = origin().await;
    let site = format!(
        "origins = [\"{}\"]\nallow = [\"127.0.0.0/24\"]\ndeny = [\"127.0.0.3\"]\n",
        o.url()
    );
    let node = TestNode::start_site(&site, "[access]\ndeny = [\"127.0.0.2/32\"]\n").await;
    let url = node.url("/x");
    let (st, body) = get_from("127.0.0.2", &url, &[]).await;
    assert_eq!(st, 403);
    assert_eq!(
        body,
        "forbidden: requests from this address are not allowed\n"
    );
    assert_eq!(
        get_from("127.0.0.3", &url, &[]).await.0,
        403,
        "the site's deny"
    );
    assert_eq!(
        get_from("127.0.1.4", &url, &[]).await.0,
        403,
        "outside the site's allow"
    );
    assert_eq!(o.count(), 0);
    assert_eq!(get_from("127.0.0.4", &url, &[]).await, (200, "ok".into()));
    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    assert!(stats["access_denied"].as_u64().unwrap() >= 3, "{stats}");
}

#[tokio::test]
async fn forwarded_for_is_believed_from_trusted_proxies_only() {
    let o = origin().await;
    let site = format!("origins = [\"{}\"]\n", o.url());
    // 127.0.0.5 is the load balancer in front; 198.51.100.0/24 is refused.
    let node = TestNode::start_site(
        &site,
        "[server]\ntrusted_proxies = [\"127.0.0.5/32\"]\n[access]\ndeny = [\"198.51.100.0/24\"]\n",
    )
    .await;
    let url = node.url("/y");
    let spoof = [("x-forwarded-for", "203.0.113.1")];
    let refused = [("x-forwarded-for", "198.51.100.7")];
    // An untrusted peer's X-Forwarded-For is not believed, either way.
    assert_eq!(get_from("127.0.0.6", &url, &refused).await.0, 200);
    assert_eq!(get_from("127.0.0.6", &url, &spoof).await.0, 200);
    // From the trusted proxy, the rightmost untrusted hop is the client.
    assert_eq!(get_from("127.0.0.5", &url, &refused).await.0, 403);
    let chain = [("x-forwarded-for", "198.51.100.7, 127.0.0.5")];
    assert_eq!(get_from("127.0.0.5", &url, &chain).await.0, 403);
    let left_spoof = [("x-forwarded-for", "198.51.100.7, 203.0.113.1")];
    assert_eq!(get_from("127.0.0.5", &url, &left_spoof).await.0, 200);
    assert_eq!(o.count(), 3);
}

#[tokio::test]
async fn a_deny_file_of_100000_entries_is_read_at_start() {
    let o = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deny.txt");
    let mut text = String::from("# generated\n");
    for i in 0..100_000u32 {
        let a = std::net::Ipv4Addr::from(0x0a00_0000 + i * 7);
        text.push_str(&format!("{a}\n"));
    }
    text.push_str("127.0.0.7/32 # this test's client\n");
    std::fs::write(&path, text).unwrap();
    let site = format!("origins = [\"{}\"]\n", o.url());
    let extra = format!("[access]\ndeny_file = {:?}\n", path.display().to_string());
    let node = TestNode::start_site(&site, &extra).await;
    let url = node.url("/z");
    assert_eq!(get_from("127.0.0.7", &url, &[]).await.0, 403);
    assert_eq!(get_from("127.0.0.8", &url, &[]).await.0, 200);

    // A bad line: the node does not start, and says where.
    std::fs::write(&path, "10.0.0.0/8\n10.0.0.0/33\n").unwrap();
    let text = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[storage]\npath = {:?}\n{extra}[[site]]\norigins = [\"{}\"]\n",
        dir.path().join("cache").display().to_string(),
        o.url()
    );
    let cfg = outpost::config::Config::from_toml(&text).unwrap();
    let e = outpost::Node::start(cfg)
        .await
        .err()
        .expect("started with a bad deny file");
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[tokio::test]
async fn origins_stay_hidden_and_reflected_fields_do_not_reach_them() {
    let o = TestOrigin::start(|req| async move {
        let cc = if req.uri().path() == "/cached" {
            "max-age=60"
        } else {
            "no-store"
        };
        resp_with(
            200,
            &[
                ("cache-control", cc),
                ("server", "Apache/2.4.1 (Unix) OpenSSL/1.0.2"),
                ("x-powered-by", "PHP/5.6"),
                ("x-internal", "10.0.0.5"),
            ],
            "page",
        )
    })
    .await;
    let site = format!(
        "origins = [\"{}\"]\n[site.headers]\nresponse_remove = [\"x-powered-by\", \"x-internal\"]\nresponse_set = {{ \"x-frame-options\" = \"DENY\" }}\nrequest_set = {{ \"x-edge\" = \"outpost\" }}\n",
        o.url()
    );
    let node = TestNode::start_site(&site, "[server]\nserver_header = \"outpost\"\n").await;
    for path in ["/pass", "/cached", "/cached"] {
        let (st, h, _) = get_with(
            &node.url(path),
            &[
                ("x-forwarded-host", "evil.example"),
                ("x-original-url", "/admin"),
            ],
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(h["server"], "outpost", "{path}");
        assert!(
            h.get("x-powered-by").is_none() && h.get("x-internal").is_none(),
            "{path}: {h:?}"
        );
        assert_eq!(h["x-frame-options"], "DENY");
    }
    assert_eq!(o.count(), 2, "the second /cached is a hit");
    // A request with content goes to the origin on another client: its answer
    // loses the same fields.
    let post = http::Request::post(node.url("/pass"))
        .body(full("form=1"))
        .unwrap();
    let (st, h, _) = send(post).await;
    assert_eq!(st, 200);
    assert_eq!(h["server"], "outpost");
    assert!(
        h.get("x-powered-by").is_none() && h.get("x-internal").is_none(),
        "POST: {h:?}"
    );
    assert_eq!(o.count(), 3);
    for seen in o.seen.lock().unwrap().iter() {
        assert!(seen.headers.get("x-forwarded-host").is_none());
        assert!(seen.headers.get("x-original-url").is_none());
        assert_eq!(seen.headers["x-edge"], "outpost");
    }
    // Without server_header the origin's Server is simply gone.
    let plain = TestNode::start_site(&format!("origins = [\"{}\"]\n", o.url()), "").await;
    let (_, h, _) = get(&plain.url("/pass")).await;
    assert!(
        h.get("server").is_none() && h.get("x-powered-by").is_none(),
        "{h:?}"
    );
    assert_eq!(
        h["x-internal"], "10.0.0.5",
        "only the default list is removed"
    );
}

#[tokio::test]
async fn a_rate_limit_refuses_one_client_and_not_another() {
    let o = origin().await;
    let site = format!(
        "origins = [\"{}\"]\n[site.rate_limit]\nrequests = 50\nperiod = \"1s\"\nburst = 50\n",
        o.url()
    );
    let node = TestNode::start_site(&site, "").await;
    let url = node.url("/r");
    // 500 requests from 127.0.0.2 as fast as they go (8 at a time).
    let mut ok = 0;
    let mut limited = 0;
    let mut headers = None;
    let t0 = std::time::Instant::now();
    for _ in 0..(500 / 10) {
        let mut batch = Vec::new();
        for _ in 0..10 {
            let url = url.clone();
            batch.push(tokio::spawn(async move {
                let mut conn = hyper_util::client::legacy::connect::HttpConnector::new();
                conn.set_local_address(Some("127.0.0.2".parse().unwrap()));
                let c = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build::<_, TestBody>(conn);
                let r = c
                    .request(Request::get(url).body(full(Bytes::new())).unwrap())
                    .await
                    .unwrap();
                (r.status().as_u16(), r.headers().clone())
            }));
        }
        for t in batch {
            let (st, h) = t.await.unwrap();
            match st {
                200 => ok += 1,
                429 => {
                    limited += 1;
                    headers.get_or_insert(h);
                }
                other => panic!("status {other}"),
            }
        }
    }
    // The burst, then 50 a second for as long as the requests took.
    let allowed = 50 + (50.0 * t0.elapsed().as_secs_f64()).ceil() as usize + 2;
    assert!(ok >= 50 && ok <= allowed, "{ok} passed, {allowed} allowed");
    assert_eq!(ok + limited, 500);
    assert!(limited > 0);
    let h = headers.unwrap();
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(h["ratelimit-policy"], "\"default\";q=50;w=1");
    assert!(
        h["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"default\";r=0;t=")
    );
    // Another client is not affected.
    for _ in 0..20 {
        assert_eq!(get_from("127.0.0.3", &url, &[]).await.0, 200);
    }
    assert_eq!(
        o.count(),
        ok + 20,
        "a limited request never reached the origin"
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    assert_eq!(stats["rate_limited"].as_u64().unwrap(), limited as u64);
}

#[tokio::test]
async fn traversal_forms_get_400_and_the_origin_sees_nothing() {
    let o = origin().await;
    let node = TestNode::start_site(&format!("origins = [\"{}\"]\n", o.url()), "").await;
    for path in [
        "/../etc/passwd",
        "/static/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/%2e%2E%2fetc/passwd",
        "/%252e%252e/etc/passwd",
        "/a%00.txt",
        "/a%5c..%5c..%5cwin.ini",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
        let out = raw(node.proxy, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{path}: {out}");
    }
    assert_eq!(o.count(), 0);
    let (st, _, _) = get(&node.url("/a/../b.css")).await;
    assert_eq!(st, 200, "a path that stays under the root passes");
}

#[tokio::test]
async fn one_normal_form_is_keyed_and_sent_to_the_origin() {
    let o =
        TestOrigin::start(|_| async { resp_with(200, &[("cache-control", "max-age=600")], "x") })
            .await;
    let node = TestNode::start_site(&format!("origins = [\"{}\"]\n", o.url()), "").await;
    // RFC 3986 §6.2.2: escaped unreserved characters and dot segments.
    let req = "GET /%7Euser/./docs/../%61.css?v=%2f HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n";
    let out = raw(node.proxy, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(o.last().target, "/~user/a.css?v=%2f");
    // The plain spelling is the same object: a hit.
    let (st, h, _) = get_with(&node.url("/~user/a.css?v=%2f"), &[("host", "example.com")]).await;
    assert_eq!(st, 200);
    assert!(cache_status(&h).contains("hit"), "{h:?}");
    assert_eq!(o.count(), 1);
}

#[tokio::test]
async fn request_limits_refuse_before_the_origin() {
    let o = origin().await;
    let site = format!(
        "origins = [\"{}\"]\nmethods = [\"GET\", \"HEAD\", \"POST\"]\nmax_body_bytes = 1000\n",
        o.url()
    );
    let node = TestNode::start_site(&site, "[limits]\nmax_uri_bytes = 256\n").await;
    let long = format!("/{}", "a".repeat(300));
    assert_eq!(get(&node.url(&long)).await.0, 414);
    let (st, h, _) = request_with("DELETE", &node.url("/x"), &[]).await;
    assert_eq!(st, 405);
    assert_eq!(h["allow"], "GET, HEAD, POST");
    let big = Request::post(node.url("/form"))
        .header("content-length", "5000")
        .body(full(vec![b'x'; 5000]))
        .unwrap();
    assert_eq!(send(big).await.0, 413);
    assert_eq!(o.count(), 0, "no refused request reached the origin");
    let small = Request::post(node.url("/form"))
        .body(full(vec![b'x'; 500]))
        .unwrap();
    assert_eq!(send(small).await.0, 200);
    assert_eq!(get(&node.url(&long[..200])).await.0, 200);
    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    assert!(stats["request_limited"].as_u64().unwrap() >= 3, "{stats}");
}

/// A keep-alive connection from `ip` that has been answered once.
async fn open_from(ip: &str, addr: std::net::SocketAddr) -> Option<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    s.write_all(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    (n > 0 && buf.starts_with(b"HTTP/1.1 200")).then_some(s)
}

#[tokio::test]
async fn connections_beyond_the_limits_are_closed_at_accept() {
    let o = origin().await;
    let node = TestNode::start_site(
        &format!("origins = [\"{}\"]\n", o.url()),
        "[server]\nmax_connections = 3\nmax_connections_per_client = 2\n",
    )
    .await;
    let a1 = open_from("127.0.0.2", node.proxy).await.expect("first");
    let _a2 = open_from("127.0.0.2", node.proxy).await.expect("second");
    assert!(
        open_from("127.0.0.2", node.proxy).await.is_none(),
        "a third from one client"
    );
    let _b1 = open_from("127.0.0.3", node.proxy)
        .await
        .expect("another client");
    assert!(
        open_from("127.0.0.4", node.proxy).await.is_none(),
        "a fourth in all"
    );
    // A connection that ends gives its place back.
    drop(a1);
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        again = open_from("127.0.0.2", node.proxy).await;
        if again.is_some() {
            break;
        }
    }
    assert!(again.is_some());
    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    assert!(
        stats["connections_refused"].as_u64().unwrap() >= 2,
        "{stats}"
    );
}

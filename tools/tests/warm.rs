//! `outpostctl warm` against in-process mock nodes that count what they get:
//! a cache-like mock (stored once, hit afterwards), failures by reason,
//! an unreachable node, extra headers, sitemaps and indexes, the rate limit,
//! plain progress lines and Ctrl-C.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Req, closing_server, mock, respond, run, temp_file};

const STORED: &str = "Outpost; fwd=uri-miss; fwd-status=200; stored; ttl=300";
const HIT: &str = "Outpost; hit; ttl=120";

/// The host each test URL uses for object `i` (some with a port).
fn host_for(i: u64) -> String {
    match i % 3 {
        0 => format!("site{}.example", i % 7),
        1 => format!("site{}.example:8443", i % 7),
        _ => "www.example.org".to_string(),
    }
}

/// A mock that behaves like a cache: the first request per (host, target)
/// stores, later ones hit. It counts requests and Host mismatches (the
/// expected host is encoded in the path: `/obj/{i}`).
#[derive(Default)]
struct CacheLike {
    seen: Mutex<HashSet<(String, String)>>,
    requests: AtomicU64,
    host_mismatches: AtomicU64,
}

impl CacheLike {
    fn handle(&self, req: &Req) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let host = req.header("host").unwrap_or("").to_string();
        let path = req.uri.path().to_string();
        let expected = path
            .strip_prefix("/obj/")
            .and_then(|i| i.parse::<u64>().ok())
            .map(host_for);
        if expected.as_deref() != Some(host.as_str()) || req.uri.query() != Some("v=1&x=%20") {
            self.host_mismatches.fetch_add(1, Ordering::Relaxed);
        }
        let target = req
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let fresh = self.seen.lock().unwrap().insert((host, target));
        let status = if fresh { STORED } else { HIT };
        respond(200, &[("cache-status", status)], "0123456789")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_5000_urls_twice_stores_then_hits() {
    let state = Arc::new(CacheLike::default());
    let s = state.clone();
    let node = mock(move |req| {
        let r = s.handle(&req);
        async move { r }
    })
    .await;
    let mut list = String::from("# five thousand objects\n\n");
    for i in 0..5000u64 {
        list.push_str(&format!("http://{}/obj/{i}?v=1&x=%20\n", host_for(i)));
    }
    let file = temp_file(&list);
    let path = file.path().to_str().unwrap();

    let first = run(&["warm", "--node", &node.url(), "--urls", path], &[]).await;
    assert_eq!(first.code, 0, "{first:#?}");
    first.expect("URLs", 5000);
    first.expect("newly stored", 5000);
    first.expect("already cached", 0);
    first.expect("failed", 0);
    assert!(first.stdout.contains("(50000 B)"), "{first:#?}");

    let second = run(&["warm", "--node", &node.url(), "--urls", path], &[]).await;
    assert_eq!(second.code, 0, "{second:#?}");
    second.expect("already cached", 5000);
    second.expect("newly stored", 0);
    second.expect("not cacheable", 0);

    assert_eq!(state.requests.load(Ordering::Relaxed), 10_000);
    assert_eq!(state.host_mismatches.load(Ordering::Relaxed), 0);
    eprintln!(
        "5000 URLs: first {:?}, second {:?}",
        first.elapsed, second.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_reason_and_exit_1() {
    let node = mock(|req: Req| async move {
        let path = req.uri.path();
        if path.starts_with("/fail/") {
            respond(
                503,
                &[("cache-status", "Outpost; fwd=uri-miss; fwd-status=503")],
                "down",
            )
        } else if path.starts_with("/plain/") {
            respond(200, &[], "no cache-status")
        } else if path.starts_with("/private/") {
            respond(
                200,
                &[("cache-status", "Outpost; fwd=uri-miss; fwd-status=200")],
                "p",
            )
        } else if path.starts_with("/slow/") {
            tokio::time::sleep(Duration::from_secs(5)).await;
            respond(200, &[("cache-status", STORED)], "late")
        } else {
            respond(200, &[("cache-status", STORED)], "ok")
        }
    })
    .await;
    let mut list = String::new();
    for i in 0..10 {
        list.push_str(&format!("http://a.example/ok/{i}\n"));
    }
    for i in 0..4 {
        list.push_str(&format!("http://a.example/fail/{i}\n"));
    }
    list.push_str("http://a.example/plain/1\nhttp://a.example/private/1\n");
    list.push_str("http://a.example/slow/1\nnot a url\n");
    let file = temp_file(&list);
    let r = run(
        &[
            "warm",
            "--node",
            &node.url(),
            "--urls",
            file.path().to_str().unwrap(),
            "--timeout",
            "500ms",
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:#?}");
    r.expect("URLs", 18);
    r.expect("newly stored", 10);
    r.expect("not cacheable", 1);
    r.expect("failed", 7);
    r.expect("status 503", 4);
    r.expect("timeout", 1);
    r.expect("invalid url", 1);
    r.expect("no Cache-Status from the node", 1);
    assert!(
        r.elapsed < Duration::from_secs(4),
        "the timeout did not apply: {r:#?}"
    );

    // A node that closes every connection without answering.
    let closing = closing_server().await;
    let file = temp_file("http://a.example/1\nhttp://a.example/2\nhttp://a.example/3\n");
    let r = run(
        &[
            "warm",
            "--node",
            &closing.url(),
            "--urls",
            file.path().to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:#?}");
    r.expect("failed", 3);
    r.expect("connection closed", 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_from_stdin() {
    use tokio::io::AsyncWriteExt;
    let node = mock(|_req: Req| async { respond(200, &[("cache-status", HIT)], "") }).await;
    let mut child = tokio::process::Command::new(common::bin())
        .args(["warm", "--node", &node.url(), "--urls", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"http://a.example/1\n# c\nhttp://a.example/2\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let r = common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: Duration::ZERO,
    };
    assert_eq!(r.code, 0, "{r:#?}");
    r.expect("already cached", 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_node_exits_2_with_a_clear_message() {
    let dead = common::dead_port::DeadPort::bind();
    let addr = dead.addr;
    let file = temp_file("http://a.example/1\n");
    let url = format!("http://{addr}");
    let r = run(
        &[
            "warm",
            "--node",
            &url,
            "--urls",
            file.path().to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains(&format!("cannot reach node at {url}: ")),
        "{r:#?}"
    );
    assert!(r.stdout.is_empty(), "{r:#?}");

    // A missing list is an ordinary error, reported before contacting the node.
    let r = run(
        &["warm", "--node", &url, "--urls", "/nonexistent/list.txt"],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stderr.contains("cannot open URL list"), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_headers_are_sent_and_host_comes_from_the_url() {
    let seen: Arc<Mutex<Vec<Req>>> = Arc::default();
    let s = seen.clone();
    let node = mock(move |req: Req| {
        s.lock().unwrap().push(req);
        async { respond(200, &[("cache-status", HIT)], "") }
    })
    .await;
    let file = temp_file("http://img.example:8080/a.png\n");
    let r = run(
        &[
            "warm",
            "--node",
            &node.url(),
            "--urls",
            file.path().to_str().unwrap(),
            "-H",
            "X-Warm: yes",
            "-H",
            "Accept-Encoding: br",
            "--header",
            "Host: ignored.example",
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    r.expect("already cached", 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, http::Method::GET);
    assert_eq!(req.uri.to_string(), "/a.png");
    assert_eq!(req.header("x-warm"), Some("yes"));
    assert_eq!(req.header("accept-encoding"), Some("br"));
    assert_eq!(req.header("host"), Some("img.example:8080"));
    assert_eq!(req.headers.get_all("host").iter().count(), 1);
    assert!(req.header("user-agent").unwrap().starts_with("outpostctl/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sitemaps_and_indexes_are_followed() {
    let targets: Arc<Mutex<Vec<String>>> = Arc::default();
    let t = targets.clone();
    let node = mock(move |req: Req| {
        let target = format!("{}{}", req.header("host").unwrap_or(""), req.uri);
        let body = if req.uri.path() == "/remote-sitemap.xml" {
            // Served directly (the sitemap fetch, not through the node).
            "<urlset><url><loc>http://r.example/remote</loc></url></urlset>".to_string()
        } else {
            t.lock().unwrap().push(target);
            String::new()
        };
        async move { respond(200, &[("cache-status", STORED)], body) }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let urlset = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>http://s.example/one</loc></url>
  <url><loc>http://s.example/two?a=1&amp;b=2</loc></url>
  <url><loc>http://t.example/three</loc></url>
</urlset>"#;
    std::fs::write(dir.path().join("sitemap.xml"), urlset).unwrap();
    let r = run(
        &[
            "warm",
            "--node",
            &node.url(),
            "--sitemap",
            dir.path().join("sitemap.xml").to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    r.expect("newly stored", 3);
    {
        let mut got = targets.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            ["s.example/one", "s.example/two?a=1&b=2", "t.example/three"]
        );
    }

    // An index: a relative local child, an http child, a missing child.
    targets.lock().unwrap().clear();
    let index = format!(
        r#"<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>sitemap.xml</loc></sitemap>
  <sitemap><loc>{}/remote-sitemap.xml</loc></sitemap>
  <sitemap><loc>missing.xml</loc></sitemap>
</sitemapindex>"#,
        node.url()
    );
    std::fs::write(dir.path().join("index.xml"), index).unwrap();
    let r = run(
        &[
            "warm",
            "--node",
            &node.url(),
            "--sitemap",
            dir.path().join("index.xml").to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "the missing child is a failure: {r:#?}");
    r.expect("newly stored", 4);
    r.expect("sitemap not loaded", 1);
    assert!(r.stderr.contains("missing.xml"), "{r:#?}");
    {
        let mut got = targets.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            [
                "r.example/remote",
                "s.example/one",
                "s.example/two?a=1&b=2",
                "t.example/three"
            ]
        );
    }

    // The top-level sitemap fetched over http.
    let r = run(
        &[
            "warm",
            "--node",
            &node.url(),
            "--sitemap",
            &format!("{}/remote-sitemap.xml", node.url()),
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    r.expect("newly stored", 1);

    // Not a sitemap: a clear error before any request.
    std::fs::write(dir.path().join("bad.xml"), "<html/>").unwrap();
    let r = run(
        &[
            "warm",
            "--node",
            &node.url(),
            "--sitemap",
            dir.path().join("bad.xml").to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr.contains("expected <urlset> or <sitemapindex>"),
        "{r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spaces_requests_and_plain_progress_lines_show() {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let node = mock(move |_req: Req| {
        c.fetch_add(1, Ordering::Relaxed);
        async { respond(200, &[("cache-status", STORED)], "x") }
    })
    .await;
    let list: String = (0..20).map(|i| format!("http://a.example/{i}\n")).collect();
    let file = temp_file(&list);
    let r = run(
        &[
            "warm",
            "--node",
            &node.url(),
            "--urls",
            file.path().to_str().unwrap(),
            "--rate",
            "50",
            "--concurrency",
            "8",
            "--progress-interval",
            "100ms",
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    r.expect("newly stored", 20);
    assert_eq!(count.load(Ordering::Relaxed), 20);
    // 20 starts spaced 20 ms apart take at least 19 × 20 ms.
    assert!(r.elapsed >= Duration::from_millis(380), "{:?}", r.elapsed);
    // Not a terminal: plain lines, with the total once counted.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("warm: ") && l.contains("/20 (") && l.contains("req/s")),
        "{r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_prints_a_partial_summary_and_exits_130() {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let node = mock(move |_req: Req| {
        c.fetch_add(1, Ordering::Relaxed);
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            respond(200, &[("cache-status", STORED)], "x")
        }
    })
    .await;
    let list: String = (0..10_000)
        .map(|i| format!("http://a.example/{i}\n"))
        .collect();
    let file = temp_file(&list);
    let child = tokio::process::Command::new(common::bin())
        .args([
            "warm",
            "--node",
            &node.url(),
            "--urls",
            file.path().to_str().unwrap(),
            "--concurrency",
            "4",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::Relaxed) < 12 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no requests arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap().to_string();
    let sent_at = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("outpostctl did not stop after Ctrl-C")
        .unwrap();
    let stopped_in = sent_at.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("warm summary (interrupted: partial)"),
        "{stdout}"
    );
    let r = common::Run {
        code: 130,
        stdout: stdout.to_string(),
        stderr: String::new(),
        elapsed: stopped_in,
    };
    let stored = r.value("newly stored").unwrap();
    assert!((12..10_000).contains(&stored), "{stdout}");
    // In-flight requests finished within the grace period, none abandoned.
    r.expect("abandoned", 0);
    assert!(stopped_in < Duration::from_secs(5), "{stopped_in:?}");
    // No request was issued after the summary's count (plus those in flight).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(count.load(Ordering::Relaxed) <= stored + 4, "{stdout}");
}

//! The origin layer through real sockets: balancing over three in-process
//! origins that count requests, passive and active health, retries within
//! the budget, drain, and what is never retried.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "origins-test-token";

/// An origin answering 200 with `body` (not cacheable) after `delay`.
async fn origin(body: &'static str, delay: Duration) -> TestOrigin {
    TestOrigin::start(move |_| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        resp_with(200, &[("cache-control", "no-store")], body)
    })
    .await
}

/// An origin answering `status` to everything.
async fn failing(status: u16) -> TestOrigin {
    TestOrigin::start(move |_| async move { resp(status, "failing\n") }).await
}

fn origins_line(urls: &[String], weights: &[u32]) -> String {
    let list: Vec<String> = urls
        .iter()
        .zip(weights)
        .map(|(u, w)| format!("{{ url = \"{u}\", weight = {w} }}"))
        .collect();
    format!("origins = [{}]\ncache = false\n", list.join(", "))
}

/// GETs `n` paths (`/p0`, `/p1`, …) with `conc` clients; returns how many
/// answers were not 200.
async fn load(node: &TestNode, n: usize, conc: usize) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (next, errors) = (next.clone(), errors.clone());
        let base = node.url("");
        tasks.push(tokio::spawn(async move {
            let c = client();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                // One Host whatever the node's port: the cache key (and so
                // `balance = "hash"`) depends on it.
                let req = Request::get(format!("{base}/p{i}"))
                    .header("host", "origins.test")
                    .body(full(Bytes::new()))
                    .unwrap();
                let ok = match c.request(req).await {
                    Ok(r) => {
                        let st = r.status();
                        r.into_body().collect().await.is_ok() && st == 200
                    }
                    Err(_) => false,
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    errors.load(Ordering::Relaxed)
}

async fn admin_json(admin: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let (s, _, body) = get(&format!("http://{admin}{path}")).await;
    assert_eq!(s, 200);
    serde_json::from_slice(&body).unwrap()
}

/// The `/origins` entry of `url`.
async fn origin_report(admin: std::net::SocketAddr, url: &str) -> serde_json::Value {
    let v = admin_json(admin, "/origins").await;
    v["origins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["origin"] == url)
        .cloned()
        .unwrap_or_else(|| panic!("{url} not in {v}"))
}

#[tokio::test]
async fn weighted_round_robin_shares_requests_by_weight() {
    let o: Vec<TestOrigin> = vec![
        origin("a", Duration::ZERO).await,
        origin("b", Duration::ZERO).await,
        origin("c", Duration::ZERO).await,
    ];
    let urls: Vec<String> = o.iter().map(|x| x.url()).collect();
    let node = TestNode::start_site(&origins_line(&urls, &[1, 1, 2]), "").await;
    assert_eq!(load(&node, 4000, 8).await, 0);
    let total = 4000.0;
    for (x, want) in o.iter().zip([0.25, 0.25, 0.5]) {
        let share = x.count() as f64 / total;
        assert!((share - want).abs() <= 0.03, "share {share} for {want}");
    }
}

#[tokio::test]
async fn least_conn_sends_fewer_requests_to_a_slow_origin() {
    let o: Vec<TestOrigin> = vec![
        origin("a", Duration::from_millis(2)).await,
        origin("b", Duration::from_millis(2)).await,
        origin("slow", Duration::from_millis(20)).await,
    ];
    let urls: Vec<String> = o.iter().map(|x| x.url()).collect();
    let site = format!(
        "{}balance = \"least_conn\"\n",
        origins_line(&urls, &[1, 1, 1])
    );
    let node = TestNode::start_site(&site, "").await;
    assert_eq!(load(&node, 600, 12).await, 0);
    let (a, b, slow) = (o[0].count(), o[1].count(), o[2].count());
    assert!(slow * 2 < a && slow * 2 < b, "a {a}, b {b}, slow {slow}");
}

#[tokio::test]
async fn hash_keeps_a_url_on_one_origin_and_removal_moves_only_its_keys() {
    let o: Vec<TestOrigin> = vec![
        origin("a", Duration::ZERO).await,
        origin("b", Duration::ZERO).await,
        origin("c", Duration::ZERO).await,
    ];
    let urls: Vec<String> = o.iter().map(|x| x.url()).collect();
    let three = TestNode::start_site(
        &format!("{}balance = \"hash\"\n", origins_line(&urls, &[1, 1, 1])),
        "",
    )
    .await;
    // Where does each of 3,000 URLs go?
    let owner = |path: &str, o: &[TestOrigin]| -> Vec<usize> {
        o.iter()
            .enumerate()
            .filter(|(_, x)| x.count_path(path) > 0)
            .map(|(i, _)| i)
            .collect()
    };
    assert_eq!(load(&three, 3000, 8).await, 0);
    // Again: the same URL reaches the same origin.
    assert_eq!(load(&three, 300, 4).await, 0);
    let mut before = Vec::new();
    for i in 0..3000 {
        let w = owner(&format!("/p{i}"), &o);
        assert_eq!(w.len(), 1, "/p{i} went to {w:?}");
        before.push(w[0]);
    }
    for x in &o {
        x.seen.lock().unwrap().clear();
    }
    let two = TestNode::start_site(
        &format!(
            "{}balance = \"hash\"\n",
            origins_line(&[urls[0].clone(), urls[2].clone()], &[1, 1])
        ),
        "",
    )
    .await;
    assert_eq!(load(&two, 3000, 8).await, 0);
    let mut moved = 0;
    for (i, b) in before.iter().enumerate() {
        let w = owner(&format!("/p{i}"), &o);
        if w != vec![*b] {
            moved += 1;
        }
    }
    assert!(moved <= 1200, "{moved} of 3000 keys moved");
}

#[tokio::test]
async fn a_killed_origin_costs_no_client_errors_and_comes_back_when_restarted() {
    let a = origin("a", Duration::ZERO).await;
    let b = origin("b", Duration::ZERO).await;
    let c = origin("c", Duration::ZERO).await;
    let urls = [a.url(), b.url(), c.url()];
    let site = format!(
        "{}[site.health]\npath = \"/\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\nrise = 2\nfall = 2\n",
        origins_line(&urls, &[1, 1, 1])
    );
    let node = TestNode::start_site(&site, "").await;
    let addr = c.addr;
    // 200 clients; the origin dies a moment into the load.
    let loader = {
        let base = node.url("");
        tokio::spawn(async move {
            let n = Arc::new(AtomicUsize::new(0));
            let errors = Arc::new(AtomicUsize::new(0));
            let stop = Instant::now() + Duration::from_millis(1500);
            let mut tasks = Vec::new();
            for _ in 0..200 {
                let (n, errors, base) = (n.clone(), errors.clone(), base.clone());
                tasks.push(tokio::spawn(async move {
                    let cl = client();
                    while Instant::now() < stop {
                        let i = n.fetch_add(1, Ordering::Relaxed);
                        let req = Request::get(format!("{base}/k{i}"))
                            .body(full(Bytes::new()))
                            .unwrap();
                        let ok = match cl.request(req).await {
                            Ok(r) => {
                                let st = r.status();
                                r.into_body().collect().await.is_ok() && st == 200
                            }
                            Err(_) => false,
                        };
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            (n.load(Ordering::Relaxed), errors.load(Ordering::Relaxed))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.stop();
    drop(c);
    let (sent, errors) = loader.await.unwrap();
    assert!(sent > 300, "only {sent} requests");
    assert_eq!(errors, 0, "client errors with one origin killed");
    // After fall × interval it is down and gets no more attempts.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let url_c = format!("http://{addr}");
    let r = origin_report(node.admin, &url_c).await;
    assert_eq!(r["state"], "down", "{r}");
    let attempts = r["requests"].as_u64().unwrap();
    assert_eq!(load(&node, 200, 8).await, 0);
    let r = origin_report(node.admin, &url_c).await;
    assert_eq!(r["requests"].as_u64().unwrap(), attempts, "{r}");
    // Restarted on its port: traffic again after rise × interval.
    let c = TestOrigin::start_on(addr, |_| async {
        resp_with(200, &[("cache-control", "no-store")], "c")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(origin_report(node.admin, &url_c).await["state"], "up");
    assert_eq!(load(&node, 300, 8).await, 0);
    assert!(c.count() > 50, "restarted origin got {}", c.count());
    let stats = admin_json(node.admin, "/stats").await;
    assert!(
        stats["origin_state_changes"].as_u64().unwrap() >= 2,
        "{stats}"
    );
}

#[tokio::test]
async fn a_failing_origin_is_retried_around_and_retries_stay_within_the_budget() {
    let a = origin("a", Duration::ZERO).await;
    let b = origin("b", Duration::ZERO).await;
    let bad = failing(503).await;
    let urls = [a.url(), b.url(), bad.url()];
    let node = TestNode::start_site(&origins_line(&urls, &[1, 1, 1]), "").await;
    assert_eq!(load(&node, 600, 8).await, 0, "503s reached clients");
    assert_eq!(a.count() + b.count(), 600);
    // Ejected after max_fails in a row: it saw only a few requests.
    assert!(bad.count() <= 10, "the failing origin got {}", bad.count());

    // All three failing: the origins see at most the requests plus the
    // budget's retries (20 % and a floor of 10 per window).
    let o: Vec<TestOrigin> = vec![failing(503).await, failing(503).await, failing(503).await];
    let urls: Vec<String> = o.iter().map(|x| x.url()).collect();
    let site = format!("{}max_fails = 1000\n", origins_line(&urls, &[1, 1, 1]));
    let node = TestNode::start_site(&site, "").await;
    let n = 500;
    let errors = load(&node, n, 8).await;
    assert_eq!(errors, n, "every answer is an error");
    let seen: usize = o.iter().map(TestOrigin::count).sum();
    assert!(seen > n, "no retry at all: {seen}");
    assert!(seen <= n + n / 5 + 10, "{seen} origin requests for {n}");
}

#[tokio::test]
async fn all_origins_down_is_a_503_with_retry_after() {
    let dead = common::dead_port::DeadPort::bind();
    let site = format!(
        "origins = [\"http://{}\"]\ncache = false\nmax_fails = 1\nfail_timeout = \"30s\"\n",
        dead.addr
    );
    let node = TestNode::start_site(&site, "").await;
    let (s, _, _) = get(&node.url("/x")).await;
    assert_eq!(s, 502, "refused");
    let (s, h, body) = get(&node.url("/x")).await;
    assert_eq!(s, 503);
    let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    assert!(String::from_utf8_lossy(&body).contains("no origin"));
}

#[tokio::test]
async fn a_draining_origin_finishes_its_download_and_gets_no_new_request() {
    let slow = TestOrigin::start(|_| async {
        // 8 pieces, 100 ms apart.
        let s = futures_util::stream::unfold(0u32, |i| async move {
            if i == 8 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((
                Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(vec![b'x'; 1024]))),
                i + 1,
            ))
        });
        let mut r = http::Response::new(http_body_util::StreamBody::new(s).boxed_unsync());
        r.headers_mut()
            .insert("cache-control", "no-store".parse().unwrap());
        r
    })
    .await;
    let other = origin("other", Duration::ZERO).await;
    let urls = [slow.url(), other.url()];
    let node = TestNode::start_site(
        &origins_line(&urls, &[1, 1]),
        &format!("[admin]\ntoken = \"{TOKEN}\"\n"),
    )
    .await;
    // Round robin: the first request goes to the slow origin.
    let big = node.url("/big");
    let download = tokio::spawn(async move { get(&big).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let drain = Request::post(format!("http://{}/origins/drain", node.admin))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(full(format!(
            "{{\"site\": \"default\", \"origin\": \"{}\"}}",
            slow.url()
        )))
        .unwrap();
    let (s, _, body) = send(drain).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let r = origin_report(node.admin, &slow.url()).await;
    assert_eq!(r["state"], "draining", "{r}");
    assert_eq!(load(&node, 50, 4).await, 0);
    let (s, _, body) = download.await.unwrap();
    assert_eq!((s.as_u16(), body.len()), (200, 8 * 1024));
    assert_eq!(slow.count(), 1, "a drained origin got a new request");
    assert_eq!(other.count(), 50);
    let r = origin_report(node.admin, &slow.url()).await;
    assert_eq!(
        (r["state"].as_str(), r["in_flight"].as_u64()),
        (Some("disabled"), Some(0))
    );
    // Without the token: refused.
    let enable = Request::post(format!("http://{}/origins/enable", node.admin))
        .body(full(format!(
            "{{\"site\": \"default\", \"origin\": \"{}\"}}",
            slow.url()
        )))
        .unwrap();
    assert_eq!(send(enable).await.0, 401);
}

#[tokio::test]
async fn a_post_is_never_retried_once_its_body_went_out() {
    // The first origin reads the request and its body, then closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let eater = listener.local_addr().unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let got2 = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let got = got2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut n = 0;
                while let Ok(k) = s.read(&mut buf[n..]).await {
                    if k == 0 {
                        break;
                    }
                    n += k;
                    if buf[..n].windows(4).any(|w| w == b"BODY") {
                        got.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    let other = origin("other", Duration::ZERO).await;
    let site = format!(
        "origins = [\"http://{eater}\", \"{}\"]\ncache = false\n",
        other.url()
    );
    let node = TestNode::start_site(&site, "").await;
    let req = Request::post(node.url("/submit"))
        .body(full("the BODY of a form"))
        .unwrap();
    let (s, _, _) = send(req).await;
    assert_eq!(s, 502);
    assert_eq!(got.load(Ordering::Relaxed), 1);
    assert_eq!(other.count(), 0, "the POST was sent twice");
}

#[tokio::test]
async fn with_every_origin_down_a_stored_response_is_served_where_stale_if_error_allows() {
    let a = TestOrigin::start(|_| async {
        resp_with(
            200,
            &[("cache-control", "max-age=1, stale-if-error=60")],
            "kept",
        )
    })
    .await;
    let b = TestOrigin::start(|_| async {
        resp_with(
            200,
            &[("cache-control", "max-age=1, stale-if-error=60")],
            "kept",
        )
    })
    .await;
    let site = format!(
        "origins = [\"{}\", \"{}\"]\nmax_fails = 1\nfail_timeout = \"30s\"\n",
        a.url(),
        b.url()
    );
    let node = TestNode::start_site(&site, "").await;
    let (s, _, body) = get(&node.url("/sie")).await;
    assert_eq!((s.as_u16(), &body[..]), (200, &b"kept"[..]));
    a.stop();
    b.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Refused by both (and ejected), then no origin is up: stale each time.
    for _ in 0..3 {
        let (s, h, body) = get(&node.url("/sie")).await;
        assert_eq!((s.as_u16(), &body[..]), (200, &b"kept"[..]));
        assert!(
            cache_status(&h).contains("stale-if-error"),
            "{}",
            cache_status(&h)
        );
    }
    let r = admin_json(node.admin, "/stats").await;
    assert_eq!(r["origins_down"], 2, "{r}");
    // Something never stored: the 503 with Retry-After.
    let (s, h, _) = get(&node.url("/never")).await;
    assert_eq!(s, 503);
    assert!(h.contains_key("retry-after"));
}

#[tokio::test]
async fn requests_beyond_max_conns_wait_in_the_queue_then_get_a_503() {
    let slow = origin("slow", Duration::from_millis(300)).await;
    let site = format!(
        "origins = [\"{}\"]\ncache = false\nmax_conns = 1\nqueue_timeout = \"100ms\"\n",
        slow.url()
    );
    let node = TestNode::start_site(&site, "").await;
    let first = tokio::spawn(get_owned(node.url("/one")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The origin is busy with the first request: the second waits 100 ms.
    let t0 = Instant::now();
    let (s, h, _) = get(&node.url("/two")).await;
    assert_eq!(s, 503);
    assert!(h.contains_key("retry-after"));
    assert!(
        t0.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(slow.count(), 1);

    // A queue long enough: both are served, one after the other.
    let site = format!(
        "origins = [\"{}\"]\ncache = false\nmax_conns = 1\nqueue_timeout = \"5s\"\n",
        slow.url()
    );
    let node = TestNode::start_site(&site, "").await;
    let t0 = Instant::now();
    let (a, b) = tokio::join!(get_owned(node.url("/a")), get_owned(node.url("/b")));
    assert_eq!((a.0.as_u16(), b.0.as_u16()), (200, 200));
    assert!(
        t0.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
}

async fn get_owned(url: String) -> (http::StatusCode, http::HeaderMap, Bytes) {
    get(&url).await
}

//! Session persistence through real sockets: the sticky cookie over three
//! counting in-process origins, `balance = "client_ip"` from three loopback
//! source addresses, and how both stay out of the cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request};
use http_body_util::BodyExt;

const COOKIE: &str = "OSID";

/// Three origins naming themselves; `/cached` is cacheable, the rest not.
async fn three() -> Vec<TestOrigin> {
    let mut v = Vec::new();
    for name in ["a", "b", "c"] {
        v.push(
            TestOrigin::start(move |req| async move {
                if req.uri().path() == "/cached" {
                    resp_with(200, &[("cache-control", "max-age=600")], name)
                } else {
                    resp_with(200, &[("cache-control", "no-store")], name)
                }
            })
            .await,
        );
    }
    v
}

fn site(o: &[TestOrigin], extra: &str) -> String {
    let urls: Vec<String> = o.iter().map(|x| format!("\"{}\"", x.url())).collect();
    format!(
        "origins = [{}]\n{extra}\n[site.sticky]\ncookie = \"{COOKIE}\"\nsecret = \"a secret of sixteen+\"\n",
        urls.join(", ")
    )
}

/// GET with an optional `Cookie`; returns status, headers, body.
async fn get_cookie(url: &str, cookie: Option<&str>) -> (http::StatusCode, HeaderMap, String) {
    let mut b = Request::get(url);
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    let (s, h, body) = send(b.body(full(Bytes::new())).unwrap()).await;
    (s, h, String::from_utf8_lossy(&body).into_owned())
}

/// The `NAME=value` of our `Set-Cookie`, if any.
fn set_cookie(h: &HeaderMap) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{COOKIE}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

#[tokio::test]
async fn a_client_with_the_cookie_stays_on_its_origin() {
    let o = three().await;
    let node = TestNode::start_site(&site(&o, "cache = false"), "").await;
    let (s, h, first) = get_cookie(&node.url("/x"), None).await;
    assert_eq!(s, 200);
    let raw = h["set-cookie"].to_str().unwrap().to_owned();
    assert!(raw.contains("Path=/; HttpOnly; SameSite=Lax"), "{raw}");
    assert!(!raw.contains("Secure"), "cleartext: {raw}");
    for x in &o {
        assert!(
            !raw.contains(&x.addr.port().to_string()),
            "the id shows an address: {raw}"
        );
    }
    let cookie = set_cookie(&h).unwrap();
    for i in 0..300 {
        let (s, h, body) = get_cookie(&node.url(&format!("/x{i}")), Some(&cookie)).await;
        assert_eq!((s.as_u16(), body.as_str()), (200, first.as_str()));
        assert!(
            set_cookie(&h).is_none(),
            "rewritten although its origin is up"
        );
    }
    let on: Vec<usize> = o.iter().map(TestOrigin::count).collect();
    assert_eq!(on.iter().filter(|&&n| n > 0).count(), 1, "{on:?}");
    // The cookie never reached an origin.
    for x in &o {
        for seen in x.seen.lock().unwrap().iter() {
            assert!(seen.headers.get("cookie").is_none(), "{:?}", seen.headers);
        }
    }
    let v: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/origins", node.admin)).await.2).unwrap();
    let hits: u64 = v["origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sticky_hits"].as_u64().unwrap())
        .sum();
    assert_eq!(hits, 300);
}

#[tokio::test]
async fn clients_without_cookies_are_balanced_and_then_stick() {
    let o = three().await;
    let node = TestNode::start_site(&site(&o, "cache = false"), "").await;
    let mut clients = Vec::new();
    for _ in 0..30 {
        let (_, h, body) = get_cookie(&node.url("/first"), Some("other=1")).await;
        clients.push((set_cookie(&h).unwrap(), body));
    }
    let on: Vec<usize> = o.iter().map(TestOrigin::count).collect();
    assert_eq!(on, vec![10, 10, 10], "round robin spreads new clients");
    for (cookie, origin) in &clients {
        for i in 0..5 {
            let c = format!("other=1; {cookie}");
            let (_, _, body) = get_cookie(&node.url(&format!("/again{i}")), Some(&c)).await;
            assert_eq!(&body, origin);
        }
    }
    // The client's other cookies still reach the origin; ours does not.
    for x in &o {
        let last = x.last();
        assert_eq!(last.headers["cookie"], "other=1");
    }
}

#[tokio::test]
async fn a_killed_sticky_origin_fails_over_and_the_cookie_is_rewritten() {
    let o = three().await;
    let node = TestNode::start_site(&site(&o, "cache = false"), "").await;
    let (_, h, first) = get_cookie(&node.url("/x"), None).await;
    let cookie = set_cookie(&h).unwrap();
    let dead = o.iter().position(|x| x.count() == 1).unwrap();
    o[dead].stop();
    let (s, h, body) = get_cookie(&node.url("/y"), Some(&cookie)).await;
    assert_eq!(s, 200);
    assert_ne!(body, first);
    let new = set_cookie(&h).expect("a rewritten cookie");
    assert_ne!(new, cookie);
    // And the new cookie sticks.
    for i in 0..20 {
        let (_, h, b) = get_cookie(&node.url(&format!("/z{i}")), Some(&new)).await;
        assert_eq!(b, body);
        assert!(set_cookie(&h).is_none());
    }
    // An unknown id falls back to balancing and is rewritten too.
    let (s, h, _) = get_cookie(&node.url("/w"), Some(&format!("{COOKIE}=0123456789abcdef"))).await;
    assert_eq!(s, 200);
    assert!(set_cookie(&h).is_some());
}

#[tokio::test]
async fn cached_responses_are_shared_and_never_carry_the_cookie() {
    let o = three().await;
    let node = TestNode::start_site(&site(&o, ""), "").await;
    // Three clients on three origins.
    let mut cookies = Vec::new();
    for i in 0..3 {
        let (_, h, _) = get_cookie(&node.url(&format!("/p{i}")), None).await;
        cookies.push(set_cookie(&h).unwrap());
    }
    let mut bodies = Vec::new();
    for c in &cookies {
        let (s, h, body) = get_cookie(&node.url("/cached"), Some(c)).await;
        assert_eq!(s, 200);
        assert!(
            h.get("set-cookie").is_none(),
            "a cached response carries a cookie"
        );
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let fetched: usize = o.iter().map(|x| x.count_path("/cached")).sum();
    assert_eq!(fetched, 1, "stored once, served to clients of every origin");
    let (_, h, _) = get_cookie(&node.url("/cached"), None).await;
    assert!(cache_status(&h).contains("hit"));
    assert!(h.get("set-cookie").is_none());
    for x in &o {
        for seen in x.seen.lock().unwrap().iter() {
            assert!(seen.headers.get("cookie").is_none());
        }
    }
}

/// A client whose connections come from `ip`.
async fn get_from(ip: IpAddr, url: &str) -> String {
    let mut conn = hyper_util::client::legacy::connect::HttpConnector::new();
    conn.set_local_address(Some(ip));
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, TestBody>(conn);
    let r = c
        .request(Request::get(url).body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).into_owned()
}

#[tokio::test]
async fn client_ip_keeps_each_address_on_its_origin() {
    let o = three().await;
    let urls: Vec<String> = o.iter().map(|x| format!("\"{}\"", x.url())).collect();
    let site = format!(
        "origins = [{}]\ncache = false\nbalance = \"client_ip\"\n",
        urls.join(", ")
    );
    let node = TestNode::start_site(&site, "").await;
    let proxy: SocketAddr = node.proxy;
    let mut owner = Vec::new();
    for last in 2..=4u8 {
        let ip: IpAddr = format!("127.0.0.{last}").parse().unwrap();
        let first = get_from(ip, &format!("http://{proxy}/a")).await;
        for i in 0..30 {
            assert_eq!(get_from(ip, &format!("http://{proxy}/b{i}")).await, first);
        }
        owner.push(first);
    }
    let total: usize = o.iter().map(TestOrigin::count).sum();
    assert_eq!(total, 93);
    // Without origin b, only b's clients move.
    let site = format!(
        "origins = [\"{}\", \"{}\"]\ncache = false\nbalance = \"client_ip\"\n",
        o[0].url(),
        o[2].url()
    );
    let two = TestNode::start_site(&site, "").await;
    for (i, last) in (2..=4u8).enumerate() {
        let ip: IpAddr = format!("127.0.0.{last}").parse().unwrap();
        let now = get_from(ip, &format!("http://{}/c", two.proxy)).await;
        if owner[i] != "b" {
            assert_eq!(now, owner[i], "127.0.0.{last} moved");
        } else {
            assert_ne!(now, "b");
        }
    }
}

//! The shield tier: edges ask one shield per object before the origin, fall
//! back to the origin when the shield is gone, and never loop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

const HOST: &str = "shield.example";

/// An origin that answers after 100 ms (so concurrent misses overlap),
/// cacheable for an hour.
async fn slow_origin() -> TestOrigin {
    TestOrigin::start(|req| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut r = resp(200, format!("object {}", req.uri().path()));
        r.headers_mut()
            .insert("cache-control", "max-age=3600".parse().unwrap());
        r
    })
    .await
}

/// A node on `proxy` (port 0 for any) in front of `origin` with the given
/// `[cluster]` lines.
async fn node(proxy: &str, origin: &str, cluster: &str) -> (outpost::Node, tempfile::TempDir) {
    test_logging();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[listen]\nproxy = \"{proxy}\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\nmemory = \"32MiB\"\ndisk = \"256MiB\"\n\
         [cluster]\n{cluster}\n\
         [[site]]\nname = \"default\"\norigins = [\"{origin}\"]\n",
        dir.path().display().to_string()
    );
    let cfg = outpost::config::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    (outpost::Node::start(cfg).await.unwrap(), dir)
}

async fn get_cs(addr: SocketAddr, path: &str) -> (u16, String) {
    let (s, h, _) = get_with(&format!("http://{addr}{path}"), &[("host", HOST)]).await;
    (s.as_u16(), cache_status(&h))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_make_one_origin_fetch_per_object_and_fall_back_when_the_shield_dies() {
    let o = slow_origin().await;
    let (shield, _sd) = node(
        "127.0.0.1:0",
        &o.url(),
        "node = \"shield-1\"\ntier = \"shield\"",
    )
    .await;
    let shields = format!(
        "shields = [{{ name = \"shield-1\", url = \"http://{}\" }}]\nshield_timeout = \"2s\"",
        shield.proxy_addr()
    );
    let mut edges = Vec::new();
    for i in 0..3 {
        edges.push(
            node(
                "127.0.0.1:0",
                &o.url(),
                &format!("node = \"edge-{i}\"\n{shields}"),
            )
            .await,
        );
    }
    let addrs: Vec<SocketAddr> = edges.iter().map(|(n, _)| n.proxy_addr()).collect();

    // 100 concurrent requests for one new object over the three edges.
    let errors = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let addr = addrs[i % 3];
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let (s, _) = get_cs(addr, "/one").await;
            if s != 200 {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    assert_eq!(o.count_path("/one"), 1, "one origin fetch for the fleet");

    // Cache-Status: one member per cache, the shield's first (RFC 9211 §2).
    get_cs(addrs[0], "/two").await;
    let (_, cs) = get_cs(addrs[1], "/two").await;
    let members: Vec<&str> = cs.split(", ").collect();
    assert_eq!(members.len(), 2, "{cs}");
    assert!(
        members[0].contains("hit"),
        "the shield's member first: {cs}"
    );
    assert!(members[1].contains("miss"), "then the edge's: {cs}");
    assert_eq!(o.count_path("/two"), 1);

    // The shield goes away: the edges ask the origin, with no client error.
    shield.shutdown().await;
    for i in 0..30 {
        let (s, _) = get_cs(addrs[i % 3], &format!("/after/{i}")).await;
        assert_eq!(s, 200, "/after/{i}");
        assert_eq!(o.count_path(&format!("/after/{i}")), 1);
    }
    for (n, _) in edges {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shields_pointing_at_each_other_make_one_origin_fetch() {
    let o = slow_origin().await;
    // S2's port is chosen first so S1 can point at it.
    let s2_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (s1, _d1) = node(
        "127.0.0.1:0",
        &o.url(),
        &format!("node = \"s1\"\nshields = [{{ url = \"http://{s2_addr}\" }}]"),
    )
    .await;
    let (s2, _d2) = node(
        &s2_addr.to_string(),
        &o.url(),
        &format!(
            "node = \"s2\"\nshields = [{{ url = \"http://{}\" }}]",
            s1.proxy_addr()
        ),
    )
    .await;
    let (s, cs) = get_cs(s1.proxy_addr(), "/loop").await;
    assert_eq!(s, 200, "{cs}");
    assert_eq!(o.count_path("/loop"), 1, "{cs}");
    // S2 fetched it for S1 (and has it): from S2 it is a hit.
    let (s, cs) = get_cs(s2.proxy_addr(), "/loop").await;
    assert_eq!(s, 200);
    assert!(cs.contains("hit"), "{cs}");
    assert_eq!(o.count_path("/loop"), 1);
    s1.shutdown().await;
    s2.shutdown().await;
}

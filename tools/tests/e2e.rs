//! `outpostctl warm` end to end: the real binary against a real in-process
//! Outpost node in front of a counting in-process origin. 5,000 URLs are
//! stored by the first run; the second run finds every one already cached
//! and the origin receives no new request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{mock, respond, run, temp_file};

const URLS: u64 = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_5000_urls_through_a_real_node_twice() {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let origin = mock(move |req| {
        h.fetch_add(1, Ordering::Relaxed);
        let body = format!("object {}", req.uri.path());
        async move { respond(200, &[("cache-control", "max-age=3600")], body) }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\nmemory = \"64MiB\"\ndisk = \"256MiB\"\n\
         [log]\naccess_log = false\n\
         [[site]]\nname = \"default\"\norigins = [\"{}\"]\n",
        dir.path().display().to_string(),
        origin.url()
    );
    let node = outpost::Node::start(outpost::config::Config::from_toml(&cfg).unwrap())
        .await
        .unwrap();
    let mut list = String::new();
    for i in 0..URLS {
        list.push_str(&format!("http://cdn{}.example/obj/{i}?v=1\n", i % 5));
    }
    let file = temp_file(&list);
    let path = file.path().to_str().unwrap();
    let node_url = format!("http://{}", node.proxy_addr());
    let args = [
        "warm",
        "--node",
        &node_url,
        "--urls",
        path,
        "--concurrency",
        "32",
    ];

    let first = run(&args, &[]).await;
    assert_eq!(first.code, 0, "{first:#?}");
    first.expect("newly stored", URLS);
    first.expect("failed", 0);
    assert_eq!(hits.load(Ordering::Relaxed), URLS);

    // Stored objects are committed just after their body was sent: wait
    // until the node's /stats counts them all (bounded).
    let stats_url = format!("http://{}/stats", node.admin_addr());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        let out = run(
            &[
                "stats",
                "--admin",
                &stats_url.replace("/stats", ""),
                "--json",
            ],
            &[],
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
        if v["entries"].as_u64().unwrap_or(0) >= URLS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let second = run(&args, &[]).await;
    assert_eq!(second.code, 0, "{second:#?}");
    second.expect("already cached", URLS);
    second.expect("newly stored", 0);
    assert_eq!(
        hits.load(Ordering::Relaxed),
        URLS,
        "the origin received no new request"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_and_stats_against_a_real_node() {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let origin = mock(move |_req| {
        h.fetch_add(1, Ordering::Relaxed);
        async move { respond(200, &[("cache-control", "max-age=3600")], "x") }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\nmemory = \"64MiB\"\ndisk = \"256MiB\"\n\
         [admin]\ntoken = \"e2e-token\"\n\
         [[site]]\nname = \"default\"\norigins = [\"{}\"]\n",
        dir.path().display().to_string(),
        origin.url()
    );
    let node = outpost::Node::start(outpost::config::Config::from_toml(&cfg).unwrap())
        .await
        .unwrap();
    let admin = format!("http://{}", node.admin_addr());
    let url = "http://cdn.example/a";
    let purge = [
        "purge", "--admin", &admin, "--url", url, "--tag", "t1", "--json",
    ];
    let out = run(&purge, &[("OUTPOST_ADMIN_TOKEN", "e2e-token")]).await;
    assert_eq!(out.code, 0, "{out:#?}");
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(j["purged"]["urls"], 1, "{j}");
    assert_eq!(j["purged"]["tags"], 1, "{j}");
    let out = run(&purge, &[("OUTPOST_ADMIN_TOKEN", "wrong")]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("401"), "{out:#?}");

    let out = run(&["stats", "--admin", &admin], &[]).await;
    assert_eq!(out.code, 0, "{out:#?}");
    for k in [
        "entries:",
        "memory:",
        "disk:",
        "hit ratio:",
        "origin requests:",
        "uptime:",
    ] {
        assert!(out.stdout.contains(k), "{k} in {out:#?}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_lists_drains_and_enables_through_a_real_node() {
    let a = mock(|_| async { respond(200, &[("cache-control", "no-store")], "a") }).await;
    let b = mock(|_| async { respond(200, &[("cache-control", "no-store")], "b") }).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\nmemory = \"64MiB\"\ndisk = \"256MiB\"\n\
         [log]\naccess_log = false\n[admin]\ntoken = \"tok-123\"\n\
         [[site]]\nname = \"www\"\norigins = [\"{}\", \"{}\"]\n",
        dir.path().display().to_string(),
        a.url(),
        b.url()
    );
    let node = outpost::Node::start(outpost::config::Config::from_toml(&cfg).unwrap())
        .await
        .unwrap();
    let admin = format!("http://{}", node.admin_addr());
    let list = run(&["origins", "--admin", &admin], &[]).await;
    assert_eq!(list.code, 0, "{list:#?}");
    assert!(list.stdout.starts_with("SITE"), "{list:#?}");
    assert_eq!(list.stdout.matches(" up ").count(), 2, "{list:#?}");

    // Draining needs the token.
    let denied = run(
        &["origins", "--admin", &admin, "drain", "www", &a.url()],
        &[],
    )
    .await;
    assert_eq!(denied.code, 1, "{denied:#?}");
    let drained = run(
        &["origins", "--admin", &admin, "drain", "www", &a.url()],
        &[("OUTPOST_ADMIN_TOKEN", "tok-123")],
    )
    .await;
    assert_eq!(drained.code, 0, "{drained:#?}");
    assert!(drained.stdout.contains("disabled"), "{drained:#?}");
    let json = run(&["origins", "--admin", &admin, "--json"], &[]).await;
    let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    let states: Vec<&str> = v["origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, ["disabled", "up"]);
    let unknown = run(
        &[
            "origins",
            "--admin",
            &admin,
            "enable",
            "www",
            "http://10.9.9.9:1",
        ],
        &[("OUTPOST_ADMIN_TOKEN", "tok-123")],
    )
    .await;
    assert_eq!(unknown.code, 1, "{unknown:#?}");
    assert!(unknown.stderr.contains("has no origin"), "{unknown:#?}");
    let enabled = run(
        &["origins", "--admin", &admin, "enable", "www", &a.url()],
        &[("OUTPOST_ADMIN_TOKEN", "tok-123")],
    )
    .await;
    assert_eq!(enabled.code, 0, "{enabled:#?}");
    assert!(enabled.stdout.contains(" up "), "{enabled:#?}");
    node.shutdown().await;
}

#[tokio::test]
async fn reload_prints_what_a_node_did() {
    let origin = mock(|_req| async { respond(200, &[], "x") }).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outpost.toml");
    let cfg = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\nmemory = \"64MiB\"\ndisk = \"256MiB\"\n\
         [admin]\ntoken = \"e2e-token\"\n\
         [[site]]\nname = \"default\"\norigins = [\"{}\"]\n",
        dir.path().join("cache").display().to_string(),
        origin.url()
    );
    std::fs::write(&path, &cfg).unwrap();
    let node =
        outpost::Node::start(outpost::config::Config::load(&path, &Default::default()).unwrap())
            .await
            .unwrap();
    let admin = format!("http://{}", node.admin_addr());
    let token = [("OUTPOST_ADMIN_TOKEN", "e2e-token")];
    let out = run(&["reload", "--admin", &admin], &token).await;
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "reloaded: sites default\n", "{out:#?}");
    // A bad file: nothing changes, every error listed, exit 1.
    std::fs::write(
        &path,
        cfg.replace("origins = [", "origins = [\"ftp://x\", "),
    )
    .unwrap();
    let out = run(&["reload", "--admin", &admin], &token).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.starts_with("not reloaded"), "{out:#?}");
    assert!(out.stdout.contains("site[0].origins[0]"), "{out:#?}");
    // No token: refused.
    let out = run(
        &["reload", "--admin", &admin],
        &[("OUTPOST_ADMIN_TOKEN", "wrong")],
    )
    .await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(node.shutdown().await);
}

//! Tests that run the real `outpost` binary as a child process: bounded
//! memory while streaming 200 MiB both ways, SIGTERM draining an in-flight
//! response, and the command line (`check`, `serve` without an origin,
//! `--version`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http::Request;
use http_body_util::BodyExt;

const BIG: u64 = 200 << 20;
/// The node may hold this much above its idle footprint while streaming:
/// far below the 200 MiB that buffering a body would take.
const MEMORY_BOUND: u64 = 48 << 20;

#[tokio::test]
async fn streams_200_mib_down_and_up_in_bounded_memory() {
    let origin = TestOrigin::start(|req: Request<hyper::body::Incoming>| async move {
        if req.method() == http::Method::PUT {
            let (n, h) = hash_body(req.into_body()).await.unwrap();
            resp(200, format!("{n} {h}"))
        } else {
            let mut r = http::Response::new(generated_body(BIG, 64 << 10));
            r.headers_mut()
                .insert("content-length", BIG.to_string().parse().unwrap());
            r
        }
    })
    .await;
    let node = NodeProcess::start(&origin.url(), "");
    let url = format!("http://{}/big", node.proxy);
    // Warm up the node's allocator and connection pool, then take the baseline.
    let (st, _, _) = get(&format!("http://{}/healthz", node.admin)).await;
    assert_eq!(st, 200);
    let baseline = node.peak_rss();

    let r = client()
        .request(Request::get(&url).body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (n, h) = hash_body(r.into_body()).await.unwrap();
    assert_eq!(n, BIG);
    let (en, eh) = hash_body(generated_body(BIG, 64 << 10)).await.unwrap();
    assert_eq!((n, h), (en, eh.clone()), "downloaded body differs");
    let after_down = node.peak_rss();

    let req = Request::put(&url)
        .header("content-length", BIG.to_string())
        .body(generated_body(BIG, 64 << 10))
        .unwrap();
    let r = client().request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        text,
        Bytes::from(format!("{BIG} {eh}")),
        "uploaded body differs"
    );
    let after_up = node.peak_rss();
    eprintln!(
        "node peak RSS: baseline {} MiB, after download {} MiB, after upload {} MiB",
        baseline >> 20,
        after_down >> 20,
        after_up >> 20
    );
    assert!(
        after_up < baseline + MEMORY_BOUND,
        "node memory grew by {} MiB while streaming",
        (after_up - baseline) >> 20
    );
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_response_and_exits_zero() {
    let origin = TestOrigin::start(|_req| async {
        let s = futures_util::stream::iter(0..8).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(format!("{i}"))))
        });
        http::Response::new(http_body_util::StreamBody::new(s).boxed_unsync())
    })
    .await;
    let mut node = NodeProcess::start(&origin.url(), "[server]\ndrain_timeout = \"10s\"\n");
    let url = format!("http://{}/slow", node.proxy);
    let inflight = tokio::spawn(async move {
        let r = client()
            .request(Request::get(url).body(full(Bytes::new())).unwrap())
            .await
            .unwrap();
        r.into_body().collect().await.map(|c| c.to_bytes())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.terminate();
    let body = inflight
        .await
        .unwrap()
        .expect("in-flight response completes");
    assert_eq!(body, Bytes::from_static(b"01234567"));
    let status = tokio::task::spawn_blocking(move || {
        let s = node.child.wait().unwrap();
        (s, node)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(0));
}

#[test]
fn check_reports_every_error_and_exits_1() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/invalid/many-errors.toml"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["check", "--config", file])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listen.admin",
        "timeouts.idle_body",
        "log.format",
        "site[1].origins[0]",
        "site[0].colour",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    let ok = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/outpost.example.toml"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn serve_without_an_origin_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("XDG_CACHE_HOME", dir.path())
        .env_remove("OUTPOST_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--origin"), "{err}");
    let v = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("outpost 0."));
}

#[tokio::test]
async fn sigusr1_reopens_the_access_log_after_it_was_moved_away() {
    let o = TestOrigin::start(|_| async { resp_with(200, &[("cache-control", "no-store")], "ok") })
        .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\nmemory = \"64MiB\"\ndisk = \"256MiB\"\n\
         [log]\naccess_log = {:?}\naccess_log_format = \"json\"\n\
         [[site]]\nname = \"default\"\norigins = [\"{}\"]\n",
        dir.path().join("cache").display().to_string(),
        log.display().to_string(),
        o.url()
    );
    let node = NodeProcess::start_text(&text, dir);
    let wait_for = |path: std::path::PathBuf, needle: &'static str| async move {
        for _ in 0..50 {
            if std::fs::read_to_string(&path).is_ok_and(|t| t.contains(needle)) {
                return std::fs::read_to_string(&path).unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{needle} never reached {}", path.display());
    };
    assert_eq!(get(&format!("http://{}/before", node.proxy)).await.0, 200);
    let text = wait_for(log.clone(), "/before").await;
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["path"], "/before");
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    // logrotate: the file is moved away, then the node is told.
    let moved = log.with_extension("log.1");
    std::fs::rename(&log, &moved).unwrap();
    node.signal("USR1");
    let mut reopened = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if log.exists() {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "no new file after SIGUSR1");
    assert_eq!(get(&format!("http://{}/after", node.proxy)).await.0, 200);
    let text = wait_for(log.clone(), "/after").await;
    assert!(!text.contains("/before"), "{text}");
    assert!(!std::fs::read_to_string(&moved).unwrap().contains("/after"));
    node.terminate();
}

#[tokio::test]
async fn an_inherited_limit_of_1024_open_files_is_raised_and_3000_clients_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The test itself holds 3,000 sockets.
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = lim.maximum.unwrap_or(1 << 20);
    assert!(
        hard >= 8192,
        "the hard open-file limit ({hard}) is too low for this test"
    );
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(hard),
            maximum: lim.maximum,
        },
    )
    .unwrap();
    let o =
        TestOrigin::start(|_| async { resp_with(200, &[("cache-control", "max-age=600")], "ok") })
            .await;
    let dir = tempfile::tempdir().unwrap();
    let text = node_config(&o.url(), &dir.path().join("cache"), "");
    let node = NodeProcess::start_with(&text, dir, Some(1024));
    // 3,000 connections, each completing a request and then held open.
    let mut held = Vec::with_capacity(3000);
    for i in 0..3000 {
        let mut s = tokio::net::TcpStream::connect(node.proxy).await.unwrap();
        s.write_all(b"GET /same HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let mut got = Vec::new();
        while !got.windows(2).any(|w| w == b"ok") {
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("connection {i} got no answer"))
                .unwrap();
            assert!(n > 0, "connection {i} closed");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "connection {i}");
        held.push(s);
    }
    let log = std::fs::read_to_string(node.dir.path().join("outpost.log")).unwrap();
    assert!(log.contains("open file limit raised"), "{log}");
    assert!(log.contains("was=1024"), "{log}");
    drop(held);
    node.terminate();
}

#[tokio::test]
async fn sighup_reloads_the_configuration() {
    let o = TestOrigin::start(|_| async { resp_with(200, &[("cache-control", "no-store")], "ok") })
        .await;
    let dir = tempfile::tempdir().unwrap();
    let text = node_config(&o.url(), &dir.path().join("cache"), "");
    let node = NodeProcess::start_text(&text, dir);
    let url = format!("http://{}/blocked", node.proxy);
    assert_eq!(get(&url).await.0, 200);
    let with_rule = format!(
        "{text}[[site.rules]]\nname = \"blocked\"\npath_prefix = \"/blocked\"\naction = \"deny\"\n"
    );
    std::fs::write(node.dir.path().join("outpost.toml"), with_rule).unwrap();
    node.signal("HUP");
    let mut status = 0;
    for _ in 0..50 {
        status = get(&url).await.0.as_u16();
        if status == 403 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 403, "the rule added by SIGHUP never took effect");
    node.terminate();
}

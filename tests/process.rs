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

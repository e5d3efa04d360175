//! The status page in a real browser: headless Chromium (Debian's
//! `chromium`, installed by `.ci/run`) loads admin `GET /` of a node with
//! traffic; after the page has polled `/status.json` a few times its DOM
//! shows a non-zero request rate and hit ratio and the origin table, and a
//! screenshot is written to the test's temp dir. Chromium is stopped by its
//! PID if it does not finish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

/// Chromium's binary, from `PATH`.
fn chromium() -> std::path::PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("no chromium on PATH: .ci/run installs Debian's `chromium` package");
}

/// Runs headless Chromium on `url` with `args`; its stdout.
async fn browse(url: &str, args: &[String], profile: &std::path::Path) -> String {
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        // The page polls every 2 s: let it run 7 s of its own time.
        "--virtual-time-budget=7000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    match tokio::time::timeout(Duration::from_secs(90), child.wait_with_output()).await {
        Ok(out) => String::from_utf8_lossy(&out.unwrap().stdout).into_owned(),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = std::process::Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
            panic!("chromium did not finish in 90 s");
        }
    }
}

/// The text of the element with `id` in a dumped DOM.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find('<').unwrap();
    &dom[start..end]
}

#[tokio::test]
async fn the_status_page_shows_live_figures_in_a_browser() {
    let o = TestOrigin::start(|_| async {
        resp_with(200, &[("cache-control", "max-age=600")], "x".repeat(2048))
    })
    .await;
    let node = TestNode::start_site(&format!("origins = [\"{}\"]\n", o.url()), "").await;
    // Traffic while the page watches: mostly hits, a few misses.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (url, stop) = (node.url(""), stop.clone());
        tokio::spawn(async move {
            let c = client();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let path = if i.is_multiple_of(10) {
                    format!("/new/{i}")
                } else {
                    "/hot".into()
                };
                let _ = c
                    .request(
                        http::Request::get(format!("{url}{path}"))
                            .body(full(bytes::Bytes::new()))
                            .unwrap(),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // The node samples its rates every 2 s: two samples with traffic.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let url = format!("http://{}/", node.admin);
    let profile = tempfile::tempdir().unwrap();

    let dom = browse(&url, &["--dump-dom".to_string()], profile.path()).await;
    let rps: f64 = text_of(&dom, "rps").parse().unwrap();
    assert!(rps > 0.0, "request rate {rps}");
    let ratio = text_of(&dom, "hit-ratio");
    let ratio: f64 = ratio.trim_end_matches(" %").parse().unwrap_or(0.0);
    assert!(ratio > 0.0, "hit ratio {ratio}");
    assert!(dom.contains(&o.url()), "origin table: {dom}");
    assert!(dom.contains("state-up"), "origin state: {dom}");
    assert!(text_of(&dom, "error").is_empty(), "{dom}");

    let shot = node.dir.path().join("status.png");
    browse(
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".to_string(),
            "--hide-scrollbars".to_string(),
        ],
        profile.path(),
    )
    .await;
    let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "screenshot of {len} bytes");
    if let Some(out) = std::env::var_os("OUTPOST_STATUS_SCREENSHOT") {
        std::fs::copy(&shot, out).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
}

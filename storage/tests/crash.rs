//! Crash safety: a child process writing a stream of objects is SIGKILLed; after reopening,
//! every object that reads back is complete and correct, no key rolls back to an older version,
//! and every object committed before the last reported commit is present.
//!
//! `harness = false`: this binary re-executes itself with `OUTPOST_STORAGE_CRASH_CHILD=<dir>`
//! to become the child writer, which prints `committed <key> <version>` after each `finish()`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use outpost_storage::{MIB, Store, StoreConfig};

const CHILD_ENV: &str = "OUTPOST_STORAGE_CRASH_CHILD";
const KEYS: u64 = 24;

fn config(dir: &Path) -> StoreConfig {
    small_config(dir, 4 * MIB, 256 * MIB)
}

/// Version `v` of key `k`: its length and body seed follow from (k, v).
fn version_len(k: u64, v: u64) -> usize {
    ((k * 7919 + v * 104_729) % 700_000) as usize
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let t = Instant::now();
    parent();
    println!(
        "test crash::sigkill_mid_stream_then_reopen ... ok ({:?})",
        t.elapsed()
    );
}

fn child(dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(config(dir)).await.unwrap();
        let start: u64 = std::env::var("START").unwrap().parse().unwrap();
        for v in start.. {
            let k = v % KEYS;
            let len = version_len(k, v);
            let data = body(&format!("{k}/{v}"), len);
            let mut w = store.begin_write(
                key(&format!("key{k}")),
                Bytes::from(format!("{k} {v} {len}")),
            );
            for piece in data.chunks(40_000) {
                w.write(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            w.finish().await.unwrap();
            println!("committed {k} {v}");
        }
    });
}

fn parent() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // key -> last version reported committed
    let mut reported: HashMap<u64, u64> = HashMap::new();
    let mut next = 0u64;
    for cycle in 0..3 {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, tmp.path())
            .env("START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Keep the pipe open until the kill, or the child dies of EPIPE instead of SIGKILL.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let want = 60 + cycle * 17;
        let mut seen = 0;
        let mut last = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            let mut it = line.split_whitespace().skip(1);
            let (k, v): (u64, u64) = (
                it.next().unwrap().parse().unwrap(),
                it.next().unwrap().parse().unwrap(),
            );
            reported.insert(k, v);
            last = Some(v);
            seen += 1;
            if seen == want {
                break;
            }
        }
        // Kill in the middle of the next write (it writes continuously).
        std::thread::sleep(Duration::from_millis(3 + 5 * cycle));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        drop(lines);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the child was killed mid-stream, not exited"
        );
        let last = last.expect("child committed something");
        next = last + 1000; // versions of the next cycle never collide with in-flight ones
        verify(tmp.path(), &reported, last);
    }
}

fn verify(dir: &Path, reported: &HashMap<u64, u64>, last: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(config(dir)).await.unwrap();
        let mut present = 0;
        for k in 0..KEYS {
            let got = try_get(&store, &key(&format!("key{k}"))).await;
            let got = got.unwrap_or_else(|kind| panic!("key{k}: read failed after crash: {kind}"));
            match (got, reported.get(&k)) {
                (Some((meta, data)), rep) => {
                    present += 1;
                    let meta = String::from_utf8(meta.to_vec()).unwrap();
                    let f: Vec<u64> = meta.split(' ').map(|x| x.parse().unwrap()).collect();
                    let (mk, mv, mlen) = (f[0], f[1], f[2] as usize);
                    assert_eq!(mk, k);
                    assert_eq!(mlen, version_len(k, mv));
                    assert_eq!(
                        data,
                        &body(&format!("{k}/{mv}"), mlen)[..],
                        "key{k} v{mv} body"
                    );
                    if let Some(&rv) = rep {
                        assert!(mv >= rv, "key{k} rolled back from v{rv} to v{mv}");
                    }
                }
                (None, Some(&rv)) => {
                    // Only the very last reported commit may not have reached the disk.
                    assert_eq!(
                        rv, last,
                        "key{k} v{rv} was committed before v{last} but is gone"
                    );
                }
                (None, None) => {}
            }
        }
        assert!(present >= reported.len() - 1);
        assert_eq!(store.stats().corrupt_reads, 0);
        store.close().await.unwrap();
    });
}

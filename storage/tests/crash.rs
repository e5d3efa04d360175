//! Crash safety: a child process writing a stream of objects is SIGKILLed; after reopening,
//! every object that reads back is complete and correct, and no key is older than its last
//! commit that the store guarantees durable.
//!
//! That guarantee (`durable_commit`): a commit whose body has chunks first waits until
//! everything enqueued before it is written to the files, so every commit before the last
//! such one survives a SIGKILL. The commits after it may not (their heads can still be in
//! foyer's queue): such a key then reads as an earlier version or not at all. The test
//! used to allow only the very last commit to be lost, which held only while the child's
//! flusher kept up; on a loaded machine two commits were lost and it failed.
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

/// Whether the write of version `v` of key `k` emits chunks (its body is at least one of
/// the config's chunks), so that its `finish()` flushes every earlier commit. Strictly
/// larger, to stay on the safe side of the boundary.
fn flushes_before_commit(k: u64, v: u64) -> bool {
    version_len(k, v) > config(Path::new(".")).chunk_size
}

fn parent() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // key -> the oldest version it may read as after a crash (durable by the guarantee, or
    // seen on disk after the previous crash).
    let mut floor: HashMap<u64, u64> = HashMap::new();
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
        // This cycle's reported commits, in order.
        let mut reported: Vec<(u64, u64)> = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let mut it = line.split_whitespace().skip(1);
            let (k, v): (u64, u64) = (
                it.next().unwrap().parse().unwrap(),
                it.next().unwrap().parse().unwrap(),
            );
            reported.push((k, v));
            if reported.len() == want as usize {
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
        let (_, last) = *reported.last().expect("child committed something");
        next = last + 1000; // versions of the next cycle never collide with in-flight ones
        // Durable: every commit before the last one that flushed.
        let flushed_at = reported
            .iter()
            .rposition(|&(k, v)| flushes_before_commit(k, v))
            .expect("some commit had chunks");
        assert!(
            flushed_at >= reported.len() / 2,
            "most commits are durable by the guarantee"
        );
        for &(k, v) in &reported[..flushed_at] {
            floor.insert(k, v);
        }
        floor = verify(tmp.path(), &floor);
    }
}

/// Checks every key against its floor; returns the versions found (the next floors).
fn verify(dir: &Path, floor: &HashMap<u64, u64>) -> HashMap<u64, u64> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(config(dir)).await.unwrap();
        let mut found = HashMap::new();
        for k in 0..KEYS {
            let got = try_get(&store, &key(&format!("key{k}"))).await;
            let got = got.unwrap_or_else(|kind| panic!("key{k}: read failed after crash: {kind}"));
            match (got, floor.get(&k)) {
                (Some((meta, data)), fl) => {
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
                    if let Some(&fv) = fl {
                        assert!(mv >= fv, "key{k} rolled back from durable v{fv} to v{mv}");
                    }
                    found.insert(k, mv);
                }
                (None, Some(&fv)) => panic!("key{k}: durable v{fv} is gone"),
                (None, None) => {}
            }
        }
        assert_eq!(store.stats().corrupt_reads, 0);
        store.close().await.unwrap();
        found
    })
}

//! The store runtime's threads (its workers and the blocking pool that runs foyer's disk
//! reads and writes) are `SCHED_BATCH`, so a read handed over does not preempt the worker.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use outpost_storage::{MIB, Store};

/// (thread id, scheduling policy) of every thread of this process named `name`.
fn policies(name: &str) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // proc_pid_stat(5): fields after the `(comm)` start at field 3; `policy` is field 41.
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let policy = rest
            .split_whitespace()
            .nth(41 - 3)
            .unwrap()
            .parse()
            .unwrap();
        let tid = path.file_name().unwrap().to_string_lossy().into_owned();
        out.push((tid, policy));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_threads_that_read_the_disk_tier_are_sched_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config(tmp.path(), MEM, 64 * MIB);
    let data = body("sched", 300 * 1024);
    {
        let store = Store::open(cfg.clone()).await.unwrap();
        put(&store, key("a"), "m", &data, 64 * 1024).await;
        store.close().await.unwrap();
    }
    // Reopened: the memory tier is empty, so the body comes from the disk tier through the
    // store runtime's blocking pool.
    let store = Store::open(cfg).await.unwrap();
    let (_, got) = get(&store, &key("a")).await.unwrap();
    assert_eq!(got, data);
    assert!(store.stats().disk_hits > 0, "{:?}", store.stats());

    let threads = policies("outpost-storage");
    assert!(!threads.is_empty(), "no storage threads found");
    const SCHED_BATCH: i32 = 3;
    for (tid, policy) in &threads {
        assert_eq!(*policy, SCHED_BATCH, "thread {tid} of {threads:?}");
    }
    store.close().await.unwrap();
}

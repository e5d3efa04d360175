//! Handing the directory over to another store (a binary upgrade): readers in the middle of a
//! large body read on, byte for byte, after the old store closed and a new one opened the
//! directory and wrote over it; the new store serves what the old one stored; a reader that
//! did not read again before the deadline is cut off, not served wrong bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use outpost_storage::{ErrorKind, MIB, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_mid_body_reads_on_after_the_hand_over() {
    let tmp = tempfile::tempdir().unwrap();
    // Memory smaller than the object: most chunks come from the disk tier.
    let cfg = small_config(tmp.path(), 4 * MIB, 128 * MIB);
    let old = Store::open(cfg.clone()).await.unwrap();
    let big = body("big", 12 * MIB as usize + 5);
    put(&old, key("big"), "m", &big, 256 * 1024).await;
    put(&old, key("small"), "s", &body("small", 1000), 1000).await;
    // Push the big object's chunks out of memory.
    for i in 0..12 {
        let k = format!("filler{i}");
        put(&old, key(&k), "f", &body(&k, MIB as usize), MIB as usize).await;
    }

    let hit = old.lookup(&key("big")).await.unwrap().expect("stored");
    let mut reader = hit.reader(0);
    let mut got = Vec::new();
    got.extend_from_slice(&reader.next_chunk().await.unwrap().unwrap());

    let handing = old.clone();
    let hand_over =
        tokio::spawn(async move { handing.hand_over(Duration::from_secs(5)).await.unwrap() });
    while !old.handing_over() {
        tokio::task::yield_now().await;
    }
    // The reader pins its remaining chunks at its next read.
    got.extend_from_slice(&reader.next_chunk().await.unwrap().unwrap());
    let report = hand_over.await.unwrap();
    assert_eq!((report.pinned, report.left), (1, 0), "{report:?}");
    assert!(old.handing_over());
    assert_eq!(
        old.lookup(&key("small")).await.unwrap_err().kind(),
        ErrorKind::Closed,
        "no new lookups in the old store"
    );

    // The next process opens the directory and writes enough to reclaim old segments.
    let new = Store::open(cfg).await.unwrap();
    let (_, small) = get(&new, &key("small"))
        .await
        .expect("kept for the new store");
    assert_eq!(small, &body("small", 1000)[..]);
    let segments = |dir: &std::path::Path| -> Vec<std::ffi::OsString> {
        let mut v: Vec<_> = std::fs::read_dir(dir.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = segments(tmp.path());
    for i in 0..200 {
        let k = format!("new{i}");
        put(&new, key(&k), "n", &body(&k, MIB as usize), MIB as usize).await;
    }
    let after = segments(tmp.path());
    assert!(
        before.iter().all(|s| !after.contains(s)),
        "the new store reclaimed every old segment: {before:?} {after:?}"
    );
    while let Some(piece) = reader.next_chunk().await.unwrap() {
        got.extend_from_slice(&piece);
    }
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the pinned reader read the object's own bytes");
    new.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stalls_past_the_deadline_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = mib_config(tmp.path(), 8 * MIB, 256 * MIB);
    let old = Store::open(cfg.clone()).await.unwrap();
    let data: Bytes = body("obj", 4 * MIB as usize);
    put(&old, key("obj"), "m", &data, MIB as usize).await;
    let hit = old.lookup(&key("obj")).await.unwrap().unwrap();
    let mut stalled = hit.reader(0);
    let finished = hit.reader(0);
    let mut done = hit.reader(0);
    while done.next_chunk().await.unwrap().is_some() {}
    drop(finished);

    let report = old.hand_over(Duration::from_millis(50)).await.unwrap();
    assert_eq!((report.pinned, report.left), (0, 1), "{report:?}");
    let e = stalled.next_chunk().await.map(|p| p.map(|b| b.len()));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Closed);
    // Nothing was dropped: the object is whole for the next store.
    let new = Store::open(cfg).await.unwrap();
    let (_, got) = get(&new, &key("obj")).await.expect("still stored");
    assert!(got == data);
    new.close().await.unwrap();
}

//! Large objects: 300 MiB round trip through the disk tier, ranged read from its middle, and
//! survival across a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::*;
use outpost_storage::{MIB, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_300_mib_and_read_from_the_middle() {
    let tmp = tempfile::tempdir().unwrap();
    let len = 300 * MIB as usize;
    // Memory far smaller than the object: most chunks must come back from disk.
    // The chunks go to the blob log (75 % of the disk: sixteen 64 MiB segments).
    let mut cfg = mib_config(tmp.path(), 32 * MIB, 1400 * MIB);
    cfg.max_object_size = 400 * MIB;
    let data = body("three hundred", len);
    let want = blake3::hash(&data);
    let t = Instant::now();
    {
        let store = Store::open(cfg.clone()).await.unwrap();
        // 64 KiB pieces, like an origin response body.
        put(&store, key("big"), "m", &data, 64 * 1024).await;
        let write = t.elapsed();
        let hit = store.lookup(&key("big")).await.unwrap().unwrap();
        assert_eq!(hit.body_len(), len as u64);
        assert_eq!(hit.body_checksum(), want.as_bytes());
        let mut r = hit.reader(0);
        let mut h = blake3::Hasher::new();
        while let Some(p) = r.next_chunk().await.unwrap() {
            h.update(&p);
        }
        assert_eq!(h.finalize(), want);
        let s = store.stats();
        assert!(s.disk_hits > 200, "most chunks from disk: {s:?}");
        assert!(s.blob_segments >= 5, "{s:?}");
        assert!(
            s.blob_resident_reads + s.blob_cold_reads > 200,
            "chunks read from the blob log: {s:?}"
        );
        assert_eq!(s.writes_dropped, 0);
        eprintln!("300 MiB: write {write:?}, write+read {:?}", t.elapsed());
        store.close().await.unwrap();
    }
    let store = Store::open(cfg).await.unwrap();
    let hit = store.lookup(&key("big")).await.unwrap().unwrap();
    // From the middle: offset 150 MiB + 12345, first piece ends at the chunk boundary.
    let off = 150 * MIB + 12_345;
    let before = store.stats();
    let mut r = hit.reader(off);
    let first = r.next_chunk().await.unwrap().unwrap();
    assert_eq!(first.len() as u64, MIB - 12_345);
    let after = store.stats();
    assert_eq!(
        (after.memory_hits + after.memory_misses) - (before.memory_hits + before.memory_misses),
        1,
        "exactly one chunk fetched for the first piece"
    );
    let mut h = blake3::Hasher::new();
    h.update(&first);
    while let Some(p) = r.next_chunk().await.unwrap() {
        h.update(&p);
    }
    assert_eq!(h.finalize(), blake3::hash(&data[off as usize..]));
    assert_eq!(store.stats().corrupt_reads, 0);
    store.close().await.unwrap();
    eprintln!("total {:?}", t.elapsed());
}

//! Restart behaviour: close and reopen brings back exactly what was committed; removals,
//! replacements and aborted writes do not come back; a randomized reopen loop against a model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use outpost_storage::{MIB, Store};
use rand::{Rng, SeedableRng, rngs::StdRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_reopen_brings_everything_back_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = mib_config(tmp.path(), 8 * MIB, 256 * MIB);
    let sizes = [
        0usize,
        1,
        4096,
        MIB as usize - 1,
        MIB as usize,
        MIB as usize + 1,
        3 * MIB as usize + 7,
    ];
    {
        let store = Store::open(cfg.clone()).await.unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            put(
                &store,
                key(&format!("k{i}")),
                &format!("m{i}"),
                &body(&format!("b{i}"), len),
                100_000,
            )
            .await;
        }
        store.close().await.unwrap();
    }
    let store = Store::open(cfg).await.unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        let (meta, got) = get(&store, &key(&format!("k{i}")))
            .await
            .expect("back after reopen");
        assert_eq!(meta, format!("m{i}").as_bytes());
        assert_eq!(got, &body(&format!("b{i}"), len)[..]);
    }
    let s = store.stats();
    assert!(s.disk_hits > 0, "read from the disk tier: {s:?}");
    assert_eq!(s.corrupt_reads, 0);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_replaced_and_aborted_stay_gone_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config(tmp.path(), 4 * MIB, 64 * MIB);
    {
        let store = Store::open(cfg.clone()).await.unwrap();
        put(&store, key("removed"), "m", &body("r", 200_000), 50_000).await;
        put(
            &store,
            key("replaced"),
            "old",
            &body("old", 300_000),
            50_000,
        )
        .await;
        put(
            &store,
            key("updated"),
            "old-meta",
            &body("u", 70_000),
            50_000,
        )
        .await;
        put(&store, key("kept"), "m", &body("k", 1000), 50_000).await;
        // Let the first versions reach the disk before they are superseded.
        store.close().await.unwrap();
    }
    {
        let store = Store::open(cfg.clone()).await.unwrap();
        store.remove(&key("removed"));
        put(&store, key("replaced"), "new", &body("new", 10_000), 50_000).await;
        assert!(
            store
                .update_meta(&key("updated"), Bytes::from_static(b"new-meta"))
                .await
                .unwrap()
        );
        let mut w = store.begin_write(key("aborted"), Bytes::from_static(b"m"));
        w.write(body("ab", 500_000)).await.unwrap();
        drop(w);
        let mut w = store.begin_write(key("kept"), Bytes::from_static(b"aborted-replacement"));
        w.write(body("ab2", 5000)).await.unwrap();
        drop(w);
        store.close().await.unwrap();
    }
    for round in 0..2 {
        let store = Store::open(cfg.clone()).await.unwrap();
        assert!(
            store.lookup(&key("removed")).await.unwrap().is_none(),
            "round {round}"
        );
        let (meta, got) = get(&store, &key("replaced")).await.unwrap();
        assert_eq!(meta, &b"new"[..]);
        assert_eq!(got, &body("new", 10_000)[..]);
        let (meta, got) = get(&store, &key("updated")).await.unwrap();
        assert_eq!(meta, &b"new-meta"[..]);
        assert_eq!(got, &body("u", 70_000)[..]);
        assert!(store.lookup(&key("aborted")).await.unwrap().is_none());
        let (meta, got) = get(&store, &key("kept")).await.unwrap();
        assert_eq!(meta, &b"m"[..]);
        assert_eq!(got, &body("k", 1000)[..]);
        assert_eq!(store.stats().corrupt_reads, 0);
        store.close().await.unwrap();
    }
}

/// Random writes, replacements, metadata updates, removals and aborted writes over a small key
/// space, with a reopen after every round, compared with a model after each reopen. The disk is
/// far larger than everything written, so eviction cannot cause a mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_loop_matches_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    // Memory smaller than the data so that reads after reopen also hit the disk tier.
    let cfg = small_config(tmp.path(), 2 * MIB, 128 * MIB);
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    // key index -> (meta, body seed, len)
    let mut model: HashMap<u32, (String, String, usize)> = HashMap::new();
    let keys = 40u32;
    let mut ops = 0u32;
    let mut written = 0usize;
    for round in 0..8 {
        let store = Store::open(cfg.clone()).await.unwrap();
        // Compare everything first: nothing lost, nothing phantom.
        for k in 0..keys {
            let got = get(&store, &key(&format!("key{k}"))).await;
            match (model.get(&k), got) {
                (None, None) => {}
                (Some((meta, seed, len)), Some((m, b))) => {
                    assert_eq!(m, meta.as_bytes(), "round {round} key {k}: meta");
                    assert_eq!(b, &body(seed, *len)[..], "round {round} key {k}: body");
                }
                (want, got) => panic!(
                    "round {round} key {k}: model {:?} store {:?}",
                    want.map(|w| &w.0),
                    got.map(|g| g.0)
                ),
            }
        }
        assert_eq!(store.stats().corrupt_reads, 0);
        for _ in 0..30 {
            ops += 1;
            let k = rng.random_range(0..keys);
            let name = format!("key{k}");
            match rng.random_range(0..10) {
                0..=4 => {
                    let len = match rng.random_range(0..4) {
                        0 => rng.random_range(0..100),
                        1 => rng.random_range(0..70_000),
                        _ => rng.random_range(0..400_000),
                    };
                    written += len;
                    let seed = format!("op{ops}");
                    let meta = format!("meta{ops}");
                    put(
                        &store,
                        key(&name),
                        &meta,
                        &body(&seed, len),
                        rng.random_range(1..100_000),
                    )
                    .await;
                    model.insert(k, (meta, seed, len));
                }
                5 | 6 => {
                    store.remove(&key(&name));
                    model.remove(&k);
                }
                7 => {
                    let meta = format!("meta{ops}");
                    let updated = store
                        .update_meta(&key(&name), Bytes::from(meta.clone()))
                        .await
                        .unwrap();
                    assert_eq!(updated, model.contains_key(&k));
                    if let Some(entry) = model.get_mut(&k) {
                        entry.0 = meta;
                    }
                }
                _ => {
                    let mut w = store.begin_write(key(&name), Bytes::from_static(b"aborted"));
                    w.write(body("abort", rng.random_range(0..200_000)))
                        .await
                        .unwrap();
                    drop(w);
                }
            }
        }
        store.close().await.unwrap();
    }
    assert!(
        written < 64 * MIB as usize,
        "the model assumes nothing is evicted"
    );
}

/// The first piece of the body under `k`, as served.
async fn first_piece(store: &Store, k: &outpost_storage::Key) -> Bytes {
    let hit = store.lookup(k).await.unwrap().unwrap();
    hit.reader(0).next_chunk().await.unwrap().unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_read_from_disk_move_to_the_zero_copy_arena_once_hot() {
    use outpost_storage::arena::locate;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = mib_config(tmp.path(), 8 * MIB, 256 * MIB);
    // Inline (100 KiB, in the head) and chunked (1 MiB chunks + a tail).
    let objects = [
        ("inline", 100 * 1024usize),
        ("chunked", 2 * MIB as usize + 5),
    ];
    {
        let store = Store::open(cfg.clone()).await.unwrap();
        for (name, len) in objects {
            put(&store, key(name), "m", &body(name, len), 100_000).await;
            // Written values go straight to the arena.
            assert!(locate(&first_piece(&store, &key(name)).await).is_some());
        }
        store.close().await.unwrap();
    }
    let store = Store::open(cfg).await.unwrap();
    for (name, len) in objects {
        let want = body(name, len);
        // Read back from disk: on the heap; first memory hit: still on the heap; second
        // memory hit: moved, and the same bytes.
        for pass in 0..3 {
            let piece = first_piece(&store, &key(name)).await;
            assert_eq!(&piece[..], &want[..piece.len()], "{name} pass {pass}");
            assert_eq!(locate(&piece).is_some(), pass == 2, "{name} pass {pass}");
        }
        // Stays there, and the whole body still reads back intact.
        assert!(locate(&first_piece(&store, &key(name)).await).is_some());
        let (meta, got) = get(&store, &key(name)).await.unwrap();
        assert_eq!(meta, &b"m"[..]);
        assert_eq!(got, &want[..]);
    }
    assert_eq!(store.stats().corrupt_reads, 0);
    store.close().await.unwrap();
}

/// Bodies in the blob log whose pages are not in the page cache are read with `pread` on the
/// store's threads (a cold read), checked, and come back byte-identical.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_values_not_in_the_page_cache_are_read_cold_and_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config(tmp.path(), 4 * MIB, 64 * MIB);
    let sizes = [40_000usize, 100_000, 700_000];
    {
        let store = Store::open(cfg.clone()).await.unwrap();
        for (i, len) in sizes.iter().enumerate() {
            let name = format!("cold{i}");
            put(&store, key(&name), "m", &body(&name, *len), 50_000).await;
        }
        store.close().await.unwrap();
    }
    // Drop the segment files' pages from the page cache (they are clean: written and synced).
    for f in std::fs::read_dir(tmp.path().join("blobs")).unwrap() {
        let f = std::fs::File::open(f.unwrap().path()).unwrap();
        f.sync_all().unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }
    let store = Store::open(cfg).await.unwrap();
    for (i, len) in sizes.iter().enumerate() {
        let name = format!("cold{i}");
        let (_, got) = get(&store, &key(&name)).await.expect("still cached");
        assert!(got == body(&name, *len)[..], "{name} differs");
    }
    let s = store.stats();
    // The first read is cold; the kernel's readahead for it brings the next values in too.
    // (On tmpfs the pages are the file: they cannot be dropped, and every read is resident.)
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    // `f_type`'s integer type differs between targets.
    #[allow(clippy::unnecessary_cast)]
    let on_tmpfs = rustix::fs::statfs(tmp.path()).map(|f| f.f_type as i64 == TMPFS_MAGIC);
    if on_tmpfs.unwrap_or(false) {
        eprintln!("temp dir on tmpfs: the cold path is not exercised here");
    } else {
        assert!(s.blob_cold_reads >= 1, "{s:?}");
    }
    // Every value of 32 KiB or more: the 40 000-byte inline body, 100 000 = 64 KiB + 34 464,
    // 700 000 = 10 × 64 KiB + 44 640.
    assert_eq!(s.blob_cold_reads + s.blob_resident_reads, 14, "{s:?}");
    assert_eq!(s.corrupt_reads, 0, "{s:?}");
    store.close().await.unwrap();
}

//! Round trips at the boundary sizes, ranged reads, metadata updates and size limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use outpost_storage::{ErrorKind, KIB, MIB, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_at_boundary_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(mib_config(tmp.path(), 64 * MIB, 256 * MIB))
        .await
        .unwrap();
    let c = MIB as usize;
    let inline_max = 128 * 1024;
    let sizes = [0, 1, inline_max, inline_max + 1, c - 1, c, c + 1, 10 * c];
    for (i, &len) in sizes.iter().enumerate() {
        let data = body(&format!("rt{i}"), len);
        // Odd piece sizes exercise the re-chunking.
        put(
            &store,
            key(&format!("k{i}")),
            &format!("meta{i}"),
            &data,
            333_333,
        )
        .await;
    }
    for (i, &len) in sizes.iter().enumerate() {
        let (meta, got) = get(&store, &key(&format!("k{i}"))).await.expect("present");
        assert_eq!(meta, format!("meta{i}").as_bytes());
        assert_eq!(got.len(), len);
        assert_eq!(
            blake3::hash(&got),
            blake3::hash(&body(&format!("rt{i}"), len))
        );
        let hit = store.lookup(&key(&format!("k{i}"))).await.unwrap().unwrap();
        // Small bodies live inside the head (no chunk entries).
        let chunks = if len <= inline_max {
            0
        } else {
            (len as u64).div_ceil(MIB)
        };
        assert_eq!(hit.chunk_count(), chunks, "len {len}");
        // And are handed out whole, without a reader.
        match hit.inline_body() {
            Some(b) => {
                assert!(len <= inline_max, "len {len}");
                assert_eq!(b, got, "len {len}");
            }
            None => assert!(len > inline_max, "len {len}"),
        }
    }
    assert!(store.lookup(&key("absent")).await.unwrap().is_none());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_start_at_any_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(tmp.path(), 8 * MIB, 64 * MIB))
        .await
        .unwrap();
    let len = 5 * MIB as usize + 12_345;
    let data = body("offsets", len);
    put(&store, key("o"), "m", &data, 1 << 20).await;
    let hit = store.lookup(&key("o")).await.unwrap().unwrap();
    let chunk = 64 * KIB;
    for off in [
        0,
        1,
        chunk - 1,
        chunk,
        chunk + 1,
        2_500_000,
        len as u64 - 1,
        len as u64,
    ] {
        let mut r = hit.reader(off);
        let mut first = true;
        let mut got = Vec::new();
        while let Some(p) = r.next_chunk().await.unwrap() {
            if first && off % chunk != 0 {
                // The first piece ends at the chunk boundary: nothing before `off` was read.
                assert_eq!(p.len() as u64, (chunk - off % chunk).min(len as u64 - off));
            }
            first = false;
            got.extend_from_slice(&p);
        }
        assert_eq!(&got[..], &data[off as usize..], "offset {off}");
    }
    assert!(
        hit.reader(len as u64 + 100)
            .next_chunk()
            .await
            .unwrap()
            .is_none()
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_chunks_are_shared_and_sendable() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(tmp.path(), 16 * MIB, 64 * MIB))
        .await
        .unwrap();
    let data = body("share", 256 * KIB as usize);
    put(&store, key("s"), "m", &data, data.len()).await;
    let hit = store.lookup(&key("s")).await.unwrap().unwrap();
    let a = hit.reader(0).next_chunk().await.unwrap().unwrap();
    let b = hit.reader(0).next_chunk().await.unwrap().unwrap();
    // Same memory both times (no copy per read).
    assert_eq!(a.as_ptr(), b.as_ptr());
    assert_eq!(&a[..], &data[..a.len()]);
    // A large chunk lives in the zero-copy arena (a file range the node can sendfile), not in
    // the caller's buffer (which it would otherwise pin).
    assert_ne!(a.as_ptr(), data.as_ptr());
    #[cfg(target_os = "linux")]
    assert!(outpost_storage::arena::locate(&a).is_some());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_meta_keeps_the_body() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(tmp.path(), 8 * MIB, 64 * MIB))
        .await
        .unwrap();
    let data = body("um", 300 * KIB as usize);
    put(&store, key("u"), "old", &data, 10_000).await;
    let before = store.lookup(&key("u")).await.unwrap().unwrap();
    assert!(
        store
            .update_meta(&key("u"), Bytes::from_static(b"new"))
            .await
            .unwrap()
    );
    let (meta, got) = get(&store, &key("u")).await.unwrap();
    assert_eq!(meta, &b"new"[..]);
    assert_eq!(got, &data[..]);
    let after = store.lookup(&key("u")).await.unwrap().unwrap();
    assert_eq!(after.object_id(), before.object_id(), "body not rewritten");
    assert!(!store.update_meta(&key("nope"), Bytes::new()).await.unwrap());
    assert_eq!(store.stats().meta_updates, 1);
    // A metadata update meant for a replaced version does not land on the new one.
    put(&store, key("u"), "v2", &data, 10_000).await;
    let stale_id = *before.object_id();
    assert!(
        !store
            .update_meta_of(&key("u"), &stale_id, Bytes::from_static(b"for-v1"))
            .await
            .unwrap()
    );
    let (meta, _) = get(&store, &key("u")).await.unwrap();
    assert_eq!(meta, &b"v2"[..]);
    let current = store.lookup(&key("u")).await.unwrap().unwrap();
    assert!(
        store
            .update_meta_of(&key("u"), current.object_id(), Bytes::from_static(b"v2b"))
            .await
            .unwrap()
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_is_refused_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = small_config(tmp.path(), 8 * MIB, 64 * MIB);
    cfg.max_object_size = 200 * KIB;
    let store = Store::open(cfg).await.unwrap();
    let mut w = store.begin_write(key("big"), Bytes::new());
    w.write(body("a", 150 * KIB as usize)).await.unwrap();
    let err = w.write(body("b", 100 * KIB as usize)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    // Later calls keep failing with the same kind; finish commits nothing.
    assert!(
        w.write(Bytes::from_static(b"x"))
            .await
            .unwrap_err()
            .is_too_large()
    );
    assert!(w.finish().await.unwrap_err().is_too_large());
    assert!(store.lookup(&key("big")).await.unwrap().is_none());
    let s = store.stats();
    assert_eq!(s.writes_too_large, 1);
    assert_eq!(s.writes_committed, 0);
    // Exactly the limit is fine.
    put(
        &store,
        key("edge"),
        "m",
        &body("e", 200 * KIB as usize),
        7000,
    )
    .await;
    assert!(get(&store, &key("edge")).await.is_some());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_write_is_invisible_and_old_version_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(tmp.path(), 8 * MIB, 64 * MIB))
        .await
        .unwrap();
    let old = body("old", 100_000);
    put(&store, key("a"), "v1", &old, 4096).await;
    let mut w = store.begin_write(key("a"), Bytes::from_static(b"v2"));
    w.write(body("new", 500_000)).await.unwrap();
    drop(w);
    let (meta, got) = get(&store, &key("a")).await.unwrap();
    assert_eq!(meta, &b"v1"[..]);
    assert_eq!(got, &old[..]);
    let mut w = store.begin_write(key("fresh"), Bytes::new());
    w.write(body("x", 10)).await.unwrap();
    drop(w);
    assert!(store.lookup(&key("fresh")).await.unwrap().is_none());
    assert_eq!(store.stats().writes_aborted, 2);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_store_refuses_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(tmp.path(), 8 * MIB, 64 * MIB))
        .await
        .unwrap();
    // One store per directory.
    let second = Store::open(small_config(tmp.path(), 8 * MIB, 64 * MIB)).await;
    assert_eq!(second.unwrap_err().kind(), ErrorKind::Locked);
    store.close().await.unwrap();
    store.close().await.unwrap();
    // Closing releases the directory even while the handle is alive.
    let reopened = Store::open(small_config(tmp.path(), 8 * MIB, 64 * MIB))
        .await
        .unwrap();
    reopened.close().await.unwrap();
    assert_eq!(
        store.lookup(&key("k")).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    let mut w = store.begin_write(key("k"), Bytes::new());
    assert_eq!(
        w.write(Bytes::from_static(b"x")).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    store.remove(&key("k"));
}

/// A task streaming memory-tier hits in a tight loop must still let other tasks run (memory
/// hits have no natural await point; the store spends tokio's cooperative budget). Without
/// that, this test hangs: the sleeping main task never gets the single worker back.
#[tokio::test(flavor = "current_thread")]
async fn memory_hits_yield_to_other_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(small_config(tmp.path(), 8 * MIB, 64 * MIB))
        .await
        .unwrap();
    put(&store, key("hot"), "m", &body("hot", 200_000), 200_000).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinner = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let hit = store.lookup(&key("hot")).await.unwrap().unwrap();
                let mut r = hit.reader(0);
                while r.next_chunk().await.unwrap().is_some() {}
                reads += 1;
            }
            reads
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(spinner.await.unwrap() > 0);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_whose_chunks_the_blob_log_reclaimed_are_clean_misses() {
    let tmp = tempfile::tempdir().unwrap();
    // 64 MiB disk: a 48 MiB blob log of 3 MiB segments; 1 MiB objects of 64 KiB chunks.
    let store = Store::open(small_config(tmp.path(), MIB, 64 * MIB))
        .await
        .unwrap();
    let n = 80;
    for i in 0..n {
        let name = format!("o{i}");
        put(
            &store,
            key(&name),
            "m",
            &body(&name, MIB as usize),
            64 * 1024,
        )
        .await;
    }
    let s = store.stats();
    assert!(s.blob_segments > 0 && s.writes_dropped == 0, "{s:?}");
    let (mut hits, mut misses) = (0, 0);
    for i in 0..n {
        let name = format!("o{i}");
        match try_get(&store, &key(&name)).await {
            Ok(Some((_, got))) => {
                assert_eq!(got, &body(&name, MIB as usize)[..], "{name}");
                hits += 1;
            }
            Ok(None) => misses += 1,
            Err(e) => panic!("{name}: {e} (a reclaimed body must be a miss)"),
        }
    }
    let s = store.stats();
    // The log holds about 48 of the 80 objects: the oldest are gone, and they are misses,
    // not corrupt reads that break off mid-body.
    assert!(
        misses >= 20 && hits >= 30,
        "hits {hits} misses {misses} {s:?}"
    );
    assert_eq!(s.corrupt_reads, 0, "{s:?}");
    assert!(s.blob_gone_reads >= misses, "{s:?}");
    store.close().await.unwrap();
}

//! Many concurrent writers, readers, metadata updates and removals on a few overlapping keys:
//! every read sees one whole version (metadata and body agree), never a mix, never an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use common::*;
use outpost_storage::{KIB, MIB, Store};

const KEYS: u64 = 6;

fn version_body(k: u64, v: u64) -> Bytes {
    body(
        &format!("{k}/{v}"),
        ((k * 31 + v * 7919) % 400_000) as usize,
    )
}

/// Check that a read of key `k` is a whole, consistent version.
async fn check_read(store: &Store, k: u64) -> bool {
    let Some(hit) = store.lookup(&key(&format!("key{k}"))).await.unwrap() else {
        return false;
    };
    let meta = String::from_utf8(hit.meta().to_vec()).unwrap();
    // "k v" or "k v updated"
    let mut f = meta.split(' ');
    assert_eq!(f.next().unwrap().parse::<u64>().unwrap(), k);
    let v: u64 = f.next().unwrap().parse().unwrap();
    let want = version_body(k, v);
    let mut r = hit.reader(0);
    let mut got = Vec::new();
    while let Some(p) = r
        .next_chunk()
        .await
        .expect("no corrupt reads under concurrency")
    {
        got.extend_from_slice(&p);
    }
    assert_eq!(got.len(), want.len(), "key{k} v{v}: length");
    assert!(got == want[..], "key{k} v{v}: body is a mix of versions");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers_on_overlapping_keys() {
    let tmp = tempfile::tempdir().unwrap();
    // Small memory: chunk reads go to disk while other versions are being written.
    let store = Store::open(small_config(tmp.path(), MIB, 128 * MIB))
        .await
        .unwrap();
    let version = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (store, version) = (store.clone(), version.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..25u64 {
                let v = version.fetch_add(1, Ordering::Relaxed);
                let k = (w + i) % KEYS;
                let name = format!("key{k}");
                match i % 8 {
                    6 => store.remove(&key(&name)),
                    7 => {
                        // Metadata update keeps the version's body.
                        if let Some(hit) = store.lookup(&key(&name)).await.unwrap() {
                            let meta = format!("{} updated", String::from_utf8_lossy(hit.meta()));
                            let _ = store
                                .update_meta_of(&key(&name), hit.object_id(), Bytes::from(meta))
                                .await
                                .unwrap();
                        }
                    }
                    5 => {
                        let mut wh = store.begin_write(key(&name), Bytes::from(format!("{k} {v}")));
                        wh.write(version_body(k, v).slice(..1000.min(version_body(k, v).len())))
                            .await
                            .unwrap();
                        drop(wh); // aborted
                    }
                    _ => {
                        let data = version_body(k, v);
                        let mut wh = store.begin_write(key(&name), Bytes::from(format!("{k} {v}")));
                        for piece in data.chunks(10 * KIB as usize + 3) {
                            wh.write(Bytes::copy_from_slice(piece)).await.unwrap();
                            tokio::task::yield_now().await;
                        }
                        wh.finish().await.unwrap();
                    }
                }
            }
        }));
    }
    let mut readers = Vec::new();
    for r in 0..8u64 {
        let (store, done, hits) = (store.clone(), done.clone(), hits.clone());
        readers.push(tokio::spawn(async move {
            let mut n = r;
            while !done.load(Ordering::Relaxed) {
                if check_read(&store, n % KEYS).await {
                    hits.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                tokio::task::yield_now().await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    assert!(hits.load(Ordering::Relaxed) > 20, "readers saw objects");
    let s = store.stats();
    assert_eq!(s.corrupt_reads, 0, "{s:?}");
    assert!(s.writes_committed >= 8 * 25 / 2);
    // Whatever survived is whole, and stays whole after a reopen.
    let mut before = Vec::new();
    for k in 0..KEYS {
        before.push(check_read(&store, k).await);
    }
    store.close().await.unwrap();
    let store = Store::open(small_config(tmp.path(), MIB, 128 * MIB))
        .await
        .unwrap();
    for k in 0..KEYS {
        assert_eq!(
            check_read(&store, k).await,
            before[k as usize],
            "key{k} after reopen"
        );
    }
    store.close().await.unwrap();
}

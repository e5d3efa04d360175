//! Faults on disk: flipped bytes in a chunk or a head, truncated files (while closed and while
//! open), and a disk tier written three times over its capacity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use outpost_storage::{ErrorKind, KIB, MIB, ReadHandle, Store, StoreConfig};

fn cfg(dir: &Path) -> StoreConfig {
    // Memory holds only 4 chunks: bodies are read back from disk.
    small_config(dir, 256 * KIB, 64 * MIB)
}

/// The data files: foyer's blocks and the blob log's segments.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    ["foyer", "blobs"]
        .iter()
        .filter_map(|d| fs::read_dir(dir.join(d)).ok())
        .flat_map(|rd| rd.map(|e| e.unwrap().path()))
        .collect()
}

/// (file, offset) of the first occurrence of `needle` in the data files.
fn find(dir: &Path, needle: &[u8]) -> Option<(PathBuf, u64)> {
    let mut files = data_files(dir);
    files.sort();
    for f in files {
        let data = fs::read(&f).unwrap();
        if let Some(pos) = data.windows(needle.len()).position(|w| w == needle) {
            return Some((f, pos as u64));
        }
    }
    None
}

fn flip(file: &Path, offset: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, offset).unwrap();
    f.sync_all().unwrap();
}

async fn write_and_close(dir: &Path, objects: &[(&str, usize)]) {
    let store = Store::open(cfg(dir)).await.unwrap();
    for (name, len) in objects {
        put(
            &store,
            key(name),
            &format!("meta-of-{name}"),
            &body(name, *len),
            50_000,
        )
        .await;
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_chunk_byte_is_a_corrupt_read_then_a_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let chunk = 64 * KIB as usize;
    write_and_close(
        tmp.path(),
        &[("victim", 3 * chunk + 100), ("bystander", 2 * chunk)],
    )
    .await;
    let data = body("victim", 3 * chunk + 100);
    let (file, pos) = find(tmp.path(), &data[chunk..chunk + 64]).expect("chunk 1 on disk");
    // Full chunks (64 KiB) are blob log values: their xxhash64 is checked on the first read.
    assert!(file.starts_with(tmp.path().join("blobs")), "{file:?}");
    flip(&file, pos + 1000);

    let store = Store::open(cfg(tmp.path())).await.unwrap();
    let hit = store
        .lookup(&key("victim"))
        .await
        .unwrap()
        .expect("head intact");
    let mut r = hit.reader(0);
    assert_eq!(r.next_chunk().await.unwrap().unwrap(), data.slice(..chunk));
    let err = r.next_chunk().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        r.next_chunk().await.unwrap_err().is_corrupt(),
        "the reader stays failed"
    );
    assert_eq!(store.stats().corrupt_reads, 1);
    assert!(
        store.lookup(&key("victim")).await.unwrap().is_none(),
        "object dropped"
    );
    // A reader starting after the damage is unaffected (it never reads chunk 1)...
    assert_eq!(
        get(&store, &key("bystander")).await.unwrap().1,
        &body("bystander", 2 * chunk)[..]
    );
    store.close().await.unwrap();
    // ... and the drop is durable.
    let store = Store::open(cfg(tmp.path())).await.unwrap();
    assert!(store.lookup(&key("victim")).await.unwrap().is_none());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_head_byte_is_a_miss() {
    let tmp = tempfile::tempdir().unwrap();
    write_and_close(tmp.path(), &[("h", 1000), ("other", 2000)]).await;
    let (file, pos) = find(tmp.path(), b"meta-of-h").expect("head on disk");
    flip(&file, pos + 3);
    let store = Store::open(cfg(tmp.path())).await.unwrap();
    assert!(store.lookup(&key("h")).await.unwrap().is_none());
    assert_eq!(
        get(&store, &key("other")).await.unwrap().1,
        &body("other", 2000)[..]
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_file_while_closed_gives_misses_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let objects: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 150_000)).collect();
    write_and_close(tmp.path(), &objects).await;
    // Cut every data file in half (a blob segment of the wrong size is dropped at open).
    for p in data_files(tmp.path()) {
        let len = fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    }
    let store = Store::open(cfg(tmp.path())).await.unwrap();
    let mut intact = 0;
    for (name, len) in &objects {
        match try_get(&store, &key(name)).await {
            Ok(Some((_, got))) => {
                assert_eq!(got, &body(name, *len)[..]);
                intact += 1;
            }
            Ok(None) => {}
            Err(kind) => assert_eq!(kind, "corrupt"),
        }
    }
    assert!(
        intact < objects.len(),
        "truncation must have cost something"
    );
    store.close().await.unwrap();
}

/// A store in `dir` holding one object `name` of `len` bytes, closed and opened again, and a
/// handle on that object from the reopened store.
async fn reopened_with(dir: &Path, name: &str, len: usize) -> (Store, ReadHandle) {
    let store = Store::open(cfg(dir)).await.unwrap();
    put(&store, key(name), "m", &body(name, len), 64 * 1024).await;
    store.close().await.unwrap();
    let store = Store::open(cfg(dir)).await.unwrap();
    let hit = store.lookup(&key(name)).await.unwrap().unwrap();
    (store, hit)
}

/// Cuts every file in `dir` to `len` bytes (under the running store).
fn truncate_files_in(dir: &Path, len: u64) {
    for e in fs::read_dir(dir).unwrap() {
        OpenOptions::new()
            .write(true)
            .open(e.unwrap().path())
            .unwrap()
            .set_len(len)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_file_while_open_is_a_corrupt_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, hit) = reopened_with(tmp.path(), "live", 1200 * KIB as usize).await;
    truncate_files_in(&tmp.path().join("foyer"), 0);
    let mut r = hit.reader(0);
    let mut failed = None;
    loop {
        match r.next_chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                failed = Some(e.kind());
                break;
            }
        }
    }
    assert_eq!(failed, Some(ErrorKind::Corrupt));
    assert!(store.stats().corrupt_reads >= 1);
    assert!(store.lookup(&key("live")).await.unwrap().is_none());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_blob_segment_while_open_is_a_corrupt_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, hit) = reopened_with(tmp.path(), "segment", 600 * KIB as usize).await;
    // Cut the mapped segment files to their header: the pages are gone from the page cache,
    // so the values are read with pread (not through the mapping, which would fault).
    truncate_files_in(&tmp.path().join("blobs"), 4096);
    let err = hit.reader(0).read_to_end().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let s = store.stats();
    assert!(s.corrupt_reads >= 1 && s.blob_cold_reads >= 1, "{s:?}");
    assert!(store.lookup(&key("segment")).await.unwrap().is_none());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_usage_stays_within_capacity_after_writing_three_times_it() {
    let tmp = tempfile::tempdir().unwrap();
    let capacity = 32 * MIB;
    let store = Store::open(small_config(tmp.path(), 4 * MIB, capacity))
        .await
        .unwrap();
    let mut written = 0u64;
    let mut i = 0;
    while written < 3 * capacity {
        let len = 300_000 + (i * 7919) % 700_000;
        // Writers never see an error from a full disk.
        put(
            &store,
            key(&format!("c{i}")),
            "m",
            &body(&format!("c{i}"), len),
            64 * 1024,
        )
        .await;
        written += len as u64;
        i += 1;
    }
    let used = allocated(tmp.path());
    assert!(used <= capacity, "allocated {used} > capacity {capacity}");
    assert!(used > capacity / 2, "the disk tier was used ({used})");
    let s = store.stats();
    assert!(s.disk_allocated_bytes <= capacity);
    assert_eq!(s.writes_dropped, 0, "{s:?}");
    // The newest objects are there; old ones are evicted (a miss or a corrupt read, never wrong data).
    let mut present = 0;
    for j in 0..i {
        let len = 300_000 + (j * 7919) % 700_000;
        match try_get(&store, &key(&format!("c{j}"))).await {
            Ok(Some((_, got))) => {
                assert_eq!(got, &body(&format!("c{j}"), len)[..]);
                present += 1;
            }
            Ok(None) => {}
            Err(kind) => assert_eq!(kind, "corrupt"),
        }
    }
    for j in i - 3..i {
        let len = 300_000 + (j * 7919) % 700_000;
        assert_eq!(
            get(&store, &key(&format!("c{j}"))).await.unwrap().1,
            &body(&format!("c{j}"), len)[..]
        );
    }
    assert!(present < i, "something was evicted");
    store.close().await.unwrap();
    assert!(allocated(tmp.path()) <= capacity);
    // And it reopens fine.
    let store = Store::open(small_config(tmp.path(), 4 * MIB, capacity))
        .await
        .unwrap();
    let j = i - 1;
    let len = 300_000 + (j * 7919) % 700_000;
    assert_eq!(
        get(&store, &key(&format!("c{j}"))).await.unwrap().1,
        &body(&format!("c{j}"), len)[..]
    );
    store.close().await.unwrap();
    let _ = Bytes::new();
}

//! Shared helpers for the storage integration tests: configs on temp dirs, deterministic
//! bodies, writing and reading whole objects, and measuring disk usage.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use bytes::Bytes;
use outpost_storage::{KIB, Key, MIB, Store, StoreConfig};

/// A small config: 64 KiB chunks, 512 KiB blocks (fast tests, many blocks). Objects up to a
/// quarter of the disk, so the blob log (75 % of it) takes values of 32 KiB and more.
pub fn small_config(dir: &Path, memory: u64, disk: u64) -> StoreConfig {
    StoreConfig {
        chunk_size: 64 * KIB as usize,
        block_size: 512 * KIB as usize,
        max_object_size: disk / 4,
        io_threads: 2,
        ..StoreConfig::new(dir, memory, disk)
    }
}

/// The production-like config: 1 MiB chunks, 16 MiB blocks, objects up to a quarter of the
/// disk (the blob log is on when the disk leaves foyer its 8 blocks).
pub fn mib_config(dir: &Path, memory: u64, disk: u64) -> StoreConfig {
    StoreConfig {
        max_object_size: disk / 4,
        ..StoreConfig::new(dir, memory, disk)
    }
}

pub fn key(name: &str) -> Key {
    *blake3::hash(name.as_bytes()).as_bytes()
}

/// `len` deterministic pseudo-random bytes derived from `seed` (blake3 XOF).
pub fn body(seed: &str, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut v);
    Bytes::from(v)
}

/// Write `data` under `key` in pieces of `piece` bytes and commit.
pub async fn put(store: &Store, key: Key, meta: &str, data: &Bytes, piece: usize) {
    let mut w = store.begin_write(key, Bytes::copy_from_slice(meta.as_bytes()));
    let mut off = 0;
    while off < data.len() {
        let end = (off + piece).min(data.len());
        w.write(data.slice(off..end)).await.unwrap();
        off = end;
    }
    w.finish().await.unwrap();
}

/// Read the whole body of `key` (None if absent), with its metadata.
pub async fn get(store: &Store, key: &Key) -> Option<(Bytes, Vec<u8>)> {
    let hit = store.lookup(key).await.unwrap()?;
    let meta = hit.meta().clone();
    let mut r = hit.reader(0);
    let mut out = Vec::with_capacity(hit.body_len() as usize);
    while let Some(p) = r.next_chunk().await.unwrap() {
        out.extend_from_slice(&p);
    }
    assert_eq!(out.len() as u64, hit.body_len());
    assert_eq!(blake3::hash(&out).as_bytes(), hit.body_checksum());
    Some((meta, out))
}

/// Like `get` but a corrupt/missing body is `Err(kind)` instead of a panic.
pub async fn try_get(store: &Store, key: &Key) -> Result<Option<(Bytes, Vec<u8>)>, String> {
    let Some(hit) = store.lookup(key).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let meta = hit.meta().clone();
    let mut r = hit.reader(0);
    let mut out = Vec::new();
    loop {
        match r.next_chunk().await {
            Ok(Some(p)) => out.extend_from_slice(&p),
            Ok(None) => break,
            Err(e) => return Err(e.kind().as_str().to_string()),
        }
    }
    Ok(Some((meta, out)))
}

/// Bytes allocated on the file system under `dir`.
pub fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            total += allocated(&e.path());
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}

pub const MEM: u64 = 32 * MIB;

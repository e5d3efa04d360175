//! Benchmarks of `outpost-storage`: get and put of 1 KiB, 64 KiB, 1 MiB and 16 MiB objects from
//! the memory tier and from the disk tier, and the memory overhead per entry.
//!
//! Run: `CARGO_TARGET_DIR=... cargo bench -p outpost-storage --bench storage`
//! (short runs: 10 samples, 1 s warm-up, 2 s measurement; pass criterion flags to change).
//!
//! - `get/memory`: lookup + read the whole body, every chunk a memory hit (shared `Bytes`).
//! - `get/disk`: the same, cycling over more objects than the 4 MiB memory tier holds. A 1 KiB
//!   body is read from foyer's disk tier (`pread` on the store's runtime, xxhash64, decode).
//!   Bodies and chunks of 32 KiB and more are in the blob log: the memory tier keeps their
//!   entries light (a place, ~1 KiB each, so the whole ring fits) and the read resolves the
//!   place to a `Bytes` over the segment file's mapping, found in the page cache by
//!   `mincore` (trusted for 10 s): what the node then sends with `sendfile`. The files sit in
//!   the OS page cache: this measures the store, not the device.
//! - `put/durable`: begin_write + write (64 KiB pieces) + finish with `durable_commit` (the
//!   default: finish waits until the chunks are written to the files). Includes blake3 of
//!   the whole body, the blob log's appends, and eviction once the tiers are full.
//! - `put/lazy`: the same with `durable_commit = false` (finish returns once enqueued).
//!
//! Measured 2026-11-24 (commit 1f3790c, the blob log on: 75 % of the 1 GiB disk)
//! on the 2-core VM, release, 1 MiB chunks, 16 MiB blocks, criterion medians:
//!
//! | size   | get/memory | get/disk | put/durable | put/lazy |
//! |--------|-----------:|---------:|------------:|---------:|
//! | 1 KiB  |    394 ns  |  19.5 µs |     3.3 µs  |   2.9 µs |
//! | 64 KiB |    393 ns  |   542 ns |      99 µs  |    72 µs |
//! | 1 MiB  |    755 ns  |   890 ns |     1.03 ms |   706 µs |
//! | 16 MiB |    6.1 µs  |   7.9 µs |     12.2 ms |  11.7 ms |
//!
//! get/memory is size-independent (shared `Bytes`, one lookup per chunk). get/disk of blob
//! log values costs ~150 ns more than a memory hit per value (the place resolved, a `Bytes`
//! over the mapping); before the blob log (before 1c56449, 2026-11-24, another host) it was
//! 153 µs for 64 KiB and 693 µs for 1 MiB (`pread`, xxhash64 and a decode copy of every
//! byte). Puts run at ≈ 0.65–1.4 GiB/s (blake3 of the body and the appends, page cache).
//!
//! Memory overhead per entry (21 000 objects of a 100-byte body + 100-byte metadata; since
//! small bodies are inline, one head entry each): 1 212 B of RSS per object at 1f3790c,
//! 1 012 B beyond the payload. The weighter charges 480 + 96 B + payload per head (776 B), so
//! for such tiny objects the memory tier's real use is ~1.5× its weighed bytes. With 1 KiB
//! bodies and ~530 B of metadata (the load benchmark's hot set, measured 2026-11-24 before
//! the blob log) it was ~2.2 KiB of RSS against ~2.1 KiB weighed per entry. (Each run prints
//! an `overhead:` line.)
//! Before the fix of chunk-sized tails (see the crate docs) this was 5 317 B per object.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use outpost_storage::{KIB, Key, MIB, Store, StoreConfig};

const SIZES: [(usize, &str); 4] = [
    (KIB as usize, "1KiB"),
    (64 * KIB as usize, "64KiB"),
    (MIB as usize, "1MiB"),
    (16 * MIB as usize, "16MiB"),
];

fn key(name: &str) -> Key {
    *blake3::hash(name.as_bytes()).as_bytes()
}

fn body(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    blake3::Hasher::new()
        .update(&len.to_le_bytes())
        .finalize_xof()
        .fill(&mut v);
    Bytes::from(v)
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}

async fn open(dir: &std::path::Path, memory: u64, durable: bool) -> Store {
    let cfg = StoreConfig {
        durable_commit: durable,
        max_object_size: 64 * MIB,
        ..StoreConfig::new(dir, memory, 1024 * MIB)
    };
    match Store::open(cfg).await {
        Ok(s) => s,
        Err(e) => panic!("open: {e}"),
    }
}

async fn put(store: &Store, k: Key, data: &Bytes) {
    let mut w = store.begin_write(k, Bytes::from_static(&[7u8; 100]));
    let mut off = 0;
    while off < data.len() {
        let end = (off + 64 * KIB as usize).min(data.len());
        if let Err(e) = w.write(data.slice(off..end)).await {
            panic!("write: {e}");
        }
        off = end;
    }
    if let Err(e) = w.finish().await {
        panic!("finish: {e}");
    }
}

async fn get(store: &Store, k: &Key) -> usize {
    let Ok(Some(hit)) = store.lookup(k).await else {
        panic!("missing object");
    };
    let mut r = hit.reader(0);
    let mut n = 0;
    while let Ok(Some(p)) = r.next_chunk().await {
        n += p.len();
    }
    assert_eq!(n as u64, hit.body_len(), "short read");
    n
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

fn bench_get(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("get");
    for (len, name) in SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        let data = body(len);
        // Memory tier: one object, always hot.
        let dir = tempdir();
        let store = rt.block_on(open(dir.path(), 256 * MIB, true));
        rt.block_on(put(&store, key("hot"), &data));
        g.bench_function(BenchmarkId::new("memory", name), |b| {
            b.iter(|| black_box(rt.block_on(get(&store, &key("hot")))))
        });
        let _ = rt.block_on(store.close());
        // Disk tier: a 4 MiB memory tier and a ring of objects several times larger.
        let dir = tempdir();
        let store = rt.block_on(open(dir.path(), 4 * MIB, true));
        let ring = (32 * MIB as usize / len.max(1)).clamp(3, 8192);
        for i in 0..ring {
            rt.block_on(put(&store, key(&format!("d{i}")), &data));
        }
        let before = store.stats();
        let mut i = 0;
        g.bench_function(BenchmarkId::new("disk", name), |b| {
            b.iter(|| {
                i = (i + 1) % ring;
                black_box(rt.block_on(get(&store, &key(&format!("d{i}")))))
            })
        });
        let after = store.stats();
        let lookups =
            (after.memory_hits + after.memory_misses) - (before.memory_hits + before.memory_misses);
        println!(
            "get/disk/{name}: {:.0}% of entry gets from disk",
            100.0 * (after.disk_hits - before.disk_hits) as f64 / lookups.max(1) as f64
        );
        let _ = rt.block_on(store.close());
    }
    g.finish();
}

fn bench_put(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("put");
    for (len, name) in SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        let data = body(len);
        for (mode, durable) in [("durable", true), ("lazy", false)] {
            let dir = tempdir();
            let store = rt.block_on(open(dir.path(), 64 * MIB, durable));
            let mut i = 0u64;
            g.bench_function(BenchmarkId::new(mode, name), |b| {
                b.iter(|| {
                    i += 1;
                    rt.block_on(put(&store, key(&format!("p{}", i % 512)), &data))
                })
            });
            let _ = rt.block_on(store.close());
        }
    }
    g.finish();
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// RSS growth per small object (head + one chunk) held in the memory tier.
fn memory_overhead(rt: &tokio::runtime::Runtime) {
    let n = 20_000u64;
    let dir = tempdir();
    let store = rt.block_on(open(dir.path(), 1024 * MIB, false));
    let data = body(100);
    // Warm up allocator arenas and foyer's buffers first.
    for i in 0..1000 {
        rt.block_on(put(&store, key(&format!("w{i}")), &data));
    }
    let before = rss_bytes();
    let used_before = store.stats().memory_bytes;
    for i in 0..n {
        // A fresh body per object, as a real write would bring.
        let b = Bytes::copy_from_slice(&data);
        rt.block_on(put(&store, key(&format!("o{i}")), &b));
    }
    let rss = rss_bytes().saturating_sub(before) as f64 / n as f64;
    let s = store.stats();
    let weight = (s.memory_bytes - used_before) as f64 / n as f64;
    println!(
        "overhead: {rss:.0} B RSS per object ({:.0} B beyond the 200 B payload), {weight:.0} B weighed by the store; {} objects / {} entries in memory",
        rss - 200.0,
        s.memory_objects,
        s.memory_entries
    );
    let _ = rt.block_on(store.close());
}

fn main() {
    let rt = runtime();
    memory_overhead(&rt);
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_get(&mut c, &rt);
    bench_put(&mut c, &rt);
    c.final_summary();
}

//! Criterion benchmarks of the pieces on the cache-hit path: primary key
//! hashing, decoding the stored head record (and its per-thread memo), the
//! reuse decision, building the client's header block (stored fields +
//! `Age` + `Via` + `Cache-Status`) and serialising it as an HTTP/1.1 head, and
//! a memory-tier lookup with a 1 KiB body read, and for a 100 KiB body the
//! lookup plus the socket's check that finds the body's file range for
//! `sendfile` (`arena_locate`, run on every write of a large frame).
//!
//! Run: `cargo bench --bench hit_path` (`-- --warm-up-time 1
//! --measurement-time 2` for a quick pass). Criterion medians at 45e95f2,
//! measured 2026-11-24 on the development machine (2 vCPU shared VM, release
//! profile, system allocator):
//!
//! | piece                                                       | time    |
//! |-------------------------------------------------------------|--------:|
//! | `primary_key`, a target seen before (key memo)              | 48 ns   |
//! | `primary_key_new_target` (blake3 + memo miss and insert)    | 221 ns  |
//! | `decode_record` (12 fields, checksum verified)              | 1.29 µs |
//! | `decode_stored_record` (a record not seen before)           | 518 ns  |
//! | `decode_stored_record_memo` (the hit path's, seen before)   | 86 ns   |
//! | `decide_fresh`                                              | 30 ns   |
//! | `client_headers` (map + `Age` + `Via` + `Cache-Status`)     | 347 ns  |
//! | `client_headers_memo` (the same, map cloned from the memo)  | 337 ns  |
//! | `response_head_encode` (those headers → HTTP/1.1 head)      | 81 ns   |
//! | `store_lookup_1k_memory` (lookup + decode + 1 KiB body)     | 380 ns  |
//! | `store_lookup_100k_memory_locate` (+ 100 KiB body + locate) | 388 ns  |
//! | `arena_locate` (address → memfd offset)                     | 3.1 ns  |
//! | `arena_locate_2_threads`                                    | 3.3 ns  |
//! | `hit_counter_atomic_2_threads` (one shared `AtomicU64`)     | 14.3 ns |
//! | `hit_counter_striped_2_threads` (the node's counter)        | 5.0 ns  |
//!
//! Measured 2026-12-06 (the pass-through path's coalescer work, a URL marked
//! hit-for-pass: ask for the mark, take a solo writer, release it):
//!
//! | piece                                                       | time    |
//! |-------------------------------------------------------------|--------:|
//! | `pass_mark_1_thread`                                        | 88 ns   |
//! | `pass_mark_2_threads`                                       | 142 ns  |
//!
//! Measured 2026-12-07 (`outpost::fields`: a request of one field asked
//! for `Range` and `X-Forwarded-For`, which it lacks; a response of nine
//! asked for its `Cache-Control` values):
//!
//! | piece                                                       | time    |
//! |-------------------------------------------------------------|--------:|
//! | `field_lookup_absent_map` (`HeaderMap::contains_key`, twice) | 30 ns   |
//! | `field_lookup_absent_scan` (`fields::has`, twice)           | 4.9 ns  |
//! | `field_lookup_values_map` (`HeaderMap::get_all`)            | 14–19 ns |
//! | `field_lookup_values_ours` (`fields::all`: looked up too)   | 15–18 ns |
//!
//! The `*_2_threads` rows are the wall time per iteration of two threads each
//! doing one operation at once. The VM's speed moves these figures by up to
//! ~45 % between days with the code unchanged: compare rows measured in one
//! run, and re-run a build's parent beside it before reading a change.
//!
//! What the pieces do:
//! - The key is one `blake3::hash` over a stack buffer, the authority
//!   normalised in one byte scan. Keys of recently seen targets come from a
//!   per-thread memo (`cache/key_memo.rs`: the canonical bytes are compared,
//!   so a collision is a miss); a new target pays ~40 ns for the memo's miss
//!   and insert.
//! - A stored record is decoded without recomputing its blake3 (foyer checks
//!   every disk load with its own xxhash64; memory-tier entries are our own
//!   bytes), with header values sliced from the stored bytes. The hit path
//!   decodes through a per-thread memo of records seen before
//!   (`cache/meta_memo.rs`).
//! - The client headers are built as `proxy::respond` builds them: the tag
//!   field left out, `Age`, `Via` and `Cache-Status` (written without
//!   `core::fmt`) added. A repeat hit clones the map from the per-thread memo
//!   (`client_headers_memo`; in the node, with mimalloc, callgrind counts
//!   ~750 instructions for it against ~2,400 for building the map).
//!   `response_head_encode` is the own HTTP/1.1 path's head serialisation
//!   (`server::h1_head::encode_head`); `response_head_encode_wire` the same
//!   head when a plain hit carries its stored fields in wire form, kept per
//!   thread (`wire_fields_memo`): the status line, one copy of
//!   those lines, `Age`, `Cache-Status` and the framing, an empty map.
//! - A body of up to 128 KiB is kept in the head, so a hit is one memory-tier
//!   lookup, and the lookup takes such a body whole
//!   (`ReadHandle::inline_body`), with no chunk reader.
//! - `arena_locate` reads a per-thread copy of the segment registry, and the
//!   per-hit counters are striped per thread
//!   (`outpost_storage::counter::Striped`), so a hit writes nothing another
//!   core writes there. What a hit still shares with other cores is per
//!   object: foyer's shard lock and entry count, and the body's `Bytes`
//!   count.
//!
//! - The hit-for-pass marks are a lock-free table read without writing, and
//!   a mark is written again only past half its life; a solo writer's
//!   release takes no shard lock (its fill is in no table).
//!
//! Changes that moved the figures (commit, date):
//! - 2026-12-06 (the commit that added `pass_mark_*`): a mutex-guarded map of
//!   marks, written on every release, and a shard lock per release before:
//!   `pass_mark_2_threads` 517 → 142 ns (1 thread 93 → 88 ns), both builds
//!   run the same hour.
//! - 7574caa 2026-11-24: `arena_locate` from a per-thread registry copy
//!   (was a global `RwLock` and a segment reference) and striped counters:
//!   `arena_locate_2_threads` 101 → 6.9–11 ns, a hit counter 8.6–10.8 ns
//!   (one `AtomicU64`) → 1.8–2.5 ns (striped). The single-threaded rows
//!   moved with the VM only (27db335's binary, run the same hour, gave the
//!   same figures).
//! - 2474228 2026-11-24 (with 2256af0): the benchmarks follow the hit path
//!   of 2c8a85f (record memo), 93483a5 (inline body taken whole) and
//!   b5f7975 (client header memo): the lookups 866 → 562 ns at 1 KiB and
//!   848 → 560 ns at 100 KiB; the client headers gain `Via` (475 → 560 ns,
//!   one field more); `decode_stored_record_memo`, `client_headers_memo` and
//!   `response_head_encode` added (348, 545 and 149 ns).
//! - 4f2471b 2026-11-23: the key memo: `primary_key` 194 → 69 ns;
//!   `primary_key_new_target` added (233 ns).
//! - 78b8e4a and ae0e291 2026-11-23: the key in one `blake3::hash` over a
//!   stack buffer, `Cache-Status` without `core::fmt`: `primary_key` 250 →
//!   194 ns, client headers 590 → 452 ns.
//! - 79367ce and cd49e1c 2026-11-23: records decoded without a second
//!   checksum and with borrowed header values, small bodies inline in the
//!   head: lookup + 1 KiB body 2.0 µs → 935 ns, `primary_key` 272 → 250 ns;
//!   `decode_stored_record` added (610 ns); cfe45f4 added the 100 KiB lookup
//!   and `arena_locate` (873 and 9 ns).
//! - d4926c9 2026-11-23: first figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use outpost::cache::control::{RequestDirectives, target_list};
use outpost::cache::freshness::{HeuristicConfig, ReuseOptions, age_header_value, decide};
use outpost::cache::key::primary_key;
use outpost::cache::meta::{
    MetaPolicy, ObjectMeta, Record, decode_record, decode_stored_record, new_object_id,
};
use outpost::cache::meta_memo::{client_headers_memo, decode_stored_record_memo};
use outpost::cache::status::CachePhase;
use outpost::fields::WireFields;
use outpost::proxy::body::WireHead;
use outpost::server::h1_head::encode_head;
use outpost_storage::{MIB, Store, StoreConfig};

fn sample_meta() -> ObjectMeta {
    let mut h = Vec::new();
    for (n, v) in [
        ("content-type", "text/css; charset=utf-8"),
        ("cache-control", "public, max-age=3600"),
        ("etag", "\"5f2a-1a2b3c\""),
        ("last-modified", "Mon, 02 Nov 2026 10:00:00 GMT"),
        ("date", "Mon, 23 Nov 2026 10:00:00 GMT"),
        ("content-length", "1024"),
        ("server", "origin"),
        ("x-request-id", "0a1b2c3d4e5f"),
        ("vary", "Accept-Encoding"),
        ("accept-ranges", "bytes"),
        ("surrogate-key", "css site-assets"),
        ("x-content-type-options", "nosniff"),
    ] {
        h.push((HeaderName::from_static(n), HeaderValue::from_static(v)));
    }
    let targets = target_list(None);
    let now = SystemTime::now();
    ObjectMeta::from_response(
        new_object_id(b"bench"),
        StatusCode::OK,
        h,
        &MetaPolicy {
            targets: &targets,
            tag_header: &outpost::cache::meta::SURROGATE_KEY,
            heuristic: HeuristicConfig {
                fraction: 0.1,
                max: Duration::from_secs(86400),
            },
        },
        now,
        now,
    )
}

fn pure(c: &mut Criterion) {
    // The same target every time: answered by the per-thread key memo.
    c.bench_function("primary_key", |b| {
        b.iter(|| {
            primary_key(
                black_box("default"),
                "http",
                black_box("cdn.example.com"),
                black_box(b"/assets/app.css?v=1234567"),
            )
        })
    });
    // A new target every time (64k of them cycle through the memo's 2048
    // slots): blake3 plus the memo's miss and insert.
    let targets: Vec<String> = (0..65_536)
        .map(|i| format!("/assets/app-{i}.css?v=1234567"))
        .collect();
    let mut i = 0usize;
    c.bench_function("primary_key_new_target", |b| {
        b.iter(|| {
            i = (i + 1) % targets.len();
            primary_key(
                black_box("default"),
                "http",
                black_box("cdn.example.com"),
                black_box(targets[i].as_bytes()),
            )
        })
    });
    let meta = sample_meta();
    let enc = meta.encode();
    c.bench_function("decode_record", |b| {
        b.iter(|| match decode_record(black_box(&enc)) {
            Ok(Record::Object(m)) => m,
            _ => panic!("not an object"),
        })
    });
    let shared = Bytes::from(enc.clone());
    c.bench_function("decode_stored_record", |b| {
        b.iter(|| match decode_stored_record(black_box(&shared)) {
            Ok(Record::Object(m)) => m,
            _ => panic!("not an object"),
        })
    });
    // What the hit path calls: a record seen before comes from the
    // per-thread memo (one compare of its bytes, a clone).
    c.bench_function("decode_stored_record_memo", |b| {
        b.iter(|| match decode_stored_record_memo(black_box(&shared)) {
            Ok(Record::Object(m)) => m,
            _ => panic!("not an object"),
        })
    });
    let dirs = RequestDirectives::default();
    let opts = ReuseOptions::default();
    c.bench_function("decide_fresh", |b| {
        b.iter(|| decide(&meta.facts(SystemTime::now()), black_box(&dirs), &opts))
    });
    // As `proxy::respond` builds them: the tag field left out, `Age`,
    // `Via`, `Cache-Status`.
    let tag = &outpost::cache::meta::SURROGATE_KEY;
    let via = HeaderValue::from_static("1.1 outpost");
    // The three fields added to every hit's map.
    let add_fields = |mut h: HeaderMap| {
        h.insert(http::header::AGE, age_header_value(12));
        h.append(http::header::VIA, via.clone());
        CachePhase::Hit
            .cache_status("Outpost")
            .ttl(3588)
            .append_to(&mut h);
        h
    };
    let client_headers = || add_fields(meta.header_map_without(|n| n == tag));
    c.bench_function("client_headers", |b| b.iter(client_headers));
    // What a repeat hit does instead: a clone from the per-thread memo,
    // keyed by the stored head's bytes (kept from the record's second
    // decode on), plus the same three fields.
    let raw = Bytes::from(meta.encode());
    for _ in 0..2 {
        let _ = decode_stored_record_memo(&raw);
    }
    c.bench_function("client_headers_memo", |b| {
        b.iter(|| {
            add_fields(client_headers_memo(black_box(&raw), 1, || {
                meta.header_map_without(|n| n == tag)
            }))
        })
    });
    // Serialising them into the HTTP/1.1 response head (server::h1_head).
    let h = client_headers();
    let mut out = Vec::with_capacity(1024);
    c.bench_function("response_head_encode", |b| {
        b.iter(|| {
            out.clear();
            let mut keep = true;
            let framing = encode_head(
                &mut out,
                StatusCode::OK,
                black_box(&h),
                Some(1024),
                false,
                &mut keep,
                None,
            );
            (out.len(), framing)
        })
    });
    // The same head from the fields' wire form (a plain hit's).
    let stable = |n: &http::HeaderName| n != http::header::AGE && n.as_str() != "cache-status";
    let wire = WireHead {
        fields: WireFields::encode(h.iter().filter(|(n, _)| stable(n))),
        age: h.get(http::header::AGE).cloned().unwrap(),
        cache_status: h.get("cache-status").cloned().unwrap(),
        len: 1024,
    };
    let empty = http::HeaderMap::new();
    c.bench_function("response_head_encode_wire", |b| {
        b.iter(|| {
            out.clear();
            let mut keep = true;
            let framing = encode_head(
                &mut out,
                StatusCode::OK,
                &empty,
                Some(1024),
                false,
                &mut keep,
                Some(black_box(&wire)),
            );
            (out.len(), framing)
        })
    });
}

fn lookup(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        let mut cfg = StoreConfig::new(dir.path(), 64 * MIB, 256 * MIB);
        cfg.max_object_size = 64 * MIB;
        let store = Store::open(cfg).await.unwrap();
        let meta = Bytes::from(sample_meta().encode());
        let key = primary_key("default", "http", "cdn.example.com", b"/a.css");
        let mut w = store.begin_write(key, meta);
        w.write(Bytes::from(vec![1u8; 1024])).await.unwrap();
        w.finish().await.unwrap();
        store
    });
    let key = primary_key("default", "http", "cdn.example.com", b"/a.css");
    c.bench_function("store_lookup_1k_memory", |b| {
        b.iter(|| {
            rt.block_on(async {
                let h = store.lookup(&key).await.unwrap().unwrap();
                let _ = decode_stored_record_memo(h.meta()).unwrap();
                // The hit path takes a body kept in the head whole.
                h.inline_body().unwrap().len()
            })
        })
    });
    // A 100 KiB body (inline in the head, in the zero-copy arena): the lookup
    // as above, plus the socket's per-write check that finds its file range.
    let key100 = primary_key("default", "http", "cdn.example.com", b"/b.bin");
    rt.block_on(async {
        let mut w = store.begin_write(key100, Bytes::from(sample_meta().encode()));
        w.write(Bytes::from(vec![2u8; 100 * 1024])).await.unwrap();
        w.finish().await.unwrap();
    });
    c.bench_function("store_lookup_100k_memory_locate", |b| {
        b.iter(|| {
            rt.block_on(async {
                let h = store.lookup(&key100).await.unwrap().unwrap();
                let _ = decode_stored_record_memo(h.meta()).unwrap();
                let body = h.inline_body().unwrap();
                outpost_storage::arena::locate(&body).map(|r| r.offset())
            })
        })
    });
    let body = rt.block_on(async {
        let h = store.lookup(&key100).await.unwrap().unwrap();
        h.reader(0).next_chunk().await.unwrap().unwrap()
    });
    c.bench_function("arena_locate", |b| {
        b.iter(|| outpost_storage::arena::locate(black_box(&body[4096..])).map(|r| r.offset()))
    });
    // Both cores locating at once: nothing shared is written, so the time per
    // call should stay that of one thread.
    c.bench_function("arena_locate_2_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                outpost_storage::arena::locate(black_box(&body[4096..])).map(|r| r.offset())
            })
        })
    });
    drop(body);
    rt.block_on(store.close()).unwrap();
}

/// Wall time for two threads to run `op` `iters` times each, concurrently.
fn two_threads<R>(iters: u64, op: impl Fn() -> R + Sync) -> std::time::Duration {
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..iters {
                    black_box(op());
                }
            });
        }
    });
    start.elapsed()
}

/// A counter bumped on every hit by every core: one shared atomic against
/// the striped counter the node uses (`outpost_storage::counter::Striped`).
fn counters(c: &mut Criterion) {
    let one = std::sync::atomic::AtomicU64::new(0);
    c.bench_function("hit_counter_atomic_2_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                one.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            })
        })
    });
    let striped = outpost_storage::counter::Striped::new();
    c.bench_function("hit_counter_striped_2_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, || striped.inc()))
    });
}

/// The coalescer's work for a request to a URL marked hit-for-pass, as
/// every core does it for a hot uncacheable URL: ask for the mark, take a
/// solo writer, release it (the mark written again).
fn pass_marks(c: &mut Criterion) {
    use outpost::cache::coalesce::Coalescer;
    let co: std::sync::Arc<Coalescer<()>> = std::sync::Arc::new(Coalescer::new(
        1 << 20,
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(60),
    ));
    let key = [7u8; 32];
    co.solo(key).release();
    let op = || {
        let marked = co.is_pass(&key);
        co.solo(key).release();
        marked
    };
    c.bench_function("pass_mark_1_thread", |b| b.iter(op));
    c.bench_function("pass_mark_2_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, op))
    });
}

/// A request's lookups of fields it does not have (a load generator's
/// request: `Host` alone) and a response's of one it has (an origin's
/// nine fields): `outpost::fields` against `HeaderMap`'s own.
fn field_lookups(c: &mut Criterion) {
    use http::header::{CACHE_CONTROL, HOST, RANGE};
    use outpost::fields;
    let xff = HeaderName::from_static("x-forwarded-for");
    let mut request = HeaderMap::new();
    request.insert(HOST, HeaderValue::from_static("127.0.0.1:18083"));
    let mut response = HeaderMap::new();
    for (n, v) in [
        ("date", "Mon, 07 Dec 2026 00:00:00 GMT"),
        ("content-type", "application/octet-stream"),
        ("content-length", "1024"),
        ("last-modified", "Mon, 07 Dec 2026 00:00:00 GMT"),
        ("etag", "\"6751a3c0-400\""),
        ("accept-ranges", "bytes"),
        ("x-a", "1"),
        ("x-b", "2"),
        ("cache-control", "no-store"),
    ] {
        response.append(HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    c.bench_function("field_lookup_absent_map", |b| {
        b.iter(|| black_box(&request).contains_key(RANGE) || black_box(&request).contains_key(&xff))
    });
    c.bench_function("field_lookup_absent_scan", |b| {
        b.iter(|| {
            fields::has(black_box(&request), &RANGE) || fields::has(black_box(&request), &xff)
        })
    });
    c.bench_function("field_lookup_values_map", |b| {
        b.iter(|| black_box(&response).get_all(CACHE_CONTROL).iter().count())
    });
    c.bench_function("field_lookup_values_ours", |b| {
        b.iter(|| fields::all(black_box(&response), &CACHE_CONTROL).count())
    });
}

criterion_group!(benches, pure, lookup, counters, pass_marks, field_lookups);
criterion_main!(benches);

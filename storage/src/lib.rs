//! `outpost-storage`: Outpost's HTTP-agnostic two-tier (memory + disk) object store.
//!
//! It stores objects — a small metadata blob plus a body — under 32-byte keys, on foyer's
//! `HybridCache` (pinned `=0.22.6`): a byte-weighted memory tier in front of a block-based disk
//! tier that is recovered when the store is reopened on the same directory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), outpost_storage::Error> {
//! use bytes::Bytes;
//! use outpost_storage::{Store, StoreConfig, MIB, GIB};
//!
//! let store = Store::open(StoreConfig::new("/var/cache/outpost", 256 * MIB, 20 * GIB)).await?;
//! let key = *blake3::hash(b"https://example.com/a").as_bytes();
//! let mut w = store.begin_write(key, Bytes::from_static(b"headers..."));
//! w.write(Bytes::from(vec![0u8; 3 * 1024 * 1024])).await?;
//! w.finish().await?; // visible now, atomically
//! if let Some(hit) = store.lookup(&key).await? {
//!     let mut body = hit.reader(1024 * 1024); // start anywhere (Range requests)
//!     while let Some(piece) = body.next_chunk().await? { let _ = piece; }
//! }
//! store.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! An object is a **head** entry under its key (metadata, object id, body length, chunk size,
//! chunk count, whole-body blake3) plus **chunks** of `chunk_size` bytes (1 MiB by default)
//! under `blake3(object_id, index)`. foyer checks every entry read from disk against the
//! xxhash64 it wrote with it (the blob log checks its values with their own). Every write gets a fresh
//! 128-bit object id, so two versions never share chunks and a reader, which pins one head,
//! never mixes versions. The head is inserted only after all chunks, which makes `finish()` the
//! atomic commit point; dropping a [`WriteHandle`] unfinished leaves nothing visible.
//! A body of at most 128 KiB that ends before its first chunk is full is stored inside the
//! head instead (one entry, one disk read).
//!
//! # Zero-copy values
//! In the memory tier, a chunk or inline body of at least [`ZERO_COPY_MIN`] bytes lives in
//! the [`arena`]: write-once regions of a read-only mapped `memfd`. Written bodies go there at
//! once; bodies read back from disk go to the heap and move on their second memory-tier hit
//! (most disk reads of a working set larger than memory are not hit again before eviction,
//! and shared-memory pages cost more to allocate and free than a heap copy). [`arena::locate`] turns a
//! slice of such a value into a (file, offset) pair, so the node sends it with `sendfile(2)`
//! and the kernel does not copy it into the socket. DESIGN.md keeps `memmap2` off the hot
//! path because page faults on a file block the worker and a truncated file raises SIGBUS;
//! neither applies here: the pages are shared memory (a fault never waits for a disk), and
//! the segment's size is sealed (it cannot shrink under the mapping).
//!
//! # Blob log (large values on disk)
//! On disk, a payload of at least 32 KiB (an inline body or a chunk) is not in foyer's block
//! files but in the [`blob`](crate::blob) log: page-aligned values in fixed-size segment files
//! under `disk_dir/blobs/`, `large_value_share` percent of the disk (75 by default), reclaimed
//! oldest segment first. foyer's entry holds the value's place and xxhash64. Each segment is
//! mapped read-only and registered with [`arena::locate`], so a disk-tier hit whose pages are
//! in the page cache (`mincore`) is sent with `sendfile(2)` from the segment file, like
//! nginx's cache files: no `pread` copy, no checksum pass, no decode copy, no socket copy.
//! A value whose pages are not cached is read with `pread` on the store's blocking pool (a
//! worker never waits for the disk for a value not found cached), and a place read back from
//! foyer's files is checked against its xxhash64 on its first read (with `pread`, so the
//! process does not map the page cache into its RSS). A value found cached is trusted to stay
//! cached for 10 s before `mincore` is asked again. The memory tier keeps such entries light
//! (the place, not the bytes), so nothing long-lived pins a reclaimed segment; a chunked
//! object whose first chunk's segment was reclaimed is a miss at lookup (its head records
//! that segment), not a body that breaks off after its headers.
//! The mapping here is of regular files, which DESIGN.md keeps off the hot path for two
//! reasons, both handled: a fault that waits for the disk (reads are only made over pages
//! `mincore` found cached) and SIGBUS on a truncated file (segments are allocated in full
//! before they are mapped and never shrink; only something outside Outpost truncating them
//! under a running node could cause it).
//!
//! # Guarantees
//! - After [`Store::close`] and reopen, every committed object that still fits is back,
//!   byte-identical; removed and replaced versions stay gone (foyer's tombstone log).
//! - After a crash (SIGKILL), an object either reads back complete and correct, or not at all:
//!   with `durable_commit` (the default) all chunks are written to the files before the head
//!   is enqueued. A chunk lost later (disk eviction, a damaged file) is detected while reading
//!   — `ErrorKind::Corrupt`, the head is dropped, `corrupt_reads` counts it — never a panic.
//! - The newest commits may not survive a crash: a head reaches the files through foyer's
//!   queue after `finish` returns. A commit whose body has chunks first waits until everything
//!   enqueued before it is written (`durable_commit`), so only the commits after the last
//!   such one can be lost; a key then reads as its earlier version, or not at all.
//! - A full disk tier evicts whole blocks (FIFO); writers never see an error for it. An object
//!   whose chunks were evicted before its commit is silently not committed (`writes_dropped`).
//! - Disk I/O never runs on the caller's runtime: foyer's psync engine does blocking
//!   `pread`/`pwrite` on the blocking pool of the store's own runtime, whose threads are
//!   `SCHED_BATCH` on Linux so that a read handed over does not preempt the busy worker
//!   that asked for it ([`sched`](crate::sched)).
//! - Not durable against power loss: foyer does not fsync its data files. A cache may lose
//!   recent entries then, but still never returns a damaged body (checksums).
//!
//! # Pitfalls found (foyer 0.22.6)
//! - **Silent drops.** foyer never pushes back on writers: when its submit queue or flush
//!   buffer is full, the entry is just not written to disk. A fast 1 GiB write lost most of its
//!   chunks. [`pacer`](crate::pacer) bounds unflushed bytes to half the flush buffer and waits
//!   for foyer's flusher (`Store::wait`) when over budget.
//! - **Entry size.** An entry larger than a block (minus its 4 KiB index) is silently dropped
//!   from disk, and every entry is padded to 4 KiB. Blocks are at least 4 chunks plus padding
//!   (16 MiB by default: 15 chunks of 1 MiB per block).
//! - **Tombstones.** Without `with_tombstone_log(true)` removed or replaced entries come back
//!   after a restart.
//! - **Write policy.** The default `WriteOnEviction` keeps entries memory-only until evicted;
//!   we use `WriteOnInsertion` (and `flush_on_close(false)`, or close writes everything again).
//! - **Resurrection by promotion.** `HybridCache::get` promotes disk hits into memory, and an
//!   in-flight disk read is not cancelled by `remove`: a head removed during a slow read came
//!   back in memory. We read the disk tier with `storage().load()` and promote heads only when
//!   the key's shard version (bumped by every commit/remove under a mutex) did not change.
//! - **Capacity.** Without an explicit capacity the device takes 80 % of the free disk. The
//!   capacity also holds the tombstone log; foyer needs several spare blocks, so the config
//!   requires at least 8 blocks and objects of at most half the disk.
//! - **Layout changes.** foyer cannot recover files written with another block size or
//!   capacity; a `MANIFEST` records them and a mismatch discards the old files (cold start).
//! - **Key hashing.** foyer indexes the disk tier by a 64-bit hash of the key and compares full
//!   keys on read; a 64-bit collision makes the older entry unreachable (harmless for a cache).
//! - **Starvation on memory hits.** A memory-tier lookup or chunk read has no await point
//!   that can return `Pending`; a task streaming a hot object in a loop (or a test reader
//!   spinning on lookups) held a worker forever and starved the writers. Every entry get now
//!   spends tokio's cooperative budget (`tokio::task::consume_budget`).
//! - **Chunk-sized tails.** Re-chunking into a `BytesMut` reserved for a whole chunk and
//!   freezing it made every small body pin a 1 MiB allocation (≈ 5 KiB RSS per object, while
//!   the weighter counted 100 bytes). Short tails are copied to exact-size buffers.
//! - **Runtime drop.** foyer runs on its own runtime (`Spawner::from(Runtime)`), which foyer
//!   shuts down in the background when the last handle goes; a store dropped without
//!   `close()` finishes closing asynchronously, so await `close()` before reopening a directory.

pub mod arena;
pub(crate) mod blob;
pub(crate) mod codec;
mod config;
pub mod counter;
mod dir;
mod error;
mod handover;
pub(crate) mod pacer;
mod read;
mod sched;
mod stats;
mod store;
mod write;

pub use arena::{ArenaStats, ZERO_COPY_MIN, stats as arena_stats};
pub use codec::{Key, ObjectId};
pub use config::{EvictionPolicy, GIB, KIB, MIB, StoreConfig};
pub use error::{Error, ErrorKind};
pub use handover::HandOver;
pub use read::{BodyReader, ReadHandle};
pub use stats::StoreStats;
pub use store::Store;
pub use write::WriteHandle;

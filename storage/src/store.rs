//! [`Store`]: opening the two tiers, lookups, metadata updates, removal, stats and close.
//!
//! Concurrency rules (see the crate docs for why):
//! - every mutation of a head (commit, metadata update, remove, drop after corruption) bumps a
//!   per-shard version under that shard's mutex, and does its foyer insert/remove inside it;
//! - a head read from disk is promoted into the memory tier only if its shard version did not
//!   change during the read, so a slow read can never resurrect a head removed or replaced
//!   meanwhile;
//! - the blocking disk reads run on the blocking pool of the store's dedicated runtime, never
//!   on the caller's workers; decoding a loaded entry (a copy and foyer's xxhash64 check) runs
//!   where the lookup is awaited;
//! - a value in the blob log is kept in the memory tier *light* (its place, not its bytes:
//!   the page cache holds those) and resolved on every get ([`Inner::resolve`]), so nothing
//!   long-lived pins a segment the log has reclaimed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, Compression, DeviceBuilder, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCachePolicy, Load, PsyncIoEngineConfig, RecoverMode, Spawner,
};

use crate::blob::BlobLog;
use crate::codec::{Entry, Head, Key, ObjectId, StoreKey, chunk_key};
use crate::config::StoreConfig;
use crate::counter::Striped;
use crate::dir::{DiskDir, allocated_bytes};
use crate::error::{Error, ErrorKind};
use crate::pacer::Pacer;
use crate::read::ReadHandle;
use crate::stats::{Counters, Listener, StoreStats};
use crate::write::WriteHandle;

const VERSION_SHARDS: usize = 64;

/// The two-tier store. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("disk_dir", &self.inner.foyer_dir)
            .field("chunk_size", &self.inner.chunk_size)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    // Field order is drop order: the cache (and foyer's runtime) before the directory lock.
    pub cache: HybridCache<StoreKey, Entry>,
    pub counters: Arc<Counters>,
    pub pacer: Pacer,
    versions: Box<[Mutex<u64>]>,
    pub chunk_size: usize,
    pub max_object_size: u64,
    pub durable_commit: bool,
    /// Large values on disk (`None`: off, everything in foyer).
    pub blobs: Option<Arc<BlobLog>>,
    memory_capacity: u64,
    disk_capacity: u64,
    closed: AtomicBool,
    /// Set by [`Store::hand_over`]: no new lookups or writes (see `handover`).
    pub handing_over: AtomicBool,
    /// Body readers that may still read chunks through foyer: opened minus done.
    pub readers_opened: Striped,
    pub readers_done: Striped,
    pub readers_pinned: Striped,
    id_seed: [u8; 32],
    id_counter: AtomicU64,
    foyer_dir: PathBuf,
    /// Released by `close()` (or on drop), so the directory can be reopened at once.
    dir: Mutex<Option<DiskDir>>,
}

fn process_seed() -> [u8; 32] {
    use std::hash::BuildHasher;
    let mut h = blake3::Hasher::new();
    for i in 0u64..4 {
        // RandomState is seeded from the OS's randomness.
        let r = std::collections::hash_map::RandomState::new().hash_one(i);
        h.update(&r.to_le_bytes());
    }
    h.update(&std::process::id().to_le_bytes());
    h.update(&now_nanos().to_le_bytes());
    *h.finalize().as_bytes()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn join_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Internal, "storage task failed").with_source(e)
}

impl Store {
    /// Open (or create) the store; recovers the disk tier from `cfg.disk_dir`.
    pub async fn open(cfg: StoreConfig) -> Result<Store, Error> {
        let derived = cfg.validate()?;
        let layout = format!(
            "chunk_size={}\nblock_size={}\ndevice_capacity={}\nblob_segment_size={}\nblob_segments={}",
            cfg.chunk_size,
            derived.block_size,
            derived.device_capacity,
            derived.blob_segment_size,
            derived.blob_segments,
        );
        let path = cfg.disk_dir.clone();
        let (segment_size, segments) = (derived.blob_segment_size, derived.blob_segments);
        let (dir, blobs) = tokio::task::spawn_blocking(move || {
            let dir = DiskDir::open(&path, &layout)?;
            let blobs = match segments {
                0 => None,
                n => Some(Arc::new(BlobLog::open(dir.blob_dir(), segment_size, n)?)),
            };
            Ok::<_, Error>((dir, blobs))
        })
        .await
        .map_err(join_err)??;
        let foyer_dir = dir.foyer_dir().to_path_buf();

        // foyer warns about latency spikes without a dedicated runtime; it also runs the psync
        // engine's blocking reads and writes on this runtime's blocking pool.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.io_threads)
            .max_blocking_threads(4 * cfg.io_threads + 8)
            .thread_name("outpost-storage")
            // Disk reads hand off to this runtime's blocking pool; see `sched` for why its
            // threads must not preempt the request workers.
            .on_thread_start(crate::sched::batch_current_thread)
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the storage runtime", e))?;
        let handle = runtime.handle().clone();
        let spawner = Spawner::from(runtime);

        let counters = Arc::new(Counters::default());
        let device = FsDeviceBuilder::new(&foyer_dir)
            .with_capacity(derived.device_capacity)
            .build()
            .map_err(|e| Error::foyer("create the disk device", e))?;
        let engine = BlockEngineConfig::<StoreKey, Entry, _>::new(device)
            .with_block_size(derived.block_size)
            .with_buffer_pool_size(derived.flush_buffer_size)
            .with_submit_queue_size_threshold(4 * derived.flush_buffer_size)
            .with_flushers(1)
            .with_reclaimers(1)
            .with_tombstone_log(true);
        let builder = HybridCacheBuilder::<StoreKey, Entry>::new()
            .with_name("outpost-storage")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            // Everything is already on its way to disk at insertion; flushing the memory tier
            // on close would write it all a second time.
            .with_flush_on_close(false)
            .with_event_listener(Arc::new(Listener(counters.clone())))
            .memory(cfg.memory_capacity as usize)
            .with_shards(derived.memory_shards)
            .with_eviction_config(cfg.eviction.to_foyer())
            .with_weighter(|_k: &StoreKey, v: &Entry| v.weight())
            .storage()
            .with_io_engine_config(PsyncIoEngineConfig::new())
            .with_engine_config(engine)
            .with_recover_mode(RecoverMode::Quiet)
            .with_compression(Compression::None)
            .with_spawner(spawner);
        // Creating the files and recovering run on the storage runtime, off the caller's workers.
        let cache = handle
            .spawn(builder.build())
            .await
            .map_err(join_err)?
            .map_err(|e| Error::foyer("open the disk tier", e))?;

        let inner = Inner {
            cache,
            counters,
            pacer: Pacer::new((derived.flush_buffer_size / 2) as u64),
            versions: (0..VERSION_SHARDS).map(|_| Mutex::new(0)).collect(),
            chunk_size: cfg.chunk_size,
            max_object_size: cfg.max_object_size,
            durable_commit: cfg.durable_commit,
            blobs,
            memory_capacity: cfg.memory_capacity,
            disk_capacity: cfg.disk_capacity,
            closed: AtomicBool::new(false),
            handing_over: AtomicBool::new(false),
            readers_opened: Striped::new(),
            readers_done: Striped::new(),
            readers_pinned: Striped::new(),
            id_seed: process_seed(),
            id_counter: AtomicU64::new(0),
            foyer_dir,
            dir: Mutex::new(Some(dir)),
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// Look up the object under `key`. A head that cannot be read (I/O error, corruption) is
    /// dropped and reported as a miss; missing or corrupt body chunks are detected while reading.
    pub async fn lookup(&self, key: &Key) -> Result<Option<ReadHandle>, Error> {
        self.inner.check_open()?;
        let k = StoreKey(*key);
        let v0 = self.inner.version(&k);
        match self.inner.get_entry(k, true).await {
            Ok(Some(Entry::Head(head))) if self.inner.chunks_reclaimed(&head) => {
                // An ordinary eviction: a miss now, not a body that breaks off mid-response.
                self.inner.counters.blob_gone.inc();
                self.inner.drop_head_unless_changed(k, v0);
                Ok(None)
            }
            Ok(Some(Entry::Head(head))) => Ok(Some(ReadHandle::new(self.clone(), *key, head))),
            Ok(Some(Entry::Chunk(_))) | Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable head: dropped");
                self.inner.counters.corrupt_reads.inc();
                self.inner.drop_head_unless_changed(k, v0);
                Ok(None)
            }
        }
    }

    /// Start writing a new version of the object under `key`; nothing is visible until
    /// [`WriteHandle::finish`]. Dropping the handle aborts the write.
    pub fn begin_write(&self, key: Key, meta: Bytes) -> WriteHandle {
        WriteHandle::new(self.clone(), key, meta)
    }

    /// Replace the metadata of the object under `key`, keeping its body.
    /// Returns `false` if there is no such object (or it was replaced or removed meanwhile).
    pub async fn update_meta(&self, key: &Key, meta: Bytes) -> Result<bool, Error> {
        self.update_meta_inner(key, None, meta).await
    }

    /// Like [`Store::update_meta`], but only if the object under `key` is still the version
    /// `object_id` (from [`ReadHandle::object_id`]): metadata derived from one version is
    /// never put on another version's body. `false` when it was replaced or removed.
    pub async fn update_meta_of(
        &self,
        key: &Key,
        object_id: &ObjectId,
        meta: Bytes,
    ) -> Result<bool, Error> {
        self.update_meta_inner(key, Some(*object_id), meta).await
    }

    async fn update_meta_inner(
        &self,
        key: &Key,
        expect: Option<ObjectId>,
        meta: Bytes,
    ) -> Result<bool, Error> {
        self.inner.check_open()?;
        if meta.len() > crate::codec::MAX_META {
            return Err(Error::new(ErrorKind::TooLarge, "metadata over 16 MiB"));
        }
        let k = StoreKey(*key);
        for _ in 0..16 {
            let v0 = self.inner.version(&k);
            let head = match self.inner.get_entry(k, true).await {
                Ok(Some(Entry::Head(h))) => h,
                Ok(_) | Err(_) => return Ok(false),
            };
            if expect.is_some_and(|id| id != head.object_id) {
                return Ok(false);
            }
            let new = Entry::Head(Arc::new(Head {
                meta: meta.clone(),
                ..head.light()
            }));
            let mut outcome = None;
            let inner = &self.inner;
            let bytes = new.disk_cost();
            inner
                .pacer
                .admit(
                    bytes,
                    || inner.flush(),
                    || {
                        let mut v = inner.lock_version(&k);
                        let in_memory = inner.cache.memory().get(&k).map(|e| match e.value() {
                            Entry::Head(h) => h.object_id == head.object_id,
                            Entry::Chunk(_) => false,
                        });
                        outcome = match in_memory {
                            Some(true) => Some(true),
                            Some(false) => Some(false),
                            None if *v == v0 => Some(true),
                            None => None,
                        };
                        if outcome == Some(true) {
                            *v += 1;
                            inner.insert(k, new);
                        }
                    },
                )
                .await;
            match outcome {
                Some(true) => {
                    self.inner.counters.meta_updates.inc();
                    return Ok(true);
                }
                Some(false) => return Ok(false),
                None => continue,
            }
        }
        Ok(false)
    }

    /// Remove the object under `key` from both tiers (a tombstone makes it stay removed after
    /// a restart). Readers already streaming it may finish from the disk tier.
    pub fn remove(&self, key: &Key) {
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        self.inner.counters.removes.inc();
        self.inner.remove_head(StoreKey(*key));
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> StoreStats {
        let inner = &self.inner;
        let mut s = StoreStats::default();
        inner.counters.fill(&mut s);
        s.memory_bytes = inner.cache.memory().usage() as u64;
        s.memory_capacity = inner.memory_capacity;
        s.disk_capacity = inner.disk_capacity;
        let disk = inner.cache.statistics();
        s.disk_bytes_written = disk.disk_write_bytes() as u64;
        s.disk_bytes_read = disk.disk_read_bytes() as u64;
        s.disk_allocated_bytes = allocated_bytes(&inner.foyer_dir).unwrap_or(0)
            + inner
                .blobs
                .as_ref()
                .map_or(0, |b| allocated_bytes(b.dir()).unwrap_or(0));
        s.blob_segments = inner.blobs.as_ref().map_or(0, |b| b.segment_count() as u64);
        s
    }

    /// Flush and close for a clean shutdown. Idempotent; later operations fail with
    /// `ErrorKind::Closed`. Await it before reopening the same directory in this process.
    pub async fn close(&self) -> Result<(), Error> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let cache = self.inner.cache.clone();
        let spawner = self.inner.cache.storage().spawner().clone();
        let closed = spawner
            .spawn(async move { cache.close().await })
            .await
            .map_err(|e| Error::foyer("close the disk tier", e))?
            .map_err(|e| Error::foyer("close the disk tier", e));
        // foyer has written and stopped everything: let another store open the directory.
        if closed.is_ok() {
            drop(
                self.inner
                    .dir
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(),
            );
        }
        closed
    }

    /// The configured chunk size.
    pub fn chunk_size(&self) -> usize {
        self.inner.chunk_size
    }

    /// The configured maximum object size.
    pub fn max_object_size(&self) -> u64 {
        self.inner.max_object_size
    }
}

impl Inner {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn check_open(&self) -> Result<(), Error> {
        if self.closed.load(Ordering::Acquire) || self.handing_over.load(Ordering::Acquire) {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    fn shard(&self, k: &StoreKey) -> &Mutex<u64> {
        &self.versions[k.0[0] as usize % VERSION_SHARDS]
    }

    pub fn lock_version(&self, k: &StoreKey) -> MutexGuard<'_, u64> {
        self.shard(k).lock().unwrap_or_else(|p| p.into_inner())
    }

    fn version(&self, k: &StoreKey) -> u64 {
        *self.lock_version(k)
    }

    /// A fresh object id, unique across processes and restarts.
    pub fn new_object_id(&self) -> ObjectId {
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        let mut h = blake3::Hasher::new_keyed(&self.id_seed);
        h.update(&n.to_le_bytes());
        h.update(&now_nanos().to_le_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        id
    }

    /// Wait until foyer has written everything enqueued so far.
    pub fn flush(&self) -> impl Future<Output = ()> + Send + 'static {
        let storage = self.cache.storage().clone();
        async move { storage.wait().await }
    }

    /// Insert into both tiers (memory now, disk through foyer's flusher).
    pub fn insert(&self, k: StoreKey, e: Entry) {
        self.counters.on_memory_insert(&e);
        drop(self.cache.insert(k, e));
    }

    /// Memory first, then disk. `versioned` heads are promoted only if unchanged meanwhile.
    pub async fn get_entry(&self, k: StoreKey, versioned: bool) -> Result<Option<Entry>, Error> {
        // Memory hits complete without any await point: spend tokio's cooperative budget so
        // a task streaming from memory in a loop still yields to the others now and then.
        tokio::task::consume_budget().await;
        if let Some(e) = self.cache.memory().get(&k) {
            self.counters.memory_hits.inc();
            let value = e.value().clone();
            drop(e);
            if value.blob_to_resolve().is_some() {
                return self.resolve(k, value).await;
            }
            if let Some(hot) = value.arena_copy_when_hot() {
                self.replace_in_memory(k, &value, &hot);
                return Ok(Some(hot));
            }
            return Ok(Some(value));
        }
        self.counters.memory_misses.inc();
        let v0 = versioned.then(|| self.version(&k));
        // The pread itself runs on the store runtime's blocking pool (foyer's psync engine);
        // awaiting it here rather than from a task spawned on that runtime saves a thread
        // hand-off per read (12 % of a disk-tier hit was context switching). Decoding (a copy
        // and foyer's xxhash64) then runs on the caller's worker.
        let loaded = self.cache.storage().load(&k).await;
        let value = match loaded {
            Ok(Load::Entry { value, .. }) => value,
            Ok(Load::Piece { piece, .. }) => piece.value().clone(),
            Ok(Load::Miss) | Ok(Load::Throttled) => {
                self.counters.disk_misses.inc();
                return Ok(None);
            }
            Err(e) => {
                self.counters.disk_misses.inc();
                return Err(Error::new(ErrorKind::Corrupt, "disk read failed").with_source(e));
            }
        };
        self.counters.disk_hits.inc();
        match v0 {
            Some(v0) => {
                let v = self.lock_version(&k);
                if *v == v0 {
                    self.counters.on_memory_insert(&value);
                    drop(self.cache.memory().insert(k, value.clone()));
                }
            }
            None => {
                self.counters.on_memory_insert(&value);
                drop(self.cache.memory().insert(k, value.clone()));
            }
        }
        if value.blob_to_resolve().is_some() {
            return self.resolve(k, value).await;
        }
        Ok(Some(value))
    }

    /// Put `new` in the memory tier in place of `old`, if `old` is still there. Heads are
    /// replaced under their version lock, so a concurrent remove or commit wins. A chunk has
    /// no version; a chunk removed in the window between the check and the insert comes back
    /// unreachable (its object id is gone) and is evicted like any cold entry.
    fn replace_in_memory(&self, k: StoreKey, old: &Entry, new: &Entry) {
        let _v = matches!(old, Entry::Head(_)).then(|| self.lock_version(&k));
        let current = self.cache.memory().get(&k);
        if current.is_some_and(|c| c.value().same(old)) {
            self.counters.on_memory_insert(new);
            drop(self.cache.memory().insert(k, new.clone()));
        }
    }

    /// Remove the head under `k` from both tiers if its version is still `v0` (nothing
    /// committed or removed it since it was read).
    fn drop_head_unless_changed(&self, k: StoreKey, v0: u64) {
        let mut v = self.lock_version(&k);
        if *v == v0 {
            *v += 1;
            drop(self.cache.memory().remove(&k));
            self.cache.storage().delete(&k);
        }
    }

    /// Remove a head from both tiers; drop its chunks from memory (disk space is reclaimed by
    /// foyer's block eviction).
    pub fn remove_head(&self, k: StoreKey) {
        let old = {
            let mut v = self.lock_version(&k);
            *v += 1;
            let old = self.cache.memory().remove(&k);
            self.cache.storage().delete(&k);
            old
        };
        if let Some(old) = old
            && let Entry::Head(h) = old.value()
        {
            self.drop_chunks_from_memory(&h.object_id, h.chunk_count);
        }
    }

    pub fn drop_chunks_from_memory(&self, object_id: &ObjectId, chunks: u64) {
        for i in 0..chunks {
            drop(self.cache.memory().remove(&chunk_key(object_id, i)));
        }
    }

    /// Commit `head` under `k`, replacing any previous version.
    pub async fn commit_head(&self, k: StoreKey, head: Head) {
        let e = Entry::Head(Arc::new(head));
        let bytes = e.disk_cost();
        let mut old = None;
        self.pacer
            .admit(
                bytes,
                || self.flush(),
                || {
                    let mut v = self.lock_version(&k);
                    *v += 1;
                    old = self.cache.memory().get(&k);
                    self.insert(k, e);
                },
            )
            .await;
        if let Some(old) = old
            && let Entry::Head(h) = old.value()
        {
            self.drop_chunks_from_memory(&h.object_id, h.chunk_count);
        }
    }

    /// A body read found chunk damage in object `object_id` under `k`: drop that head, unless
    /// it was replaced by another version meanwhile.
    pub async fn invalidate(&self, k: StoreKey, object_id: ObjectId) {
        self.counters.corrupt_reads.inc();
        {
            let mut v = self.lock_version(&k);
            match self.cache.memory().get(&k).map(|e| e.value().clone()) {
                Some(Entry::Head(h)) if h.object_id == object_id => {
                    *v += 1;
                    drop(self.cache.memory().remove(&k));
                    self.cache.storage().delete(&k);
                    return;
                }
                Some(_) => return,
                None => {}
            }
        }
        let v0 = self.version(&k);
        let on_disk = match self.get_entry(k, true).await {
            Ok(Some(Entry::Head(h))) => h.object_id == object_id,
            Ok(_) => false,
            Err(_) => true,
        };
        if on_disk {
            let mut v = self.lock_version(&k);
            if *v == v0 {
                *v += 1;
                drop(self.cache.memory().remove(&k));
                self.cache.storage().delete(&k);
            }
        }
    }
}

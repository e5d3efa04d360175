//! Reading: [`ReadHandle`] (an object's head) and [`BodyReader`] (its body, chunk by chunk).
//!
//! A reader starts at any byte offset: it computes the chunk index and offset within the chunk
//! and never touches earlier chunks; a small body stored inline in the head is served from it.
//! Memory-tier chunks are handed out as slices of the shared
//! `Bytes` (no copy). Each chunk is checked against the head (object id, index, length); disk
//! chunks were also checked by foyer against their xxhash64 when loaded. A missing or damaged chunk ends
//! the read with `ErrorKind::Corrupt`, counts a corrupt read and drops the head (unless a newer
//! version replaced it meanwhile).
//!
//! Heads and chunks whose payload is in the blob log are resolved here too
//! ([`Inner::resolve`]): over the segment's mapping when the pages are cached, else read on the
//! store's blocking pool; a value checked against its xxhash64 as the log requires.

use std::sync::Arc;

use bytes::Bytes;

use crate::blob::Found;
use crate::codec::{Entry, Head, Key, ObjectId, StoreKey, chunk_key};
use crate::error::{Error, ErrorKind};
use crate::store::{Inner, Store};

/// A committed object found by [`Store::lookup`]: metadata plus a way to read the body.
/// It pins one version: readers never mix chunks of two versions.
#[derive(Clone)]
pub struct ReadHandle {
    store: Store,
    key: Key,
    head: Arc<Head>,
}

impl std::fmt::Debug for ReadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadHandle")
            .field("body_len", &self.head.body_len)
            .field("chunk_count", &self.head.chunk_count)
            .finish_non_exhaustive()
    }
}

impl ReadHandle {
    pub(crate) fn new(store: Store, key: Key, head: Arc<Head>) -> Self {
        Self { store, key, head }
    }

    /// The metadata blob stored with the object (or set by `update_meta`).
    pub fn meta(&self) -> &Bytes {
        &self.head.meta
    }

    /// The body length in bytes.
    pub fn body_len(&self) -> u64 {
        self.head.body_len
    }

    /// blake3 of the whole body, computed while it was written.
    pub fn body_checksum(&self) -> &[u8; 32] {
        &self.head.body_hash
    }

    /// The id of this version of the object (a new one for every write).
    pub fn object_id(&self) -> &ObjectId {
        &self.head.object_id
    }

    /// The number of body chunks.
    pub fn chunk_count(&self) -> u64 {
        self.head.chunk_count
    }

    /// The chunk size the body was written with.
    pub fn chunk_size(&self) -> u64 {
        u64::from(self.head.chunk_size)
    }

    /// The whole body, when it is kept in the head (small bodies): no
    /// reader, no chunk lookup.
    pub fn inline_body(&self) -> Option<Bytes> {
        (self.head.is_inline() && self.head.inline.len() as u64 == self.head.body_len)
            .then(|| self.head.inline.clone())
    }

    /// A reader of the body from byte `offset` (at or past the end: an empty reader).
    pub fn reader(&self, offset: u64) -> BodyReader {
        let pos = offset.min(self.head.body_len);
        // Counted while it may read chunks through foyer (see `handover`).
        let counted = !self.head.is_inline() && pos < self.head.body_len;
        if counted {
            self.store.inner.readers_opened.inc();
        }
        BodyReader {
            store: self.store.clone(),
            key: self.key,
            head: self.head.clone(),
            pos,
            failed: false,
            counted,
            pinned: None,
        }
    }
}

/// Streams a body chunk by chunk. The first piece may be partial (when starting mid-chunk);
/// later pieces are whole chunks.
pub struct BodyReader {
    store: Store,
    key: Key,
    head: Arc<Head>,
    pos: u64,
    failed: bool,
    /// Counted in the store's open readers (see `handover`).
    counted: bool,
    /// After a hand-over began: the entries of the remaining chunks, from this index.
    pinned: Option<(u64, Vec<Option<Entry>>)>,
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        self.uncount();
    }
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("pos", &self.pos)
            .field("body_len", &self.head.body_len)
            .finish_non_exhaustive()
    }
}

impl BodyReader {
    /// The next piece of the body, `None` at the end.
    /// `ErrorKind::Corrupt` if a chunk is missing or damaged (the reader stays failed).
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if self.failed {
            return Err(Error::corrupt("the body is missing or corrupt"));
        }
        if self.pos >= self.head.body_len {
            self.uncount();
            return Ok(None);
        }
        if self.head.is_inline() {
            // The whole body is in the head (checked against body_len when it was decoded).
            let piece = self.head.inline.slice(self.pos as usize..);
            self.pos = self.head.body_len;
            return Ok(Some(piece));
        }
        let chunk_size = u64::from(self.head.chunk_size);
        let index = self.pos / chunk_size;
        let within = (self.pos % chunk_size) as usize;
        if self.counted && self.store.handing_over() {
            if self.store.inner.is_closed() {
                // Not pinned in time: its chunks are out of reach. Nothing is dropped
                // (the object is fine; the next process serves it).
                self.failed = true;
                self.uncount();
                return Err(Error::closed());
            }
            self.pin(index).await;
        }
        let inner = &self.store.inner;
        let found = match &self.pinned {
            Some((first, entries)) => match entries.get((index - first) as usize) {
                Some(Some(e)) if e.blob_to_resolve().is_some() => {
                    inner
                        .resolve(chunk_key(&self.head.object_id, index), e.clone())
                        .await
                }
                Some(e) => Ok(e.clone()),
                None => Ok(None),
            },
            None if inner.is_closed() => {
                self.failed = true;
                return Err(Error::closed());
            }
            None => {
                inner
                    .get_entry(chunk_key(&self.head.object_id, index), false)
                    .await
            }
        };
        let problem = match found {
            Ok(Some(Entry::Chunk(c)))
                if c.object_id == self.head.object_id
                    && c.index == index
                    && c.data.len() as u64 == self.head.chunk_len(index)
                    && within < c.data.len() =>
            {
                let piece = c.data.slice(within..);
                self.pos += piece.len() as u64;
                return Ok(Some(piece));
            }
            Ok(Some(_)) => "does not match its head".to_string(),
            Ok(None) => "is missing".to_string(),
            Err(e) => format!("is unreadable: {e}"),
        };
        self.failed = true;
        tracing::warn!(index, problem, "body chunk lost: dropping the object");
        if inner.check_open().is_ok() {
            inner
                .invalidate(StoreKey(self.key), self.head.object_id)
                .await;
        }
        Err(Error::corrupt(format!("chunk {index} {problem}")))
    }

    /// Looks up the entries of chunks `index..` without their payloads, so the rest of the
    /// body reads on after the store is closed (see `handover`).
    async fn pin(&mut self, index: u64) {
        let inner = &self.store.inner;
        let mut entries = Vec::with_capacity((self.head.chunk_count - index) as usize);
        for i in index..self.head.chunk_count {
            let e = inner
                .get_light(chunk_key(&self.head.object_id, i))
                .await
                .ok()
                .flatten();
            entries.push(e);
        }
        self.pinned = Some((index, entries));
        inner.readers_pinned.inc();
        self.uncount();
    }

    fn uncount(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.store.inner.readers_done.inc();
        }
    }

    /// Whether this reads the body of the very version `h` pins.
    pub fn is_of(&self, h: &ReadHandle) -> bool {
        self.key == h.key && self.head.object_id == h.head.object_id
    }

    /// The byte offset of the next piece.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Read everything from the current position into one buffer (for tests and small bodies).
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, Error> {
        let remaining = self.head.body_len.saturating_sub(self.pos);
        let mut out = Vec::with_capacity(remaining.min(64 << 20) as usize);
        while let Some(piece) = self.next_chunk().await? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }
}

impl Inner {
    /// Whether `head`'s chunks were in blob log segments that have been reclaimed since.
    pub(crate) fn chunks_reclaimed(&self, head: &Head) -> bool {
        match (&self.blobs, head.first_segment) {
            (Some(blobs), id) if id != crate::codec::NO_SEGMENT && head.chunk_count > 0 => {
                !blobs.holds_segment(id)
            }
            _ => false,
        }
    }

    /// The entry with its payload read from the blob log: over the segment's mapping when
    /// its pages are cached (the node `sendfile`s it), else read on the store's blocking pool.
    /// A payload whose segment was reclaimed is a miss, and its entry is dropped.
    pub(crate) async fn resolve(&self, k: StoreKey, light: Entry) -> Result<Option<Entry>, Error> {
        let (Some(blobs), Some((at, spill))) = (self.blobs.as_ref(), light.blob_to_resolve())
        else {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "blob ref without a blob log",
            ));
        };
        let bytes = match blobs.find(&at, spill)? {
            Found::Resident(bytes) => {
                self.counters.blob_resident.inc();
                bytes
            }
            Found::Cold(read) => {
                self.counters.blob_cold.inc();
                let spawner = self.cache.storage().spawner().clone();
                let bytes = spawner
                    .spawn_blocking(move || read.read())
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Internal, "blob read task failed").with_source(e)
                    })??;
                spill
                    .checked()
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                bytes
            }
            Found::Gone => {
                self.counters.blob_gone.inc();
                let mut v = self.lock_version(&k);
                // Only this very entry: a newer version under `k` may be on disk meanwhile.
                let current = self.cache.memory().get(&k);
                if current.is_some_and(|c| c.value().same(&light)) {
                    *v += 1;
                    drop(self.cache.memory().remove(&k));
                    self.cache.storage().delete(&k);
                }
                return Ok(None);
            }
        };
        Ok(Some(light.with_payload(bytes)))
    }
}

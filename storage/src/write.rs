//! Writing: [`WriteHandle`] re-chunks a body as it arrives and commits it atomically.
//!
//! A body that ends before filling its first chunk, of at most `INLINE_MAX` bytes, is stored
//! inside the head instead of a chunk (one entry and one disk read per object).
//! Each full chunk is inserted at once (memory tier now, disk tier through foyer's flusher,
//! paced so foyer never drops it) under `chunk_key(object_id, index)`, with a fresh object id
//! per write so two versions never share a chunk. `finish()` inserts the head last, so readers
//! see the old object or the whole new one. With `durable_commit` it first waits until every
//! chunk is written to the disk files and checks they are all indexed there: a crash after
//! that point finds complete objects, a crash before it finds no head at all.
//!
//! Dropping the handle without `finish()` aborts: no head is written; the chunks already
//! written are removed from memory and become unreachable garbage on disk, reclaimed by
//! foyer's block eviction.

use bytes::{Bytes, BytesMut};

use crate::blob::Spill;
use crate::codec::{
    Chunk, Entry, Head, INLINE_MAX, Key, NO_SEGMENT, ObjectId, StoreKey, chunk_key,
};
use crate::error::{Error, ErrorKind};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A `write` future is running (if it is dropped half-way the handle stays here).
    Writing,
    /// Refused (too large) or cancelled: every later call fails with this kind.
    Failed(ErrorKind),
    Done,
}

/// An object being written. `finish()` commits it; dropping it aborts.
pub struct WriteHandle {
    store: Store,
    key: Key,
    meta: Bytes,
    object_id: ObjectId,
    buf: BytesMut,
    next_index: u64,
    /// Chunk 0's spill (its segment goes into the head: see `Head::first_segment`).
    first_spill: Option<std::sync::Arc<Spill>>,
    body_len: u64,
    hasher: blake3::Hasher,
    state: State,
}

impl std::fmt::Debug for WriteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHandle")
            .field("body_len", &self.body_len)
            .field("chunks", &self.next_index)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl WriteHandle {
    pub(crate) fn new(store: Store, key: Key, meta: Bytes) -> Self {
        let object_id = store.inner.new_object_id();
        Self {
            store,
            key,
            meta,
            object_id,
            buf: BytesMut::new(),
            next_index: 0,
            first_spill: None,
            body_len: 0,
            hasher: blake3::Hasher::new(),
            state: State::Open,
        }
    }

    /// Replace the metadata to be committed with the body.
    pub fn set_meta(&mut self, meta: Bytes) {
        self.meta = meta;
    }

    /// Body bytes accepted so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    fn check(&self) -> Result<(), Error> {
        match self.state {
            State::Open => self.store.inner.check_open(),
            State::Writing => Err(Error::new(
                ErrorKind::Internal,
                "a previous write on this handle was cancelled",
            )),
            State::Failed(ErrorKind::TooLarge) => Err(self.too_large()),
            State::Failed(kind) => Err(Error::new(kind, "this write has failed")),
            State::Done => Err(Error::new(ErrorKind::Internal, "this write is finished")),
        }
    }

    fn too_large(&self) -> Error {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "body over max_object_size ({} bytes): not cached",
                self.store.inner.max_object_size
            ),
        )
    }

    /// Append body bytes (any size; they are re-chunked internally).
    /// `ErrorKind::TooLarge` once the body exceeds `max_object_size`: the write is then void.
    pub async fn write(&mut self, mut data: Bytes) -> Result<(), Error> {
        self.check()?;
        if self.body_len + data.len() as u64 > self.store.inner.max_object_size {
            self.fail(ErrorKind::TooLarge);
            self.store.inner.counters.writes_too_large.inc();
            return Err(self.too_large());
        }
        self.state = State::Writing;
        self.hasher.update(&data);
        self.body_len += data.len() as u64;
        let chunk_size = self.store.inner.chunk_size;
        if !self.buf.is_empty() {
            let take = (chunk_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data.split_to(take));
            if self.buf.len() == chunk_size {
                let full = into_arena(self.buf.split().freeze());
                self.emit(full).await;
            }
        }
        // Whole chunks straight from the caller's buffer.
        while data.len() >= chunk_size {
            let full = into_arena(data.split_to(chunk_size));
            self.emit(full).await;
        }
        if !data.is_empty() {
            self.buf.reserve(chunk_size);
            self.buf.extend_from_slice(&data);
        }
        self.state = State::Open;
        Ok(())
    }

    async fn emit(&mut self, data: Bytes) {
        let inner = &self.store.inner;
        let index = self.next_index;
        let spill = Spill::for_payload(inner.blobs.as_ref(), data.len());
        if index == 0 {
            self.first_spill.clone_from(&spill);
        }
        let e = Entry::Chunk(std::sync::Arc::new(Chunk::new(
            self.object_id,
            index,
            data,
            spill,
        )));
        let k = chunk_key(&self.object_id, index);
        let bytes = e.disk_cost();
        inner
            .pacer
            .admit(bytes, || inner.flush(), || inner.insert(k, e))
            .await;
        self.next_index += 1;
    }

    /// Commit: the object becomes visible atomically (and survives a restart once foyer has
    /// flushed the head). Returns `Ok` also when the object could not be kept on disk (it is
    /// then simply not cached, counted in `writes_dropped`).
    pub async fn finish(mut self) -> Result<(), Error> {
        self.check()?;
        if self.meta.len() > crate::codec::MAX_META {
            self.fail(ErrorKind::TooLarge);
            self.store.inner.counters.writes_too_large.inc();
            return Err(Error::new(
                ErrorKind::TooLarge,
                "metadata over 16 MiB: not cached",
            ));
        }
        self.state = State::Writing;
        // A small body that never filled a chunk goes inside the head: one entry, one disk
        // read per hit.
        let mut inline = Bytes::new();
        if !self.buf.is_empty() {
            // The buffer was reserved for a whole chunk: copy the short tail to an exact-size
            // allocation (in the zero-copy arena if large), or every small object would pin
            // `chunk_size` bytes of heap while the weighter counts only its length.
            let last = crate::arena::copy(&self.buf);
            self.buf = BytesMut::new();
            if self.next_index == 0 && last.len() <= INLINE_MAX {
                inline = last;
            } else {
                self.emit(last).await;
            }
        }
        let inner = self.store.inner.clone();
        let chunk_count = self.next_index;
        if inner.durable_commit && chunk_count > 0 {
            inner.pacer.flush_all(|| inner.flush()).await;
            let storage = inner.cache.storage();
            let lost = (0..chunk_count)
                .filter(|i| !storage.may_contains(&chunk_key(&self.object_id, *i)))
                .count();
            if lost > 0 {
                tracing::warn!(
                    lost,
                    chunk_count,
                    "chunks did not reach the disk tier: object not committed"
                );
                inner.counters.writes_dropped.inc();
                self.fail(ErrorKind::Internal);
                self.state = State::Done;
                return Ok(());
            }
        }
        inner.check_open()?;
        let spill = Spill::for_payload(inner.blobs.as_ref(), inline.len());
        let head = Head {
            object_id: self.object_id,
            body_len: self.body_len,
            chunk_size: inner.chunk_size as u32,
            chunk_count,
            body_hash: *self.hasher.finalize().as_bytes(),
            meta: std::mem::take(&mut self.meta),
            inline,
            hits: Default::default(),
            spill,
            // Placed by now when `durable_commit` waited for the chunks to be written.
            first_segment: self
                .first_spill
                .as_ref()
                .and_then(|s| s.at())
                .map_or(NO_SEGMENT, |at| at.segment),
        };
        inner.commit_head(StoreKey(self.key), head).await;
        inner.counters.writes_committed.inc();
        self.state = State::Done;
        Ok(())
    }

    /// Void the write: forget the chunks written so far.
    fn fail(&mut self, kind: ErrorKind) {
        self.store
            .inner
            .drop_chunks_from_memory(&self.object_id, self.next_index);
        self.next_index = 0;
        self.buf = BytesMut::new();
        self.state = State::Failed(kind);
    }
}

/// A full chunk moved into the zero-copy arena (the node sends it with sendfile). The copy
/// also stops a chunk cut from the caller's buffer pinning that whole buffer.
fn into_arena(data: Bytes) -> Bytes {
    if data.len() >= crate::arena::ZERO_COPY_MIN {
        crate::arena::copy(&data)
    } else {
        data
    }
}

impl Drop for WriteHandle {
    fn drop(&mut self) {
        match self.state {
            State::Done | State::Failed(_) => {}
            State::Open | State::Writing => {
                self.store.inner.counters.writes_aborted.inc();
                self.store
                    .inner
                    .drop_chunks_from_memory(&self.object_id, self.next_index);
            }
        }
    }
}

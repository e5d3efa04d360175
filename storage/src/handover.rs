//! Handing the disk directory over to another process (a binary upgrade) while bodies are
//! still being read from it.
//!
//! foyer's files cannot be open in two processes at once, so the old process must close
//! the store before the new one opens it; but a reader may be in the middle of a large body
//! (a 100 MiB download) that would take far longer than anyone should wait for. What a
//! reader needs after its head is the places of its remaining chunks, and those are cheap to
//! learn: [`Store::hand_over`] stops new lookups and writes, and every open [`BodyReader`]
//! (crate::BodyReader) looks up its remaining chunk entries at its next read ("pins" them)
//! without loading their payloads. The store then closes. A pinned chunk is either in
//! memory (a `Bytes` the reader holds) or a place in a blob log segment, which this process
//! keeps mapped and open: segment files are written once and never changed, and one the new
//! process deletes stays readable through the mapping, so the reader streams on with the
//! right bytes. A reader that does not read again before the deadline (its client stalled)
//! is cut off when it does: its chunks are no longer reachable.
//!
//! Owns: the hand-over flag's protocol and the light lookups of pinning. Must not know:
//! HTTP, processes or sockets (the node's upgrade does those).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::codec::{Entry, StoreKey};
use crate::error::Error;
use crate::store::{Inner, Store};
use foyer::Load;

/// What [`Store::hand_over`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandOver {
    /// Readers that pinned their remaining chunks and read on after the close.
    pub pinned: u64,
    /// Readers that had not read again by the deadline (cut off when they do).
    pub left: u64,
    /// How long it took, closing foyer included.
    pub took: Duration,
}

impl Store {
    /// Stops new lookups and writes (they fail as `ErrorKind::Closed`), lets open body
    /// readers pin their remaining chunks for up to `wait`, and closes the store so another
    /// process can open the directory. Writes in progress are not committed.
    pub async fn hand_over(&self, wait: Duration) -> Result<HandOver, Error> {
        let start = Instant::now();
        let inner = &self.inner;
        inner.handing_over.store(true, Ordering::Release);
        let pinned_before = inner.readers_pinned.get();
        let deadline = start + wait;
        while inner.open_readers() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let left = inner.open_readers();
        self.close().await?;
        Ok(HandOver {
            pinned: inner.readers_pinned.get().wrapping_sub(pinned_before),
            left,
            took: start.elapsed(),
        })
    }

    /// Whether [`Store::hand_over`] has begun (the store takes no new work).
    pub fn handing_over(&self) -> bool {
        self.inner.handing_over.load(Ordering::Acquire)
    }
}

impl Inner {
    /// Body readers that may still need foyer.
    pub fn open_readers(&self) -> u64 {
        self.readers_opened
            .get()
            .saturating_sub(self.readers_done.get())
    }

    /// The entry under `k` as stored: a blob log payload stays a place (not read), and
    /// nothing is promoted to the memory tier.
    pub async fn get_light(&self, k: StoreKey) -> Result<Option<Entry>, Error> {
        if let Some(e) = self.cache.memory().get(&k) {
            return Ok(Some(e.value().clone()));
        }
        match self.cache.storage().load(&k).await {
            Ok(Load::Entry { value, .. }) => Ok(Some(value)),
            Ok(Load::Piece { piece, .. }) => Ok(Some(piece.value().clone())),
            Ok(Load::Miss) | Ok(Load::Throttled) => Ok(None),
            Err(e) => Err(Error::foyer("read a chunk entry", e)),
        }
    }
}

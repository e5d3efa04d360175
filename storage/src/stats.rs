//! Counters of a [`crate::Store`] and the [`StoreStats`] snapshot.
//!
//! Hits and misses count every entry get (heads from `lookup`, chunks from body readers) per
//! tier: a memory miss goes on to the disk tier, where it is a disk hit or a disk miss.
//! Memory entries and evictions come from a foyer event listener. foyer exposes neither the
//! disk entry count nor disk evictions, so the disk tier reports bytes written and read and
//! the space allocated on the file system.

use foyer::{Event, EventListener};

use crate::codec::{Entry, StoreKey};
use crate::counter::Striped;

/// A snapshot of a store's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries in the memory tier (heads + chunks).
    pub memory_entries: u64,
    /// Object heads in the memory tier.
    pub memory_objects: u64,
    /// Weighted bytes used in the memory tier.
    pub memory_bytes: u64,
    /// Memory tier capacity in bytes.
    pub memory_capacity: u64,
    /// Entries evicted from the memory tier.
    pub memory_evictions: u64,
    /// Entry gets served from memory.
    pub memory_hits: u64,
    /// Entry gets not found in memory.
    pub memory_misses: u64,
    /// Entry gets served from disk (after a memory miss).
    pub disk_hits: u64,
    /// Entry gets not found on disk either.
    pub disk_misses: u64,
    /// Bytes written to the disk tier's files since open.
    pub disk_bytes_written: u64,
    /// Bytes read from the disk tier's files since open.
    pub disk_bytes_read: u64,
    /// Bytes allocated by the disk tier's files on the file system.
    pub disk_allocated_bytes: u64,
    /// Configured disk tier capacity in bytes.
    pub disk_capacity: u64,
    /// Reads that found a missing or corrupt chunk (the object was dropped).
    pub corrupt_reads: u64,
    /// Objects committed by `finish()`.
    pub writes_committed: u64,
    /// Writes dropped without `finish()` (aborted).
    pub writes_aborted: u64,
    /// Writes refused as over `max_object_size`.
    pub writes_too_large: u64,
    /// Writes finished but not committed because a chunk did not reach the disk tier.
    pub writes_dropped: u64,
    /// Metadata-only updates.
    pub meta_updates: u64,
    /// `remove` calls.
    pub removes: u64,
    /// Segment files of the blob log (large values).
    pub blob_segments: u64,
    /// Blob log reads whose pages were cached (served over the mapping, with `sendfile`).
    pub blob_resident_reads: u64,
    /// Blob log reads whose pages were not all cached (`pread` on the store's blocking pool).
    pub blob_cold_reads: u64,
    /// Blob log reads that found their segment reclaimed (a miss).
    pub blob_gone_reads: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub memory_hits: Striped,
    pub memory_misses: Striped,
    pub disk_hits: Striped,
    pub disk_misses: Striped,
    pub corrupt_reads: Striped,
    pub writes_committed: Striped,
    pub writes_aborted: Striped,
    pub writes_too_large: Striped,
    pub writes_dropped: Striped,
    pub meta_updates: Striped,
    pub removes: Striped,
    pub blob_resident: Striped,
    pub blob_cold: Striped,
    pub blob_gone: Striped,
    // Maintained by the listener and by our own memory inserts.
    pub memory_inserts: Striped,
    pub memory_head_inserts: Striped,
    pub memory_leaves: Striped,
    pub memory_head_leaves: Striped,
    pub memory_evictions: Striped,
}

impl Counters {
    /// Record one insert into the memory tier.
    pub fn on_memory_insert(&self, e: &Entry) {
        self.memory_inserts.inc();
        if matches!(e, Entry::Head(_)) {
            self.memory_head_inserts.inc();
        }
    }

    pub fn fill(&self, s: &mut StoreStats) {
        let g = Striped::get;
        s.memory_entries = g(&self.memory_inserts).saturating_sub(g(&self.memory_leaves));
        s.memory_objects = g(&self.memory_head_inserts).saturating_sub(g(&self.memory_head_leaves));
        s.memory_evictions = g(&self.memory_evictions);
        s.memory_hits = g(&self.memory_hits);
        s.memory_misses = g(&self.memory_misses);
        s.disk_hits = g(&self.disk_hits);
        s.disk_misses = g(&self.disk_misses);
        s.corrupt_reads = g(&self.corrupt_reads);
        s.writes_committed = g(&self.writes_committed);
        s.writes_aborted = g(&self.writes_aborted);
        s.writes_too_large = g(&self.writes_too_large);
        s.writes_dropped = g(&self.writes_dropped);
        s.meta_updates = g(&self.meta_updates);
        s.removes = g(&self.removes);
        s.blob_resident_reads = g(&self.blob_resident);
        s.blob_cold_reads = g(&self.blob_cold);
        s.blob_gone_reads = g(&self.blob_gone);
    }
}

/// foyer event listener feeding the memory-tier counters.
pub(crate) struct Listener(pub std::sync::Arc<Counters>);

impl EventListener for Listener {
    type Key = StoreKey;
    type Value = Entry;

    fn on_leave(&self, reason: Event, _key: &StoreKey, value: &Entry) {
        self.0.memory_leaves.inc();
        if matches!(value, Entry::Head(_)) {
            self.0.memory_head_leaves.inc();
        }
        if reason == Event::Evict {
            self.0.memory_evictions.inc();
        }
    }
}

//! [`StoreConfig`]: the typed configuration of a [`crate::Store`], its defaults and validation.
//!
//! Sizes are bytes. The disk capacity is always explicit (foyer's own default would take 80 % of
//! the free disk). The derived foyer parameters (block size, flush buffer, memory shards) are
//! computed here so the rules live in one place:
//! - a foyer block must hold at least 4 chunks (entries larger than a block are silently dropped
//!   from disk by foyer 0.22), so `block_size >= 4 * chunk_size` plus per-entry padding;
//! - the disk must hold at least 8 blocks (foyer needs spare clean blocks to keep writing);
//! - an object can be at most half the disk (else it evicts itself while being written);
//! - the blob log (large values, see `blob`) gets `large_value_share` percent of the disk in
//!   segments of up to 64 MiB, if that leaves it at least 4 segments, each able to hold a
//!   chunk, room for half the largest object, and foyer its 8 blocks; otherwise it is off
//!   and every value goes to foyer.

use std::path::PathBuf;

use crate::error::Error;

/// One KiB.
pub const KIB: u64 = 1024;
/// One MiB.
pub const MIB: u64 = 1024 * KIB;
/// One GiB.
pub const GIB: u64 = 1024 * MIB;

/// foyer's I/O page: entries are padded to it on disk.
pub(crate) const PAGE: usize = 4096;
/// Bytes of the disk capacity kept back for the lock and manifest files.
pub(crate) const DIR_RESERVE: u64 = 64 * KIB;

/// The memory tier's eviction policy (foyer's in-memory algorithms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Least recently used (foyer's default).
    #[default]
    Lru,
    /// S3-FIFO: scan resistant, good for one-hit-wonder heavy CDN traffic.
    S3Fifo,
    /// W-TinyLFU (window LRU + frequency sketch).
    Lfu,
    /// Plain FIFO.
    Fifo,
    /// SIEVE.
    Sieve,
}

impl EvictionPolicy {
    /// A short stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::Lru => "lru",
            EvictionPolicy::S3Fifo => "s3fifo",
            EvictionPolicy::Lfu => "lfu",
            EvictionPolicy::Fifo => "fifo",
            EvictionPolicy::Sieve => "sieve",
        }
    }

    pub(crate) fn to_foyer(self) -> foyer::EvictionConfig {
        match self {
            EvictionPolicy::Lru => foyer::LruConfig::default().into(),
            EvictionPolicy::S3Fifo => foyer::S3FifoConfig::default().into(),
            EvictionPolicy::Lfu => foyer::LfuConfig::default().into(),
            EvictionPolicy::Fifo => foyer::FifoConfig::default().into(),
            EvictionPolicy::Sieve => foyer::SieveConfig.into(),
        }
    }
}

/// Configuration of a [`crate::Store`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Memory tier capacity in bytes (entries are weighted by their size plus a fixed overhead).
    pub memory_capacity: u64,
    /// Directory of the disk tier (created if missing; owned exclusively by one store).
    pub disk_dir: PathBuf,
    /// Disk tier capacity in bytes: the files under `disk_dir` never allocate more than this.
    pub disk_capacity: u64,
    /// Body chunk size in bytes (default 1 MiB).
    pub chunk_size: usize,
    /// Largest storable body; writes beyond it fail with `ErrorKind::TooLarge`.
    pub max_object_size: u64,
    /// Memory tier eviction policy.
    pub eviction: EvictionPolicy,
    /// foyer block size (the disk eviction unit); 0 = derive (16 MiB, or more for big chunks).
    pub block_size: usize,
    /// foyer flush buffer in bytes; 0 = derive (one block). At most half of it is in flight.
    pub flush_buffer_size: usize,
    /// Worker threads of the store's dedicated runtime (foyer flushers, reclaimers, I/O
    /// completion). Blocking reads and writes run on its blocking pool.
    pub io_threads: usize,
    /// If true (default), `finish()` waits until all body chunks are written to the disk files
    /// before the head entry is inserted, so a crash can never leave a head whose chunks were
    /// not written yet, and checks every chunk reached the disk tier (else the object is
    /// silently not committed and `writes_dropped` counts it).
    pub durable_commit: bool,
    /// Percent of the disk capacity given to the blob log, where values of at least 32 KiB
    /// are kept in files the node sends from with `sendfile` (default 75; 0 = off: every
    /// value in foyer's block files).
    pub large_value_share: u8,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            memory_capacity: 256 * MIB,
            disk_dir: PathBuf::from("outpost-cache"),
            disk_capacity: 4 * GIB,
            chunk_size: MIB as usize,
            max_object_size: GIB,
            eviction: EvictionPolicy::default(),
            block_size: 0,
            flush_buffer_size: 0,
            io_threads: 2,
            durable_commit: true,
            large_value_share: 75,
        }
    }
}

/// Values derived from a validated [`StoreConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Derived {
    pub block_size: usize,
    pub flush_buffer_size: usize,
    pub device_capacity: usize,
    pub memory_shards: usize,
    /// Blob log segment size (0 with `blob_segments`: no blob log).
    pub blob_segment_size: u64,
    /// Segments the blob log may keep.
    pub blob_segments: usize,
}

fn align_up(v: usize, a: usize) -> usize {
    v.div_ceil(a) * a
}

/// Bytes an entry of `encoded` bytes takes in foyer's buffer and on disk.
pub(crate) fn disk_footprint(encoded: usize) -> usize {
    // foyer's entry header is well under 64 bytes.
    align_up(encoded + 64, PAGE)
}

impl StoreConfig {
    /// A config with the given tiers and defaults for everything else.
    pub fn new(disk_dir: impl Into<PathBuf>, memory_capacity: u64, disk_capacity: u64) -> Self {
        Self {
            disk_dir: disk_dir.into(),
            memory_capacity,
            disk_capacity,
            ..Self::default()
        }
    }

    /// Check the config and derive foyer's parameters; every problem is reported at once.
    pub(crate) fn validate(&self) -> Result<Derived, Error> {
        let mut problems = Vec::new();
        if !(4 * KIB as usize..=64 * MIB as usize).contains(&self.chunk_size) {
            problems.push(format!(
                "chunk_size {} must be between 4 KiB and 64 MiB",
                self.chunk_size
            ));
        }
        let chunk_footprint = disk_footprint(self.chunk_size + 128);
        let min_block = 4 * chunk_footprint + PAGE;
        let block_size = if self.block_size == 0 {
            align_up(min_block.max(16 * MIB as usize), PAGE)
        } else {
            align_up(self.block_size, PAGE)
        };
        if block_size < min_block {
            problems.push(format!(
                "block_size {block_size} must be at least 4 chunks ({min_block} bytes with padding)"
            ));
        }
        let flush_buffer_size = if self.flush_buffer_size == 0 {
            block_size
        } else {
            align_up(self.flush_buffer_size, PAGE)
        };
        if flush_buffer_size < 4 * chunk_footprint {
            problems.push(format!(
                "flush_buffer_size {flush_buffer_size} must hold at least 4 chunks ({} bytes)",
                4 * chunk_footprint
            ));
        }
        let device_capacity = self.disk_capacity.saturating_sub(DIR_RESERVE);
        if device_capacity < 8 * block_size as u64 {
            problems.push(format!(
                "disk_capacity {} must hold at least 8 blocks of {block_size} bytes (plus {DIR_RESERVE})",
                self.disk_capacity
            ));
        }
        // Half of the configured capacity (what operators write down); the
        // small directory reserve does not matter at this scale.
        if self.max_object_size > self.disk_capacity / 2 {
            problems.push(format!(
                "max_object_size {} must be at most half the disk capacity ({})",
                self.max_object_size,
                self.disk_capacity / 2
            ));
        }
        if self.memory_capacity < 4 * self.chunk_size as u64 {
            problems.push(format!(
                "memory_capacity {} must hold at least 4 chunks",
                self.memory_capacity
            ));
        }
        if self.large_value_share > 95 {
            problems.push(format!(
                "large_value_share {} must be a percentage of at most 95",
                self.large_value_share
            ));
        }
        if self.io_threads == 0 || self.io_threads > 64 {
            problems.push(format!("io_threads {} must be 1..=64", self.io_threads));
        }
        if self.disk_dir.as_os_str().is_empty() {
            problems.push("disk_dir must not be empty".to_string());
        }
        if !problems.is_empty() {
            return Err(Error::config(problems.join("; ")));
        }
        // Each memory shard has capacity / shards: keep room for >= 16 chunks per shard.
        let per_shard = 16 * (self.chunk_size as u64 + 256);
        let memory_shards = (self.memory_capacity / per_shard).clamp(1, 16) as usize;
        let (blob_segment_size, blob_segments) = self.blob_layout(device_capacity, block_size);
        let device_capacity = device_capacity - blob_segment_size * blob_segments as u64;
        Ok(Derived {
            block_size,
            flush_buffer_size,
            device_capacity: (device_capacity as usize / PAGE) * PAGE,
            memory_shards,
            blob_segment_size,
            blob_segments,
        })
    }
}

impl StoreConfig {
    /// Segment size and count of the blob log, `(0, 0)` when it is off (see the module doc).
    fn blob_layout(&self, device_capacity: u64, block_size: usize) -> (u64, usize) {
        let page = PAGE as u64;
        let want = device_capacity / 100 * u64::from(self.large_value_share);
        let min_segment = 2 * (align_up(self.chunk_size, PAGE) as u64 + page);
        // Up to 64 MiB, larger when that would make more than MAX_SEGMENTS files.
        let segment = (want / 16)
            .clamp(min_segment, (64 * MIB).max(min_segment))
            .max(want.div_ceil(crate::blob::MAX_SEGMENTS))
            .div_ceil(page)
            * page;
        let count = want / segment.max(1);
        let blob_bytes = segment * count;
        // With chunks under BLOB_MIN no value is large enough to go there.
        let usable = self.chunk_size >= crate::blob::BLOB_MIN
            && count >= 4
            && blob_bytes / 2 >= self.max_object_size
            && device_capacity - blob_bytes >= 8 * block_size as u64;
        match usable {
            true => (segment, count as usize),
            false => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        let d = StoreConfig::default().validate();
        assert!(d.is_ok(), "{d:?}");
        let Ok(d) = d else { return };
        assert!(d.block_size >= 4 * MIB as usize);
        assert_eq!(d.block_size % PAGE, 0);
        assert!(d.device_capacity as u64 <= 4 * GIB);
        assert_eq!(d.memory_shards, 15);
    }

    #[test]
    fn block_size_must_hold_four_chunks() {
        let cfg = StoreConfig {
            block_size: 4 * MIB as usize,
            ..StoreConfig::default()
        };
        let err = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("block_size"), "{err}");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let cfg = StoreConfig {
            chunk_size: 10,
            disk_capacity: MIB,
            memory_capacity: 0,
            io_threads: 0,
            ..StoreConfig::default()
        };
        let err = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for needle in [
            "chunk_size",
            "disk_capacity",
            "max_object_size",
            "memory_capacity",
            "io_threads",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }

    #[test]
    fn the_blob_log_gets_its_share_when_it_fits() {
        let Ok(d) = StoreConfig::default().validate() else {
            panic!("default config invalid");
        };
        // 75 % of 4 GiB in 64 MiB segments, the rest to foyer.
        assert_eq!(d.blob_segment_size, 64 * MIB);
        assert_eq!(d.blob_segments, 47);
        assert_eq!(
            d.device_capacity as u64 + 47 * 64 * MIB,
            (4 * GIB - DIR_RESERVE) / PAGE as u64 * PAGE as u64
        );
        for cfg in [
            StoreConfig {
                large_value_share: 0,
                ..StoreConfig::default()
            },
            // Half the largest object would not fit the log.
            StoreConfig {
                max_object_size: 2 * GIB,
                large_value_share: 40,
                ..StoreConfig::default()
            },
            // foyer would keep fewer than 8 blocks.
            StoreConfig {
                disk_capacity: 160 * MIB,
                max_object_size: 16 * MIB,
                ..StoreConfig::default()
            },
            // No value could be large enough for the log.
            StoreConfig {
                chunk_size: 16 * KIB as usize,
                ..StoreConfig::default()
            },
        ] {
            let d = cfg.validate().map_err(|e| e.to_string());
            assert!(
                matches!(
                    d,
                    Ok(Derived {
                        blob_segments: 0,
                        ..
                    })
                ),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_large_disk_gets_larger_segments_not_more_files() {
        let cfg = StoreConfig {
            disk_capacity: 100 * GIB,
            ..StoreConfig::default()
        };
        let Ok(d) = cfg.validate() else {
            panic!("100 GiB config invalid");
        };
        assert!(d.blob_segments as u64 <= crate::blob::MAX_SEGMENTS, "{d:?}");
        assert!(d.blob_segment_size > 64 * MIB && d.blob_segment_size % PAGE as u64 == 0);
        assert!(
            d.blob_segment_size * d.blob_segments as u64 >= 74 * GIB,
            "{d:?}"
        );
    }

    #[test]
    fn small_chunks_allow_small_blocks() {
        let cfg = StoreConfig {
            chunk_size: 64 * KIB as usize,
            block_size: 512 * KIB as usize,
            disk_capacity: 16 * MIB,
            max_object_size: 4 * MIB,
            memory_capacity: 4 * MIB,
            ..StoreConfig::default()
        };
        let d = cfg.validate();
        assert!(d.is_ok(), "{d:?}");
    }
}

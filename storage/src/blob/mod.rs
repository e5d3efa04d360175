//! The blob log: large values on the disk tier, in files the kernel can send from.
//!
//! foyer's block engine keeps an entry's place in its files private and returns every disk
//! read as a copy (`pread` into its buffer, its xxhash64 over it, our decode's copy out of
//! it): four passes over each body before the socket's own copy, and twice the CPU per
//! request of nginx, which `sendfile`s its cache file. So a value of at least [`BLOB_MIN`]
//! bytes (an inline body or a chunk) goes to disk here instead, and its foyer entry holds only
//! a [`BlobRef`]: segment, offset, length, xxhash64.
//!
//! # Layout
//! `disk_dir/blobs/` holds segment files `{id:016x}.seg`, each `segment_size` bytes, allocated
//! in full when created (`fallocate`, so the space is accounted at once and a mapping never
//! reaches past the end). The first page is a header (magic, format, id, size); values follow,
//! each at a page-aligned offset, written once with `pwrite` and never changed. Ids only grow.
//! When a new segment would exceed the log's capacity, the oldest file is deleted (FIFO, like
//! foyer's blocks); refs into it then find nothing and read as a miss.
//!
//! # Reading
//! Every segment is mapped read-only (`memmap2`) and registered with the arena's `locate`, so
//! a slice of it is sent with `sendfile(2)` from the segment file exactly like an arena value.
//! A read first asks `mincore(2)` whether the value's pages are in the page cache: if they
//! are, the value is a `Bytes` over the mapping (no copy, no fault that waits for the disk);
//! if not, it is read with `pread` on the store runtime's blocking pool (never on the caller's
//! worker) and its pages are then cached for the next hit. A value found cached is trusted to
//! stay cached for [`RESIDENT_TRUST_SECS`] without asking again: `mincore` looks the pages up
//! one by one (14 % of the CPU of a disk-set hit in the profile; ~1 µs per request measured),
//! while pages read that recently are at the young end of the kernel's LRU. A page evicted
//! within that window makes one `sendfile` wait for the disk, as every nginx `sendfile` of an
//! uncached file does.
//!
//! # Integrity
//! A place this process appended is trusted (the log wrote the bytes there). A place read back
//! from foyer's files is checked against its xxhash64 the first time its value is read (the
//! memory tier remembers that), whatever segment it names: a damaged value, or a ref that
//! outlived its segment in any way (a segment deleted at open, a `blobs/` directory removed by
//! hand), reads as corrupt, never as another value's bytes. Ids also never repeat while the
//! directory lives: the next id is above every segment file name found at open, deleted ones
//! included. Segment files with a bad header or size are deleted at open; any other error
//! opening one fails the store's open (a descriptor limit must not cost the cache its data).
//! The log keeps at most [`MAX_SEGMENTS`] files, mapped and open for its lifetime.
//!
//! Limits: the mapping needs the files to keep their size; something else truncating a segment
//! file under a running node would raise SIGBUS (nothing in Outpost ever does; the files are
//! the node's own, as foyer's are). A reclaimed segment's blocks are freed when the last
//! response sending from it ends, so a slow client can hold one segment's space past the
//! capacity for a while. `mincore` needs 4 KiB pages: on a kernel with larger ones every read
//! takes the `pread` path.

mod segment;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use bytes::Bytes;

use crate::error::{Error, ErrorKind};
pub(crate) use segment::{ColdRead, Found};
use segment::{Segment, Slice};

/// Values at least this long go to the blob log (the arena's `sendfile` threshold).
pub(crate) const BLOB_MIN: usize = crate::arena::ZERO_COPY_MIN;
/// Alignment of values and size of the segment header.
const PAGE: u64 = 4096;
const MAGIC: &[u8; 16] = b"OUTPOST-BLOBSEG\0";
const SEGMENT_FORMAT: u32 = 1;
/// Most segment files a log keeps (each is an open file and a mapping; larger disks get
/// larger segments).
pub(crate) const MAX_SEGMENTS: u64 = 256;
/// Seconds a value found in the page cache is served without a new `mincore`.
pub(crate) const RESIDENT_TRUST_SECS: u32 = 10;

/// Seconds since the first call, plus one (0 means never).
fn now_secs() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    let secs = START.get_or_init(Instant::now).elapsed().as_secs();
    u32::try_from(secs)
        .unwrap_or(u32::MAX - 1)
        .saturating_add(1)
}

fn xxh64(data: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, data)
}

/// Where a value lives in the blob log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub checksum: u64,
}

impl BlobRef {
    /// Encoded length.
    pub const LEN: usize = 8 + 8 + 4 + 8;

    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&self.segment.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..20].copy_from_slice(&self.len.to_le_bytes());
        b[20..].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; Self::LEN]) -> Self {
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let mut l = [0u8; 4];
        l.copy_from_slice(&b[16..20]);
        BlobRef {
            segment: u64_at(0),
            offset: u64_at(8),
            len: u32::from_le_bytes(l),
            checksum: u64_at(20),
        }
    }
}

/// The disk side of a large payload, shared by every copy of its entry: where it was
/// appended (once), and whether it was checked since this process found it on disk.
#[derive(Debug, Default)]
pub(crate) struct Spill {
    /// The log to append to when foyer first encodes the entry (absent on decoded entries).
    log: Option<Arc<BlobLog>>,
    at: OnceLock<BlobRef>,
    verified: AtomicBool,
    /// When its pages were last found in the page cache ([`now_secs`]; 0: never).
    resident_at: AtomicU32,
}

/// Two spills are equal when they name the same place (or neither has one yet).
impl PartialEq for Spill {
    fn eq(&self, other: &Self) -> bool {
        self.at.get() == other.at.get()
    }
}

impl Eq for Spill {}

impl Spill {
    /// For a payload of `len` bytes written through a store with `log`: `Some` if it goes to
    /// the log.
    pub fn for_payload(log: Option<&Arc<BlobLog>>, len: usize) -> Option<Arc<Spill>> {
        let log = log.filter(|_| len >= BLOB_MIN)?;
        Some(Arc::new(Spill {
            log: Some(log.clone()),
            ..Spill::default()
        }))
    }

    /// A payload decoded from foyer: only its place is known.
    pub fn decoded(at: BlobRef) -> Arc<Spill> {
        let s = Spill::default();
        let _ = s.at.set(at);
        Arc::new(s)
    }

    /// Whether this payload was checked since the process found it (see [`BlobLog::find`]).
    pub fn checked(&self) -> &AtomicBool {
        &self.verified
    }

    /// Where the payload is, once appended.
    pub fn at(&self) -> Option<&BlobRef> {
        self.at.get()
    }

    /// Bytes of `data` still to be appended (0 once placed, or when nothing spills).
    pub fn pending(&self, data_len: usize) -> usize {
        if self.at.get().is_some() { 0 } else { data_len }
    }

    /// Where the payload is, appending `data` first if that has not happened yet.
    pub fn place(&self, data: &[u8]) -> std::io::Result<BlobRef> {
        if let Some(r) = self.at.get() {
            return Ok(*r);
        }
        let log = self
            .log
            .as_ref()
            .ok_or_else(|| std::io::Error::other("blob payload without a log or a place"))?;
        let r = log.append(data)?;
        // Two encodes racing write two copies; the first place set wins, the other copy is
        // garbage reclaimed with its segment. Bytes this process wrote need no check.
        let at = *self.at.get_or_init(|| r);
        self.verified.store(true, Relaxed);
        Ok(at)
    }
}

/// Why a segment file found at open is not used.
enum Recover {
    /// Not a segment of this layout: deleted.
    Bad(&'static str),
    /// Could not be read or mapped: the open fails.
    Io(std::io::Error),
}

struct Tail {
    seg: Arc<Segment>,
    next: u64,
}

/// The blob log of one store.
pub(crate) struct BlobLog {
    dir: PathBuf,
    segment_size: u64,
    max_segments: usize,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    tail: Mutex<Option<Tail>>,
    next_id: Mutex<u64>,
}

impl std::fmt::Debug for BlobLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobLog")
            .field("dir", &self.dir)
            .field("segment_size", &self.segment_size)
            .field("max_segments", &self.max_segments)
            .finish_non_exhaustive()
    }
}

/// Give `file` its full size, with the blocks allocated where the file system can.
fn allocate(file: &File, size: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size)?;
    #[cfg(not(target_os = "linux"))]
    file.set_len(size)?;
    Ok(())
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.seg"))
}

fn header(id: u64, size: u64) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[..16].copy_from_slice(MAGIC);
    h[16..20].copy_from_slice(&SEGMENT_FORMAT.to_le_bytes());
    h[24..32].copy_from_slice(&id.to_le_bytes());
    h[32..40].copy_from_slice(&size.to_le_bytes());
    h
}

impl BlobLog {
    /// Open the log in `dir` (created if missing): every valid segment is mapped, anything
    /// else in the directory is deleted; an I/O error other than a bad segment fails. Blocking.
    pub fn open(dir: &Path, segment_size: u64, max_segments: usize) -> Result<BlobLog, Error> {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let read =
            fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let mut segments = BTreeMap::new();
        let mut next_id = 0;
        for entry in read {
            let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
            let path = entry.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".seg"))
                .filter(|n| n.len() == 16)
                .and_then(|n| u64::from_str_radix(n, 16).ok());
            if let Some(id) = id {
                next_id = next_id.max(id.saturating_add(1));
            }
            let seg = match id.map(|id| Self::recover(&path, id, segment_size)) {
                Some(Ok(seg)) => Some(seg),
                Some(Err(Recover::Bad(why))) => {
                    tracing::warn!(path = %path.display(), why, "blob segment unusable: deleted");
                    None
                }
                Some(Err(Recover::Io(e))) => {
                    return Err(Error::io(
                        format!("open blob segment {}", path.display()),
                        e,
                    ));
                }
                None => None,
            };
            match seg {
                Some(seg) => {
                    segments.insert(seg.id, Arc::new(seg));
                }
                None => {
                    if let Err(e) = fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "could not delete a stray file in the blob log");
                    }
                }
            }
        }
        let log = BlobLog {
            dir: dir.to_path_buf(),
            segment_size,
            max_segments: max_segments.max(2),
            segments: RwLock::new(segments),
            tail: Mutex::new(None),
            next_id: Mutex::new(next_id),
        };
        // A smaller capacity than before: keep the newest.
        log.reclaim(log.max_segments);
        Ok(log)
    }

    fn recover(path: &Path, id: u64, size: u64) -> Result<Segment, Recover> {
        let file = File::open(path).map_err(Recover::Io)?;
        if file.metadata().map_err(Recover::Io)?.len() != size {
            return Err(Recover::Bad("size differs from the layout"));
        }
        let mut h = [0u8; 40];
        match file.read_exact_at(&mut h, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Recover::Bad("short header"));
            }
            Err(e) => return Err(Recover::Io(e)),
        }
        if h != header(id, size) {
            return Err(Recover::Bad("bad segment header"));
        }
        Segment::map(id, file, size).map_err(Recover::Io)
    }

    /// Delete the oldest segments until at most `keep` remain.
    fn reclaim(&self, keep: usize) {
        let mut gone = Vec::new();
        {
            let mut segs = self
                .segments
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            while segs.len() > keep {
                match segs.pop_first() {
                    Some(seg) => gone.push(seg),
                    None => break,
                }
            }
        }
        // Outside the lock (readers take it on every hit). Readers still sending from a
        // segment keep its mapping, and its blocks, until they finish.
        for (id, seg) in gone {
            if let Err(e) = fs::remove_file(segment_path(&self.dir, id)) {
                tracing::warn!(id, error = %e, "could not delete a reclaimed blob segment");
            }
            drop(seg);
        }
    }

    fn create_segment(&self) -> std::io::Result<Arc<Segment>> {
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
            let id = *next;
            *next += 1;
            id
        };
        // Room for the new one first: the log never holds more than its capacity.
        self.reclaim(self.max_segments - 1);
        let path = segment_path(&self.dir, id);
        let create = || -> std::io::Result<Segment> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            allocate(&file, self.segment_size)?;
            file.write_all_at(&header(id, self.segment_size), 0)?;
            Segment::map(id, file, self.segment_size)
        };
        let seg = match create() {
            Ok(seg) => Arc::new(seg),
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        self.segments
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, seg.clone());
        Ok(seg)
    }

    /// Append a value; returns its place once its bytes are written to the file.
    pub fn append(&self, data: &[u8]) -> std::io::Result<BlobRef> {
        let len = u32::try_from(data.len()).map_err(std::io::Error::other)?;
        let alen = u64::from(len).div_ceil(PAGE) * PAGE;
        if alen == 0 || alen > self.segment_size - PAGE {
            return Err(std::io::Error::other("value does not fit a blob segment"));
        }
        let checksum = xxh64(data);
        let (seg, offset) = {
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            let full = tail
                .as_ref()
                .is_none_or(|t| t.next + alen > self.segment_size);
            if full {
                *tail = Some(Tail {
                    seg: self.create_segment()?,
                    next: PAGE,
                });
            }
            let t = tail
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no blob segment"))?;
            let offset = t.next;
            t.next += alen;
            (t.seg.clone(), offset)
        };
        // Outside the lock: appends to one segment write their own regions in parallel.
        seg.file.write_all_at(data, offset)?;
        Ok(BlobRef {
            segment: seg.id,
            offset,
            len,
            checksum,
        })
    }

    /// Find the value at `at`, whose entry carries `spill`. A place read back from disk is
    /// verified here unless `spill` says it was already.
    pub fn find(&self, at: &BlobRef, spill: &Spill) -> Result<Found, Error> {
        let seg = self
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&at.segment)
            .cloned();
        let Some(seg) = seg else {
            return Ok(Found::Gone);
        };
        let len = at.len as usize;
        let in_bounds = at.offset >= PAGE
            && at.offset.is_multiple_of(PAGE)
            && len > 0
            && at
                .offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= self.segment_size);
        if !in_bounds {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "blob reference out of bounds",
            ));
        }
        let now = now_secs();
        let seen = spill.resident_at.load(Relaxed);
        if seen == 0 || now.wrapping_sub(seen) >= RESIDENT_TRUST_SECS {
            if !seg.resident(at.offset, len) {
                return Ok(Found::Cold(ColdRead { seg, at: *at }));
            }
            spill.resident_at.store(now, Relaxed);
        }
        let checked = spill.checked();
        if !checked.load(Relaxed) {
            let sum = seg
                .checksum(at.offset, len)
                .map_err(|e| Error::new(ErrorKind::Corrupt, "blob read failed").with_source(e))?;
            if sum != at.checksum {
                return Err(Error::new(ErrorKind::Corrupt, "blob checksum mismatch"));
            }
            checked.store(true, Relaxed);
        }
        let start = at.offset as usize;
        Ok(Found::Resident(Bytes::from_owner(Slice {
            seg,
            start,
            len,
        })))
    }

    /// Whether segment `id` is still in the log (segments go oldest first, so every later
    /// one is too).
    pub fn holds_segment(&self, id: u64) -> bool {
        self.segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&id)
    }

    /// Segments on disk now.
    pub fn segment_count(&self) -> usize {
        self.segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests;

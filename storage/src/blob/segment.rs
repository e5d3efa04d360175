//! One blob log segment: its file, its read-only mapping (registered with the arena's
//! `locate`, so slices of it are sent with `sendfile`), page-cache residency checks, and the
//! values handed out over it.

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};

use super::{BlobRef, PAGE, xxh64};
use crate::error::{Error, ErrorKind};

/// One segment file, mapped read-only.
pub(super) struct Segment {
    pub id: u64,
    registration: u64,
    // Field order is drop order: unmap before closing.
    map: Mmap,
    pub file: File,
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Before the unmap: no `locate` may find this file for these addresses afterwards.
        crate::arena::unregister_mapping(self.registration);
    }
}

impl Segment {
    pub fn map(id: u64, file: File, size: u64) -> std::io::Result<Segment> {
        let len = usize::try_from(size).map_err(std::io::Error::other)?;
        // SAFETY: the file is this log's own, allocated to `size` bytes before it is mapped,
        // and nothing in the process shrinks it; the mapping is read-only and its bytes are
        // only read once written (a `BlobRef` exists only after its `pwrite` completed).
        #[allow(unsafe_code)]
        let map = unsafe { MmapOptions::new().len(len).map(&file)? };
        let start = map.as_ptr() as usize;
        let registration = crate::arena::register_mapping(start, start + len, file.as_raw_fd());
        Ok(Segment {
            id,
            registration,
            map,
            file,
        })
    }

    /// xxhash64 of `len` bytes at `offset`, read with `pread` through a small per-thread
    /// buffer. Not through the mapping: that would map the pages into the process, and its
    /// RSS would grow by every value checked (2 GiB after the disk set, all page cache).
    pub fn checksum(&self, offset: u64, len: usize) -> std::io::Result<u64> {
        use std::hash::Hasher;
        const PIECE: usize = 64 << 10;
        thread_local! {
            static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        BUF.with(|buf| {
            let mut own = Vec::new();
            let mut shared = buf.try_borrow_mut().ok();
            let b = shared.as_deref_mut().unwrap_or(&mut own);
            b.resize(PIECE, 0);
            let mut h = twox_hash::XxHash64::with_seed(0);
            let mut done = 0;
            while done < len {
                let n = (len - done).min(PIECE);
                self.file.read_exact_at(&mut b[..n], offset + done as u64)?;
                h.write(&b[..n]);
                done += n;
            }
            Ok(h.finish())
        })
    }

    /// Whether every page of `[offset, offset + len)` is in the page cache.
    pub fn resident(&self, offset: u64, len: usize) -> bool {
        const BATCH: usize = 64;
        let mut vec = [0u8; BATCH];
        let (Ok(start), true) = (usize::try_from(offset), len > 0) else {
            return false;
        };
        let pages = len.div_ceil(PAGE as usize);
        let mut done = 0;
        while done < pages {
            let n = (pages - done).min(BATCH);
            let at = start + done * PAGE as usize;
            if at
                .checked_add(n * PAGE as usize)
                .is_none_or(|end| end > self.map.len())
            {
                return false;
            }
            // SAFETY: `at` is page-aligned (segment offsets are) and `[at, at + n pages)` lies
            // in the mapping, rounded up to the page that holds its last byte; `vec` has room
            // for `n` entries. mincore only reads the page tables and the page cache.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::mincore(
                    self.map.as_ptr().add(at) as *mut libc::c_void,
                    n * PAGE as usize,
                    vec.as_mut_ptr(),
                )
            };
            if rc != 0 || vec[..n].iter().any(|b| b & 1 == 0) {
                return false;
            }
            done += n;
        }
        true
    }
}

/// A value's bytes inside a segment's mapping.
pub(super) struct Slice {
    pub seg: Arc<Segment>,
    pub start: usize,
    pub len: usize,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        &self.seg.map[self.start..self.start + self.len]
    }
}

/// What a read found.
pub(crate) enum Found {
    /// The value, over the mapping (its pages are cached).
    Resident(Bytes),
    /// The value's pages are not all cached: read it with [`BlobLog::read_cold`], off the
    /// caller's worker.
    Cold(ColdRead),
    /// Its segment was reclaimed (the value was evicted).
    Gone,
}

/// A pending read of a value whose pages are not cached.
pub(crate) struct ColdRead {
    pub(super) seg: Arc<Segment>,
    pub(super) at: BlobRef,
}

impl ColdRead {
    /// `pread` the value and check it (blocking: run it on the store's blocking pool).
    pub fn read(self) -> Result<Bytes, Error> {
        let mut buf = vec![0u8; self.at.len as usize];
        self.seg
            .file
            .read_exact_at(&mut buf, self.at.offset)
            .map_err(|e| Error::new(ErrorKind::Corrupt, "blob read failed").with_source(e))?;
        if xxh64(&buf) != self.at.checksum {
            return Err(Error::new(ErrorKind::Corrupt, "blob checksum mismatch"));
        }
        Ok(Bytes::from(buf))
    }
}

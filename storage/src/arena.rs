//! Zero-copy memory for large values: body bytes that a socket can `sendfile(2)` from.
//!
//! A body chunk or inline body of at least [`ZERO_COPY_MIN`] bytes is kept in the memory tier
//! (when it is written, or once it is hit again after a disk read: see
//! `Entry::arena_copy_when_hot`) inside a *segment*: a sealed-size `memfd` (anonymous shared memory), mapped read-only, that
//! is filled only with `pwrite(2)`. Every value gets its own page-aligned region, written once
//! before the `Bytes` over it exists and never written again. When the last `Bytes` of a
//! value is dropped its pages are returned with `fallocate(PUNCH_HOLE)`; offsets are never
//! reused, so a region can never change under a reader. A segment is unmapped and closed
//! once it is full and its last value is gone.
//!
//! [`locate`] maps any slice of such a value back to (memfd, offset), so the node can hand
//! the kernel a file range instead of copying the bytes into the socket. That is safe even
//! while a send is in flight when the value is dropped: the socket holds references to the
//! pages, and a punched page is released, never rewritten.
//!
//! Accounting: the pages are shared memory, not heap. They show in the process's RSS only
//! once something maps them by reading through the mapping (the disk writer encoding the
//! value); [`stats`] reports the live bytes exactly.
//!
//! If the arena cannot get memory (`memfd_create` refused, descriptor limit), values fall back
//! to the heap (counted in `fallbacks`, one warning), so this never fails a write.

use bytes::Bytes;

/// Values at least this long live in the arena (smaller ones gain little from `sendfile` and
/// would waste more of their last page).
pub const ZERO_COPY_MIN: usize = 32 * 1024;

/// Arena statistics (process-wide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Bytes of live values (page-rounded).
    pub live_bytes: u64,
    /// Segments mapped.
    pub segments: u64,
    /// Values that went to the heap because the arena could not get memory.
    pub fallbacks: u64,
}

/// Page-rounded size a value of `len` bytes takes (in the arena or not): the memory tier
/// weighs values with it.
pub(crate) fn footprint(len: usize) -> usize {
    if cfg!(target_os = "linux") && len >= ZERO_COPY_MIN {
        len.div_ceil(imp::PAGE) * imp::PAGE
    } else {
        len
    }
}

/// A copy of `data`: in the arena when it is large enough, else on the heap.
pub(crate) fn copy(data: &[u8]) -> Bytes {
    if data.len() >= ZERO_COPY_MIN
        && let Some(b) = imp::copy(data)
    {
        return b;
    }
    Bytes::copy_from_slice(data)
}

/// Whether `data` is (part of) an arena value.
pub(crate) fn holds(data: &[u8]) -> bool {
    imp::holds(data)
}

/// Process-wide arena statistics.
pub fn stats() -> ArenaStats {
    imp::stats()
}

#[cfg(target_os = "linux")]
pub use imp::{FileRange, locate};
pub(crate) use imp::{register_mapping, unregister_mapping};

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod imp {
    use std::cell::RefCell;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
    use std::sync::atomic::Ordering::{Acquire, Release};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, Mutex, PoisonError};

    use bytes::Bytes;
    use memmap2::{MmapOptions, MmapRaw};
    use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};

    use super::ArenaStats;

    pub(super) const PAGE: usize = 4096;
    /// Virtual size of a segment. Only written pages use memory.
    const SEGMENT_SIZE: u64 = 1 << 30;

    static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
    static SEGMENTS: AtomicU64 = AtomicU64::new(0);
    static FALLBACKS: AtomicU64 = AtomicU64::new(0);
    static WARNED: AtomicBool = AtomicBool::new(false);
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);

    /// The mapped segments, changed only when a segment is created or dropped. [`locate`]
    /// runs on every large hit, on every core, and reads a per-thread copy instead
    /// ([`LOCAL`]), refreshed when [`GENERATION`] moves: the hit path takes no lock and
    /// writes nothing shared. A reader takes no reference to a segment either: the slice it
    /// asks about keeps that segment mapped, and so its file open.
    static REGISTRY: Mutex<Vec<Mapped>> = Mutex::new(Vec::new());
    /// Bumped after every change of [`REGISTRY`] (and before a dropped segment is unmapped).
    static GENERATION: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// This thread's copy of [`REGISTRY`] and the generation it was taken at
        /// (`u64::MAX`: none yet).
        static LOCAL: RefCell<(u64, Vec<Mapped>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }

    /// Keeps the registry sorted by address ([`locate`] searches it by halves: the blob log
    /// adds up to 256 segments).
    fn insert_sorted(v: &mut Vec<Mapped>, m: Mapped) {
        let at = v.partition_point(|x| x.start < m.start);
        v.insert(at, m);
    }

    fn change_registry(f: impl FnOnce(&mut Vec<Mapped>)) {
        let mut reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut reg);
        GENERATION.fetch_add(1, Release);
    }

    /// One live segment in [`REGISTRY`]: its mapping's address range and its file.
    #[derive(Debug, Clone, Copy)]
    struct Mapped {
        start: usize,
        end: usize,
        fd: RawFd,
        id: u64,
    }
    /// The process's arena (every store shares it).
    static GLOBAL: Arena = Arena::new(SEGMENT_SIZE);

    /// Where new values are appended. One per process ([`GLOBAL`]); tests make small ones.
    pub(super) struct Arena {
        /// The segment new values are appended to, and its first free offset.
        current: Mutex<Option<(Arc<Segment>, u64)>>,
        segment_size: u64,
    }

    struct Segment {
        id: u64,
        // Field order is drop order: unmap before closing.
        map: MmapRaw,
        fd: OwnedFd,
    }

    impl Segment {
        fn create(size: u64) -> std::io::Result<Arc<Segment>> {
            let fd = rustix::fs::memfd_create(
                "outpost-zero-copy",
                MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
            )?;
            rustix::fs::ftruncate(&fd, size)?;
            // The size is fixed: the mapping can never cover a hole past the end (SIGBUS).
            rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW)?;
            let len = usize::try_from(size).map_err(std::io::Error::other)?;
            let map = MmapOptions::new().len(len).map_raw_read_only(&fd)?;
            let seg = Arc::new(Segment {
                id: NEXT_ID.fetch_add(1, Relaxed),
                map,
                fd,
            });
            let start = seg.map.as_ptr() as usize;
            let mapped = Mapped {
                start,
                end: start + len,
                fd: seg.fd.as_raw_fd(),
                id: seg.id,
            };
            change_registry(|v| insert_sorted(v, mapped));
            SEGMENTS.fetch_add(1, Relaxed);
            Ok(seg)
        }
    }

    impl Drop for Segment {
        fn drop(&mut self) {
            // Before the unmap (the fields drop after this body): once these addresses can be
            // mapped again, no lookup may find this segment's file for them.
            let id = self.id;
            change_registry(|v| v.retain(|m| m.id != id));
            SEGMENTS.fetch_sub(1, Relaxed);
        }
    }

    /// One value's region. Written completely before it is wrapped in `Bytes`.
    struct Region {
        seg: Arc<Segment>,
        offset: u64,
        len: usize,
        /// Page-rounded length (the region owns these pages alone).
        alen: u64,
        /// Set once every byte is written; only then may the bytes be read.
        written: bool,
    }

    impl AsRef<[u8]> for Region {
        fn as_ref(&self) -> &[u8] {
            if !self.written {
                return &[];
            }
            // SAFETY: `[offset, offset + len)` lies inside the segment's mapping (`reserve`
            // never hands out a region past it), which lives as long as `self.seg`. Its bytes
            // were all written through the file (`written`) before this first read, and nothing
            // writes them again: offsets are handed out once, and the pages are punched only in
            // `Drop`, after the last reference. The mapping is `MAP_SHARED` of a memfd that no
            // one else holds and whose size is sealed, so the bytes stay as written.
            unsafe {
                let base = self.seg.map.as_ptr().add(self.offset as usize);
                std::slice::from_raw_parts(base, self.len)
            }
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
            if let Err(e) = rustix::fs::fallocate(&self.seg.fd, mode, self.offset, self.alen) {
                tracing::debug!(error = %e, "zero-copy arena: punching a freed region failed");
            }
            LIVE_BYTES.fetch_sub(self.alen, Relaxed);
        }
    }

    impl Arena {
        pub(super) const fn new(segment_size: u64) -> Arena {
            Arena {
                current: Mutex::new(None),
                segment_size,
            }
        }

        /// A copy of `data` in this arena (`None`: no arena memory).
        pub(super) fn copy(&self, data: &[u8]) -> Option<Bytes> {
            let r = self.reserve(data.len())?;
            match pwrite_all(r.seg.fd.as_fd(), data, r.offset) {
                Ok(()) => Some(finish(r)),
                Err(e) => {
                    failed(e);
                    None
                }
            }
        }

        fn reserve(&self, len: usize) -> Option<Region> {
            let alen = (len.div_ceil(PAGE) * PAGE) as u64;
            let size = self.segment_size;
            let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if cur.as_ref().is_none_or(|(_, next)| next + alen > size) {
                match Segment::create(size.max(alen)) {
                    Ok(seg) => *cur = Some((seg, 0)),
                    Err(e) => {
                        failed(e);
                        return None;
                    }
                }
            }
            let (seg, next) = cur.as_mut()?;
            let offset = *next;
            *next += alen;
            LIVE_BYTES.fetch_add(alen, Relaxed);
            Some(Region {
                seg: seg.clone(),
                offset,
                len,
                alen,
                written: false,
            })
        }
    }

    fn pwrite_all(fd: BorrowedFd<'_>, mut data: &[u8], mut at: u64) -> std::io::Result<()> {
        while !data.is_empty() {
            match rustix::io::pwrite(fd, data, at) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    data = &data[n..];
                    at += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn finish(mut r: Region) -> Bytes {
        r.written = true;
        Bytes::from_owner(r)
    }

    fn failed(e: std::io::Error) {
        FALLBACKS.fetch_add(1, Relaxed);
        if !WARNED.swap(true, Relaxed) {
            tracing::warn!(error = %e, "zero-copy arena unavailable: values on the heap");
        }
    }

    pub(super) fn copy(data: &[u8]) -> Option<Bytes> {
        GLOBAL.copy(data)
    }

    pub(super) fn holds(data: &[u8]) -> bool {
        data.len() >= super::ZERO_COPY_MIN && locate(data).is_some()
    }

    pub(super) fn stats() -> ArenaStats {
        ArenaStats {
            live_bytes: LIVE_BYTES.load(Relaxed),
            segments: SEGMENTS.load(Relaxed),
            fallbacks: FALLBACKS.load(Relaxed),
        }
    }

    /// Make slices of `[start, end)` — a read-only mapping of `fd` at offset 0, such as a
    /// blob log segment — known to [`locate`]. The caller keeps the mapping and the file
    /// until after [`unregister_mapping`] with the returned id.
    pub(crate) fn register_mapping(start: usize, end: usize, fd: RawFd) -> u64 {
        let id = NEXT_ID.fetch_add(1, Relaxed);
        change_registry(|v| insert_sorted(v, Mapped { start, end, fd, id }));
        id
    }

    /// Forget a mapping registered with [`register_mapping`] (before it is unmapped).
    pub(crate) fn unregister_mapping(id: u64) {
        change_registry(|v| v.retain(|m| m.id != id));
    }

    /// A file range holding the same bytes as a slice of an arena value: send it with
    /// `sendfile(2)` from [`FileRange::offset`]. It borrows the slice's lifetime: the value
    /// behind the slice keeps its segment, and so the file, open.
    pub struct FileRange<'a> {
        fd: BorrowedFd<'a>,
        offset: u64,
        id: u64,
    }

    impl FileRange<'_> {
        /// Offset of the slice's first byte in the file.
        pub fn offset(&self) -> u64 {
            self.offset
        }
    }

    /// The id of the live segment mapped at `addr`.
    #[cfg(test)]
    pub(super) fn live_segment_at(addr: usize) -> Option<u64> {
        let reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        let m = reg.iter().find(|m| addr >= m.start && addr < m.end)?;
        Some(m.id)
    }

    #[cfg(test)]
    impl FileRange<'_> {
        pub(super) fn segment_id(&self) -> u64 {
            self.id
        }
    }

    impl AsFd for FileRange<'_> {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.fd
        }
    }

    impl std::fmt::Debug for FileRange<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FileRange")
                .field("segment", &self.id)
                .field("offset", &self.offset)
                .finish()
        }
    }

    /// The file range behind `bytes`, if they are (part of) an arena value.
    ///
    /// Takes no lock and writes nothing shared (it runs on every large hit, on every core):
    /// the segments are looked up in this thread's copy of the registry.
    pub fn locate(bytes: &[u8]) -> Option<FileRange<'_>> {
        let p = bytes.as_ptr() as usize;
        let end = p.checked_add(bytes.len())?;
        let generation = GENERATION.load(Acquire);
        // Sorted by start, mappings never overlap: the last one starting at or before `p`.
        let covers = |v: &[Mapped]| {
            let i = v.partition_point(|m| m.start <= p);
            v.get(i.checked_sub(1)?).filter(|m| end <= m.end).copied()
        };
        let m = LOCAL
            .try_with(|local| {
                let (at, copy) = &mut *local.borrow_mut();
                if *at != generation {
                    // Taken after `generation` was read: at least as new as that generation.
                    let reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
                    copy.clone_from(&reg);
                    *at = generation;
                }
                covers(copy)
            })
            // A thread already tearing down its locals searches the registry itself.
            .unwrap_or_else(|_| {
                let reg = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
                covers(&reg)
            })?;
        // SAFETY: `bytes` is borrowed for the returned lifetime and lies inside `m`'s address
        // range, so that range is mapped for as long. It is `m`'s own mapping: a segment
        // leaves the registry, and the generation moves, before the segment is unmapped
        // (`Segment::drop`). For another mapping to sit at these addresses now, that happened
        // before the mapping, and `bytes` in it, existed, so the generation read above is the
        // new one and the copy searched does not hold `m`. A segment's mapping is unmapped
        // before its file is closed (field order), so the file stays open while `bytes` is
        // borrowed.
        let fd = unsafe { BorrowedFd::borrow_raw(m.fd) };
        Some(FileRange {
            fd,
            offset: (p - m.start) as u64,
            id: m.id,
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::ArenaStats;

    pub(super) const PAGE: usize = 4096;

    pub(super) fn copy(_: &[u8]) -> Option<bytes::Bytes> {
        None
    }

    pub(super) fn holds(_: &[u8]) -> bool {
        false
    }

    pub(crate) fn register_mapping(_: usize, _: usize, _: std::os::fd::RawFd) -> u64 {
        0
    }

    pub(crate) fn unregister_mapping(_: u64) {}

    pub(super) fn stats() -> ArenaStats {
        ArenaStats::default()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn pread_all(r: &FileRange<'_>, len: usize) -> Vec<u8> {
        pread_at(r, r.offset(), len)
    }

    fn pread_at(r: &FileRange<'_>, at: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = rustix::io::pread(r, &mut out[done..], at + done as u64).unwrap_or_default();
            assert!(n > 0, "short pread");
            done += n;
        }
        out
    }

    #[test]
    fn large_values_are_in_the_arena_and_locatable() {
        let data = pattern(100 * 1024 + 7, 3);
        let b = copy(&data);
        assert_eq!(&b[..], &data[..]);
        let whole = locate(&b).map(|r| pread_all(&r, b.len()));
        assert_eq!(whole.as_deref(), Some(&data[..]));
        // A slice in the middle maps to the matching file offset.
        let mid = b.slice(5000..70_000);
        let part = locate(&mid).map(|r| pread_all(&r, mid.len()));
        assert_eq!(part.as_deref(), Some(&data[5000..70_000]));
    }

    #[test]
    fn small_values_and_heap_bytes_are_not_located() {
        let small = copy(&pattern(ZERO_COPY_MIN - 1, 1));
        assert!(locate(&small).is_none());
        let heap = vec![7u8; 200_000];
        assert!(locate(&heap).is_none());
    }

    #[test]
    fn dropping_a_value_punches_its_pages_and_keeps_other_values() {
        // A private arena: both values in one segment, which `keep` holds open.
        let arena = imp::Arena::new(1 << 20);
        let a = arena.copy(&pattern(64 * 1024, 1)).unwrap_or_default();
        let keep = arena.copy(&pattern(64 * 1024 + 1, 2)).unwrap_or_default();
        let a_at = locate(&a).map(|r| (r.offset(), r.segment_id()));
        assert!(a_at.is_some());
        drop(a);
        // The freed region reads back as zeros (its pages went back to the kernel), through
        // the file that the kept value still holds.
        let r = locate(&keep);
        assert_eq!(r.as_ref().map(|r| r.segment_id()), a_at.map(|(_, id)| id));
        if let (Some(r), Some((at, _))) = (r, a_at) {
            assert!(pread_at(&r, at, 64 * 1024).iter().all(|&b| b == 0));
        }
        assert_eq!(&keep[..], &pattern(64 * 1024 + 1, 2)[..]);
        assert!(stats().segments >= 1);
    }

    #[test]
    fn a_full_segment_is_replaced_and_freed_after_its_last_value() {
        // A private arena with 1 MiB segments: the fourth 300 KiB value (74 pages) starts a new one.
        let arena = imp::Arena::new(1 << 20);
        let first = arena.copy(&pattern(300_000, 4)).unwrap_or_default();
        let seg_of = |b: &Bytes| locate(b).map(|r| r.segment_id());
        let first_seg = seg_of(&first);
        assert!(first_seg.is_some());
        let mut later = Vec::new();
        for i in 0..4u8 {
            later.push(arena.copy(&pattern(300_000, 10 + i)).unwrap_or_default());
        }
        assert_eq!(seg_of(&later[1]), first_seg);
        let second_seg = seg_of(&later[2]);
        assert!(second_seg.is_some() && second_seg != first_seg);
        // Every value still reads back as written, through memory and through the file.
        assert_eq!(&first[..], &pattern(300_000, 4)[..]);
        for (i, b) in later.iter().enumerate() {
            let want = pattern(300_000, 10 + i as u8);
            assert_eq!(&b[..], &want[..]);
            assert_eq!(locate(b).map(|r| pread_all(&r, b.len())), Some(want));
        }
        // Once its last value is gone the full segment is unmapped: nothing locates there.
        let probe = first.as_ptr() as usize;
        assert_eq!(imp::live_segment_at(probe), first_seg);
        drop(first);
        let last = later.split_off(2);
        drop(later);
        assert_ne!(imp::live_segment_at(probe), first_seg);
        assert_eq!(seg_of(&last[1]), second_seg);
    }

    #[test]
    fn an_arena_that_cannot_get_memory_counts_the_fallback_and_recovers() {
        // Segments larger than the address space cannot be mapped: every copy fails and is
        // counted (the store then keeps the value on the heap); the global arena still works.
        let arena = imp::Arena::new(1 << 62);
        let before = stats();
        assert!(arena.copy(&pattern(64 * 1024, 5)).is_none());
        assert!(arena.copy(&pattern(64 * 1024, 6)).is_none());
        let after = stats();
        assert!(after.fallbacks >= before.fallbacks + 2);
        let ok = copy(&pattern(64 * 1024, 7));
        assert!(locate(&ok).is_some());
    }

    #[test]
    fn footprint_rounds_arena_values_to_pages() {
        assert_eq!(footprint(100), 100);
        assert_eq!(footprint(ZERO_COPY_MIN + 1), ZERO_COPY_MIN + 4096);
    }
}

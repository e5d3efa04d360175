//! The records stored in foyer and their on-disk encoding (foyer's `Code`).
//!
//! Two kinds of entry share one foyer cache, both under 32-byte keys:
//! - a **head** under the caller's key: format version, object id, body length, chunk size,
//!   chunk count, whole-body blake3, the caller's metadata blob and, for bodies of at most
//!   [`INLINE_MAX`] (and less than a chunk), the body itself (`chunk_count` 0);
//! - a **chunk** under `chunk_key(object_id, index)`: object id, index, data.
//!
//! A payload (inline body or chunk data) of at least [`BLOB_MIN`](crate::blob::BLOB_MIN)
//! bytes written through a store with a blob log is not encoded into foyer's entry: the entry
//! holds its [`BlobRef`] (flag bit 31 of the payload length), and the bytes go to the log when
//! foyer first encodes the entry ([`Spill::place`]). Decoding such an entry gives a *light*
//! entry (payload empty, place known) that the store resolves against the log.
//!
//! Integrity: foyer checks every entry it loads from disk against the xxhash64 it wrote with
//! it (key and value), drops a mismatching entry and reports a miss; the reader then reports
//! `ErrorKind::Corrupt`. A blake3 per chunk (format 1) checked the same bytes a second time:
//! 7 % of the CPU of a disk-tier hit, and as much again on every write, for nothing. Lengths
//! read from disk are bounded before allocating; any decode error is reported to foyer as a
//! checksum mismatch (drop and miss).
//! All integers are little endian.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::blob::{BlobRef, Spill};

use bytes::Bytes;

use crate::arena::footprint;
use foyer::Code;

/// A 32-byte key (the cache layer uses blake3 hashes).
pub type Key = [u8; 32];

/// A store-wide unique id of one written version of an object.
pub type ObjectId = [u8; 16];

const HEAD_TAG: u8 = 0xA1;
const CHUNK_TAG: u8 = 0xC1;
/// 2: heads carry small bodies inline. 3: large payloads may be blob refs.
const FORMAT_VERSION: u8 = 3;
/// Set in an encoded payload length: a [`BlobRef`] follows instead of the bytes.
const SPILLED: u32 = 1 << 31;
/// Bodies up to this size (and below one chunk) are stored inside the head: one entry and one
/// disk read per object instead of two.
pub(crate) const INLINE_MAX: usize = 128 << 10;
/// Upper bound on a decoded metadata blob.
pub(crate) const MAX_META: usize = 16 << 20;
/// Upper bound on a decoded chunk (the config allows at most 64 MiB chunks).
const MAX_CHUNK: usize = 64 << 20;
/// Fixed per-entry memory overhead charged by the weighter: foyer record, hash table slot,
/// Arcs, key, disk index entry and allocator slack (measured ≈ 570 B per entry, see the bench).
pub(crate) const ENTRY_OVERHEAD: usize = 480;

/// The foyer key: a newtype so we own its `Code` impl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StoreKey(pub Key);

impl Code for StoreKey {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        writer.write_all(&self.0).map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let mut k = [0u8; 32];
        reader.read_exact(&mut k).map_err(foyer::Error::io_error)?;
        Ok(StoreKey(k))
    }

    fn estimated_size(&self) -> usize {
        32
    }
}

/// The key of chunk `index` of object `object_id`.
pub(crate) fn chunk_key(object_id: &ObjectId, index: u64) -> StoreKey {
    let mut h = blake3::Hasher::new_derive_key("outpost-storage 2026 chunk key v1");
    h.update(object_id);
    h.update(&index.to_le_bytes());
    StoreKey(*h.finalize().as_bytes())
}

/// The head entry of a committed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub object_id: ObjectId,
    pub body_len: u64,
    pub chunk_size: u32,
    pub chunk_count: u64,
    pub body_hash: [u8; 32],
    pub meta: Bytes,
    /// The whole body when it is stored inline (`chunk_count == 0`); empty otherwise.
    pub inline: Bytes,
    /// Memory-tier hits of this copy (see [`Entry::arena_copy_when_hot`]).
    pub hits: HitCount,
    /// The inline body's place in the blob log, if it goes there.
    pub spill: Option<Arc<Spill>>,
    /// The blob log segment of chunk 0, when the chunks went there and were placed by the
    /// commit ([`NO_SEGMENT`] otherwise): segments are reclaimed oldest first, so while it is
    /// live every later chunk is too, and once it is gone the object is a miss at lookup
    /// rather than a body that breaks off after its headers were sent.
    pub first_segment: u64,
}

/// [`Head::first_segment`] when no chunk is in the blob log (or its place was not known yet).
pub(crate) const NO_SEGMENT: u64 = u64::MAX;

impl Head {
    /// A copy without the inline body's bytes if they are in the blob log (what the memory
    /// tier keeps of a body it can find there again: see `Store::get_entry`).
    pub fn light(&self) -> Head {
        let spilled = self.spill.as_ref().is_some_and(|s| s.at().is_some());
        Head {
            inline: if spilled {
                Bytes::new()
            } else {
                self.inline.clone()
            },
            ..self.clone()
        }
    }

    /// Length of chunk `index` (all full except possibly the last).
    pub fn chunk_len(&self, index: u64) -> u64 {
        let start = index * u64::from(self.chunk_size);
        self.body_len
            .saturating_sub(start)
            .min(u64::from(self.chunk_size))
    }

    /// Internal consistency (holds for every head we write).
    pub fn is_consistent(&self) -> bool {
        let inline =
            self.chunk_count == 0 && payload_len(&self.inline, &self.spill) == self.body_len;
        let chunked = self.inline.is_empty()
            && self.spill.is_none()
            && self.chunk_count == self.body_len.div_ceil(u64::from(self.chunk_size));
        self.chunk_size > 0 && (inline || chunked)
    }

    /// Whether the body lives in the head (no chunk entries).
    pub fn is_inline(&self) -> bool {
        self.chunk_count == 0
    }
}

/// One body chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub object_id: ObjectId,
    pub index: u64,
    pub data: Bytes,
    /// Memory-tier hits of this copy (see [`Entry::arena_copy_when_hot`]).
    pub hits: HitCount,
    /// The data's place in the blob log, if it goes there.
    pub spill: Option<Arc<Spill>>,
}

impl Chunk {
    pub fn new(object_id: ObjectId, index: u64, data: Bytes, spill: Option<Arc<Spill>>) -> Self {
        Self {
            object_id,
            index,
            data,
            hits: HitCount::default(),
            spill,
        }
    }
}

/// The length of a payload: its bytes, or the length recorded with its blob place.
fn payload_len(data: &Bytes, spill: &Option<Arc<Spill>>) -> u64 {
    match spill.as_ref().and_then(|s| s.at()) {
        Some(at) if data.is_empty() => u64::from(at.len),
        _ => data.len() as u64,
    }
}

/// A hit counter carried by a value; not part of its identity (clones start at 0, and it
/// never makes two values unequal).
#[derive(Debug, Default)]
pub(crate) struct HitCount(AtomicU32);

impl Clone for HitCount {
    fn clone(&self) -> Self {
        HitCount::default()
    }
}

impl PartialEq for HitCount {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for HitCount {}

impl HitCount {
    /// Counts one hit; true on exactly the `n`-th.
    fn reaches(&self, n: u32) -> bool {
        // A plain load first: a hot value stops writing to a shared cache line.
        self.0.load(Relaxed) < n && self.0.fetch_add(1, Relaxed) + 1 == n
    }
}

/// Memory-tier hits after which a large heap-backed body moves to the zero-copy arena.
const ARENA_AFTER_HITS: u32 = 2;

/// A foyer value: a head or a chunk. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Head(Arc<Head>),
    Chunk(Arc<Chunk>),
}

impl Entry {
    /// Counts a memory-tier hit. On the [`ARENA_AFTER_HITS`]-th hit of a large body that is
    /// on the heap (it was read back from disk), returns a copy of the entry with the body in
    /// the zero-copy arena, for the caller to put in place of this one.
    ///
    /// Bodies read from disk are decoded to the heap because most of them, in a working set
    /// larger than memory, are served once or twice before they are evicted again: moving
    /// every one to the arena (shared-memory page allocation on write, hole punching on
    /// eviction) cost more than the copy `sendfile` saves (disk-set: 12.1k -> 7.0k req/s).
    /// A body that keeps being hit pays for the move once.
    pub fn arena_copy_when_hot(&self) -> Option<Entry> {
        let (data, hits) = match self {
            Entry::Head(h) => (&h.inline, &h.hits),
            Entry::Chunk(c) => (&c.data, &c.hits),
        };
        if data.len() < crate::arena::ZERO_COPY_MIN || !hits.reaches(ARENA_AFTER_HITS) {
            return None;
        }
        if crate::arena::holds(data) {
            return None;
        }
        let moved = crate::arena::copy(data);
        if !crate::arena::holds(&moved) {
            return None;
        }
        Some(match self {
            Entry::Head(h) => Entry::Head(Arc::new(Head {
                inline: moved,
                ..(**h).clone()
            })),
            Entry::Chunk(c) => Entry::Chunk(Arc::new(Chunk::new(
                c.object_id,
                c.index,
                moved,
                c.spill.clone(),
            ))),
        })
    }

    /// The payload and its spill (inline body or chunk data).
    fn payload(&self) -> (&Bytes, &Option<Arc<Spill>>) {
        match self {
            Entry::Head(h) => (&h.inline, &h.spill),
            Entry::Chunk(c) => (&c.data, &c.spill),
        }
    }

    /// A light entry (decoded from foyer, or kept in memory) whose payload must be read from
    /// the blob log: its place and check flag.
    pub fn blob_to_resolve(&self) -> Option<(BlobRef, &Spill)> {
        let (data, spill) = self.payload();
        let spill = spill.as_deref()?;
        let at = spill.at()?;
        (data.is_empty() && at.len > 0).then_some((*at, spill))
    }

    /// This entry with `data` as its payload (a light entry's resolved bytes).
    pub fn with_payload(&self, data: Bytes) -> Entry {
        match self {
            Entry::Head(h) => Entry::Head(Arc::new(Head {
                inline: data,
                ..(**h).clone()
            })),
            Entry::Chunk(c) => Entry::Chunk(Arc::new(Chunk {
                data,
                ..(**c).clone()
            })),
        }
    }

    /// Whether both are the same value (not merely equal).
    pub fn same(&self, other: &Entry) -> bool {
        match (self, other) {
            (Entry::Head(a), Entry::Head(b)) => Arc::ptr_eq(a, b),
            (Entry::Chunk(a), Entry::Chunk(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Weight for the memory tier: payload bytes plus a fixed overhead.
    pub fn weight(&self) -> usize {
        ENTRY_OVERHEAD
            + match self {
                Entry::Head(h) => 96 + h.meta.len() + footprint(h.inline.len()),
                Entry::Chunk(c) => 64 + footprint(c.data.len()),
            }
    }

    /// Bytes writing this entry to disk costs the flusher: its foyer entry plus a payload it
    /// still has to append to the blob log (what the pacer budgets).
    pub fn disk_cost(&self) -> u64 {
        let (data, spill) = self.payload();
        let pending = spill.as_ref().map_or(0, |s| s.pending(data.len()));
        (crate::config::disk_footprint(self.encoded_len()) + pending) as u64
    }

    /// Exact encoded length.
    pub fn encoded_len(&self) -> usize {
        match self {
            Entry::Head(h) => {
                2 + 16
                    + 8
                    + 4
                    + 8
                    + 32
                    + 8
                    + 4
                    + h.meta.len()
                    + payload_encoded_len(&h.inline, &h.spill)
            }
            Entry::Chunk(c) => 1 + 16 + 8 + payload_encoded_len(&c.data, &c.spill),
        }
    }
}

fn io(e: std::io::Error) -> foyer::Error {
    foyer::Error::io_error(e)
}

fn parse_err(msg: &'static str) -> foyer::Error {
    foyer::Error::new(foyer::ErrorKind::Parse, msg)
}

fn read_arr<const N: usize>(r: &mut impl Read) -> foyer::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).map_err(io)?;
    Ok(b)
}

fn read_u32(r: &mut impl Read) -> foyer::Result<u32> {
    Ok(u32::from_le_bytes(read_arr(r)?))
}

fn read_u64(r: &mut impl Read) -> foyer::Result<u64> {
    Ok(u64::from_le_bytes(read_arr(r)?))
}

fn read_bytes(r: &mut impl Read, len: usize) -> foyer::Result<Bytes> {
    // To the heap, also for large values: see `Entry::arena_copy_when_hot`.
    // Not `vec![0; len]` + `read_exact`: zeroing the buffer first was 2.6 % of a disk hit.
    let mut v = Vec::with_capacity(len);
    r.take(len as u64).read_to_end(&mut v).map_err(io)?;
    if v.len() != len {
        return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Bytes::from(v))
}

fn payload_encoded_len(data: &Bytes, spill: &Option<Arc<Spill>>) -> usize {
    4 + if spill.is_some() {
        BlobRef::LEN
    } else {
        data.len()
    }
}

/// A payload: `u32` length then the bytes, or the length with [`SPILLED`] then its place.
fn encode_payload(
    w: &mut impl Write,
    data: &Bytes,
    spill: &Option<Arc<Spill>>,
) -> foyer::Result<()> {
    match spill {
        None => {
            w.write_all(&len_u32(data.len())?.to_le_bytes())
                .map_err(io)?;
            w.write_all(data).map_err(io)
        }
        Some(spill) => {
            let at = spill.place(data).map_err(io)?;
            w.write_all(&(at.len | SPILLED).to_le_bytes()).map_err(io)?;
            w.write_all(&at.to_bytes()).map_err(io)
        }
    }
}

/// Decodes what [`encode_payload`] wrote; payloads over `max` bytes are refused.
fn decode_payload(r: &mut impl Read, max: usize) -> foyer::Result<(Bytes, Option<Arc<Spill>>)> {
    let raw = read_u32(r)?;
    let len = (raw & !SPILLED) as usize;
    if len > max {
        return Err(parse_err("payload too long"));
    }
    if raw & SPILLED == 0 {
        return Ok((read_bytes(r, len)?, None));
    }
    let at = BlobRef::from_bytes(&read_arr::<{ BlobRef::LEN }>(r)?);
    if at.len as usize != len || len == 0 {
        return Err(parse_err("blob ref length differs"));
    }
    Ok((Bytes::new(), Some(Spill::decoded(at))))
}

fn len_u32(len: usize) -> foyer::Result<u32> {
    u32::try_from(len).map_err(|_| parse_err("length does not fit in u32"))
}

impl Code for Entry {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        match self {
            Entry::Head(h) => {
                w.write_all(&[HEAD_TAG, FORMAT_VERSION]).map_err(io)?;
                w.write_all(&h.object_id).map_err(io)?;
                w.write_all(&h.body_len.to_le_bytes()).map_err(io)?;
                w.write_all(&h.chunk_size.to_le_bytes()).map_err(io)?;
                w.write_all(&h.chunk_count.to_le_bytes()).map_err(io)?;
                w.write_all(&h.body_hash).map_err(io)?;
                w.write_all(&h.first_segment.to_le_bytes()).map_err(io)?;
                w.write_all(&len_u32(h.meta.len())?.to_le_bytes())
                    .map_err(io)?;
                w.write_all(&h.meta).map_err(io)?;
                encode_payload(w, &h.inline, &h.spill)
            }
            Entry::Chunk(c) => {
                w.write_all(&[CHUNK_TAG]).map_err(io)?;
                w.write_all(&c.object_id).map_err(io)?;
                w.write_all(&c.index.to_le_bytes()).map_err(io)?;
                encode_payload(w, &c.data, &c.spill)
            }
        }
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        // Any decode failure is reported as a checksum mismatch: foyer then drops the disk
        // entry and reports a miss, instead of returning an error for it forever.
        decode_entry(r).map_err(|e| match e.kind() {
            foyer::ErrorKind::ChecksumMismatch => e,
            _ => foyer::Error::new(
                foyer::ErrorKind::ChecksumMismatch,
                format!("undecodable entry: {e}"),
            ),
        })
    }

    fn estimated_size(&self) -> usize {
        self.encoded_len()
    }
}

fn decode_entry(r: &mut impl Read) -> foyer::Result<Entry> {
    let [tag] = read_arr::<1>(r)?;
    match tag {
        HEAD_TAG => {
            let [version] = read_arr::<1>(r)?;
            if version != FORMAT_VERSION {
                return Err(parse_err("unknown head format version"));
            }
            let object_id = read_arr::<16>(r)?;
            let body_len = read_u64(r)?;
            let chunk_size = read_u32(r)?;
            let chunk_count = read_u64(r)?;
            let body_hash = read_arr::<32>(r)?;
            let first_segment = read_u64(r)?;
            let meta_len = read_u32(r)? as usize;
            if meta_len > MAX_META {
                return Err(parse_err("head metadata too long"));
            }
            let meta = read_bytes(r, meta_len)?;
            let (inline, spill) = decode_payload(r, INLINE_MAX)?;
            let head = Head {
                object_id,
                body_len,
                chunk_size,
                chunk_count,
                body_hash,
                meta,
                inline,
                hits: HitCount::default(),
                spill,
                first_segment,
            };
            if !head.is_consistent() {
                return Err(parse_err("inconsistent head"));
            }
            Ok(Entry::Head(Arc::new(head)))
        }
        CHUNK_TAG => {
            let object_id = read_arr::<16>(r)?;
            let index = read_u64(r)?;
            let (data, spill) = decode_payload(r, MAX_CHUNK)?;
            Ok(Entry::Chunk(Arc::new(Chunk::new(
                object_id, index, data, spill,
            ))))
        }
        _ => Err(parse_err("unknown entry tag")),
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

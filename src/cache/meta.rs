//! The stored head record of a cached object, and the "vary marker"
//! stored under a primary key whose responses vary (RFC 9111 §4.1).
//!
//! Binary format (little-endian), version 1:
//!
//! ```text
//! "OPMT" | version u8 | kind u8 (1 = object, 2 = vary marker) | payload | checksum
//! ```
//!
//! `checksum` is the first 8 bytes of blake3 over everything before it, so
//! truncated or corrupted records are rejected rather than misread. Strings
//! and byte fields are `u32` length-prefixed; every length is checked
//! against the remaining input before anything is allocated, so decoding
//! hostile bytes never panics nor allocates more than the input size.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AGE, ETAG, HeaderName, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::codec::{Reader, Writer};
use super::conditional::Validators;
use super::control::{EffectiveControl, effective_response_control};
use super::freshness::{
    HeuristicConfig, StoredFacts, current_age, freshness_lifetime, initial_age,
};
use super::update::{HeaderList, to_header_map, update_headers};
use super::vary::Vary;

pub(super) const MAGIC: &[u8; 4] = b"OPMT";
/// Current format version.
pub const META_VERSION: u8 = 1;
const KIND_OBJECT: u8 = 1;
const KIND_VARY: u8 = 2;
pub const CHECKSUM_LEN: usize = 8;

/// `Surrogate-Key`: space-separated tags used by tag purges.
pub static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// Flag bits of [`ObjectMeta::flags`].
pub mod flags {
    /// `must-revalidate` (RFC 9111 §5.2.2.2).
    pub const MUST_REVALIDATE: u32 = 1;
    /// `proxy-revalidate` (§5.2.2.8).
    pub const PROXY_REVALIDATE: u32 = 1 << 1;
    /// Unqualified `no-cache` (§5.2.2.4).
    pub const NO_CACHE: u32 = 1 << 2;
    /// `s-maxage` present (§5.2.2.10).
    pub const S_MAXAGE: u32 = 1 << 3;
    /// `immutable` (RFC 8246).
    pub const IMMUTABLE: u32 = 1 << 4;
    /// The body was stored completely (§3.3).
    pub const COMPLETE: u32 = 1 << 5;
    /// Considered stale regardless of age (soft purge, §4.3.5).
    pub const FORCED_STALE: u32 = 1 << 6;
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaError {
    /// Shorter than its structure requires.
    Truncated,
    /// Not a record of ours.
    BadMagic,
    /// A version this build cannot read.
    UnsupportedVersion(u8),
    /// A record of the other kind (object vs vary marker).
    WrongKind(u8),
    /// The checksum does not match.
    Checksum,
    /// A field holds an impossible value.
    Invalid(&'static str),
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaError::Truncated => f.write_str("truncated cache record"),
            MetaError::BadMagic => f.write_str("not a cache record"),
            MetaError::UnsupportedVersion(v) => write!(f, "unsupported cache record version {v}"),
            MetaError::WrongKind(k) => write!(f, "unexpected cache record kind {k}"),
            MetaError::Checksum => f.write_str("cache record checksum mismatch"),
            MetaError::Invalid(what) => write!(f, "invalid cache record field: {what}"),
        }
    }
}

impl std::error::Error for MetaError {}

/// Metadata of one stored response (the head entry; the body lives in
/// chunks keyed by `blake3(object_id, index)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Unique per stored version, so readers never mix two versions' chunks.
    pub object_id: [u8; 16],
    /// Status code.
    pub status: u16,
    /// Stored header fields, order and repeats preserved. Shared: a hit
    /// clones the decoded record from the per-thread memo
    /// (`cache::meta_memo`), and copying the list cost ~700 instructions.
    pub headers: Arc<HeaderList>,
    /// When the request that produced it was sent (§4.2.3 `request_time`).
    pub request_time: SystemTime,
    /// When the response was received (§4.2.3 `response_time`).
    pub response_time: SystemTime,
    /// When the object was first stored (ban-list checks; kept on 304).
    pub created_at: SystemTime,
    /// `corrected_initial_age`, seconds (§4.2.3).
    pub initial_age: u64,
    /// Freshness lifetime, seconds (§4.2.1).
    pub lifetime: u64,
    /// RFC 5861 `stale-while-revalidate`.
    pub stale_while_revalidate: Option<u32>,
    /// RFC 5861 `stale-if-error`.
    pub stale_if_error: Option<u32>,
    /// [`flags`] bits.
    pub flags: u32,
    /// Raw `ETag` value.
    pub etag: Option<Vec<u8>>,
    /// Raw `Last-Modified` value.
    pub last_modified: Option<Vec<u8>>,
    /// Surrogate keys (tags).
    pub tags: Vec<String>,
    /// Request fields this variant was selected by (empty: no Vary).
    pub vary: Vec<HeaderName>,
    /// Body length, if known.
    pub body_len: Option<u64>,
    /// Size of each body chunk.
    pub chunk_size: u32,
    /// Number of body chunks.
    pub chunk_count: u64,
    /// blake3 of the whole body, if computed.
    pub body_hash: Option<[u8; 32]>,
    /// `Link` values of the origin's 103 (Early Hints, RFC 8297) for the
    /// response, sent again on a later revalidation of it (a site's
    /// `early_hints`). Encoded last, and only when there are some: records
    /// without it read as before.
    pub early_hints: Vec<HeaderValue>,
}

/// What deriving freshness facts needs from configuration.
#[derive(Debug, Clone, Copy)]
pub struct MetaPolicy<'a> {
    /// RFC 9213 target list ([`super::control::target_list`]).
    pub targets: &'a [HeaderName],
    /// Heuristic freshness settings.
    pub heuristic: HeuristicConfig,
    /// The response field carrying space-separated purge tags
    /// ([`SURROGATE_KEY`] by default).
    pub tag_header: &'a HeaderName,
}

/// A fresh object id: blake3 over `seed`, a process counter and the clock
/// (one hash per stored response).
pub fn new_object_id(seed: &[u8]) -> [u8; 16] {
    let h = super::range::unique_hash(b"outpost-object-id\0", seed);
    let mut id = [0u8; 16];
    id.copy_from_slice(h.as_bytes().get(..16).unwrap_or(&[0u8; 16]));
    id
}

impl ObjectMeta {
    /// Builds metadata for a response about to be stored. `headers` is the
    /// list to store (already without `Storable::strip_fields`).
    pub fn from_response(
        object_id: [u8; 16],
        status: StatusCode,
        headers: HeaderList,
        policy: &MetaPolicy<'_>,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> ObjectMeta {
        let mut m = ObjectMeta {
            object_id,
            status: status.as_u16(),
            headers: Arc::new(headers),
            request_time,
            response_time,
            created_at: response_time,
            initial_age: 0,
            lifetime: 0,
            stale_while_revalidate: None,
            stale_if_error: None,
            flags: 0,
            etag: None,
            last_modified: None,
            tags: Vec::new(),
            vary: Vec::new(),
            body_len: None,
            chunk_size: 0,
            chunk_count: 0,
            body_hash: None,
            early_hints: Vec::new(),
        };
        let hm = m.header_map();
        m.derive(policy, &hm);
        m
    }

    /// Recomputes everything derived from the headers and times; the age
    /// (§4.2.3) comes from `age_source`, the response just received.
    fn derive(&mut self, policy: &MetaPolicy<'_>, age_source: &HeaderMap) {
        let hm = self.header_map();
        let control: EffectiveControl = effective_response_control(&hm, policy.targets);
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let d = &control.directives;
        self.lifetime =
            freshness_lifetime(status, &hm, &control, self.response_time, &policy.heuristic).secs;
        self.initial_age = initial_age(age_source, self.request_time, self.response_time);
        self.stale_while_revalidate = d.stale_while_revalidate;
        self.stale_if_error = d.stale_if_error;
        let keep = self.flags & (flags::COMPLETE | flags::FORCED_STALE);
        self.flags =
            keep | if d.must_revalidate {
                flags::MUST_REVALIDATE
            } else {
                0
            } | if d.proxy_revalidate {
                flags::PROXY_REVALIDATE
            } else {
                0
            } | if d.no_cache.is_all() {
                flags::NO_CACHE
            } else {
                0
            } | if d.s_maxage.is_some() {
                flags::S_MAXAGE
            } else {
                0
            } | if d.immutable { flags::IMMUTABLE } else { 0 };
        self.etag = hm.get(ETAG).map(|v| v.as_bytes().to_vec());
        self.last_modified = hm.get(LAST_MODIFIED).map(|v| v.as_bytes().to_vec());
        self.tags = hm
            .get_all(policy.tag_header)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b' ' || *b == b'\t'))
            .filter(|t| !t.is_empty())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect();
        self.vary = Vary::from_headers(&hm).names().to_vec();
    }

    /// Freshens the stored response from a 304 or HEAD 200 (RFC 9111
    /// §4.3.4, §4.3.5, §3.2): headers updated, times reset, freshness and
    /// flags recomputed; `FORCED_STALE` cleared; body fields unchanged.
    pub fn apply_update(
        &mut self,
        new_headers: &HeaderMap,
        protect: &[HeaderName],
        policy: &MetaPolicy<'_>,
        request_time: SystemTime,
        response_time: SystemTime,
    ) {
        self.headers = Arc::new(update_headers(&self.headers, new_headers, protect));
        if !new_headers.contains_key(AGE) {
            // The old Age described the old response; age now comes from
            // the validating response (§4.2.3, §4.3.4).
            Arc::make_mut(&mut self.headers).retain(|(n, _)| n != AGE);
        }
        self.request_time = request_time;
        self.response_time = response_time;
        self.flags &= !flags::FORCED_STALE;
        self.derive(policy, new_headers);
    }

    /// Whether a flag bit is set.
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// The stored headers as a map.
    pub fn header_map(&self) -> HeaderMap {
        to_header_map(&self.headers)
    }

    /// [`ObjectMeta::header_map`] without the fields `skip` picks.
    pub fn header_map_without(&self, skip: impl Fn(&HeaderName) -> bool) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(self.headers.len());
        for (n, v) in self.headers.iter() {
            if !skip(n) {
                h.append(n.clone(), v.clone());
            }
        }
        h
    }

    /// Current age at `now` (§4.2.3).
    pub fn current_age(&self, now: SystemTime) -> u64 {
        current_age(self.initial_age, self.response_time, now)
    }

    /// Facts for [`super::freshness::decide`].
    pub fn facts(&self, now: SystemTime) -> StoredFacts {
        StoredFacts {
            lifetime: self.lifetime,
            current_age: self.current_age(now),
            no_cache: self.has(flags::NO_CACHE),
            must_revalidate: self.has(flags::MUST_REVALIDATE),
            proxy_revalidate: self.has(flags::PROXY_REVALIDATE),
            s_maxage: self.has(flags::S_MAXAGE),
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
            forced_stale: self.has(flags::FORCED_STALE),
        }
    }

    /// Validators for conditional evaluation (RFC 9110 §13, RFC 9111 §4.3.2).
    pub fn validators(&self) -> Validators {
        Validators::from_headers(&self.header_map(), Some(self.response_time))
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(KIND_OBJECT);
        w.buf.extend_from_slice(&self.object_id);
        w.u16(self.status);
        w.u32(u32::try_from(self.headers.len()).unwrap_or(u32::MAX));
        for (n, v) in self.headers.iter() {
            w.bytes(n.as_str().as_bytes());
            w.bytes(v.as_bytes());
        }
        w.time(self.request_time);
        w.time(self.response_time);
        w.time(self.created_at);
        w.u64(self.initial_age);
        w.u64(self.lifetime);
        w.opt_u32(self.stale_while_revalidate);
        w.opt_u32(self.stale_if_error);
        w.u32(self.flags);
        w.opt_bytes(self.etag.as_deref());
        w.opt_bytes(self.last_modified.as_deref());
        w.u32(u32::try_from(self.tags.len()).unwrap_or(u32::MAX));
        for t in &self.tags {
            w.bytes(t.as_bytes());
        }
        w.names(&self.vary);
        w.opt_u64(self.body_len);
        w.u32(self.chunk_size);
        w.u64(self.chunk_count);
        match &self.body_hash {
            Some(h) => {
                w.buf.push(1);
                w.buf.extend_from_slice(h);
            }
            None => w.buf.push(0),
        }
        if !self.early_hints.is_empty() {
            w.u32(u32::try_from(self.early_hints.len()).unwrap_or(u32::MAX));
            for v in &self.early_hints {
                w.bytes(v.as_bytes());
            }
        }
        w.finish()
    }

    /// Decodes an object record.
    pub fn decode(input: &[u8]) -> Result<ObjectMeta, MetaError> {
        match decode_record(input)? {
            Record::Object(m) => Ok(*m),
            Record::Vary(_) => Err(MetaError::WrongKind(KIND_VARY)),
        }
    }
}

/// The list of varying request fields stored under a primary key (§4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaryMarker {
    /// Field names (lower-case, sorted).
    pub names: Vec<HeaderName>,
    /// When it was written.
    pub created_at: SystemTime,
}

impl VaryMarker {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(KIND_VARY);
        w.names(&self.names);
        w.time(self.created_at);
        w.finish()
    }

    /// Decodes a vary marker.
    pub fn decode(input: &[u8]) -> Result<VaryMarker, MetaError> {
        match decode_record(input)? {
            Record::Vary(v) => Ok(v),
            Record::Object(_) => Err(MetaError::WrongKind(KIND_OBJECT)),
        }
    }
}

/// Either kind of head record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A stored response.
    Object(Box<ObjectMeta>),
    /// A vary marker.
    Vary(VaryMarker),
}

/// Decodes a head record of either kind, verifying its checksum.
pub fn decode_record(input: &[u8]) -> Result<Record, MetaError> {
    decode_with(input, None)
}

/// Decodes a head record read back from the store: the hit path's decoder.
///
/// The record's own checksum is not recomputed: every entry foyer loads from
/// disk is checked against its xxhash64 before we see it, and a memory-tier
/// entry holds the very bytes we encoded. Structure is still fully checked
/// (magic, version, every length), so hostile bytes are an error, never a
/// panic. Header values are zero-copy slices of `input`.
pub fn decode_stored_record(input: &Bytes) -> Result<Record, MetaError> {
    decode_with(input, Some(input))
}

fn decode_with(input: &[u8], shared: Option<&Bytes>) -> Result<Record, MetaError> {
    if input.len() < MAGIC.len() + 2 + CHECKSUM_LEN {
        return Err(MetaError::Truncated);
    }
    let (body, sum) = input.split_at(input.len() - CHECKSUM_LEN);
    if body.get(..4) != Some(&MAGIC[..]) {
        return Err(MetaError::BadMagic);
    }
    let version = body.get(4).copied().unwrap_or(0);
    if version != META_VERSION {
        return Err(MetaError::UnsupportedVersion(version));
    }
    if shared.is_none() && blake3::hash(body).as_bytes().get(..CHECKSUM_LEN) != Some(sum) {
        return Err(MetaError::Checksum);
    }
    let kind = body.get(5).copied().unwrap_or(0);
    let mut r = Reader {
        s: body.get(6..).unwrap_or_default(),
    };
    let rec = match kind {
        KIND_OBJECT => Record::Object(Box::new(read_object(&mut r, shared)?)),
        KIND_VARY => Record::Vary(VaryMarker {
            names: r.names()?,
            created_at: r.time()?,
        }),
        k => return Err(MetaError::WrongKind(k)),
    };
    if !r.s.is_empty() {
        return Err(MetaError::Invalid("trailing bytes"));
    }
    Ok(rec)
}

fn read_object(r: &mut Reader<'_>, shared: Option<&Bytes>) -> Result<ObjectMeta, MetaError> {
    let mut object_id = [0u8; 16];
    object_id.copy_from_slice(r.take(16)?);
    let status = r.u16()?;
    if !(100..=999).contains(&status) {
        return Err(MetaError::Invalid("status"));
    }
    let n = r.count(8)?;
    let mut headers = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.name()?;
        let raw = r.bytes()?;
        let value = match shared {
            Some(b) => HeaderValue::from_maybe_shared(b.slice_ref(raw)),
            None => HeaderValue::from_bytes(raw),
        }
        .map_err(|_| MetaError::Invalid("header value"))?;
        headers.push((name, value));
    }
    let request_time = r.time()?;
    let response_time = r.time()?;
    let created_at = r.time()?;
    let initial_age = r.u64()?;
    let lifetime = r.u64()?;
    let stale_while_revalidate = r.opt_u32()?;
    let stale_if_error = r.opt_u32()?;
    let flags = r.u32()?;
    let etag = r.opt_bytes()?;
    let last_modified = r.opt_bytes()?;
    let nt = r.count(4)?;
    let mut tags = Vec::with_capacity(nt);
    for _ in 0..nt {
        let t = std::str::from_utf8(r.bytes()?).map_err(|_| MetaError::Invalid("tag"))?;
        tags.push(t.to_owned());
    }
    let vary = r.names()?;
    let body_len = r.opt_u64()?;
    let chunk_size = r.u32()?;
    let chunk_count = r.u64()?;
    let body_hash = match r.u8()? {
        0 => None,
        1 => {
            let mut h = [0u8; 32];
            h.copy_from_slice(r.take(32)?);
            Some(h)
        }
        _ => return Err(MetaError::Invalid("option tag")),
    };
    let mut early_hints = Vec::new();
    if !r.s.is_empty() {
        let n = r.count(4)?;
        for _ in 0..n {
            let v = HeaderValue::from_bytes(r.bytes()?)
                .map_err(|_| MetaError::Invalid("early hint"))?;
            early_hints.push(v);
        }
    }
    Ok(ObjectMeta {
        object_id,
        status,
        headers: Arc::new(headers),
        request_time,
        response_time,
        created_at,
        initial_age,
        lifetime,
        stale_while_revalidate,
        stale_if_error,
        flags,
        etag,
        last_modified,
        tags,
        vary,
        body_len,
        chunk_size,
        chunk_count,
        body_hash,
        early_hints,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "meta_tests.rs"]
mod tests;

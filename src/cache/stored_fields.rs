//! The header fields of a stored response as [`super::meta::ObjectMeta`] holds
//! them: a list of names and values, or, for a head record read back from the
//! store, the record's own field section, checked when the record is read and
//! made into a list only when something asks for one.
//!
//! A plain hit sends the stored fields in wire form and compares their names as
//! bytes ([`StoredFields::pairs`]), so it builds no `HeaderName` or
//! `HeaderValue`. For a head the per-thread memo does not keep (most of a large
//! hot set's), building them on every hit was ~2,300 of ~18,500 instructions
//! (callgrind, benches/load/instructions.sh, 10,000 keys).
//!
//! The section is checked as strictly as the list would be: every name a
//! lower-case token (the spelling the record writer uses; any other name makes
//! the record read eagerly, as a list, where it is lower-cased or refused) and
//! every value a valid field value (RFC 9110 §5.5: no CR, LF, NUL or other
//! control but HTAB). Bytes that pass are sent as they are; bytes that do not
//! make the record an error.
//!
//! Owns: the two representations and the check. Must not know: what any field
//! means.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::codec::Reader;
use super::meta::MetaError;
use super::update::HeaderList;

/// A stored response's header fields, order and repeats preserved.
#[derive(Clone)]
pub struct StoredFields(Repr);

// Two pointers' room: the record a hit clones from the memo stays small.
#[derive(Clone)]
enum Repr {
    List(Arc<HeaderList>),
    Section(Box<Section>),
}

/// `count` fields as the record stores them (`u32` length and bytes of the
/// name, then of the value), all checked; the list once made from them.
#[derive(Clone)]
struct Section {
    bytes: Bytes,
    count: usize,
    list: OnceLock<Arc<HeaderList>>,
}

impl StoredFields {
    /// Fields from a list.
    pub fn from_list(list: HeaderList) -> StoredFields {
        StoredFields(Repr::List(Arc::new(list)))
    }

    /// Reads `count` fields from `r`, a reader over `shared`'s bytes. The
    /// result keeps a slice of `shared` and no list when every field passes
    /// the check (see the module doc); a name that is a token but not in
    /// lower case makes the list at once, as before; anything invalid is an
    /// error.
    pub(super) fn read(
        r: &mut Reader<'_>,
        count: usize,
        shared: &Bytes,
    ) -> Result<StoredFields, MetaError> {
        let start = r.s;
        let mut plain = true;
        for _ in 0..count {
            let name = r.bytes()?;
            let value = r.bytes()?;
            plain &= is_lower_token(name);
            if !is_field_value(value) {
                return Err(MetaError::Invalid("header value"));
            }
        }
        let used = start.len() - r.s.len();
        let section = start.get(..used).unwrap_or_default();
        if !plain {
            return read_list(&mut Reader { s: section }, count, Some(shared))
                .map(StoredFields::from_list);
        }
        Ok(StoredFields(Repr::Section(Box::new(Section {
            bytes: shared.slice_ref(section),
            count,
            list: OnceLock::new(),
        }))))
    }

    /// Each field's name and value as bytes, in order, without making the
    /// list.
    pub fn pairs(&self) -> Pairs<'_> {
        match &self.0 {
            Repr::Section(s) if s.list.get().is_none() => {
                Pairs(PairsRepr::Section(Reader { s: &s.bytes }))
            }
            _ => Pairs(PairsRepr::List(self.list().iter())),
        }
    }

    /// How many fields there are.
    pub fn count(&self) -> usize {
        match &self.0 {
            Repr::List(l) => l.len(),
            Repr::Section(s) => s.count,
        }
    }

    /// Calls `f` with each value of the fields named `name`, in order, until
    /// it returns `false`, without making the list.
    #[inline]
    pub fn each(&self, name: &HeaderName, f: &mut dyn FnMut(&HeaderValue) -> bool) {
        match &self.0 {
            Repr::Section(s) if s.list.get().is_none() => s.each(name, f),
            _ => {
                for (n, v) in self.list() {
                    if n == name && !f(v) {
                        return;
                    }
                }
            }
        }
    }

    /// The list, made from the section on first use.
    fn list(&self) -> &HeaderList {
        match &self.0 {
            Repr::List(l) => l,
            Repr::Section(s) => s.list.get_or_init(|| section_list(&s.bytes, s.count)),
        }
    }

    /// Holds the list from now on instead of the section (made if need be):
    /// a record the memo keeps is cloned on every hit, and a clone then
    /// shares the list by a reference count.
    pub fn make_list(&mut self) {
        if let Repr::Section(s) = &self.0 {
            let l = s
                .list
                .get_or_init(|| section_list(&s.bytes, s.count))
                .clone();
            self.0 = Repr::List(l);
        }
    }
}

impl Section {
    /// [`StoredFields::each`] over the section's bytes.
    #[inline(never)]
    fn each(&self, name: &HeaderName, f: &mut dyn FnMut(&HeaderValue) -> bool) {
        let want = name.as_str().as_bytes();
        for (n, v) in Pairs(PairsRepr::Section(Reader { s: &self.bytes })) {
            if n != want {
                continue;
            }
            match HeaderValue::from_maybe_shared(self.bytes.slice_ref(v)) {
                Ok(v) if !f(&v) => return,
                _ => {}
            }
        }
    }
}

/// The list of a checked section. Checked when read, it cannot fail; a field
/// that did would be left out rather than sent.
fn section_list(bytes: &Bytes, count: usize) -> Arc<HeaderList> {
    Arc::new(read_list(&mut Reader { s: bytes }, count, Some(bytes)).unwrap_or_default())
}

impl Deref for StoredFields {
    type Target = HeaderList;

    fn deref(&self) -> &HeaderList {
        self.list()
    }
}

impl PartialEq for StoredFields {
    fn eq(&self, other: &StoredFields) -> bool {
        self.count() == other.count() && self.pairs().eq(other.pairs())
    }
}

impl Eq for StoredFields {}

impl fmt::Debug for StoredFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.pairs()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Names and values of [`StoredFields`] as bytes.
pub struct Pairs<'a>(PairsRepr<'a>);

enum PairsRepr<'a> {
    Section(Reader<'a>),
    List(std::slice::Iter<'a, (HeaderName, HeaderValue)>),
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            PairsRepr::Section(r) => {
                if r.s.is_empty() {
                    return None;
                }
                Some((r.bytes().ok()?, r.bytes().ok()?))
            }
            PairsRepr::List(i) => i.next().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        }
    }
}

/// `count` fields from `r` as a list: names through [`Reader::name`], values
/// as slices of `shared` when given, else copied.
pub(super) fn read_list(
    r: &mut Reader<'_>,
    count: usize,
    shared: Option<&Bytes>,
) -> Result<HeaderList, MetaError> {
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.name()?;
        let raw = r.bytes()?;
        let value = match shared {
            Some(b) => HeaderValue::from_maybe_shared(b.slice_ref(raw)),
            None => HeaderValue::from_bytes(raw),
        }
        .map_err(|_| MetaError::Invalid("header value"))?;
        headers.push((name, value));
    }
    Ok(headers)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The bytes of `v` eight at a time: `fast` passes a word or not (it may
/// refuse good ones, never pass a bad one), and a word it refuses is checked
/// byte by byte with `byte_ok`. The last word overlaps the one before it when
/// the length is not a multiple of eight; fewer than eight bytes are checked
/// one by one.
fn all_words(v: &[u8], fast: impl Fn(u64) -> bool, byte_ok: impl Fn(u8) -> bool) -> bool {
    let ok = |w: &[u8]| match <[u8; 8]>::try_from(w) {
        Ok(a) => fast(u64::from_le_bytes(a)) || a.iter().all(|&b| byte_ok(b)),
        Err(_) => w.iter().all(|&b| byte_ok(b)),
    };
    if v.len() < 8 {
        return ok(v);
    }
    let mut words = v.chunks_exact(8);
    words.all(ok) && (words.remainder().is_empty() || v.get(v.len() - 8..).is_some_and(ok))
}

/// Per byte of `x` (every byte below 0x80), the high bit set where the byte
/// is at least `c` (at most 0x80): `0x80 + b - c` never borrows from the
/// next byte.
fn at_least(x: u64, c: u8) -> u64 {
    ((x | HIGH) - ONES * u64::from(c)) & HIGH
}

/// Per byte of `x`, the high bit set where the byte is `c` (exact: adding
/// 0x7f to seven bits never carries into the next byte).
fn equal(x: u64, c: u8) -> u64 {
    let t = x ^ (ONES * u64::from(c));
    !(((t & !HIGH) + !HIGH) | t) & HIGH
}

/// Whether `name` is a field name (RFC 9110 §5.1: a token) spelled in lower
/// case, as `HeaderName` holds it. A word of letters, digits and `-` (most
/// names) passes in a few operations; others byte by byte.
fn is_lower_token(name: &[u8]) -> bool {
    // RFC 9110 §5.6.2: tchar, without upper-case letters.
    static TCHAR_LOWER: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let c = i as u8;
            t[i] = c.is_ascii_digit()
                || c.is_ascii_lowercase()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                );
            i += 1;
        }
        t
    };
    let fast = |x: u64| {
        let letter = at_least(x, b'a') & !at_least(x, b'z' + 1);
        let digit = at_least(x, b'0') & !at_least(x, b'9' + 1);
        x & HIGH == 0 && (letter | digit | equal(x, b'-')) == HIGH
    };
    !name.is_empty()
        && name.len() < (1 << 16)
        && all_words(name, fast, |b| TCHAR_LOWER[usize::from(b)])
}

/// Whether `v` may be a field value as `HeaderValue` takes one: no byte
/// below 0x20 but HTAB, and no DEL (RFC 9110 §5.5). A word with none of
/// those bytes passes in a few operations; one with any is checked byte by
/// byte.
pub(crate) fn is_field_value(v: &[u8]) -> bool {
    let fast = |x: u64| {
        // A byte below 0x20: any such byte sets a flag (a borrow out of it
        // may set one above it too, which only sends the word to the byte
        // check); bytes from 0x80 up are masked out by `!x`.
        let low = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        (low | equal(x, 0x7f)) == 0
    };
    all_words(v, fast, |b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

#[cfg(test)]
#[path = "stored_fields_tests.rs"]
mod tests;

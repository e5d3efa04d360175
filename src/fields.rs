//! Lookups in one message's header map, by a scan of its names when the
//! map is small.
//!
//! `HeaderMap`'s own lookups hash the name and probe its table, and a name
//! that is not a standard one is hashed byte by byte: a pass-through
//! request made a dozen lookups, most of them asking a request of one to a
//! few fields for one it does not have (~1,100 instructions in all;
//! callgrind, benches/load/instructions.sh). Comparing names in order costs
//! ~1.2 ns per field (a standard name compares as one byte, a standard and
//! another never compare their bytes), against ~7 ns for a lookup of a
//! standard name and ~23 ns for another (criterion, `field_lookup_*` in
//! benches/hit_path.rs). So a small map is scanned, a larger one looked up.
//!
//! Also here: names recognised from a short table before
//! `HeaderName::from_bytes` ([`find_name`]), and reading a value as the
//! plain digits of a length, without
//! going through `str` (a pass-through response's head is read twice for
//! its length: as the origin's is parsed and as the client's is written).
//!
//! And [`WireFields`]: field lines in HTTP/1.1 wire form, made once and
//! sent as they are.
//!
//! Owns: how a field or a name is found, a length read and a line written.
//! Must not know: what any field means.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Most field names a map may have to be scanned for a name's presence
/// (a scan of nine cost 11.7 ns, a lookup of a standard name 7.3).
const SCAN_KEYS: usize = 6;

/// Most field lines a map may have to be scanned for a name's values (a
/// scan of lines walks each entry's list of values too: nine cost 20 ns,
/// a lookup 14).
const SCAN_LINES: usize = 6;

/// Header field lines in HTTP/1.1 wire form (RFC 9112 §5: each a name, a
/// colon, a space, the value and CRLF), as the node's own HTTP/1.1 writer
/// sends them. A clone shares the bytes.
#[derive(Clone, Debug)]
pub struct WireFields {
    bytes: bytes::Bytes,
    has_date: bool,
}

impl WireFields {
    /// The lines of `fields`, in order. Names are written as `HeaderName`
    /// spells them (lower case); values as they are (a `HeaderValue` has
    /// no CR or LF).
    pub fn encode<'a>(fields: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>) -> Self {
        let mut out = Vec::with_capacity(256);
        let mut has_date = false;
        for (name, value) in fields {
            has_date |= name == header::DATE;
            push_line(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
        WireFields {
            bytes: out.into(),
            has_date,
        }
    }

    /// The lines.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether one of them is `Date`.
    pub fn has_date(&self) -> bool {
        self.has_date
    }
}

/// Appends `name: value` and CRLF.
pub fn push_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether `map` has a field `name`.
#[inline]
pub fn has(map: &HeaderMap, name: &HeaderName) -> bool {
    if map.keys_len() <= SCAN_KEYS {
        map.keys().any(|k| k == name)
    } else {
        map.contains_key(name)
    }
}

/// Every value of `name` in `map`, in order.
#[inline]
pub fn all<'a>(map: &'a HeaderMap, name: &'a HeaderName) -> All<'a> {
    if map.len() <= SCAN_LINES {
        All::Scan(map.iter(), name)
    } else {
        All::Map(map.get_all(name).into_iter())
    }
}

/// The values of one field name: see [`all`].
pub enum All<'a> {
    /// Every line of a small map, those of the name kept.
    Scan(header::Iter<'a, HeaderValue>, &'a HeaderName),
    /// The name's values, looked up.
    Map(header::ValueIter<'a, HeaderValue>),
}

impl<'a> Iterator for All<'a> {
    type Item = &'a HeaderValue;

    #[inline]
    fn next(&mut self) -> Option<&'a HeaderValue> {
        match self {
            All::Scan(it, name) => it.find_map(|(k, v)| (k == *name).then_some(v)),
            All::Map(it) => it.next(),
        }
    }
}

/// The entry of `table` whose canonical name (`canon`) is `raw`: first as
/// sent (senders nearly always use the canonical spelling, compared a word
/// at a time), then without regard to case (RFC 9110 §5.1). For names
/// recognised without `HeaderName::from_bytes`, which lower-cases every
/// name into a scratch buffer and matches it against all standard names
/// (~110–150 instructions a field).
#[inline]
pub fn find_name<'t, T>(raw: &[u8], table: &'t [T], canon: impl Fn(&T) -> &[u8]) -> Option<&'t T> {
    if let Some(t) = table.iter().find(|t| same_bytes(canon(t), raw)) {
        return Some(t);
    }
    table.iter().find(|t| canon(t).eq_ignore_ascii_case(raw))
}

/// Eight bytes of `s` from `at` (`s` is at least `at + 8` long).
#[inline]
fn word(s: &[u8], at: usize) -> u64 {
    s.get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map_or(0, u64::from_ne_bytes)
}

/// Four bytes of `s` from `at` (`s` is at least `at + 4` long).
#[inline]
fn half_word(s: &[u8], at: usize) -> u32 {
    s.get(at..at + 4)
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map_or(0, u32::from_ne_bytes)
}

/// `a == b`, a word at a time (a `bcmp` call per candidate cost more than
/// the rest of the lookup); names of four to seven bytes as two
/// overlapping half words.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if b.len() != n {
        return false;
    }
    if n < 8 {
        if n < 4 {
            return a == b;
        }
        return half_word(a, 0) == half_word(b, 0) && half_word(a, n - 4) == half_word(b, n - 4);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// `n` as a field value, from a per-thread memo of recent ones: a hit's
/// `Content-Length` and `Age` are the same few numbers again and again,
/// and a new value is an allocation (~160 instructions with its free,
/// against a count's increment for a kept one).
pub fn number(n: u64) -> HeaderValue {
    const SLOTS: usize = 16;
    thread_local! {
        static MEMO: std::cell::RefCell<[Option<(u64, HeaderValue)>; SLOTS]> =
            const { std::cell::RefCell::new([const { None }; SLOTS]) };
    }
    MEMO.with(|m| {
        let Ok(mut m) = m.try_borrow_mut() else {
            return HeaderValue::from(n);
        };
        let Some(slot) = m.get_mut((n as usize ^ (n >> 8) as usize) % SLOTS) else {
            return HeaderValue::from(n);
        };
        match slot {
            Some((k, v)) if *k == n => v.clone(),
            _ => {
                let v = HeaderValue::from(n);
                *slot = Some((n, v.clone()));
                v
            }
        }
    })
}

/// `v` as a number when it is one to nineteen ASCII digits (RFC 9110
/// §8.6's `Content-Length = 1*DIGIT`, short enough not to overflow).
#[inline]
pub fn plain_digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Maps of 0 to 24 fields, some of them with several lines, some with
    /// names that are not standard: every lookup answers as the map's own.
    #[test]
    fn lookups_answer_as_the_map_does() {
        let names: Vec<HeaderName> = [
            "host",
            "accept",
            "range",
            "cache-control",
            "x-forwarded-for",
            "x-a",
            "x-b",
            "cookie",
            "upgrade",
            "vary",
            "x-c",
            "etag",
        ]
        .iter()
        .map(|n| HeaderName::from_static(n))
        .collect();
        for size in 0..24usize {
            let mut map = HeaderMap::new();
            for i in 0..size {
                // Every third line repeats an earlier name.
                let name = &names[(i * 7 + i / 3) % names.len()];
                map.append(name.clone(), HeaderValue::from(i as u64));
            }
            for name in &names {
                assert_eq!(has(&map, name), map.contains_key(name), "{size} {name}");
                let ours: Vec<_> = all(&map, name).collect();
                let theirs: Vec<_> = map.get_all(name).iter().collect();
                assert_eq!(ours, theirs, "{size} {name}");
            }
        }
    }

    #[test]
    fn plain_digits_are_a_length_and_nothing_else_is() {
        for (v, n) in [
            (&b"0"[..], Some(0)),
            (b"1024", Some(1024)),
            (b"9999999999999999999", Some(9_999_999_999_999_999_999)),
            (b"10000000000000000000", None),
            (b"", None),
            (b"+5", None),
            (b"-5", None),
            (b"5 ", None),
            (b"1,2", None),
        ] {
            assert_eq!(plain_digits(v), n, "{v:?}");
        }
    }

    #[test]
    fn numbers_are_their_values_whatever_the_memo_holds() {
        for round in 0..3u64 {
            for n in [0u64, 1, 7, 16, 256, 257, 1024, 4096, 86_400, u64::MAX] {
                let n = n.wrapping_add(round % 2);
                assert_eq!(number(n), HeaderValue::from(n), "{n}");
            }
        }
    }
    #[test]
    fn word_compare_is_byte_compare() {
        let names: Vec<&[u8]> = vec![
            b"Content-Length",
            b"Content-Lengtx",
            b"Xontent-Length",
            b"Content-Xength",
            b"Transfer-Encoding",
            b"Transfer-EncodinG",
            b"Content-Encoding",
            b"Content-Encodinh",
            b"Location",
            b"Locatiom",
            b"Age",
            b"Agf",
            b"Date",
            b"ETag",
            b"Datf",
            b"Server",
            b"Servex",
            b"Xerver",
            b"Serxer",
            b"Expires",
            b"Expirez",
            b"Exqires",
            b"",
        ];
        for a in &names {
            for b in &names {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }
}

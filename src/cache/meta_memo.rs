//! A per-thread memo of decoded head records, for objects hit again and
//! again: decoding a stored head (names, values, times, tags) was ~3,900
//! of ~27,000 instructions of a 1 KiB hit (callgrind,
//! benches/load/instructions.sh); a clone of the decoded record is a
//! fraction of that.
//!
//! A record is kept only when it comes back to a slot that saw it once
//! before (its checksum word matched), so a large random hot set mostly
//! pays one compare, not a copy per request. The memo is keyed by the
//! record's exact bytes: its trailing checksum picks the slot and the
//! whole record is compared, so a changed record (a 304 refreshes the
//! head under the same object id) or a colliding one is a miss, never a
//! wrong answer. A kept record is decoded from its own copy of the bytes,
//! so the memo never holds a store buffer (or an arena slice) alive.

use std::cell::RefCell;

use bytes::Bytes;
use http::HeaderMap;

use super::meta::{CHECKSUM_LEN, MetaError, Record, decode_stored_record};
use crate::fields::WireFields;

/// Slots per thread (a power of two). At ~1 KiB per kept record, as much
/// again for its client header map and a third of that for its fields in
/// wire form, at most ~600 KiB per thread.
const SLOTS: usize = 256;

// Kept inline: the slots are one allocation per thread, made once, and a
// hit reads a kept slot's parts from its own lines, not through a box.
#[allow(clippy::large_enum_variant)]
#[derive(Default)]
enum Slot {
    #[default]
    Empty,
    /// A record with this checksum word was decoded here once.
    Seen(u64),
    /// A record (its bytes, decoded from them) kept for the next hit, and
    /// the client header map last built from it, with the id of the field
    /// set left out of it (see [`client_headers_memo`]).
    Kept {
        raw: Bytes,
        rec: Record,
        client: Option<(u64, HeaderMap)>,
        /// The client's fields in wire form, made for the key given (see
        /// [`wire_fields_memo`]); `None` inside when they may not go out
        /// that way.
        wire: Option<((u64, u64), Option<WireFields>)>,
    },
}

thread_local! {
    static MEMO: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// [`decode_stored_record`], answered from the memo when `input` was
/// decoded on this thread recently.
pub fn decode_stored_record_memo(input: &Bytes) -> Result<Record, MetaError> {
    let Some(word) = checksum_word(input) else {
        return decode_stored_record(input);
    };
    let at = (word as usize) & (SLOTS - 1);
    MEMO.with(|m| {
        let Ok(mut memo) = m.try_borrow_mut() else {
            return decode_stored_record(input);
        };
        if memo.is_empty() {
            memo.resize_with(SLOTS, Slot::default);
        }
        let Some(slot) = memo.get_mut(at) else {
            return decode_stored_record(input);
        };
        match slot {
            Slot::Kept { raw, rec, .. } if raw[..] == input[..] => Ok(rec.clone()),
            Slot::Seen(w) if *w == word => {
                // Seen before: keep it, decoded from a copy of its own.
                let raw = Bytes::copy_from_slice(input);
                let rec = decode_stored_record(&raw)?;
                let out = rec.clone();
                *slot = Slot::Kept {
                    raw,
                    rec,
                    client: None,
                    wire: None,
                };
                Ok(out)
            }
            _ => {
                *slot = Slot::Seen(word);
                decode_stored_record(input)
            }
        }
    })
}

/// The header map a client is sent for the stored head `input` (before
/// `Age`, `Via` and `Cache-Status`), with the fields of the set `skip_id`
/// left out: a clone of the map built for the same record bytes and set
/// on this thread before, or `build()`'s, kept when the record is kept.
///
/// Building the map from the decoded fields was ~2,400 of ~20,000
/// instructions of a 1 KiB hit; a clone shares every name and value.
/// `skip_id` must change whenever the set of left-out fields can (the
/// cache layer's id, new on every configuration load).
pub fn client_headers_memo(
    input: &Bytes,
    skip_id: u64,
    build: impl FnOnce() -> HeaderMap,
) -> HeaderMap {
    let Some(word) = checksum_word(input) else {
        return build();
    };
    MEMO.with(|m| {
        let Ok(mut memo) = m.try_borrow_mut() else {
            return build();
        };
        match memo.get_mut((word as usize) & (SLOTS - 1)) {
            Some(Slot::Kept { raw, client, .. }) if raw[..] == input[..] => match client {
                Some((id, map)) if *id == skip_id => map.clone(),
                _ => {
                    let map = build();
                    *client = Some((skip_id, map.clone()));
                    map
                }
            },
            _ => build(),
        }
    })
}

/// The fields a client is sent for the stored head `input`, in wire form:
/// made by `make` once per `key` (the caller's: what decides which fields
/// are sent) and kept beside the record. `None` when the record is not
/// kept (the caller makes its own); `Some(None)` when `make` said the
/// fields may not go out that way. Costs a compare of the record's bytes
/// and a reference count, where a clone of the memo's client map, the
/// fields added to it, their encoding and the map's drop were ~3,000
/// instructions of a 1 KiB hit.
pub fn wire_fields_memo(
    input: &Bytes,
    key: (u64, u64),
    make: impl FnOnce() -> Option<WireFields>,
) -> Option<Option<WireFields>> {
    let word = checksum_word(input)?;
    MEMO.with(|m| {
        let mut memo = m.try_borrow_mut().ok()?;
        match memo.get_mut((word as usize) & (SLOTS - 1)) {
            Some(Slot::Kept { raw, wire, .. }) if raw[..] == input[..] => match wire {
                Some((k, w)) if *k == key => Some(w.clone()),
                _ => {
                    let w = make();
                    *wire = Some((key, w.clone()));
                    Some(w)
                }
            },
            _ => None,
        }
    })
}

/// The first word of a record's trailing checksum, which picks its slot.
fn checksum_word(input: &Bytes) -> Option<u64> {
    input
        .len()
        .checked_sub(CHECKSUM_LEN)
        .and_then(|at| input.get(at..at + 8))
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cache::meta::VaryMarker;
    use http::HeaderName;
    use std::time::{Duration, UNIX_EPOCH};

    fn marker(names: &[&'static str], secs: u64) -> Bytes {
        Bytes::from(
            VaryMarker {
                names: names.iter().map(|n| HeaderName::from_static(n)).collect(),
                created_at: UNIX_EPOCH + Duration::from_secs(secs),
            }
            .encode(),
        )
    }

    #[test]
    fn the_memo_answers_what_a_fresh_decode_answers() {
        let a = marker(&["accept-encoding"], 10);
        let b = marker(&["accept-language"], 20);
        for _ in 0..4 {
            for raw in [&a, &b] {
                assert_eq!(
                    decode_stored_record_memo(raw).unwrap(),
                    decode_stored_record(raw).unwrap()
                );
            }
        }
    }

    #[test]
    fn a_record_with_the_same_checksum_but_other_bytes_is_not_confused() {
        let a = marker(&["accept-encoding"], 10);
        for _ in 0..3 {
            decode_stored_record_memo(&a).unwrap();
        }
        // Same trailing checksum, different content: decoded for itself.
        let mut forged = a.to_vec();
        let at = forged.len() - CHECKSUM_LEN - 1;
        forged[at] ^= 1;
        let forged = Bytes::from(forged);
        let got = decode_stored_record_memo(&forged);
        assert_eq!(
            got.map_err(|e| e.to_string()),
            decode_stored_record(&forged).map_err(|e| e.to_string())
        );
        assert_ne!(
            decode_stored_record_memo(&forged).ok(),
            Some(decode_stored_record(&a).unwrap())
        );
    }

    #[test]
    fn garbage_is_an_error_every_time() {
        let junk = Bytes::from_static(b"not a record at all, just bytes");
        for _ in 0..3 {
            assert!(decode_stored_record_memo(&junk).is_err());
        }
        assert!(decode_stored_record_memo(&Bytes::from_static(b"x")).is_err());
    }

    #[test]
    fn client_maps_are_kept_per_record_bytes_and_field_set() {
        use http::HeaderValue;
        let map = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("x-built", HeaderValue::from_static(v));
            h
        };
        let a = marker(&["accept-encoding"], 30);
        let b = marker(&["accept-encoding"], 31);
        let built = std::cell::Cell::new(0);
        let get = |raw: &Bytes, id: u64, v: &'static str| {
            client_headers_memo(raw, id, || {
                built.set(built.get() + 1);
                map(v)
            })
        };
        // Not kept before the record is (its second decode).
        assert_eq!(get(&a, 1, "a1")["x-built"], "a1");
        decode_stored_record_memo(&a).unwrap();
        decode_stored_record_memo(&a).unwrap();
        assert_eq!(get(&a, 1, "a1")["x-built"], "a1");
        assert_eq!(built.get(), 2);
        // Kept now: cloned, not built.
        assert_eq!(get(&a, 1, "other")["x-built"], "a1");
        assert_eq!(built.get(), 2);
        // Another field set (a new configuration) builds again.
        assert_eq!(get(&a, 2, "a2")["x-built"], "a2");
        assert_eq!(get(&a, 2, "other")["x-built"], "a2");
        assert_eq!(built.get(), 3);
        // Other bytes never get a's map, whatever their slot.
        assert_eq!(get(&b, 2, "b")["x-built"], "b");
        let mut forged = a.to_vec();
        let at = forged.len() - CHECKSUM_LEN - 1;
        forged[at] ^= 1;
        assert_eq!(get(&Bytes::from(forged), 2, "f")["x-built"], "f");
    }

    #[test]
    fn wire_fields_are_made_once_per_key_for_a_kept_record() {
        use http::HeaderValue;
        let a = marker(&["accept-language"], 40);
        let made = std::cell::Cell::new(0);
        let mut map = HeaderMap::new();
        map.insert("x-built", HeaderValue::from_static("1"));
        let wire = |key: (u64, u64)| {
            wire_fields_memo(&a, key, || {
                made.set(made.get() + 1);
                Some(WireFields::encode(map.iter()))
            })
        };
        // Nothing before the record is kept (its second decode).
        assert!(wire((5, 1)).is_none());
        decode_stored_record_memo(&a).unwrap();
        assert!(wire((5, 1)).is_none());
        decode_stored_record_memo(&a).unwrap();
        let w = wire((5, 1)).unwrap().unwrap();
        assert_eq!(w.bytes(), b"x-built: 1\r\n");
        assert!(wire((5, 1)).unwrap().is_some());
        assert_eq!(made.get(), 1);
        // Another key (a new configuration, another site) makes them again.
        assert!(wire((5, 2)).unwrap().is_some());
        assert_eq!(made.get(), 2);
        // What make refused stays refused for that key.
        let refused = wire_fields_memo(&a, (6, 3), || None);
        assert!(matches!(refused, Some(None)));
        let again = wire_fields_memo(&a, (6, 3), || unreachable!());
        assert!(matches!(again, Some(None)));
        // Other bytes in the same slot get nothing kept.
        let mut forged = a.to_vec();
        let at = forged.len() - CHECKSUM_LEN - 1;
        forged[at] ^= 1;
        assert!(wire_fields_memo(&Bytes::from(forged), (6, 3), || unreachable!()).is_none());
    }
}

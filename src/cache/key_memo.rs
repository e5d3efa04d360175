//! A per-thread memo of recent primary keys: the canonical form of a
//! request target (`key::normalised_parts`) maps to its blake3 key.
//!
//! A typical canonical form is 80–100 bytes: two blake3 blocks, ~1,100
//! instructions per request, the largest single item left on the
//! pass-through path and a tenth of the hit path's own work (callgrind,
//! benches/load/instructions.sh). Hot URIs repeat, so the memo answers
//! them with a cheap hash, one compare of the canonical bytes and a copy.
//!
//! Correctness does not depend on the hash: a slot answers only for the
//! exact canonical bytes it holds, so a collision is a miss, never a wrong
//! key. The memo is direct-mapped (a newer form overwrites its slot) and
//! per thread (no lock, nothing shared between cores); forms longer than
//! [`MAX_FORM`] are not memoised. Its ~2.9 MiB per thread are allocated
//! zeroed on first use, so only the pages of slots in use become resident.
//! Sized for a hot set of about 10,000 URIs per thread: at 2,048 slots
//! such a set missed nearly every time and paid the hash.

use std::cell::RefCell;

/// Longest canonical form kept (bytes).
pub const MAX_FORM: usize = 152;
/// Slots per thread (a power of two).
const SLOTS: usize = 16_384;
/// One slot: the form's length (2 bytes), its key (32), the form.
const SLOT: usize = 2 + 32 + MAX_FORM;

thread_local! {
    /// `SLOTS` slots of `SLOT` bytes (~2.9 MiB), zero-allocated at first
    /// use: a zero length is an empty slot, and pages of slots never
    /// written are never touched.
    static MEMO: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Index of `form`'s slot: each 8-byte word (the tail zero-padded) is
/// multiplied in and its high half folded back down, so that every byte
/// reaches the slot bits (only a position; the bytes are compared). A
/// multiply-rotate hash without the fold kept differences in a word's high
/// bytes out of them: 1,000 URIs differing in their last digits took 43
/// slots, and the memo missed ~90 % of requests across 10,000 of them.
fn slot_of(form: &[u8]) -> usize {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| {
        let h = (h ^ w).wrapping_mul(K);
        h ^ (h >> 32)
    };
    let mut h: u64 = form.len() as u64;
    let mut words = form.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = mix(h, u64::from_le_bytes(b));
    }
    let mut tail = [0u8; 8];
    for (d, s) in tail.iter_mut().zip(words.remainder()) {
        *d = *s;
    }
    h = mix(h, u64::from_le_bytes(tail));
    (h.wrapping_mul(K) >> 32) as usize & (SLOTS - 1)
}

/// The key of `form`: from the memo when this thread computed it last for
/// this slot, else `compute(form)`, remembered.
pub fn key_of(form: &[u8], compute: impl FnOnce(&[u8]) -> [u8; 32]) -> [u8; 32] {
    if form.len() > MAX_FORM {
        return compute(form);
    }
    let at = slot_of(form) * SLOT;
    let known = MEMO.try_with(|m| {
        let m = m.borrow();
        let slot = m.get(at..at + SLOT)?;
        let len = usize::from(u16::from_le_bytes([slot[0], slot[1]]));
        (len == form.len() && slot.get(34..34 + len)? == form)
            .then(|| <[u8; 32]>::try_from(&slot[2..34]).ok())
            .flatten()
    });
    if let Ok(Some(key)) = known {
        return key;
    }
    let key = compute(form);
    let _ = MEMO.try_with(|m| {
        let mut m = m.borrow_mut();
        if m.is_empty() {
            *m = vec![0; SLOTS * SLOT];
        }
        if let (Some(slot), Ok(len)) = (m.get_mut(at..at + SLOT), u16::try_from(form.len()))
            && let Some(dst) = slot.get_mut(34..34 + form.len())
        {
            dst.copy_from_slice(form);
            slot[..2].copy_from_slice(&len.to_le_bytes());
            slot[2..34].copy_from_slice(&key);
        }
    });
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn hash(form: &[u8]) -> [u8; 32] {
        *blake3::hash(form).as_bytes()
    }

    #[test]
    fn a_memoised_key_is_the_computed_key() {
        let calls = Cell::new(0);
        let counted = |f: &[u8]| {
            calls.set(calls.get() + 1);
            hash(f)
        };
        let form = b"outpost-key-v1\0site/a";
        assert_eq!(key_of(form, counted), hash(form));
        assert_eq!(key_of(form, counted), hash(form));
        assert_eq!(calls.get(), 1, "the second lookup is answered by the memo");
    }

    #[test]
    fn forms_differing_in_their_last_bytes_spread_over_the_slots() {
        // Canonical forms of one path with a varying query (the shape of
        // `/pass/1k.bin?k=N` in `key::normalised_parts`): random placement
        // gives ~970 distinct slots for 1,000 forms.
        let form = |i: usize| {
            let mut f = b"outpost-key-v1\0".to_vec();
            let pq = format!("/pass/1k.bin?k={i}");
            for field in [&b"bench"[..], b"http", b"127.0.0.1:18083", pq.as_bytes()] {
                f.extend_from_slice(&(field.len() as u64).to_le_bytes());
                f.extend_from_slice(field);
            }
            f
        };
        let slots: std::collections::HashSet<usize> =
            (0..1000).map(|i| slot_of(&form(i))).collect();
        assert!(slots.len() > 930, "{} distinct slots", slots.len());
    }

    #[test]
    fn colliding_forms_never_share_a_key() {
        // Many more forms than slots: every answer is still each form's own
        // key, whatever overwrote what.
        let forms: Vec<Vec<u8>> = (0..SLOTS * 3)
            .map(|i| format!("outpost-key-v1\0bench http example.com /obj/{i}").into_bytes())
            .collect();
        for _ in 0..2 {
            for f in &forms {
                assert_eq!(key_of(f, hash), hash(f));
            }
        }
        // Same length, same slot or not: a prefix or a changed byte is a
        // different form.
        let a = b"outpost-key-v1\0/x?a=1".to_vec();
        let mut b = a.clone();
        if let Some(last) = b.last_mut() {
            *last = b'2';
        }
        assert_eq!(key_of(&a, hash), hash(&a));
        assert_eq!(key_of(&b, hash), hash(&b));
        assert_eq!(key_of(&a[..a.len() - 1], hash), hash(&a[..a.len() - 1]));
    }

    #[test]
    fn long_forms_are_computed_every_time() {
        let calls = Cell::new(0);
        let counted = |f: &[u8]| {
            calls.set(calls.get() + 1);
            hash(f)
        };
        let long = vec![b'x'; MAX_FORM + 1];
        assert_eq!(key_of(&long, counted), hash(&long));
        assert_eq!(key_of(&long, counted), hash(&long));
        assert_eq!(calls.get(), 2);
    }
}

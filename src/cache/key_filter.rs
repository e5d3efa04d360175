//! A lock-free bit filter over cache keys, for sets that every request asks
//! about and few keys are ever in (hit-for-pass marks, recent invalidations).
//!
//! A question answered "no" by the filter takes no lock and writes no shared
//! memory: the hit path reads one word. "Maybe" (the key's bit is set: it is
//! in the set, or shares a bit with a key that is, or was) sends the caller to
//! the set itself, under its lock. A clear bit is always right, because a
//! key's bit is set before the key joins the set, and a rebuild never clears
//! the bit of a key that stays.

use std::sync::atomic::{AtomicU64, Ordering};

use super::coalesce::Key;

/// Bits in a filter: 8 KiB.
const BITS: usize = 1 << 16;

/// See the module documentation.
pub struct KeyFilter {
    words: Box<[AtomicU64]>,
}

impl Default for KeyFilter {
    fn default() -> Self {
        KeyFilter {
            words: (0..BITS / 64).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl KeyFilter {
    /// The word and bit of `key`. Keys are blake3 hashes, so any two bytes
    /// are uniform; these are the ones the maps' `KeyHash` ignores.
    pub fn bit(key: &Key) -> (usize, u64) {
        let i = usize::from(u16::from_le_bytes([key[30], key[31]])) % BITS;
        (i / 64, 1u64 << (i % 64))
    }

    /// Whether `key` may be in the set (`false`: it is not).
    #[inline]
    pub fn may_contain(&self, key: &Key) -> bool {
        let (w, b) = Self::bit(key);
        self.words
            .get(w)
            .is_some_and(|f| f.load(Ordering::Acquire) & b != 0)
    }

    /// Sets `key`'s bit: call before the key joins the set.
    pub fn insert(&self, key: &Key) {
        let (w, b) = Self::bit(key);
        if let Some(f) = self.words.get(w) {
            f.fetch_or(b, Ordering::Release);
        }
    }

    /// Leaves exactly the bits of `keys` set, clearing those of keys that
    /// left the set. Call it with the set's lock held, the lock that also
    /// serialises [`Self::insert`]: each word is replaced at once by one that
    /// keeps every bit of `keys`, so a concurrent reader never sees a
    /// remaining key's bit clear.
    pub fn rebuild<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) {
        let mut fresh = vec![0u64; self.words.len()];
        for k in keys {
            let (w, b) = Self::bit(k);
            if let Some(f) = fresh.get_mut(w) {
                *f |= b;
            }
        }
        for (f, n) in self.words.iter().zip(fresh) {
            f.store(n, Ordering::Release);
        }
    }
}

/// A test key: `first` in the bytes the maps hash, `last` in the filter's.
#[cfg(test)]
pub(crate) fn test_key(first: u8, last: u8) -> Key {
    let mut k = [0u8; 32];
    k[0] = first;
    k[31] = last;
    k
}

#[cfg(test)]
mod tests {
    use super::test_key as key;
    use super::*;

    #[test]
    fn answers_no_until_inserted_and_maybe_for_a_bit_twin() {
        let f = KeyFilter::default();
        let (a, twin, other) = (key(1, 7), key(9, 7), key(1, 8));
        assert!(!f.may_contain(&a));
        f.insert(&a);
        assert!(f.may_contain(&a));
        assert_eq!(KeyFilter::bit(&a), KeyFilter::bit(&twin));
        assert!(f.may_contain(&twin), "a shared bit says maybe");
        assert!(!f.may_contain(&other));
    }

    #[test]
    fn rebuild_keeps_remaining_keys_and_clears_the_rest() {
        let f = KeyFilter::default();
        let (stay, go) = (key(1, 1), key(2, 2));
        f.insert(&stay);
        f.insert(&go);
        f.rebuild([&stay]);
        assert!(f.may_contain(&stay));
        assert!(!f.may_contain(&go));
    }
}

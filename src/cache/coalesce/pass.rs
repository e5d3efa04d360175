//! Hit-for-pass memory: keys whose last answer could not be stored, so
//! that requests for them neither wait for each other nor (for a plain
//! GET) look in the store, until `pass_ttl` ends or an answer is stored.
//!
//! Every cached GET asks whether its key is marked, hits included, and on
//! a node with more than one worker every core asks: so asking reads one
//! cache line and writes nothing, and a mark is written only when it is new
//! or past half its life. A URL passed through many times a second by
//! every core then writes no memory another core reads (a lock or a shared
//! map written per request moves its cache line between cores each time).
//!
//! The marks are a table of sets of two slots, each one atomic word: 32
//! bits of the key (the tag) and the coarse millisecond the mark ends. The
//! set is chosen by other bits of the key (a blake3 hash), so a key is
//! taken for another one marked in its set about once in 2^32 asks; it
//! then goes to the origin once without looking in the store. A set holds
//! two keys: a third takes the slot of the mark that ends first, whose
//! requests then take the normal path (their first uncacheable answer
//! marks it again). The table's pages are made as marks land in them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Key;

/// Sets of two slots: 65,536 keys marked at once without many evictions
/// (1 MiB when every page is in use).
const SETS: usize = 1 << 16;
/// Slots per page: one 4 KiB page of the table, made on first use.
const PAGE: usize = 512;
/// The longest mark: end times are compared in wrapping 32-bit milliseconds.
const MAX_TTL_MS: u64 = 1 << 30;

/// See the module documentation.
pub struct PassMemory {
    pages: Box<[OnceLock<Box<[AtomicU64]>>]>,
    ttl_ms: u32,
}

/// Coarse milliseconds since the first call, wrapping at 2^32.
fn now_ms() -> u32 {
    // Truncation is the wrap: ends are compared with wrapping arithmetic.
    crate::clock::coarse_millis() as u32
}

/// The set's first slot and the tag of `key`.
fn place(key: &Key) -> (usize, u32) {
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let set = (word(8) as usize) & (SETS - 1);
    (set * 2, word(0) as u32)
}

/// Milliseconds left of the mark in `w` if it is `tag`'s and has not ended.
fn left(w: u64, tag: u32, now: u32) -> Option<u32> {
    if w == 0 || (w >> 32) as u32 != tag {
        return None;
    }
    let rest = (w as u32).wrapping_sub(now) as i32;
    (rest > 0).then_some(rest as u32)
}

impl PassMemory {
    /// Marks last `ttl` (at most about 12 days).
    pub fn new(ttl: Duration) -> PassMemory {
        let ttl_ms = u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX)
            .min(MAX_TTL_MS);
        PassMemory {
            pages: (0..SETS * 2 / PAGE).map(|_| OnceLock::new()).collect(),
            ttl_ms: ttl_ms as u32,
        }
    }

    /// The set's two slots, if its page was made.
    fn set(&self, first: usize) -> Option<&[AtomicU64]> {
        let page = self.pages.get(first / PAGE)?.get()?;
        page.get(first % PAGE..first % PAGE + 2)
    }

    /// The set's two slots, making its page.
    fn set_made(&self, first: usize) -> Option<&[AtomicU64]> {
        let page = self
            .pages
            .get(first / PAGE)?
            .get_or_init(|| (0..PAGE).map(|_| AtomicU64::new(0)).collect());
        page.get(first % PAGE..first % PAGE + 2)
    }

    /// Whether `key` is marked and the mark has not ended.
    pub fn contains(&self, key: &Key) -> bool {
        let (first, tag) = place(key);
        let Some(set) = self.set(first) else {
            return false;
        };
        let words = [
            set[0].load(Ordering::Relaxed),
            set[1].load(Ordering::Relaxed),
        ];
        // The clock only when a slot holds the key's tag.
        if !words.iter().any(|&w| w != 0 && (w >> 32) as u32 == tag) {
            return false;
        }
        let now = now_ms();
        words.iter().any(|&w| left(w, tag, now).is_some())
    }

    /// Marks `key` for the next `ttl`.
    pub fn remember(&self, key: Key) {
        let (first, tag) = place(&key);
        let Some(set) = self.set_made(first) else {
            return;
        };
        let now = now_ms();
        // 0 is an empty slot.
        let end = now.wrapping_add(self.ttl_ms).max(1);
        let word = (u64::from(tag) << 32) | u64::from(end);
        let words = [
            set[0].load(Ordering::Relaxed),
            set[1].load(Ordering::Relaxed),
        ];
        let slot = match words
            .iter()
            .position(|&w| w != 0 && (w >> 32) as u32 == tag)
        {
            Some(i) => {
                if left(words[i], tag, now).is_some_and(|l| l > self.ttl_ms / 2) {
                    return; // fresh enough: nothing written
                }
                i
            }
            // A free or ended slot, else the one whose mark ends first.
            None => {
                let rest = |w: u64| left(w, (w >> 32) as u32, now).unwrap_or(0);
                usize::from(rest(words[1]) < rest(words[0]))
            }
        };
        set[slot].store(word, Ordering::Relaxed);
    }

    /// Forgets `key`.
    pub fn forget(&self, key: &Key) {
        let (first, tag) = place(key);
        let Some(set) = self.set(first) else {
            return;
        };
        for slot in set {
            let w = slot.load(Ordering::Relaxed);
            if w != 0 && (w >> 32) as u32 == tag {
                let _ = slot.compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }
}

/// Hashing for maps keyed by [`Key`]: a key is already a blake3 hash, so
/// its first eight bytes, mixed with a per-process seed, are as good as
/// SipHash over all 32 (which showed up in the pass-through profile). The
/// seed keeps bucket positions unpredictable from outside.
#[derive(Clone)]
pub struct KeyHash {
    seed: u64,
}

impl Default for KeyHash {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| std::hash::RandomState::new().build_hasher().finish());
        KeyHash { seed }
    }
}

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

/// See [`KeyHash`].
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, _len: usize) {
        // The length prefix of a fixed-size key carries nothing.
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key with `tag` in the tag's bits and `set` in the set's.
    fn key(tag: u32, set: u64) -> Key {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&tag.to_le_bytes());
        k[8..16].copy_from_slice(&set.to_le_bytes());
        k
    }

    #[test]
    fn marks_are_remembered_forgotten_and_expire() {
        let m = PassMemory::new(Duration::from_secs(60));
        let (a, b) = (key(1, 1), key(2, 2));
        assert!(!m.contains(&a));
        m.remember(a);
        assert!(m.contains(&a));
        assert!(!m.contains(&b));
        // Same set, other tag: not marked.
        assert!(!m.contains(&key(9, 1)));
        m.forget(&a);
        assert!(!m.contains(&a));
        let short = PassMemory::new(Duration::ZERO);
        short.remember(b);
        assert!(!short.contains(&b), "expired at once");
        let brief = PassMemory::new(Duration::from_millis(30));
        brief.remember(b);
        assert!(brief.contains(&b));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!brief.contains(&b), "ended");
    }

    #[test]
    fn a_third_key_in_a_set_takes_the_slot_of_the_mark_ending_first() {
        let m = PassMemory::new(Duration::from_secs(60));
        let (a, b, c) = (key(1, 5), key(2, 5), key(3, 5));
        m.remember(a);
        std::thread::sleep(Duration::from_millis(30));
        m.remember(b);
        assert!(m.contains(&a) && m.contains(&b));
        m.remember(c);
        assert!(!m.contains(&a), "a's mark ended first");
        assert!(m.contains(&b) && m.contains(&c));
        // Other sets are untouched, and many keys fit.
        let many: Vec<Key> = (0..10_000u32)
            .map(|i| key(i, 6 + u64::from(i) * 3))
            .collect();
        for k in &many {
            m.remember(*k);
        }
        assert!(many.iter().all(|k| m.contains(k)));
        assert!(m.contains(&b) && m.contains(&c));
    }

    #[test]
    fn a_fresh_mark_is_not_written_again() {
        let m = PassMemory::new(Duration::from_secs(60));
        let a = key(1, 1);
        m.remember(a);
        let (first, _) = place(&a);
        let before = m.set(first).map(|s| s[0].load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(20));
        m.remember(a);
        assert_eq!(m.set(first).map(|s| s[0].load(Ordering::Relaxed)), before);
    }
}

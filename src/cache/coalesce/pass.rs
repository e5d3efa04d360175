//! Hit-for-pass memory: keys whose last answer could not be stored, so
//! that requests for them neither wait for each other nor (for a plain
//! GET) look in the store, until `pass_ttl` ends or an answer is stored.
//!
//! Every cached GET asks whether its key is remembered, hits included, so
//! the question is answered first by a lock-free bit filter: only a key
//! whose bit is set takes the map's lock. A set bit may belong to another
//! key or to an expired mark (the map then says no); a clear bit is always
//! right, since bits are set before the map entry is written.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Key;
use crate::cache::key_filter::KeyFilter;
/// Past this many marks, expired ones are dropped (and the filter rebuilt).
const PRUNE_AT: usize = 100_000;

/// See the module documentation.
pub struct PassMemory {
    map: Mutex<HashMap<Key, Instant, KeyHash>>,
    filter: KeyFilter,
    ttl: Duration,
}

impl PassMemory {
    /// Marks last `ttl`.
    pub fn new(ttl: Duration) -> PassMemory {
        PassMemory {
            map: Mutex::new(HashMap::default()),
            filter: KeyFilter::default(),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Instant, KeyHash>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` is marked and the mark has not expired.
    pub fn contains(&self, key: &Key) -> bool {
        if !self.filter.may_contain(key) {
            return false;
        }
        let mut m = self.lock();
        match m.get(key) {
            Some(until) if *until > crate::clock::coarse_now() => true,
            Some(_) => {
                m.remove(key);
                false
            }
            None => false,
        }
    }

    /// Marks `key` for the next `ttl`.
    pub fn remember(&self, key: Key) {
        let mut m = self.lock();
        let now = crate::clock::coarse_now();
        if m.len() > PRUNE_AT {
            m.retain(|_, t| *t > now);
            self.filter.rebuild(m.keys());
        }
        self.filter.insert(&key);
        m.insert(key, now + self.ttl);
    }

    /// Forgets `key` (its bit stays: other keys may share it).
    pub fn forget(&self, key: &Key) {
        if self.filter.may_contain(key) {
            self.lock().remove(key);
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
    use crate::cache::key_filter::test_key as key;

    #[test]
    fn marks_are_remembered_forgotten_and_expire() {
        let m = PassMemory::new(Duration::from_secs(60));
        let (a, b) = (key(1, 1), key(2, 2));
        assert!(!m.contains(&a));
        m.remember(a);
        assert!(m.contains(&a));
        assert!(!m.contains(&b));
        // Same filter bit, other key: the map answers.
        let twin = key(9, 1);
        assert_eq!(KeyFilter::bit(&a), KeyFilter::bit(&twin));
        assert!(!m.contains(&twin));
        m.forget(&a);
        assert!(!m.contains(&a));
        let short = PassMemory::new(Duration::ZERO);
        short.remember(b);
        assert!(!short.contains(&b), "expired at once");
    }

    #[test]
    fn pruning_keeps_live_marks_findable() {
        let m = PassMemory::new(Duration::from_secs(60));
        for i in 0..=PRUNE_AT as u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            k[28..32].copy_from_slice(&i.to_le_bytes());
            m.remember(k);
        }
        let probe = key(3, 3);
        m.remember(probe); // past PRUNE_AT: prunes and rebuilds the filter
        assert!(m.contains(&probe));
        let mut first = [0u8; 32];
        first[..4].copy_from_slice(&7u32.to_le_bytes());
        first[28..32].copy_from_slice(&7u32.to_le_bytes());
        assert!(m.contains(&first), "live marks survive the rebuild");
    }
}

//! The last few values a thread computed, by their keys: for parses and
//! encodings that most responses repeat exactly (a site's `Cache-Control`
//! line, a pass-through's `Cache-Status` member), where a lookup among a
//! handful of keys costs less than doing the work again.
//!
//! Owns: the slots and their round-robin replacement. Must not know: what
//! the keys and values are. Its users keep one per thread (no lock), and
//! a value is only ever returned for a key equal to the one it was made
//! from.

/// Up to `N` pairs; the oldest gives way to a new one.
pub struct Recent<K, V, const N: usize> {
    next: usize,
    slots: [Option<(K, V)>; N],
}

impl<K: PartialEq, V: Clone, const N: usize> Recent<K, V, N> {
    /// Empty.
    pub const fn new() -> Self {
        Recent {
            next: 0,
            slots: [const { None }; N],
        }
    }

    /// The value kept for `key`, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        self.slots
            .iter()
            .flatten()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Keeps `value` for `key` in place of the oldest pair.
    pub fn put(&mut self, key: K, value: V) {
        if N == 0 {
            return;
        }
        if let Some(slot) = self.slots.get_mut(self.next % N) {
            *slot = Some((key, value));
        }
        self.next = self.next.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_n_are_kept_and_only_for_their_own_keys() {
        let mut r: Recent<u32, &str, 2> = Recent::new();
        assert_eq!(r.get(&1), None);
        r.put(1, "a");
        r.put(2, "b");
        assert_eq!(
            (r.get(&1), r.get(&2), r.get(&3)),
            (Some("a"), Some("b"), None)
        );
        r.put(3, "c");
        assert_eq!(
            (r.get(&1), r.get(&2), r.get(&3)),
            (None, Some("b"), Some("c"))
        );
        let mut none: Recent<u32, u32, 0> = Recent::new();
        none.put(1, 1);
        assert_eq!(none.get(&1), None);
    }
}

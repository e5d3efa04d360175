//! The `Link` values of the Early Hints (103, RFC 8297) an origin sent for
//! cacheable objects, by primary key, for the node to send at once on a
//! later miss for the URI, before it asks the origin (a site's
//! `early_hints`). A stored object keeps its own in its metadata; this
//! memo answers when the object itself is gone (expired, evicted, another
//! variant). Bounded; knows nothing of requests or connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use super::coalesce::Key;

/// The most URIs remembered; past it, the memo starts again.
const MAX_URIS: usize = 10_000;

/// Early hints by primary key.
#[derive(Default)]
pub struct EarlyHints {
    map: Mutex<HashMap<Key, Arc<[HeaderValue]>>>,
}

impl EarlyHints {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<[HeaderValue]>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers `links` for the URI under `key` (none: forgets it).
    pub fn remember(&self, key: Key, links: &[HeaderValue]) {
        let mut m = self.lock();
        if links.is_empty() {
            m.remove(&key);
            return;
        }
        if m.len() >= MAX_URIS && !m.contains_key(&key) {
            m.clear();
        }
        m.insert(key, links.into());
    }

    /// The links remembered for the URI under `key`.
    pub fn get(&self, key: &Key) -> Option<Arc<[HeaderValue]>> {
        self.lock().get(key).cloned()
    }

    /// Forgets the URI under `key` (it was invalidated or purged).
    pub fn forget(&self, key: &Key) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let h = EarlyHints::default();
        let l = [HeaderValue::from_static("</a.css>; rel=preload")];
        h.remember([1; 32], &l);
        assert_eq!(h.get(&[1; 32]).as_deref(), Some(&l[..]));
        h.forget(&[1; 32]);
        assert!(h.get(&[1; 32]).is_none());
        for i in 0..=MAX_URIS {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            h.remember(k, &l);
        }
        assert!(h.lock().len() <= MAX_URIS);
        h.remember([2; 32], &[]);
        assert!(h.get(&[2; 32]).is_none());
    }
}

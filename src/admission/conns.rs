//! Connection limits at accept: `[server] max_connections` in all and
//! `max_connections_per_client` from one address. A connection beyond
//! either is closed at once, before any byte is read, and counted; the
//! limits are taken back when a connection ends ([`ConnGuard`]).
//!
//! The per-client counts live in one map under a lock that is taken only
//! at accept and at close; an address leaves the map with its last
//! connection, so the map holds at most `max_connections` entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A node's connection limits (0: no limit).
#[derive(Debug, Default)]
pub struct ConnLimits {
    max_total: usize,
    max_per_client: u32,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, u32>>,
}

/// One accepted connection's place under the limits.
#[derive(Debug)]
pub struct ConnGuard {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let l = &self.limits;
        l.total.fetch_sub(1, Ordering::Relaxed);
        if l.max_per_client > 0 {
            let mut m = l.per_client.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_client: u32) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total,
            max_per_client,
            ..ConnLimits::default()
        })
    }

    /// A place for a new connection from `ip`, or `None` when a limit is
    /// reached (the caller closes the connection).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnGuard> {
        let before = self.total.fetch_add(1, Ordering::Relaxed);
        if self.max_total > 0 && before >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        if self.max_per_client > 0 {
            let mut m = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(ip).or_insert(0);
            if *n >= self.max_per_client {
                drop(m);
                self.total.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
            *n += 1;
        }
        Some(ConnGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_taken_and_given_back() {
        let l = ConnLimits::new(3, 2);
        let a = IpAddr::from([127, 0, 0, 2]);
        let b = IpAddr::from([127, 0, 0, 3]);
        let g1 = l.acquire(a);
        let g2 = l.acquire(a);
        assert!(g1.is_some() && g2.is_some());
        assert!(l.acquire(a).is_none(), "per client");
        let g3 = l.acquire(b);
        assert!(g3.is_some());
        assert!(l.acquire(b).is_none(), "in all");
        drop(g1);
        assert!(l.acquire(a).is_some());
        drop((g2, g3));
        assert_eq!(l.open(), 0);
        assert!(l.per_client.lock().map(|m| m.is_empty()).unwrap_or(false));
    }
}

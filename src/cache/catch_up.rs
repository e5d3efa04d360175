//! Whether the ban list is current: in a fleet, a node that starts or
//! reconnects to the purge stream has purges to apply that it missed, and
//! until it has, a stored object may be one the operator removed. While a
//! catch-up runs, a hit waits (up to a deadline) for it; misses and
//! pass-through never look here.
//!
//! Owns: the state (current / catching up since), the wake-up of waiting
//! hits, the count of hits served past the deadline. Must not know: where
//! purges come from (`purge`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The catch-up gate of one node.
#[derive(Debug)]
pub struct CatchUp {
    /// `true` while purges the node missed are being applied.
    behind: AtomicBool,
    /// When the current catch-up started, and how long hits wait for it.
    episode: Mutex<(Instant, Duration)>,
    done: Notify,
    /// Hits served without waiting any longer (deadline passed).
    late_hits: AtomicU64,
    /// Whether this episode's deadline was logged.
    logged: AtomicBool,
}

impl Default for CatchUp {
    fn default() -> Self {
        CatchUp {
            behind: AtomicBool::new(false),
            episode: Mutex::new((Instant::now(), Duration::ZERO)),
            done: Notify::new(),
            late_hits: AtomicU64::new(0),
            logged: AtomicBool::new(false),
        }
    }
}

impl CatchUp {
    /// A catch-up starts now: hits wait up to `timeout` from now.
    pub fn begin(&self, timeout: Duration) {
        if let Ok(mut e) = self.episode.lock() {
            *e = (Instant::now(), timeout);
        }
        self.logged.store(false, Ordering::Relaxed);
        self.behind.store(true, Ordering::Release);
    }

    /// The catch-up is over: waiting hits go on.
    pub fn finish(&self) {
        self.behind.store(false, Ordering::Release);
        self.done.notify_waiters();
    }

    /// Whether a catch-up is running.
    pub fn behind(&self) -> bool {
        self.behind.load(Ordering::Acquire)
    }

    /// Hits served past a catch-up's deadline, since start.
    pub fn late_hits(&self) -> u64 {
        self.late_hits.load(Ordering::Relaxed)
    }

    /// Returns at once when current; else when the catch-up finishes or its
    /// deadline passes (then the hit is counted and, once per episode,
    /// logged).
    pub async fn wait(&self) {
        if !self.behind() {
            return;
        }
        let deadline = match self.episode.lock() {
            Ok(e) => e.0 + e.1,
            Err(_) => Instant::now(),
        };
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !self.behind() {
                return;
            }
            if tokio::time::timeout_at(deadline.into(), done)
                .await
                .is_err()
            {
                break;
            }
        }
        if !self.behind() {
            return;
        }
        self.late_hits.fetch_add(1, Ordering::Relaxed);
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "purge catch-up still running past its deadline: serving hits that may have been purged"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hits_wait_for_the_catch_up_or_its_deadline() {
        let g = std::sync::Arc::new(CatchUp::default());
        g.wait().await;
        g.begin(Duration::from_secs(10));
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        g.finish();
        let _ = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert_eq!(g.late_hits(), 0);
        g.begin(Duration::from_millis(30));
        let t = Instant::now();
        g.wait().await;
        assert!(t.elapsed() >= Duration::from_millis(25));
        assert_eq!(g.late_hits(), 1);
    }
}

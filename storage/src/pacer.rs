//! Flow control towards foyer's disk flusher.
//!
//! foyer 0.22 never pushes back on writers: when its submit queue or flush buffer is full it
//! silently drops the entry from the disk tier (`storage_queue_*_overflow` metrics only). A fast
//! writer of a 1 GiB body would lose most of its chunks that way. The pacer bounds the bytes
//! enqueued to foyer but not yet flushed: an insert that would exceed the budget first waits
//! for foyer to flush everything enqueued so far (`Store::wait`, which completes once the
//! flusher has written all entries submitted before it).
//!
//! Accounting is exact because reserving budget and enqueueing the entry happen in one critical
//! section: a snapshot of the pending bytes taken before a flush request covers only entries
//! that were already enqueued, so subtracting it after the flush never undercounts.

use std::sync::Mutex;

/// Bounds the bytes enqueued to foyer but not yet flushed.
#[derive(Debug)]
pub(crate) struct Pacer {
    pending: Mutex<u64>,
    limit: u64,
    flushing: tokio::sync::Mutex<()>,
}

impl Pacer {
    pub fn new(limit: u64) -> Self {
        Self {
            pending: Mutex::new(0),
            limit,
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        // A poisoned counter is still a counter.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `enqueue` (which hands `bytes` to foyer) once the budget allows it.
    /// `flush` must wait until everything enqueued before it is written.
    pub async fn admit<F, Fut, E>(&self, bytes: u64, flush: F, enqueue: E)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()>,
        E: FnOnce(),
    {
        let mut enqueue = Some(enqueue);
        loop {
            {
                let mut p = self.lock();
                if *p == 0 || *p + bytes <= self.limit {
                    *p += bytes;
                    if let Some(f) = enqueue.take() {
                        f();
                    }
                    return;
                }
            }
            self.flush_pending(&flush).await;
        }
    }

    /// Wait until everything enqueued so far has been written.
    pub async fn flush_all<F, Fut>(&self, flush: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()>,
    {
        self.flush_pending(&flush).await;
    }

    async fn flush_pending<F, Fut>(&self, flush: &F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()>,
    {
        // One flush at a time; waiters behind it usually find the budget free again.
        let _flushing = self.flushing.lock().await;
        let snapshot = *self.lock();
        flush().await;
        let mut p = self.lock();
        *p = p.saturating_sub(snapshot);
    }

    /// Bytes enqueued and not yet known to be flushed.
    #[cfg(test)]
    pub fn pending(&self) -> u64 {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn budget_is_never_exceeded() {
        let pacer = Arc::new(Pacer::new(100));
        let flushed = Arc::new(AtomicU64::new(0));
        let enqueued = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (pacer, flushed, enqueued) = (pacer.clone(), flushed.clone(), enqueued.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let f = flushed.clone();
                    let e = enqueued.clone();
                    pacer
                        .admit(
                            30,
                            || {
                                let (f, e) = (f.clone(), e.clone());
                                async move {
                                    tokio::task::yield_now().await;
                                    f.store(e.load(Ordering::SeqCst), Ordering::SeqCst);
                                }
                            },
                            || {
                                e.fetch_add(30, Ordering::SeqCst);
                            },
                        )
                        .await;
                    let unflushed =
                        enqueued.load(Ordering::SeqCst) - flushed.load(Ordering::SeqCst);
                    assert!(unflushed <= 100, "unflushed {unflushed} > budget");
                    assert!(pacer.pending() <= 100);
                }
            }));
        }
        for t in tasks {
            assert!(t.await.is_ok());
        }
        assert_eq!(enqueued.load(Ordering::SeqCst), 8 * 50 * 30);
    }
}

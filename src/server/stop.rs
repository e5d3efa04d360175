//! A node's stop signal as its listeners and connections watch it: the
//! token that wakes whoever waits on it, and a flag a connection reads on
//! every request. Every connection of a node shares the token, and asking
//! it (`is_cancelled`, or polling `cancelled` again) takes its locks, which
//! every core writes; the flag is one load. Knows nothing of HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// A node's stop: [`Stop::stop`] sets the flag, then cancels the token.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stop {
    token: CancellationToken,
    stopped: Arc<AtomicBool>,
}

impl Stop {
    /// The token to wait on (its `cancelled` future). Cancel it only
    /// through [`Stop::stop`], which sets the flag first.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Stops: the flag first, so that whoever the token wakes reads it set.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether the node is stopping: one atomic load, no lock.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_woken_by_the_token_reads_the_flag_set() {
        let stop = Stop::default();
        let (s, waiting) = (stop.clone(), stop.token().clone());
        let seen = tokio::spawn(async move {
            waiting.cancelled().await;
            s.is_stopped()
        });
        tokio::task::yield_now().await;
        assert!(!stop.is_stopped());
        stop.stop();
        assert!(seen.await.unwrap_or(false));
        assert!(stop.token().is_cancelled());
    }
}

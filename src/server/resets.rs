//! Cancelled requests per connection, against the HTTP/2 rapid-reset attack
//! (CVE-2023-44487): a client that opens streams and resets them at once
//! makes the node start work it then throws away, at no cost to itself.
//!
//! h2 already ends a connection whose streams are reset before they are
//! accepted (`max_pending_accept_reset_streams`). This catches the rest: a
//! request whose handler future or response body is dropped before it is
//! done counts as cancelled, and more than `limit` in one second of one
//! connection asks the connection to shut down (GOAWAY, then close), with a
//! log line and a counter. Everyone else's connections are untouched.
//!
//! It owns only this count; the listener acts on [`ResetMeter::abused`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// One connection's cancelled requests.
#[derive(Debug)]
pub struct ResetMeter {
    limit: u32,
    epoch: Instant,
    /// The second (since `epoch`) being counted, and its count.
    second: AtomicU64,
    count: AtomicU32,
    tripped: AtomicBool,
    abuse: Notify,
}

impl ResetMeter {
    pub fn new(limit: u32) -> Arc<ResetMeter> {
        Arc::new(ResetMeter {
            limit,
            epoch: Instant::now(),
            second: AtomicU64::new(0),
            count: AtomicU32::new(0),
            tripped: AtomicBool::new(false),
            abuse: Notify::new(),
        })
    }

    /// A request cancelled before it was done.
    fn cancelled(&self) {
        let now = self.epoch.elapsed().as_secs();
        if self.second.swap(now, Relaxed) != now {
            self.count.store(0, Relaxed);
        }
        if self.count.fetch_add(1, Relaxed) + 1 > self.limit && !self.tripped.swap(true, Relaxed) {
            self.abuse.notify_one();
        }
    }

    /// Resolves once the connection is over its limit.
    pub async fn abused(&self) {
        if self.tripped.load(Relaxed) {
            return;
        }
        self.abuse.notified().await;
    }

    /// A guard for one request: counts it as cancelled unless disarmed.
    pub fn arm(self: &Arc<Self>) -> Armed {
        Armed(Some(self.clone()))
    }
}

/// Counts a cancelled request when dropped armed.
#[derive(Debug)]
pub struct Armed(Option<Arc<ResetMeter>>);

impl Armed {
    /// The request (or its body) finished: nothing to count.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            m.cancelled();
        }
    }
}

/// A response body that counts as cancelled if dropped before its end.
pub struct Watched<B> {
    inner: B,
    armed: Armed,
}

impl<B: Body> Watched<B> {
    pub fn new(inner: B, armed: Armed) -> Watched<B> {
        let mut w = Watched { inner, armed };
        if w.inner.is_end_stream() {
            w.armed.disarm();
        }
        w
    }
}

impl<B: Body + Unpin> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) || self.inner.is_end_stream()
        {
            self.armed.disarm();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn more_cancellations_than_the_limit_in_a_second_trip_the_meter() {
        let m = ResetMeter::new(3);
        for _ in 0..3 {
            drop(m.arm());
        }
        let mut done = m.arm();
        done.disarm();
        drop(done);
        assert!(!m.tripped.load(Relaxed));
        drop(m.arm());
        assert!(m.tripped.load(Relaxed));
        // Already tripped: resolves at once.
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(1), m.abused())
                .await
                .is_ok()
        );
    }
}

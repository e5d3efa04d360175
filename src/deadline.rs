//! A deadline kept from one request to the next, so that a per-request
//! timeout costs no timer registration: a pooled origin connection's
//! response-header timeout (the origin layer's HTTP/1 client) and a client
//! connection's header-read timeout (the server's timer).
//!
//! `tokio::time::timeout` (and hyper-util's timer) registers a timer in
//! the runtime's wheel for every request and removes it again when the
//! head arrives: a locked wheel insert and remove each time, and for
//! hyper an allocation too. For the two timeouts of a pass-through request
//! that was ~950 of ~38,100 instructions (callgrind,
//! benches/load/instructions.sh). Here
//! the timer is registered once and left in place: a later deadline only
//! moves a number, and the timer, when it fires at the older time, sees
//! that the deadline moved and re-arms itself for the new one. A
//! connection in steady use re-arms about once per timeout period.
//!
//! Invariant: the registered timer never fires later than the deadline
//! (it is at or before it), so an expired deadline is never missed.
//!
//! It knows nothing of connections or requests: it is a timer.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::time::{Instant, Sleep};

/// A re-armable deadline (see the module docs).
#[derive(Debug)]
pub struct Deadline {
    timer: Pin<Box<Sleep>>,
    at: Instant,
}

impl Deadline {
    /// A deadline at `at`; registers its timer when first polled.
    pub fn new(at: Instant) -> Deadline {
        Deadline {
            timer: Box::pin(tokio::time::sleep_until(at)),
            at,
        }
    }

    /// Moves the deadline to `at`. A later one costs no timer work; an
    /// earlier one re-arms the timer at once (it must not fire late).
    pub fn set(&mut self, at: Instant) {
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
        self.at = at;
    }

    /// Ready once the deadline has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            // The timer fired at its registered time; it is the deadline
            // unless the deadline moved on since.
            if self.timer.deadline() >= self.at {
                return Poll::Ready(());
            }
            let at = self.at;
            self.timer.as_mut().reset(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn expired(d: &mut Deadline) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(d.poll_expired(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_and_not_before() {
        let mut d = Deadline::new(Instant::now() + Duration::from_secs(10));
        assert!(!expired(&mut d).await);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!expired(&mut d).await);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(expired(&mut d).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_honoured_after_the_old_time() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(10));
        assert!(!expired(&mut d).await);
        d.set(start + Duration::from_secs(25));
        tokio::time::advance(Duration::from_secs(11)).await;
        // The timer fired at 10 s but the deadline is 25 s.
        assert!(!expired(&mut d).await);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!expired(&mut d).await);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(expired(&mut d).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_fires_early() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(30));
        assert!(!expired(&mut d).await);
        d.set(start + Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(expired(&mut d).await);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_in_a_task_until_the_moved_deadline() {
        let start = Instant::now();
        let mut d = Deadline::new(start + Duration::from_secs(1));
        d.set(start + Duration::from_secs(3));
        std::future::poll_fn(|cx| d.poll_expired(cx)).await;
        assert!(Instant::now() >= start + Duration::from_secs(3));
    }
}

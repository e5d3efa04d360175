//! hyper's timer for one HTTP/1 client connection: the header-read
//! timeout without a timer registration per request.
//!
//! hyper's HTTP/1 server starts a new sleep each time it begins to read a
//! request head and drops it once the head is parsed. With hyper-util's
//! `TokioTimer` that is an allocation, a timer-wheel insert and a remove
//! per request. [`ConnTimer`] is made per connection and keeps one
//! [`Deadline`] for it: each new sleep takes the deadline, moves it (no
//! timer work while deadlines only move later, see [`crate::deadline`])
//! and gives it back when dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::deadline::Deadline;

/// A [`hyper::rt::Timer`] for one connection (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct ConnTimer {
    spare: Arc<Mutex<Option<Deadline>>>,
}

impl ConnTimer {
    pub fn new() -> ConnTimer {
        ConnTimer::default()
    }
}

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    /// hyper asks for the time to set a header-read deadline; a tick
    /// early at worst is fine for that (crate::clock).
    fn now(&self) -> Instant {
        crate::clock::coarse_now()
    }

    fn sleep_until(&self, at: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let at = tokio::time::Instant::from_std(at);
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let deadline = match spare {
            Some(mut d) => {
                d.set(at);
                d
            }
            None => Deadline::new(at),
        };
        Box::pin(ConnSleep {
            deadline: Some(deadline),
            spare: self.spare.clone(),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<ConnSleep>() {
            Some(s) => s
                .get_mut()
                .set(tokio::time::Instant::from_std(new_deadline)),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// One sleep of a [`ConnTimer`]; gives its deadline back when dropped.
struct ConnSleep {
    deadline: Option<Deadline>,
    spare: Arc<Mutex<Option<Deadline>>>,
}

impl ConnSleep {
    fn set(&mut self, at: tokio::time::Instant) {
        match self.deadline.as_mut() {
            Some(d) => d.set(at),
            None => self.deadline = Some(Deadline::new(at)),
        }
    }
}

impl Future for ConnSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Deadline is Unpin (its timer is boxed), so ConnSleep is too.
        match self.get_mut().deadline.as_mut() {
            Some(d) => d.poll_expired(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for ConnSleep {}

impl Drop for ConnSleep {
    fn drop(&mut self) {
        if let Some(d) = self.deadline.take() {
            *self.spare.lock().unwrap_or_else(PoisonError::into_inner) = Some(d);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hyper::rt::Timer;

    /// The paused test clock's now (std's would not advance).
    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    async fn ready(s: &mut Pin<Box<dyn hyper::rt::Sleep>>) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_at_its_deadline() {
        let t = ConnTimer::new();
        let start = now();
        let mut s = t.sleep_until(start + Duration::from_secs(10));
        assert!(!ready(&mut s).await);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(ready(&mut s).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_sleep_reuses_the_deadline_and_keeps_its_own_time() {
        let t = ConnTimer::new();
        let start = now();
        let mut first = t.sleep_until(start + Duration::from_secs(10));
        assert!(!ready(&mut first).await);
        drop(first);
        assert!(t.spare.lock().unwrap().is_some());
        tokio::time::advance(Duration::from_secs(5)).await;
        let mut second = t.sleep_until(now() + Duration::from_secs(10));
        assert!(
            t.spare.lock().unwrap().is_none(),
            "the spare deadline is reused"
        );
        // Past the first sleep's time, not yet the second's.
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!ready(&mut second).await);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(ready(&mut second).await);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_a_sleep_earlier() {
        let t = ConnTimer::new();
        let start = now();
        let mut s = t.sleep_until(start + Duration::from_secs(30));
        assert!(!ready(&mut s).await);
        t.reset(&mut s, start + Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(ready(&mut s).await);
    }
}

//! What one connection served on hyper does that costs the node without
//! costing its client, and the verdict that ends it (GOAWAY, then close,
//! with a log line and a counter; every other connection is untouched):
//!
//! - **Rapid reset** (CVE-2023-44487): a request whose handler future or
//!   response body is dropped before it is done counts as cancelled; more
//!   than `h2_max_resets_per_second` in a second trips the meter. (h2
//!   itself ends a connection whose streams are reset before they are even
//!   accepted.)
//! - **Control-frame floods** (SETTINGS, PING, PRIORITY, RST_STREAM,
//!   WINDOW_UPDATE, empty DATA): each makes h2 work or answer; more than
//!   `h2_max_control_frames_per_second` trips it ([`super::h2_frames`]
//!   counts them on the connection's bytes).
//! - **A window held shut**: a response whose body the connection has not
//!   asked for more of in `send_timeout` while the body is not done (hyper
//!   asks only when the client's flow-control window has room) is stalled;
//!   one stalled response trips it.
//!
//! It owns the counts; the listener acts on [`ResetMeter::abused`].

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// Events in the current second, against a limit.
#[derive(Debug)]
struct PerSecond {
    limit: u32,
    /// The second (since the meter's epoch) being counted, and its count.
    second: AtomicU64,
    count: AtomicU32,
}

impl PerSecond {
    fn new(limit: u32) -> PerSecond {
        PerSecond {
            limit,
            second: AtomicU64::new(0),
            count: AtomicU32::new(0),
        }
    }

    /// Counts `n` events at `now` (seconds); whether the limit is passed.
    fn add(&self, now: u64, n: u32) -> bool {
        if self.second.swap(now, Relaxed) != now {
            self.count.store(0, Relaxed);
        }
        self.count.fetch_add(n, Relaxed).saturating_add(n) > self.limit
    }
}

/// The limits a meter enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub resets_per_second: u32,
    pub control_frames_per_second: u32,
    /// Longest a response body may wait to be asked for more.
    pub send_timeout: Duration,
    /// Longest an HTTP/2 connection may go without a request in progress.
    pub h2_idle_timeout: Duration,
    /// HTTP/1.1 requests on one connection before it is closed (0: any).
    pub keepalive_requests: u64,
}

/// One connection's abuse counts.
#[derive(Debug)]
pub struct ResetMeter {
    limits: Limits,
    epoch: Instant,
    resets: PerSecond,
    control: PerSecond,
    /// Unfinished response bodies: the milliseconds (since `epoch`) they
    /// were last asked for data.
    bodies: Mutex<Vec<Weak<AtomicU64>>>,
    tripped: AtomicBool,
    /// Why it tripped, for the log.
    why: Mutex<&'static str>,
    abuse: Notify,
    /// Requests in progress (from arrival to the end of the response), and
    /// the milliseconds (since `epoch`) when the last one ended.
    active: AtomicU32,
    idle_since: AtomicU64,
    /// The connection speaks HTTP/2 (its client preface was seen).
    h2: AtomicBool,
    /// Requests so far.
    requests: AtomicU64,
}

impl ResetMeter {
    pub fn new(limits: Limits) -> Arc<ResetMeter> {
        Arc::new(ResetMeter {
            resets: PerSecond::new(limits.resets_per_second),
            control: PerSecond::new(limits.control_frames_per_second),
            limits,
            epoch: Instant::now(),
            bodies: Mutex::new(Vec::new()),
            tripped: AtomicBool::new(false),
            why: Mutex::new(""),
            abuse: Notify::new(),
            active: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            requests: AtomicU64::new(0),
        })
    }

    /// The connection is HTTP/2.
    pub fn set_h2(&self) {
        self.h2.store(true, Relaxed);
    }

    pub fn is_h2(&self) -> bool {
        self.h2.load(Relaxed)
    }

    /// A request arrived; it counts as in progress until the guard goes.
    /// Returns the guard and the request's number on the connection.
    pub fn request(self: &Arc<Self>) -> (InProgress, u64) {
        self.active.fetch_add(1, Relaxed);
        let n = self.requests.fetch_add(1, Relaxed) + 1;
        (InProgress(self.clone()), n)
    }

    /// How long the connection has had no request in progress (`None`
    /// while one is).
    pub fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Relaxed) > 0 {
            return None;
        }
        let since = self.idle_since.load(Relaxed);
        Some(Duration::from_millis(self.now_ms().saturating_sub(since)))
    }

    /// The idle limit of this connection (HTTP/2's; HTTP/1.1 connections
    /// on hyper are bounded by its header-read timeout).
    pub fn idle_limit(&self) -> Option<Duration> {
        self.is_h2().then_some(self.limits.h2_idle_timeout)
    }

    /// HTTP/1.1 requests allowed on one connection (0: any).
    pub fn keepalive_requests(&self) -> u64 {
        self.limits.keepalive_requests
    }

    fn trip(&self, why: &'static str) {
        if !self.tripped.swap(true, Relaxed) {
            *self.why.lock().unwrap_or_else(|p| p.into_inner()) = why;
            self.abuse.notify_one();
        }
    }

    /// Why the meter tripped ("" if it has not).
    pub fn why(&self) -> &'static str {
        *self.why.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request cancelled before it was done.
    fn cancelled(&self) {
        if self.resets.add(self.epoch.elapsed().as_secs(), 1) {
            self.trip("too many cancelled requests");
        }
    }

    /// `n` control frames received.
    pub fn control_frames(&self, n: u32) {
        if self.control.add(self.epoch.elapsed().as_secs(), n) {
            self.trip("control frame flood");
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a response body; it stamps the returned clock whenever it
    /// is asked for data.
    fn body(&self) -> Arc<AtomicU64> {
        let stamp = Arc::new(AtomicU64::new(self.now_ms()));
        let mut b = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        b.retain(|w| w.strong_count() > 0);
        b.push(Arc::downgrade(&stamp));
        stamp
    }

    /// Trips on a response stalled longer than `send_timeout`.
    pub fn check_stalls(&self) {
        let now = self.now_ms();
        let limit = u64::try_from(self.limits.send_timeout.as_millis()).unwrap_or(u64::MAX);
        let stalled = {
            let mut b = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
            b.retain(|w| w.strong_count() > 0);
            b.iter()
                .filter_map(Weak::upgrade)
                .map(|s| s.load(Relaxed))
                .any(|t| t != u64::MAX && now.saturating_sub(t) > limit)
        };
        if stalled {
            self.trip("a response stalled by a window held shut");
        }
    }

    /// How often [`ResetMeter::check_stalls`] should run.
    pub fn stall_check_every(&self) -> Duration {
        (self.limits.send_timeout / 4).max(Duration::from_millis(50))
    }

    /// Resolves once the connection is over a limit.
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

/// A request in progress on its connection, until dropped.
#[derive(Debug)]
pub struct InProgress(Arc<ResetMeter>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let m = &self.0;
        m.idle_since.store(m.now_ms(), Relaxed);
        m.active.fetch_sub(1, Relaxed);
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

/// A response body that counts as cancelled if dropped before its end,
/// and stamps when it was last asked for data.
pub struct Watched<B> {
    inner: B,
    armed: Armed,
    /// `None` once done.
    stamp: Option<(Arc<AtomicU64>, Arc<ResetMeter>)>,
    /// The request stays in progress while its body is sent.
    _in_progress: Option<InProgress>,
}

impl<B: Body> Watched<B> {
    pub fn new(inner: B, meter: &Arc<ResetMeter>, in_progress: InProgress) -> Watched<B> {
        let mut w = Watched {
            inner,
            armed: meter.arm(),
            stamp: None,
            _in_progress: Some(in_progress),
        };
        if w.inner.is_end_stream() {
            w.armed.disarm();
        } else {
            w.stamp = Some((meter.body(), meter.clone()));
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
        if let Some((stamp, meter)) = &self.stamp {
            // Waiting for its own source (an origin, a long poll) is not a
            // stall; having handed out data, it waits to be asked again.
            let t = if r.is_pending() {
                u64::MAX
            } else {
                meter.now_ms()
            };
            stamp.store(t, Relaxed);
        }
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) || self.inner.is_end_stream()
        {
            self.armed.disarm();
            self.stamp = None;
            self._in_progress = None;
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

    fn limits(resets: u32) -> Limits {
        Limits {
            resets_per_second: resets,
            control_frames_per_second: 5,
            send_timeout: Duration::from_millis(100),
            h2_idle_timeout: Duration::from_secs(1),
            keepalive_requests: 0,
        }
    }

    #[tokio::test]
    async fn a_stalled_body_and_a_control_flood_trip_the_meter() {
        let m = ResetMeter::new(limits(100));
        let (p, _) = m.request();
        let body = Watched::new(http_body_util::Full::new(bytes::Bytes::from("x")), &m, p);
        assert!(m.idle_for().is_none());
        m.check_stalls();
        assert_eq!(m.why(), "");
        tokio::time::sleep(Duration::from_millis(150)).await;
        m.check_stalls();
        assert_eq!(m.why(), "a response stalled by a window held shut");
        drop(body);
        assert!(m.idle_for().is_some());
        let m = ResetMeter::new(limits(100));
        m.control_frames(5);
        assert_eq!(m.why(), "");
        m.control_frames(1);
        assert_eq!(m.why(), "control frame flood");
    }

    #[tokio::test]
    async fn more_cancellations_than_the_limit_in_a_second_trip_the_meter() {
        let m = ResetMeter::new(limits(3));
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

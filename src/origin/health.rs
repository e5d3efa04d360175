//! One origin's health: what the operator said (enabled or draining), what
//! the active probes said (up or down after `rise` / `fall` probes in a
//! row), and what the requests said (ejected after `max_fails` failures in
//! a row, for `fail_timeout`, twice as long on each repeated ejection up to
//! [`MAX_EJECTION`]). An origin takes new requests only when all three
//! allow it; an ejection ends when it runs out or at the next good probe.
//!
//! Every change made by a failure, a probe or the operator is one log line
//! (origin, old → new, reason) and one count in the process-wide counters;
//! an ejection running out and a drained origin going idle show in
//! `GET /origins` without a line. The request path
//! only reads atomics; writes happen on failures, probes and operator
//! actions.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::MAX_EJECTION;

/// Milliseconds on the coarse clock since the first reading (never 0, so
/// that 0 can mean "never").
pub fn now_ms() -> u64 {
    crate::clock::coarse_millis().saturating_add(1)
}

/// What `GET /origins` reports for an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Takes requests.
    Up,
    /// Failed its probes or was ejected for failing requests.
    Down,
    /// Drained by the operator, requests still in flight.
    Draining,
    /// Drained by the operator and idle.
    Disabled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Draining => "draining",
            State::Disabled => "disabled",
        }
    }
}

/// An origin's health.
#[derive(Debug, Default)]
pub struct Health {
    /// The operator drained it.
    drained: AtomicBool,
    /// The active probes found it down.
    probe_down: AtomicBool,
    /// Probe results in a row that disagree with `probe_down` (the probe
    /// task is the only writer).
    probe_streak: AtomicU32,
    /// `now_ms()` of the last probe, 0 before the first.
    last_probe_ms: AtomicU64,
    /// Failed requests since the last success.
    consecutive_failures: AtomicU32,
    /// `now_ms()` until which it is ejected; 0 when it is not.
    ejected_until_ms: AtomicU64,
    /// Ejections in a row (reset when the last one is long past).
    ejections: AtomicU32,
    last_ejection_ms: AtomicU64,
    /// Why it last changed state.
    reason: Mutex<&'static str>,
}

/// Who is logging: the site and the origin's URL.
pub struct Names<'a> {
    pub site: &'a str,
    pub origin: &'a dyn std::fmt::Display,
}

impl Health {
    /// Whether the origin takes new requests at `now` (a `now_ms()`).
    #[inline]
    pub fn routable(&self, now: u64) -> bool {
        !self.drained.load(Ordering::Relaxed)
            && !self.probe_down.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now
    }

    /// The state to report, given the requests in flight.
    pub fn state(&self, in_flight: usize, now: u64) -> State {
        if self.drained.load(Ordering::Relaxed) {
            if in_flight > 0 {
                State::Draining
            } else {
                State::Disabled
            }
        } else if self.probe_down.load(Ordering::Relaxed)
            || self.ejected_until_ms.load(Ordering::Relaxed) > now
        {
            State::Down
        } else {
            State::Up
        }
    }

    /// Why it last changed state (`""` before any change).
    pub fn reason(&self) -> &'static str {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds since the last probe, if any.
    pub fn since_last_probe(&self, now: u64) -> Option<u64> {
        match self.last_probe_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now.saturating_sub(t)),
        }
    }

    /// Milliseconds until an ejection ends (0 when not ejected).
    pub fn ejected_for(&self, now: u64) -> u64 {
        self.ejected_until_ms
            .load(Ordering::Relaxed)
            .saturating_sub(now)
    }

    fn changed(&self, who: &Names<'_>, from: State, to: State, reason: &'static str) {
        if from == to {
            return;
        }
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
        crate::metrics::Counters::global().origin_state_change();
        tracing::warn!(
            site = who.site,
            origin = %who.origin,
            from = from.as_str(),
            to = to.as_str(),
            reason,
            "origin state changed"
        );
    }

    /// A request got a response that is not a failure: the failure streak
    /// ends, and an ejected origin (tried again once its ejection ran out)
    /// is back.
    #[inline]
    pub fn request_succeeded(&self) {
        // Read first: a healthy origin's line stays shared between cores.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed (connect error, timeout, reset, 502/503/504): at
    /// `max_fails` in a row the origin is ejected.
    pub fn request_failed(
        &self,
        who: &Names<'_>,
        max_fails: u32,
        fail_timeout: Duration,
        in_flight: usize,
        why: &'static str,
    ) {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if n < max_fails || until > now {
            return;
        }
        let before = self.state(in_flight, now);
        let max_ms = u64::try_from(MAX_EJECTION.as_millis()).unwrap_or(u64::MAX);
        let base = u64::try_from(fail_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .min(max_ms);
        // Claim the ejection: of two failures at once, one ejects.
        if self
            .ejected_until_ms
            .compare_exchange(
                until,
                now.saturating_add(base),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        // Repeated ejections last longer; one long past starts over.
        let last = self.last_ejection_ms.swap(now, Ordering::Relaxed);
        let streak = if last != 0 && now.saturating_sub(last) <= max_ms.saturating_mul(2) {
            self.ejections.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.ejections.store(1, Ordering::Relaxed);
            1
        };
        let ms = base
            .saturating_mul(1u64 << streak.saturating_sub(1).min(20))
            .min(max_ms);
        self.ejected_until_ms
            .store(now.saturating_add(ms), Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.changed(who, before, self.state(in_flight, now), why);
    }

    /// One probe result; returns whether the probe state changed.
    pub fn probe_result(
        &self,
        who: &Names<'_>,
        ok: bool,
        rise: u32,
        fall: u32,
        in_flight: usize,
        why: &'static str,
    ) -> bool {
        let now = now_ms();
        self.last_probe_ms.store(now, Ordering::Relaxed);
        let before = self.state(in_flight, now);
        let down = self.probe_down.load(Ordering::Relaxed);
        let mut flipped = false;
        if ok != down {
            // Agrees with the current state.
            self.probe_streak.store(0, Ordering::Relaxed);
        } else {
            let streak = self.probe_streak.fetch_add(1, Ordering::Relaxed) + 1;
            if streak >= if ok { rise } else { fall } {
                self.probe_down.store(!ok, Ordering::Relaxed);
                self.probe_streak.store(0, Ordering::Relaxed);
                flipped = true;
            }
        }
        if ok && self.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            // A good probe ends an ejection.
            self.ejected_until_ms.store(0, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        self.changed(who, before, self.state(in_flight, now), why);
        flipped
    }

    /// The operator drains it (`true`) or enables it again (`false`).
    pub fn set_drained(&self, who: &Names<'_>, drained: bool, in_flight: usize) {
        let now = now_ms();
        let before = self.state(in_flight, now);
        self.drained.store(drained, Ordering::Relaxed);
        if !drained {
            // Enabling forgets what the requests said.
            self.ejected_until_ms.store(0, Ordering::Relaxed);
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        let why = if drained {
            "drained by the operator"
        } else {
            "enabled by the operator"
        };
        self.changed(who, before, self.state(in_flight, now), why);
    }

    /// Whether the operator drained it.
    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Names<'static> {
        Names {
            site: "s",
            origin: &"http://o:1",
        }
    }

    #[test]
    fn failures_in_a_row_eject_and_repeated_ejections_last_longer() {
        let h = Health::default();
        let t = Duration::from_secs(10);
        h.request_failed(&who(), 3, t, 0, "refused");
        h.request_succeeded();
        h.request_failed(&who(), 3, t, 0, "refused");
        h.request_failed(&who(), 3, t, 0, "refused");
        assert!(h.routable(now_ms()), "a success broke the streak");
        h.request_failed(&who(), 3, t, 0, "refused");
        let now = now_ms();
        assert!(!h.routable(now));
        assert_eq!(h.state(0, now), State::Down);
        let first = h.ejected_for(now);
        assert!(first > 9_000 && first <= 10_000, "{first}");
        // Ejected again right after: twice as long.
        h.ejected_until_ms.store(1, Ordering::Relaxed);
        for _ in 0..3 {
            h.request_failed(&who(), 3, t, 0, "refused");
        }
        let second = h.ejected_for(now_ms());
        assert!(second > 19_000 && second <= 20_000, "{second}");
        // A good probe ends it.
        h.probe_result(&who(), true, 2, 3, 0, "probe ok");
        assert!(h.routable(now_ms()));
        assert_eq!(h.reason(), "probe ok");
    }

    #[test]
    fn probes_need_rise_and_fall_in_a_row() {
        let h = Health::default();
        assert!(!h.probe_result(&who(), false, 2, 3, 0, "x"));
        assert!(!h.probe_result(&who(), false, 2, 3, 0, "x"));
        assert!(h.routable(now_ms()));
        assert!(h.probe_result(&who(), false, 2, 3, 0, "x"));
        assert!(!h.routable(now_ms()));
        assert!(!h.probe_result(&who(), true, 2, 3, 0, "y"));
        assert!(
            !h.probe_result(&who(), false, 2, 3, 0, "x"),
            "streak broken"
        );
        assert!(!h.probe_result(&who(), true, 2, 3, 0, "y"));
        assert!(h.probe_result(&who(), true, 2, 3, 0, "y"));
        assert!(h.routable(now_ms()));
    }

    #[test]
    fn drained_origins_take_no_requests_and_report_idleness() {
        let h = Health::default();
        h.set_drained(&who(), true, 2);
        let now = now_ms();
        assert!(!h.routable(now));
        assert_eq!(h.state(2, now), State::Draining);
        assert_eq!(h.state(0, now), State::Disabled);
        h.set_drained(&who(), false, 0);
        assert_eq!(h.state(0, now_ms()), State::Up);
    }
}

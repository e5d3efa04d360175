//! A cheap clock for timestamps that tolerate a few milliseconds of error
//! and are compared only with each other or with deadlines: hit-for-pass
//! marks, idle origin connections, origins' health, and the header-read
//! and response-header deadlines.
//!
//! It knows nothing of what it times.
//!
//! `Instant::now()` reads the TSC through the vDSO: ~22 ns in the VM of
//! benches/load/RESULTS.md, and a pass-through request took ten readings.
//! `CLOCK_MONOTONIC_COARSE` is the kernel's last tick, read from the vDSO
//! page without the TSC: ~6 ns, up to one tick (1–10 ms) behind.
//!
//! Whatever is ordered against other events keeps the precise clocks: a
//! fetch's start and an object's creation time are compared with purges
//! and Vary markers (a coarse creation time made a new object look older
//! than the marker written just before it).
//!
//! Durations that are measured and reported (the latency histograms, an
//! origin's mean time to its head) use [`Stamp`]: the precise monotonic
//! clock `Instant` reads, kept as nanoseconds in a `u64`, so that a
//! duration is a subtraction rather than `Instant`'s checked arithmetic
//! (~57 instructions each, three per pass-through request).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

/// Nanoseconds of clock `id` (the monotonic clocks start near boot, so
/// this does not wrap for centuries).
fn read_nanos(id: ClockId) -> u64 {
    let t = clock_gettime(id);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

/// The first reading of both clocks: what the coarse one is counted from.
fn base() -> (Instant, u64) {
    static BASE: OnceLock<(Instant, u64)> = OnceLock::new();
    *BASE.get_or_init(|| (Instant::now(), read_nanos(ClockId::MonotonicCoarse)))
}

/// The monotonic time to within a clock tick, as an [`Instant`]
/// comparable with `Instant::now()` to within a tick either way.
pub fn coarse_now() -> Instant {
    coarse_now_and_millis().0
}

/// One coarse reading as both [`coarse_now`] and [`coarse_millis`].
pub fn coarse_now_and_millis() -> (Instant, u64) {
    // The coarse clock and `Instant` count from the same origin; one
    // pairing taken at first use converts the one to the other. Counted
    // in nanoseconds: `Duration` arithmetic (a carry per step) made up
    // most of a reading's cost.
    let (at, coarse_at) = base();
    let since = read_nanos(ClockId::MonotonicCoarse).saturating_sub(coarse_at);
    (at + Duration::from_nanos(since), since / 1_000_000)
}

/// A reading of the precise monotonic clock (`CLOCK_MONOTONIC`, as
/// `Instant::now()`), in nanoseconds: for durations to be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    /// Now.
    pub fn now() -> Stamp {
        Stamp(read_nanos(ClockId::Monotonic))
    }

    /// The time since this reading (zero if the clock reads earlier).
    pub fn elapsed(self) -> Duration {
        Duration::from_nanos(Stamp::now().0.saturating_sub(self.0))
    }
}

/// Coarse milliseconds since the first reading of this clock: for times
/// compared only with each other (no `Instant` made).
pub fn coarse_millis() -> u64 {
    let (_, coarse_at) = base();
    read_nanos(ClockId::MonotonicCoarse).saturating_sub(coarse_at) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tick is at most 10 ms (HZ=100); allow scheduling slack on top.
    const SLACK: Duration = Duration::from_millis(50);

    #[test]
    fn coarse_clocks_follow_the_precise_ones() {
        for _ in 0..3 {
            let (p, c) = (Instant::now(), coarse_now());
            let gap = if p > c { p - c } else { c - p };
            assert!(gap < SLACK, "monotonic: {gap:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn coarse_now_never_goes_back() {
        let mut last = coarse_now();
        for _ in 0..10_000 {
            let t = coarse_now();
            assert!(t >= last);
            last = t;
        }
    }

    #[test]
    fn coarse_millis_follow_coarse_now() {
        let (at, _) = base();
        for _ in 0..3 {
            let ms = coarse_millis();
            let since = coarse_now().saturating_duration_since(at).as_millis() as u64;
            assert!(since.abs_diff(ms) <= 50, "{ms} against {since}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn stamps_measure_what_instants_measure() {
        for _ in 0..3 {
            let (i, s) = (Instant::now(), Stamp::now());
            std::thread::sleep(Duration::from_millis(15));
            let (a, b) = (s.elapsed(), i.elapsed());
            // Read in the other order: the stamp's span lies within the instant's.
            assert!(a <= b, "{a:?} against {b:?}");
            assert!(
                a >= Duration::from_millis(15) && b - a < SLACK,
                "{a:?} against {b:?}"
            );
        }
    }

    #[test]
    fn one_reading_is_the_same_time_both_ways() {
        let (at, _) = base();
        for _ in 0..3 {
            let (now, ms) = coarse_now_and_millis();
            // Both from one reading: the same time to the millisecond.
            assert_eq!(now.saturating_duration_since(at).as_millis() as u64, ms);
            std::thread::sleep(Duration::from_millis(7));
        }
    }
}

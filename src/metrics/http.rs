//! Requests per site, as `/metrics` reports them: counts by method class,
//! status class and cache phase, response bytes and two latency histograms
//! (the whole request, and until the response head was ready) by cache
//! phase. Every series is an atomic in an array laid out when the site is
//! configured, so recording is a few relaxed additions and no lock, and
//! the label sets are bounded (no URL or client address is ever a label).
//!
//! It knows nothing of HTTP beyond a method and a status code.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Method classes.
pub const METHODS: [&str; 4] = ["GET", "HEAD", "POST", "other"];
/// Status classes.
pub const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Cache phases (`Cache-Status` vocabulary of the access log), then
/// `other`.
pub const PHASES: [&str; 17] = [
    "hit",
    "stale-hit",
    "stale-while-revalidate",
    "stale-if-error",
    "revalidated",
    "uri-miss",
    "vary-miss",
    "stale",
    "request",
    "collapsed",
    "bypass",
    "method",
    "only-if-cached",
    "pass",
    "purge",
    "refused",
    "other",
];
/// Histogram bucket bounds, seconds: a hit is well under a millisecond, an
/// origin fetch tens to hundreds.
pub const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram: a count per bucket (not cumulative), the total
/// count and the sum in nanoseconds.
#[derive(Debug, Default)]
pub struct Hist {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Hist {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Sum in seconds, count, and the count in each bucket (not
    /// cumulative; the encoder adds them up), the last bound `f64::MAX`
    /// standing for `+Inf` (the observations above every bound).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let count = self.count.load(Relaxed);
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(b, c)| {
                let n = c.load(Relaxed);
                below += n;
                (*b, n)
            })
            .collect();
        buckets.push((f64::MAX, count.saturating_sub(below)));
        (self.sum_ns.load(Relaxed) as f64 / 1e9, count, buckets)
    }
}

/// One site's request series.
#[derive(Debug)]
pub struct SiteMetrics {
    pub site: String,
    /// `METHODS × STATUSES × PHASES`.
    requests: Box<[AtomicU64]>,
    /// By phase.
    bytes: Box<[AtomicU64]>,
    duration: Box<[Hist]>,
    ttfb: Box<[Hist]>,
}

/// What one finished request did.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub method: &'a http::Method,
    pub status: u16,
    pub phase: &'a str,
    pub bytes: u64,
    pub duration: Duration,
    /// Until the response head was ready.
    pub ttfb: Duration,
}

/// The place of `p` in [`PHASES`] (a `match` compiles to a switch on the
/// length and one comparison, where a search compared each name).
fn phase_index(p: &str) -> usize {
    match p {
        "hit" => 0,
        "stale-hit" => 1,
        "stale-while-revalidate" => 2,
        "stale-if-error" => 3,
        "revalidated" => 4,
        "uri-miss" => 5,
        "vary-miss" => 6,
        "stale" => 7,
        "request" => 8,
        "collapsed" => 9,
        "bypass" => 10,
        "method" => 11,
        "only-if-cached" => 12,
        "pass" => 13,
        "purge" => 14,
        "refused" => 15,
        _ => 16,
    }
}

impl SiteMetrics {
    fn new(site: &str) -> SiteMetrics {
        let n = METHODS.len() * STATUSES.len() * PHASES.len();
        SiteMetrics {
            site: site.to_owned(),
            requests: (0..n).map(|_| AtomicU64::new(0)).collect(),
            bytes: (0..PHASES.len()).map(|_| AtomicU64::new(0)).collect(),
            duration: (0..PHASES.len()).map(|_| Hist::default()).collect(),
            ttfb: (0..PHASES.len()).map(|_| Hist::default()).collect(),
        }
    }

    /// Counts a finished request.
    pub fn record(&self, f: &Finished<'_>) {
        let m = match *f.method {
            http::Method::GET => 0,
            http::Method::HEAD => 1,
            http::Method::POST => 2,
            _ => 3,
        };
        let s = usize::from((f.status / 100).clamp(1, 5) - 1);
        let p = phase_index(f.phase);
        let i = (m * STATUSES.len() + s) * PHASES.len() + p;
        if let Some(c) = self.requests.get(i) {
            c.fetch_add(1, Relaxed);
        }
        self.bytes[p].fetch_add(f.bytes, Relaxed);
        self.duration[p].observe(f.duration);
        self.ttfb[p].observe(f.ttfb);
    }

    /// Every non-zero request series: method, status class, phase, count.
    pub fn requests(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for (mi, m) in METHODS.iter().enumerate() {
            for (si, s) in STATUSES.iter().enumerate() {
                for (pi, p) in PHASES.iter().enumerate() {
                    let v =
                        self.requests[(mi * STATUSES.len() + si) * PHASES.len() + pi].load(Relaxed);
                    if v > 0 {
                        out.push((*m, *s, *p, v));
                    }
                }
            }
        }
        out
    }

    /// Phases seen, with their bytes and both histograms.
    pub fn by_phase(&self) -> impl Iterator<Item = (&'static str, u64, &Hist, &Hist)> {
        PHASES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.duration[*i].count.load(Relaxed) > 0)
            .map(|(i, p)| {
                (
                    *p,
                    self.bytes[i].load(Relaxed),
                    &self.duration[i],
                    &self.ttfb[i],
                )
            })
    }
}

fn registry() -> &'static Mutex<Vec<Weak<SiteMetrics>>> {
    static R: OnceLock<Mutex<Vec<Weak<SiteMetrics>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The series of site `name`: the ones a running config already has (so a
/// reload keeps counting on them), else new ones.
pub fn site(name: &str) -> Arc<SiteMetrics> {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    r.retain(|w| w.strong_count() > 0);
    if let Some(m) = r.iter().filter_map(Weak::upgrade).find(|m| m.site == name) {
        return m;
    }
    let m = Arc::new(SiteMetrics::new(name));
    r.push(Arc::downgrade(&m));
    m
}

/// Every configured site's series.
pub fn sites() -> Vec<Arc<SiteMetrics>> {
    let r = registry().lock().unwrap_or_else(|p| p.into_inner());
    r.iter().filter_map(Weak::upgrade).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_its_own_place() {
        for (i, p) in PHASES.iter().enumerate() {
            assert_eq!(phase_index(p), i, "{p}");
        }
        assert_eq!(phase_index("anything else"), PHASES.len() - 1);
    }

    #[test]
    fn requests_land_in_their_series_and_buckets_are_cumulative() {
        let m = SiteMetrics::new("t");
        for (status, phase, ms) in [(200, "hit", 0), (200, "hit", 3), (503, "uri-miss", 40)] {
            m.record(&Finished {
                method: &http::Method::GET,
                status,
                phase,
                bytes: 10,
                duration: Duration::from_millis(ms),
                ttfb: Duration::from_millis(ms),
            });
        }
        assert_eq!(
            m.requests(),
            [("GET", "2xx", "hit", 2), ("GET", "5xx", "uri-miss", 1)]
        );
        let (_, count, buckets) = m.duration[0].snapshot();
        assert_eq!(count, 2);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 2);
        assert_eq!(buckets.last().unwrap(), &(f64::MAX, 0));
        let phases: Vec<_> = m.by_phase().map(|(p, b, _, _)| (p, b)).collect();
        assert_eq!(phases, [("hit", 20), ("uri-miss", 10)]);
    }
}

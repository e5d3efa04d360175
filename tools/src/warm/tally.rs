//! The warm run's counters (shared by the workers, the progress display and
//! the summary) and the classification of one response.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;

use crate::cache_status::{CacheStatus, Outcome};
use crate::units;

/// The result of one entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// `hit`.
    Cached,
    /// Forwarded and stored.
    Stored,
    /// Forwarded, not stored.
    Uncacheable,
    /// Failed, with a short reason (the summary's bucket).
    Failed(String),
}

/// Classifies a response from its status and the node's `Cache-Status`
/// member: 5xx and 421 (host not served by the node) are failures whatever
/// the cache says; a response without the node's member is a failure too
/// (it did not come through the node's cache).
pub fn classify(status: StatusCode, cache_status: Option<&CacheStatus>) -> Recorded {
    if status.is_server_error() {
        return Recorded::Failed(format!("status {}", status.as_u16()));
    }
    if status == StatusCode::MISDIRECTED_REQUEST {
        return Recorded::Failed("status 421 (host not served by the node)".to_string());
    }
    match cache_status.map(CacheStatus::outcome) {
        None => Recorded::Failed("no Cache-Status from the node".to_string()),
        Some(Outcome::AlreadyCached) => Recorded::Cached,
        Some(Outcome::NewlyStored) => Recorded::Stored,
        Some(Outcome::NotCacheable) => Recorded::Uncacheable,
    }
}

/// Counters of a warm run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests sent to the node.
    pub started: AtomicU64,
    pub cached: AtomicU64,
    pub stored: AtomicU64,
    pub uncacheable: AtomicU64,
    pub failed: AtomicU64,
    /// Body bytes received.
    pub bytes: AtomicU64,
    reasons: Mutex<BTreeMap<String, u64>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
}

/// A consistent-enough copy of the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub started: u64,
    pub cached: u64,
    pub stored: u64,
    pub uncacheable: u64,
    pub failed: u64,
    pub bytes: u64,
}

impl Snapshot {
    /// Entries finished (whatever the outcome).
    pub fn done(&self) -> u64 {
        self.cached + self.stored + self.uncacheable + self.failed
    }

    /// A one-line account for the progress display.
    pub fn brief(&self) -> String {
        format!(
            "cached {}, stored {}, not cacheable {}, failed {}",
            self.cached, self.stored, self.uncacheable, self.failed
        )
    }
}

impl Tally {
    /// Counts one finished entry.
    pub fn record(&self, result: Recorded) {
        let counter = match result {
            Recorded::Cached => &self.cached,
            Recorded::Stored => &self.stored,
            Recorded::Uncacheable => &self.uncacheable,
            Recorded::Failed(reason) => {
                if let Ok(mut reasons) = self.reasons.lock() {
                    *reasons.entry(reason).or_default() += 1;
                }
                &self.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response status.
    pub fn status(&self, status: StatusCode) {
        if let Ok(mut statuses) = self.statuses.lock() {
            *statuses.entry(status.as_u16()).or_default() += 1;
        }
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            started: self.started.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            uncacheable: self.uncacheable.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Writes the end-of-run summary. `abandoned` is the number of requests
    /// still in flight when an interrupted run gave up on them.
    pub fn write_summary(
        &self,
        out: &mut dyn Write,
        elapsed: Duration,
        interrupted: bool,
        abandoned: u64,
    ) -> io::Result<()> {
        let s = self.snapshot();
        let head = if interrupted {
            "warm summary (interrupted: partial)"
        } else {
            "warm summary"
        };
        writeln!(out, "{head}")?;
        let line = |out: &mut dyn Write, key: &str, value: String| {
            writeln!(out, "  {:<19}{value}", format!("{key}:"))
        };
        line(out, "URLs", s.done().to_string())?;
        line(out, "already cached", s.cached.to_string())?;
        line(out, "newly stored", s.stored.to_string())?;
        line(out, "not cacheable", s.uncacheable.to_string())?;
        line(out, "failed", s.failed.to_string())?;
        if let Ok(reasons) = self.reasons.lock() {
            for (reason, n) in reasons.iter() {
                writeln!(out, "    {:<17}{n}", format!("{reason}:"))?;
            }
        }
        if interrupted {
            line(out, "abandoned", abandoned.to_string())?;
        }
        line(
            out,
            "bytes",
            format!("{} ({} B)", units::bytes(s.bytes), s.bytes),
        )?;
        line(out, "elapsed", units::duration(elapsed))?;
        line(
            out,
            "rate",
            format!("{:.1} req/s", units::rate(s.done(), elapsed)),
        )?;
        if let Ok(statuses) = self.statuses.lock()
            && !statuses.is_empty()
        {
            writeln!(out, "  responses by status:")?;
            for (status, n) in statuses.iter() {
                writeln!(out, "    {:<17}{n}", format!("{status}:"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cache_status::find;

    fn cs(v: &str) -> Option<CacheStatus> {
        find([v], "Outpost")
    }

    #[test]
    fn classification() {
        let ok = StatusCode::OK;
        assert_eq!(classify(ok, cs("Outpost; hit").as_ref()), Recorded::Cached);
        assert_eq!(
            classify(ok, cs("Outpost; fwd=uri-miss; stored").as_ref()),
            Recorded::Stored
        );
        assert_eq!(
            classify(ok, cs("Outpost; fwd=bypass").as_ref()),
            Recorded::Uncacheable
        );
        assert_eq!(
            classify(StatusCode::NOT_FOUND, cs("Outpost; fwd=uri-miss").as_ref()),
            Recorded::Uncacheable
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, cs("Outpost; hit").as_ref()),
            Recorded::Failed("status 503".into())
        );
        assert!(matches!(
            classify(StatusCode::MISDIRECTED_REQUEST, cs("Outpost; fwd=bypass").as_ref()),
            Recorded::Failed(r) if r.starts_with("status 421")
        ));
        assert!(matches!(classify(ok, None), Recorded::Failed(_)));
    }

    #[test]
    fn summary_lists_reasons_and_statuses() {
        let t = Tally::default();
        t.record(Recorded::Stored);
        t.record(Recorded::Cached);
        t.record(Recorded::Failed("status 503".into()));
        t.record(Recorded::Failed("status 503".into()));
        t.record(Recorded::Failed("connect".into()));
        t.status(StatusCode::OK);
        t.status(StatusCode::SERVICE_UNAVAILABLE);
        t.bytes.fetch_add(2048, Ordering::Relaxed);
        let mut out = Vec::new();
        t.write_summary(&mut out, Duration::from_secs(2), false, 0)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("  URLs:              5\n"), "{text}");
        assert!(text.contains("  failed:            3\n"), "{text}");
        assert!(text.contains("    status 503:      2\n"), "{text}");
        assert!(text.contains("    connect:         1\n"), "{text}");
        assert!(text.contains("2.0 KiB (2048 B)"), "{text}");
        assert!(text.contains("2.5 req/s"), "{text}");
        assert!(!text.contains("interrupted"));
    }
}

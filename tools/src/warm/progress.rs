//! Live progress of a warm run on stderr: an indicatif bar (count, rate, ETA)
//! when stderr is a terminal, otherwise one plain line per interval. The
//! total is shown once known (a URL file's background count, a sitemap's
//! entries); until then only the count and rate.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use super::tally::Tally;
use crate::units;

/// The number of entries in the list, once known.
#[derive(Debug, Default)]
pub struct Total {
    value: AtomicU64,
    known: AtomicBool,
}

impl Total {
    /// Sets the final total.
    pub fn set(&self, n: u64) {
        self.value.store(n, Ordering::Relaxed);
        self.known.store(true, Ordering::Release);
    }

    /// Adds entries discovered so far (sitemap indexes), not yet final.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// Marks the running sum as final.
    pub fn finish(&self) {
        self.known.store(true, Ordering::Release);
    }

    /// The total, if final.
    pub fn get(&self) -> Option<u64> {
        self.known
            .load(Ordering::Acquire)
            .then(|| self.value.load(Ordering::Relaxed))
    }
}

/// A running progress display; [`Progress::finish`] removes it.
pub struct Progress {
    task: JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts the display for `tally`.
    pub fn start(tally: Arc<Tally>, total: Arc<Total>, plain_interval: Duration) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(spinner_style());
            let task = tokio::spawn(drive_bar(bar.clone(), tally, total));
            Self {
                task,
                bar: Some(bar),
            }
        } else {
            let task = tokio::spawn(plain_lines(tally, total, plain_interval));
            Self { task, bar: None }
        }
    }

    /// Stops the display and clears the bar.
    pub fn finish(self) {
        self.task.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

// The message carries the rate and the outcome counts; `wide_bar` takes what
// is left of the line, so the whole fits an 80-column terminal.
fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {human_pos} URLs  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{human_pos}/{human_len} {wide_bar} {percent:>3}% {msg} ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

async fn drive_bar(bar: ProgressBar, tally: Arc<Tally>, total: Arc<Total>) {
    let mut with_length = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    // Rate over roughly the last second (five ticks).
    let mut window = std::collections::VecDeque::from([(Instant::now(), 0u64)]);
    loop {
        ticker.tick().await;
        if !with_length && let Some(n) = total.get() {
            bar.set_length(n);
            bar.set_style(bar_style());
            with_length = true;
        }
        let snap = tally.snapshot();
        let now = Instant::now();
        window.push_back((now, snap.done()));
        while window.len() > 6 {
            window.pop_front();
        }
        let rate = window.front().map_or(0.0, |(t, n)| {
            units::rate(snap.done().saturating_sub(*n), now - *t)
        });
        bar.set_position(snap.done());
        bar.set_message(format!(
            "{rate:.0}/s stored {} hit {} uncacheable {} failed {}",
            snap.stored, snap.cached, snap.uncacheable, snap.failed
        ));
    }
}

async fn plain_lines(tally: Arc<Tally>, total: Arc<Total>, interval: Duration) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut last = (start, 0u64);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let snap = tally.snapshot();
        let done = snap.done();
        let recent = units::rate(done.saturating_sub(last.1), now - last.0);
        last = (now, done);
        let overall = units::rate(done, now - start);
        let count = match total.get() {
            Some(n) if n > 0 => {
                let eta = if overall > 0.0 {
                    units::duration(Duration::from_secs_f64(
                        n.saturating_sub(done) as f64 / overall,
                    ))
                } else {
                    "?".to_string()
                };
                format!(
                    "{done}/{n} ({:.1}%), ETA {eta}",
                    done as f64 * 100.0 / n as f64
                )
            }
            _ => format!("{done}"),
        };
        eprintln!("warm: {count}, {recent:.1} req/s; {}", snap.brief());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn total_is_known_only_when_final() {
        let t = Total::default();
        assert_eq!(t.get(), None);
        t.add(3);
        t.add(4);
        assert_eq!(t.get(), None);
        t.finish();
        assert_eq!(t.get(), Some(7));
        let t = Total::default();
        t.set(10);
        assert_eq!(t.get(), Some(10));
    }
}

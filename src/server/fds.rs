//! Open files: at start the soft `RLIMIT_NOFILE` is raised to the hard
//! limit (or to `server.max_open_files`), the limit in force is logged, and
//! `max_connections`, when not set, is sized from it (three quarters of
//! what is left after 256 descriptors for the store, logs and listeners:
//! the other quarter is for origin connections). A service started with an
//! inherited limit of 1,024 would otherwise fail every accept past about a
//! thousand clients.
//!
//! When accept still fails for want of descriptors (EMFILE, ENFILE), the
//! listener backs off ([`Backoff`]): it stops accepting for 10 ms, doubling
//! up to 1 s while it keeps failing, with one log line when an episode
//! starts and one with its count when it ends, and the connections already
//! open are served throughout.
//!
//! It owns these two policies, not the sockets.

use std::time::Duration;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything but client connections.
const RESERVED: u64 = 256;

/// Raises the soft open-file limit to `want` (the hard limit when `None`,
/// never above it); returns the limit in force.
pub fn raise_nofile(want: Option<u64>) -> u64 {
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum;
    let target = match (want, hard) {
        (Some(w), Some(h)) => Some(w.min(h)),
        (Some(w), None) => Some(w),
        (None, h) => h,
    };
    let soft = cur.current.unwrap_or(u64::MAX);
    match target {
        Some(t) if t > soft => {
            let new = Rlimit {
                current: Some(t),
                maximum: hard,
            };
            match setrlimit(Resource::Nofile, new) {
                Ok(()) => tracing::info!(open_files = t, was = soft, "open file limit raised"),
                Err(e) => {
                    tracing::warn!(error = %e, open_files = soft, "open file limit not raised");
                    return soft;
                }
            }
            t
        }
        _ => {
            tracing::info!(open_files = soft, "open file limit");
            soft
        }
    }
}

/// `max_connections` for an open-file limit of `nofile` when none is set.
pub fn default_max_connections(nofile: u64) -> usize {
    let n = nofile.saturating_sub(RESERVED) / 4 * 3;
    usize::try_from(n.max(64)).unwrap_or(usize::MAX)
}

/// Whether an accept error is for want of descriptors.
pub fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
    )
}

/// One episode of accepts failing for want of descriptors.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u64,
    pause: Duration,
}

const FIRST: Duration = Duration::from_millis(10);
const MAX: Duration = Duration::from_secs(1);

impl Backoff {
    /// A failed accept: how long to stop accepting (logged once per
    /// episode).
    pub fn failed(&mut self, e: &std::io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(error = %e, "out of file descriptors: accepting less until some close");
            self.pause = FIRST;
        } else {
            self.pause = (self.pause * 2).min(MAX);
        }
        self.failures += 1;
        self.pause
    }

    /// An accept succeeded: the episode, if any, is over.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::warn!(
                failures = self.failures,
                "accepting again after running out of file descriptors"
            );
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_grows_to_a_second_and_an_episode_ends_on_success() {
        let e = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert!(out_of_descriptors(&e));
        assert!(!out_of_descriptors(&std::io::Error::other("x")));
        let mut b = Backoff::default();
        let pauses: Vec<Duration> = (0..9).map(|_| b.failed(&e)).collect();
        assert_eq!(pauses[0], FIRST);
        assert_eq!(pauses[1], FIRST * 2);
        assert_eq!(*pauses.last().unwrap_or(&Duration::ZERO), MAX);
        b.succeeded();
        assert_eq!(b.failures, 0);
        assert_eq!(b.failed(&e), FIRST);
    }

    #[test]
    fn connections_are_sized_from_the_limit() {
        assert_eq!(default_max_connections(1024), 576);
        assert_eq!(default_max_connections(100), 64);
        assert_eq!(default_max_connections(1 << 20), ((1 << 20) - 256) / 4 * 3);
    }
}

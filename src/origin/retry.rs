//! When a failed attempt is tried again on another origin, and the retry
//! budget that keeps retries from multiplying the load when every origin
//! is failing (Envoy's and Finagle's retry budgets).
//!
//! A request is retried only when nothing of it can have been acted on
//! twice and nothing of the answer reached the client:
//! - after a connect failure (refused, unreachable, connect timeout), any
//!   request whose content was not taken yet;
//! - after the connection closed before a response byte, or after a status
//!   in `retry_on`, only an idempotent request (RFC 9110 §9.2.2) without
//!   content;
//! - never once a response byte went to the client: the pool returns at
//!   the response head, so a retry can only happen before it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::Method;

use crate::error::ErrorKind;

/// Retries allowed in every window whatever the traffic, so that a quiet
/// site still fails over.
pub const BUDGET_FLOOR: u64 = 10;

/// RFC 9110 §9.2.2.
pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The attempt failed before the request reached the origin.
pub fn is_connect_failure(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::OriginRefused | ErrorKind::OriginUnreachable | ErrorKind::OriginConnectTimeout
    )
}

/// The connection closed before a response byte, after the request went out.
pub fn is_reset(kind: ErrorKind) -> bool {
    kind == ErrorKind::OriginReset
}

#[derive(Debug)]
struct Window {
    start: Instant,
    /// First attempts counted at the window's start.
    base: u64,
    retries: u64,
}

/// Retries may be at most `ratio` of the requests in a window (plus
/// [`BUDGET_FLOOR`]). Requests are counted by the caller (a striped
/// counter read only when a retry is asked for), so a request that is not
/// retried takes no lock.
#[derive(Debug)]
pub struct Budget {
    ratio: f64,
    window: Duration,
    state: Mutex<Window>,
}

impl Budget {
    pub fn new(ratio: f64, window: Duration) -> Budget {
        Budget {
            ratio,
            window,
            state: Mutex::new(Window {
                start: Instant::now(),
                base: 0,
                retries: 0,
            }),
        }
    }

    /// Takes one retry from the budget if it allows one; `requests` is the
    /// number of first attempts so far.
    pub fn try_take(&self, requests: u64) -> bool {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(w.start) >= self.window {
            w.start = now;
            w.base = requests;
            w.retries = 0;
        }
        let in_window = requests.saturating_sub(w.base);
        let allowed = ((in_window as f64) * self.ratio) as u64 + BUDGET_FLOOR;
        if w.retries < allowed {
            w.retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_its_share_and_the_floor() {
        let b = Budget::new(0.2, Duration::from_secs(60));
        let taken = (0..100).filter(|_| b.try_take(100)).count() as u64;
        assert_eq!(taken, 20 + BUDGET_FLOOR);
        assert!(!b.try_take(100));
        // More requests, more retries.
        assert!(b.try_take(110));
        assert!(b.try_take(110));
        assert!(!b.try_take(110));
    }

    #[test]
    fn idempotent_methods() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}

//! Active health checks: one task per origin sends `GET path` on a new
//! connection every `interval` (jittered by ±10 %, the first one at a
//! random point of the first interval, so that the probes of many origins
//! and many nodes do not arrive together), within `timeout`, and feeds
//! the result to the origin's [`super::health::Health`]. A probe is good
//! when the status is in `expect`; a refused connection, a timeout or a
//! response that does not parse is bad. The task ends when its pool goes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::health::Names;
use super::pool::Origin;
use crate::config::HealthCheck;

/// Largest probe response head read.
const MAX_HEAD: usize = 16 * 1024;

/// `base` ± 10 %.
fn jittered(base: Duration) -> Duration {
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
    let spread = (ms / 10).max(1);
    Duration::from_millis(
        (ms - spread).saturating_add(rand::random_range(0..=spread.saturating_mul(2))),
    )
}

/// Probes `origin` until `stop` is cancelled.
pub(super) async fn run(
    site: String,
    origin: Arc<Origin>,
    check: HealthCheck,
    stop: CancellationToken,
) {
    let first = Duration::from_millis(rand::random_range(
        0..=u64::try_from(check.interval.as_millis()).unwrap_or(1000),
    ));
    let mut wait = first;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let result = tokio::select! {
            () = stop.cancelled() => return,
            r = tokio::time::timeout(check.timeout, probe(&origin, &check)) => r,
        };
        let (ok, why) = match result {
            Err(_) => (false, "probe timed out"),
            Ok(Err(why)) => (false, why),
            Ok(Ok(())) => (true, "probe passed"),
        };
        if !ok {
            tracing::debug!(site, origin = %origin.url, why, "health probe failed");
        }
        origin.health.probe_result(
            &Names {
                site: &site,
                origin: &origin.url,
            },
            ok,
            check.rise,
            check.fall,
            origin.stats.in_flight(),
            why,
        );
        wait = jittered(check.interval);
    }
}

/// One probe: `Ok` when the origin answers with a status in `expect`.
async fn probe(origin: &Origin, check: &HealthCheck) -> Result<(), &'static str> {
    let authority = origin.url.authority.as_str();
    let port = origin.url.authority.port_u16().unwrap_or(80);
    let mut s = TcpStream::connect((origin.url.authority.host(), port))
        .await
        .map_err(|_| "probe could not connect")?;
    let _ = s.set_nodelay(true);
    let host = check.host.as_deref().unwrap_or(authority);
    let req = format!(
        "GET {} HTTP/1.1\r\nhost: {host}\r\nuser-agent: outpost-health-check\r\nconnection: close\r\n\r\n",
        check.path
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|_| "probe could not be sent")?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(0);
                if status == 101 {
                    return Err("probe got 101 to a request without Upgrade");
                }
                if (100..200).contains(&status) {
                    // An interim response (RFC 9110 §15.2): the final one follows.
                    buf.drain(..n);
                    continue;
                }
                return if (check.expect.0..=check.expect.1).contains(&status) {
                    Ok(())
                } else {
                    Err("probe got an unexpected status")
                };
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err("probe response is not HTTP"),
        }
        if buf.len() >= MAX_HEAD {
            return Err("probe response head too large");
        }
        let mut chunk = [0u8; 2048];
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|_| "probe connection failed")?;
        if n == 0 {
            return Err("probe connection closed early");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(9) && d <= Duration::from_secs(11),
                "{d:?}"
            );
        }
    }
}

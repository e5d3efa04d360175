//! What a listener does with a connection it accepts, before any HTTP:
//! the PROXY protocol header on listeners that take one, the connection
//! limits, and the socket options.
//!
//! It knows nothing of requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::proxy_header;
use crate::admission::{ConnGuard, ConnLimits, IpSet};
use crate::config::ServerConfig;
use crate::metrics::{Refusal, SendfileBytes};

/// What a listener sets up on every connection it accepts.
#[derive(Clone)]
pub(super) struct ConnSetup {
    /// Counts the bytes its connections send with `sendfile(2)`.
    pub(super) sendfile_bytes: SendfileBytes,
    /// `TCP_NOTSENT_LOWAT` in bytes (0: the kernel's default).
    pub(super) notsent_lowat: u32,
    /// The node's connection limits (the admin listener has none).
    pub(super) limits: Option<Arc<ConnLimits>>,
    /// Whom a PROXY protocol header is believed from, when the listener
    /// takes one.
    pub(super) proxy_protocol: Option<ProxyProtocol>,
    /// What a client may do on one connection served by hyper.
    pub(super) abuse: super::abuse::Limits,
}

/// The PROXY protocol on a listener.
#[derive(Clone)]
pub(super) struct ProxyProtocol {
    pub(super) trusted: Arc<IpSet>,
    /// How long a connection has to send its header.
    pub(super) timeout: Duration,
}

impl ProxyProtocol {
    pub(super) fn new(on: bool, s: &ServerConfig) -> Option<ProxyProtocol> {
        on.then(|| ProxyProtocol {
            trusted: Arc::new(IpSet::from_nets(s.trusted_proxies.iter().copied())),
            timeout: s.header_read_timeout,
        })
    }
}

/// The address a new connection is served as (after its PROXY header, on
/// a listener that takes one) and its place under the connection limits;
/// `None` when it is to be closed (counted, and logged at debug).
pub(super) async fn open_conn(
    stream: &mut tokio::net::TcpStream,
    peer: SocketAddr,
    setup: &ConnSetup,
) -> Option<(SocketAddr, Option<ConnGuard>)> {
    let peer = match &setup.proxy_protocol {
        None => peer,
        Some(pp) => {
            let trusted = |ip| pp.trusted.contains(ip);
            // Boxed: its buffer would otherwise stay in every connection's state.
            match Box::pin(proxy_header::read(stream, peer, trusted, pp.timeout)).await {
                Ok(p) => p,
                Err(why) => {
                    crate::metrics::Counters::global().refused(Refusal::ProxyHeader);
                    tracing::info!(%peer, reason = why.as_str(), "connection refused");
                    return None;
                }
            }
        }
    };
    let guard = match setup.limits.as_ref().map(|l| l.acquire(peer.ip())) {
        None => None,
        Some(Some(g)) => Some(g),
        Some(None) => {
            crate::metrics::Counters::global().refused(Refusal::ConnectionLimit);
            tracing::debug!(%peer, "connection limit reached; closed at accept");
            return None;
        }
    };
    tune(stream, setup.notsent_lowat);
    Some((peer, guard))
}

/// Socket options of an accepted client connection.
///
/// - `TCP_NODELAY`: a response's last segment leaves at once (responses are
///   written whole, so Nagle would only delay them).
/// - `TCP_NOTSENT_LOWAT` (`[server] tcp_notsent_lowat`): the kernel queues at
///   most this many bytes that are not yet on the wire; a large body is
///   then written in pieces as the client takes it, interleaved with the
///   other connections' responses, instead of one `sendfile` parking a whole
///   1 MiB object in the socket. Unlike `SO_SNDBUF` it does not count bytes
///   in flight, so it does not cap throughput on long paths
///   (benches/load/README.md, "`TCP_NOTSENT_LOWAT`": hit-1m +35 % req/s,
///   p99 24 → 17 ms in an interleaved A/B).
pub(super) fn tune(stream: &tokio::net::TcpStream, notsent_lowat: u32) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY refused");
    }
    #[cfg(target_os = "linux")]
    if notsent_lowat > 0
        && let Err(e) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(notsent_lowat)
    {
        tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT refused");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = notsent_lowat;
}

/// The abuse limits of `[server]`.
pub(super) fn abuse_limits(s: &ServerConfig) -> super::abuse::Limits {
    super::abuse::Limits {
        resets_per_second: s.h2_max_resets_per_second,
        control_frames_per_second: s.h2_max_control_frames_per_second,
        send_timeout: s.send_timeout,
        h2_idle_timeout: s.h2_idle_timeout,
        keepalive_requests: s.keepalive_requests,
    }
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::tune;

    #[tokio::test]
    async fn accepted_connections_get_nodelay_and_the_notsent_low_water_mark() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        for lowat in [0u32, 16 << 10] {
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let before = socket2::SockRef::from(&s).tcp_notsent_lowat().unwrap();
            tune(&s, lowat);
            assert!(s.nodelay().unwrap());
            let got = socket2::SockRef::from(&s).tcp_notsent_lowat().unwrap();
            // 0 leaves the kernel's default (net.ipv4.tcp_notsent_lowat) alone.
            assert_eq!(got, if lowat == 0 { before } else { lowat });
        }
    }
}

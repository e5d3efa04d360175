//! The PROXY protocol (HAProxy's, versions 1 and 2) on a listener with
//! `proxy_protocol` on: a load balancer in front of the node writes the
//! client's address before the first byte of the connection's own
//! protocol, and the node takes it as the connection's peer.
//!
//! Only a trusted peer (`[server] trusted_proxies`) is believed: a
//! connection from any other peer that starts with a PROXY header is
//! refused (closed, counted, logged), since believing it would let anyone
//! choose the address every access list and rate limit sees. A connection
//! without a header is served with its socket peer, so clients can still
//! reach the listener directly. The header is read with `peek` until it is
//! complete and then consumed exactly, so the bytes behind it (an HTTP
//! request, a TLS ClientHello) stay in the socket for whoever reads next.
//!
//! It owns nothing but this first exchange; parsing is the `ppp` crate's.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The start of a version 1 header.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The signature of a version 2 header.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 header, its CRLF included.
const V1_MAX: usize = 107;
/// Longest header taken: 107 bytes for version 1; version 2 with the
/// type-length-values load balancers send (AWS, GCP) stays well under it.
const MAX_HEADER: usize = 1536;

/// Why a connection is refused before its first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A PROXY header from a peer that is not a trusted proxy.
    Untrusted,
    /// A header that does not parse, is too long or not complete in time.
    Malformed,
    /// The peer closed or failed before the header was complete.
    Closed,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Untrusted => "PROXY header from an untrusted peer",
            Refused::Malformed => "malformed or incomplete PROXY header",
            Refused::Closed => "connection closed during the PROXY header",
        }
    }
}

/// Reads a PROXY header at the start of `stream`, if there is one, and
/// returns the address the connection is served as: the header's source
/// for a trusted `peer`, `peer` itself without a header (or for a version
/// 2 `LOCAL` / version 1 `UNKNOWN` header, a balancer's own health check).
pub async fn read(
    stream: &mut TcpStream,
    peer: SocketAddr,
    trusted: impl Fn(IpAddr) -> bool,
    timeout: Duration,
) -> Result<SocketAddr, Refused> {
    match tokio::time::timeout(timeout, read_inner(stream, peer, trusted)).await {
        Ok(r) => r,
        Err(_) => Err(Refused::Malformed),
    }
}

async fn read_inner(
    stream: &mut TcpStream,
    peer: SocketAddr,
    trusted: impl Fn(IpAddr) -> bool,
) -> Result<SocketAddr, Refused> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await.map_err(|_| Refused::Closed)?;
        if n == 0 {
            return Err(Refused::Closed);
        }
        let got = &buf[..n];
        if !starts_like_header(got) {
            return Ok(peer);
        }
        // As soon as the signature is certain: nothing more is read.
        if is_header_start(got) && !trusted(peer.ip()) {
            return Err(Refused::Untrusted);
        }
        // A version 1 header is one line of at most 107 bytes: once its end
        // is in, it parses or is malformed.
        let v1_end = got.starts_with(V1_PREFIX).then(|| {
            got.iter()
                .take(V1_MAX)
                .position(|b| *b == b'\n')
                .map(|i| i + 1)
        });
        let parsed = match v1_end {
            Some(Some(end)) => HeaderResult::parse(&got[..end]),
            Some(None) if n >= V1_MAX => return Err(Refused::Malformed),
            _ => HeaderResult::parse(got),
        };
        if v1_end.flatten().is_some() && !parsed.is_complete() {
            return Err(Refused::Malformed);
        }
        if parsed.is_complete() {
            let (len, addr) = decode(&parsed, peer)?;
            // Consume exactly the header; what follows stays in the socket.
            stream
                .read_exact(&mut buf[..len])
                .await
                .map_err(|_| Refused::Closed)?;
            return Ok(addr);
        }
        if n >= MAX_HEADER {
            return Err(Refused::Malformed);
        }
        if n == seen {
            // `peek` returns at once while the bytes it saw are unread: wait
            // a little for the rest of a header sent in pieces.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen = n;
    }
}

/// Whether `got` is, as far as it goes, the start of a PROXY header.
fn starts_like_header(got: &[u8]) -> bool {
    let prefix_of = |sig: &[u8]| {
        let k = got.len().min(sig.len());
        got[..k] == sig[..k]
    };
    prefix_of(V1_PREFIX) || prefix_of(V2_SIGNATURE)
}

/// Whether `got` holds a whole signature (of either version).
fn is_header_start(got: &[u8]) -> bool {
    got.starts_with(V1_PREFIX) || got.starts_with(V2_SIGNATURE)
}

/// The header's length and the address it gives (or `peer` when it gives
/// none).
fn decode(parsed: &HeaderResult<'_>, peer: SocketAddr) -> Result<(usize, SocketAddr), Refused> {
    match parsed {
        HeaderResult::V1(Ok(h)) => {
            let addr = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => SocketAddr::from((a.source_address, a.source_port)),
                ppp::v1::Addresses::Tcp6(a) => SocketAddr::from((a.source_address, a.source_port)),
                ppp::v1::Addresses::Unknown => peer,
            };
            Ok((h.header.len(), addr))
        }
        HeaderResult::V2(Ok(h)) => {
            let addr = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => peer,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                _ => peer,
            };
            Ok((h.len(), addr))
        }
        _ => Err(Refused::Malformed),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair(first: &[u8]) -> (TcpStream, SocketAddr, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        c.write_all(first).await.unwrap();
        let (s, peer) = l.accept().await.unwrap();
        (s, peer, c)
    }

    fn v2(src: &str) -> Vec<u8> {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = if src.is_ipv4() {
            "127.0.0.1:80".parse().unwrap()
        } else {
            "[::1]:80".parse().unwrap()
        };
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .unwrap()
    }

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_trusted_peer_is_believed_and_the_request_behind_stays_unread() {
        let mut first = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n".to_vec();
        first.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let (mut s, peer, _c) = pair(&first).await;
        let got = read(&mut s, peer, |_| true, T).await.unwrap();
        assert_eq!(got, "203.0.113.9:5555".parse().unwrap());
        let mut rest = [0u8; 18];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"GET / HTTP/1.1\r\n\r\n");

        let mut first = v2("[2001:db8::7]:4000");
        first.extend_from_slice(b"GET");
        let (mut s, peer, _c) = pair(&first).await;
        let got = read(&mut s, peer, |_| true, T).await.unwrap();
        assert_eq!(got, "[2001:db8::7]:4000".parse().unwrap());
        let mut rest = [0u8; 3];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"GET");
    }

    #[tokio::test]
    async fn an_untrusted_peer_with_a_header_is_refused_and_without_one_served() {
        let (mut s, peer, _c) = pair(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n").await;
        assert_eq!(
            read(&mut s, peer, |_| false, T).await,
            Err(Refused::Untrusted)
        );
        let (mut s, peer, _c) = pair(&v2("203.0.113.9:1")).await;
        assert_eq!(
            read(&mut s, peer, |_| false, T).await,
            Err(Refused::Untrusted)
        );
        let (mut s, peer, _c) = pair(b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(read(&mut s, peer, |_| false, T).await, Ok(peer));
        let (mut s, peer, _c) = pair(b"PROXY garbage\r\n").await;
        assert_eq!(
            read(&mut s, peer, |_| true, T).await,
            Err(Refused::Malformed)
        );
    }

    #[tokio::test]
    async fn a_header_in_pieces_is_awaited_and_a_stalled_one_times_out() {
        let (mut s, peer, mut c) = pair(b"PROXY TCP4 203.0.").await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.write_all(b"113.9 127.0.0.1 5555 80\r\n").await.unwrap();
            c
        });
        let got = read(&mut s, peer, |_| true, T).await.unwrap();
        assert_eq!(got.ip(), "203.0.113.9".parse::<IpAddr>().unwrap());
        let _c = writer.await.unwrap();
        let (mut s, peer, _c) = pair(b"PROXY TCP4 1.2.3.4").await;
        assert_eq!(
            read(&mut s, peer, |_| true, Duration::from_millis(50)).await,
            Err(Refused::Malformed)
        );
    }
}

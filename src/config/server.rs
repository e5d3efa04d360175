//! `[server]`: the client-facing side's settings (timeouts, limits of the
//! listeners, HTTP/2, keep-alive, connection limits, open files, trusted
//! proxies), validated with the key of every problem.

use super::ServerConfig;
use super::file::FileServer;
use super::validate::{Errors, duration, size};

/// Validates `[server]` over the defaults `d`.
pub(super) fn server_section(
    f: Option<&FileServer>,
    errs: &mut Errors,
    d: &ServerConfig,
) -> ServerConfig {
    let s = f.cloned().unwrap_or_default();
    let h2_streams = match s.h2_max_concurrent_streams {
        None => d.h2_max_concurrent_streams,
        Some(n) if (1..=10_000).contains(&n) => n as u32,
        Some(n) => {
            errs.push(
                "server.h2_max_concurrent_streams",
                format!("{n} is out of range 1..=10000"),
            );
            d.h2_max_concurrent_streams
        }
    };
    let via = s.via.clone().unwrap_or(d.via.clone());
    if via.is_empty() || !via.bytes().all(|b| b.is_ascii_graphic()) {
        errs.push(
            "server.via",
            "must be a non-empty token (visible ASCII, no spaces)",
        );
    }
    let max_header_bytes = size(
        errs,
        "server.max_header_bytes",
        s.max_header_bytes.as_ref(),
        d.max_header_bytes,
    );
    if max_header_bytes < 8192 {
        errs.push("server.max_header_bytes", "must be at least 8KiB");
    }
    let lowat = size(
        errs,
        "server.tcp_notsent_lowat",
        s.tcp_notsent_lowat.as_ref(),
        u64::from(d.tcp_notsent_lowat),
    );
    let tcp_notsent_lowat = match u32::try_from(lowat) {
        Ok(n) if n == 0 || (4096..=(64 << 20)).contains(&n) => n,
        _ => {
            errs.push(
                "server.tcp_notsent_lowat",
                format!("{lowat} must be 0 (kernel default) or between 4KiB and 64MiB"),
            );
            d.tcp_notsent_lowat
        }
    };
    ServerConfig {
        drain_timeout: duration(
            errs,
            "server.drain_timeout",
            s.drain_timeout.as_ref(),
            d.drain_timeout,
        ),
        header_read_timeout: duration(
            errs,
            "server.header_read_timeout",
            s.header_read_timeout.as_ref(),
            d.header_read_timeout,
        ),
        keepalive_timeout: duration(
            errs,
            "server.keepalive_timeout",
            s.keepalive_timeout.as_ref(),
            d.keepalive_timeout,
        ),
        keepalive_requests: match s.keepalive_requests {
            None => d.keepalive_requests,
            Some(n) if n >= 0 => n as u64,
            Some(n) => {
                errs.push("server.keepalive_requests", format!("{n} is negative"));
                d.keepalive_requests
            }
        },
        h2_idle_timeout: duration(
            errs,
            "server.h2_idle_timeout",
            s.h2_idle_timeout.as_ref(),
            d.h2_idle_timeout,
        ),
        max_header_bytes,
        h2_max_concurrent_streams: h2_streams,
        h2_max_control_frames_per_second: match s.h2_max_control_frames_per_second {
            None => d.h2_max_control_frames_per_second,
            Some(n) if (10..=10_000_000).contains(&n) => n as u32,
            Some(n) => {
                errs.push(
                    "server.h2_max_control_frames_per_second",
                    format!("{n} is out of range (10 to 10000000)"),
                );
                d.h2_max_control_frames_per_second
            }
        },
        send_timeout: duration(
            errs,
            "server.send_timeout",
            s.send_timeout.as_ref(),
            d.send_timeout,
        ),
        h2_max_resets_per_second: match s.h2_max_resets_per_second {
            None => d.h2_max_resets_per_second,
            Some(n) if (1..=1_000_000).contains(&n) => n as u32,
            Some(n) => {
                errs.push(
                    "server.h2_max_resets_per_second",
                    format!("{n} is out of range (1 to 1000000)"),
                );
                d.h2_max_resets_per_second
            }
        },
        via,
        fast_http1: s.fast_http1.unwrap_or(d.fast_http1),
        fast_http2: s.fast_http2.unwrap_or(d.fast_http2),
        tcp_notsent_lowat,
        tls_handshake_timeout: duration(
            errs,
            "server.tls_handshake_timeout",
            s.tls_handshake_timeout.as_ref(),
            d.tls_handshake_timeout,
        ),
        trusted_proxies: super::access::nets(
            errs,
            "server.trusted_proxies",
            s.trusted_proxies.as_ref(),
        ),
        max_connections: match s.max_connections {
            None => 0,
            Some(n) if (0..=10_000_000).contains(&n) => n as usize,
            Some(n) => {
                errs.push(
                    "server.max_connections",
                    format!("{n} is out of range (0 to 10000000)"),
                );
                0
            }
        },
        max_open_files: match s.max_open_files {
            None => None,
            Some(n) if (64..=100_000_000).contains(&n) => Some(n as u64),
            Some(n) => {
                errs.push(
                    "server.max_open_files",
                    format!("{n} is out of range (64 to 100000000)"),
                );
                None
            }
        },
        max_connections_per_client: match s.max_connections_per_client {
            None => 0,
            Some(n) if (0..=1_000_000).contains(&n) => n as u32,
            Some(n) => {
                errs.push(
                    "server.max_connections_per_client",
                    format!("{n} is out of range (0 to 1000000)"),
                );
                0
            }
        },
        server_header: s.server_header.as_ref().and_then(|v| {
            http::HeaderValue::from_str(v)
                .map_err(|_| errs.push("server.server_header", "not a field value (visible ASCII)"))
                .ok()
        }),
    }
}

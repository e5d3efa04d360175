//! Response heads of the own HTTP/1.1 path ([`super::h1`]): the status
//! line, the fields, the framing they imply (RFC 9112 §6) and `Date`
//! (RFC 9110 §6.6.1), written into the connection's buffer; and the
//! interim (1xx) heads sent before a final one.
//!
//! Owns: a head's bytes. Must not know: sockets, bodies or the pipeline
//! (but for the head a hit carries in wire form, [`WireHead`]).

use std::cell::RefCell;

use http::StatusCode;
use http::header::{self, HeaderMap};

use crate::fields::push_line;
use crate::proxy::body::WireHead;

/// How the content of a response is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No content: `HEAD`, 1xx, 204, 304 (RFC 9112 §6.3).
    None,
    /// `Content-Length` (RFC 9112 §6.2).
    Length(u64),
    /// Chunked transfer coding (RFC 9112 §7.1).
    Chunked,
}

/// Writes the response head into `out` and returns its framing. `keep` is
/// cleared when the response itself says `Connection: close`. `wire`: the
/// fields a hit carries in wire form, written before those of `headers`
/// (which has none of them: see [`WireHead`]).
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    exact_len: Option<u64>,
    head_only: bool,
    keep: &mut bool,
    wire: Option<&WireHead>,
) -> Framing {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut date = false;
    if let Some(w) = wire {
        w.write_to(out);
        date = w.fields.has_date();
    }
    // RFC 9112 §6.3: these never have content; their framing fields are
    // passed as they are (a HEAD answer's length is the GET's).
    let bodiless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut length = None;
    let mut chunked = false;
    for (name, value) in headers {
        if !bodiless {
            if name == header::CONTENT_LENGTH {
                length = crate::fields::plain_digits(value.as_bytes().trim_ascii());
                continue;
            }
            if name == header::TRANSFER_ENCODING {
                chunked = true;
                continue;
            }
        }
        if name == header::DATE {
            date = true;
        } else if name == header::CONNECTION && super::h1::has_close(value.as_bytes()) {
            *keep = false;
        }
        push_line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let framing = if bodiless {
        Framing::None
    } else if chunked {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length.
        Framing::Chunked
    } else if let Some(n) = length.or(exact_len) {
        Framing::Length(n)
    } else {
        Framing::Chunked
    };
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa_u64(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {}
    }
    // RFC 9110 §6.6.1: an origin server with a clock sends Date; hyper
    // adds it too, and clients of either path see the same.
    if !date {
        out.extend_from_slice(b"date: ");
        with_date(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    if !*keep && !headers.contains_key(header::CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// `n` in decimal, in `buf`.
fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The current `Date` value.
pub(crate) fn date_value() -> http::HeaderValue {
    with_date(|d| {
        http::HeaderValue::from_bytes(d)
            .unwrap_or_else(|_| http::HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    })
}

/// Calls `f` with the current `Date` value (IMF-fixdate, RFC 9110 §5.6.7),
/// formatted once a second per thread.
fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec;
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != now {
            let secs = u64::try_from(now).unwrap_or(0);
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            *d = (now, httpdate::fmt_http_date(t));
        }
        f(d.1.as_bytes())
    })
}

/// Appends interim responses to `out`: each a status line and its fields,
/// no content.
pub(super) fn encode_interim(out: &mut Vec<u8>, heads: Vec<(StatusCode, HeaderMap)>) {
    for (status, fields) in heads {
        if !status.is_informational() || status == StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &fields {
            push_line(out, name.as_str().as_bytes(), value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn head(
        status: u16,
        fields: &[(&'static str, &'static str)],
        exact: Option<u64>,
        head_only: bool,
    ) -> (String, Framing, bool) {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(*n, HeaderValue::from_static(v));
        }
        let mut out = Vec::new();
        let mut keep = true;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let f = encode_head(&mut out, status, &h, exact, head_only, &mut keep, None);
        (String::from_utf8_lossy(&out).into_owned(), f, keep)
    }

    #[test]
    fn framing_follows_rfc_9112_section_6() {
        let (text, f, keep) = head(200, &[("content-length", "5")], Some(9), false);
        assert_eq!(f, Framing::Length(5));
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 5\r\n") && text.ends_with("\r\n\r\n"));
        assert!(keep && !text.contains("connection"));
        let (_, f, _) = head(200, &[], Some(9), false);
        assert_eq!(f, Framing::Length(9));
        let (text, f, _) = head(200, &[], None, false);
        assert_eq!(f, Framing::Chunked);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        // Transfer-Encoding wins over Content-Length (§6.3).
        let (text, f, _) = head(
            200,
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
            None,
            false,
        );
        assert_eq!(f, Framing::Chunked);
        assert!(!text.contains("content-length"), "{text}");
        // HEAD, 204 and 304 have no content; their fields pass as they are.
        for (status, head_only) in [(200, true), (204, false), (304, false)] {
            let (text, f, _) = head(status, &[("content-length", "7")], None, head_only);
            assert_eq!(f, Framing::None);
            assert!(text.contains("content-length: 7\r\n"), "{text}");
            assert!(!text.contains("transfer-encoding"), "{text}");
        }
    }

    #[test]
    fn a_close_in_the_response_ends_the_connection_and_dates_are_kept() {
        let (text, _, keep) = head(
            503,
            &[
                ("connection", "close"),
                ("date", "Mon, 23 Nov 2026 10:00:00 GMT"),
            ],
            Some(0),
            false,
        );
        assert!(!keep);
        assert_eq!(text.matches("connection").count(), 1, "{text}");
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert!(
            text.contains("date: Mon, 23 Nov 2026 10:00:00 GMT"),
            "{text}"
        );
    }

    #[test]
    fn a_hit_s_wire_fields_come_first_and_their_date_counts() {
        let mut stored = HeaderMap::new();
        stored.insert(
            header::DATE,
            HeaderValue::from_static("Mon, 23 Nov 2026 10:00:00 GMT"),
        );
        stored.insert(header::ETAG, HeaderValue::from_static("\"e\""));
        let wire = WireHead {
            fields: crate::fields::WireFields::encode(stored.iter()),
            age: HeaderValue::from_static("7"),
            cache_status: HeaderValue::from_static("Outpost; hit"),
            len: 3,
        };
        let mut added = HeaderMap::new();
        added.insert(header::SERVER, HeaderValue::from_static("outpost"));
        let mut out = Vec::new();
        let mut keep = true;
        let f = encode_head(
            &mut out,
            StatusCode::OK,
            &added,
            Some(3),
            false,
            &mut keep,
            Some(&wire),
        );
        assert_eq!(f, Framing::Length(3));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ndate: Mon, 23 Nov 2026 10:00:00 GMT\r\netag: \"e\"\r\n\
             age: 7\r\ncache-status: Outpost; hit\r\nserver: outpost\r\n\
             content-length: 3\r\n\r\n"
        );
    }
}

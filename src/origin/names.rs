//! Field names of origin responses, recognised without
//! `HeaderName::from_bytes`.
//!
//! `from_bytes` lower-cases every name into a scratch buffer and then
//! matches it against all standard names: ~150 instructions per field,
//! ~1,400 per pass-through response from nginx (9 fields; callgrind,
//! benches/load/instructions.sh). Origins send a small set of names, and
//! almost always in their canonical spelling, so those are compared first
//! as bytes, then without regard to case (RFC 9110 §5.1: names are
//! case-insensitive); anything else falls back to `from_bytes`. A known
//! name now costs ~60 instructions (pass-1k: 37,191 → 36,562 per request).

use http::HeaderName;
use http::header::{
    ACCEPT_RANGES, AGE, CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, DATE, ETAG, EXPIRES, LAST_MODIFIED, LOCATION, SERVER, SET_COOKIE,
    TRANSFER_ENCODING, VARY,
};

/// What the head's parse does with a field, known with its name (so that
/// the name is not compared again with each of those it matters for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Kept as it is.
    Plain,
    /// `Content-Length` (RFC 9112 §6.3).
    ContentLength,
    /// `Transfer-Encoding`: read for the framing (RFC 9112 §6.1).
    TransferEncoding,
    /// `Connection`: its options read, the field not forwarded (RFC 9110
    /// §7.6.1).
    Connection,
    /// Any other hop-by-hop field: not forwarded.
    HopByHop,
}

use Role::{Connection as Conn, ContentLength as Len, Plain, TransferEncoding as Te};

/// Canonical spellings of common response fields, by name length.
fn candidates(len: usize) -> &'static [(&'static [u8], HeaderName, Role)] {
    match len {
        3 => &[(b"Age", AGE, Plain)],
        4 => &[
            (b"Date", DATE, Plain),
            (b"ETag", ETAG, Plain),
            (b"Vary", VARY, Plain),
        ],
        6 => &[(b"Server", SERVER, Plain)],
        7 => &[(b"Expires", EXPIRES, Plain)],
        8 => &[(b"Location", LOCATION, Plain)],
        10 => &[
            (b"Connection", CONNECTION, Conn),
            (b"Set-Cookie", SET_COOKIE, Plain),
        ],
        12 => &[(b"Content-Type", CONTENT_TYPE, Plain)],
        13 => &[
            (b"Cache-Control", CACHE_CONTROL, Plain),
            (b"Last-Modified", LAST_MODIFIED, Plain),
            (b"Accept-Ranges", ACCEPT_RANGES, Plain),
            (b"Content-Range", CONTENT_RANGE, Plain),
        ],
        14 => &[(b"Content-Length", CONTENT_LENGTH, Len)],
        16 => &[(b"Content-Encoding", CONTENT_ENCODING, Plain)],
        17 => &[(b"Transfer-Encoding", TRANSFER_ENCODING, Te)],
        _ => &[],
    }
}

/// The role of a name that is not among the candidates.
fn role_of(name: &HeaderName) -> Role {
    if *name == CONTENT_LENGTH {
        Role::ContentLength
    } else if !super::headers::always_hop_by_hop(name) {
        Role::Plain
    } else if *name == CONNECTION {
        Role::Connection
    } else if *name == TRANSFER_ENCODING {
        Role::TransferEncoding
    } else {
        Role::HopByHop
    }
}

/// The field name `raw` as sent by an origin and its role, or `None` when
/// it is not a valid field name.
pub(super) fn field_name(raw: &[u8]) -> Option<(HeaderName, Role)> {
    if let Some((_, name, role)) = crate::fields::find_name(raw, candidates(raw.len()), |c| c.0) {
        return Some((name.clone(), *role));
    }
    let name = HeaderName::from_bytes(raw).ok()?;
    let role = role_of(&name);
    Some((name, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_candidate_is_its_own_canonical_name() {
        for len in 0..32 {
            for (canon, name, role) in candidates(len) {
                assert_eq!(canon.len(), len);
                assert_eq!(*role, role_of(name), "{name}");
                assert_eq!(
                    HeaderName::from_bytes(canon).ok().as_ref(),
                    Some(name),
                    "{}",
                    String::from_utf8_lossy(canon)
                );
            }
        }
    }

    #[test]
    fn names_match_from_bytes_in_any_case() {
        for raw in [
            &b"Content-Length"[..],
            b"content-length",
            b"CONTENT-LENGTH",
            b"eTaG",
            b"X-Custom",
            b"Content-Lengthy",
            b"Age",
            b"ag",
            b"Set-Cookie",
        ] {
            assert_eq!(
                field_name(raw).map(|(n, _)| n),
                HeaderName::from_bytes(raw).ok(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn roles_follow_the_name_in_any_spelling() {
        for (raw, role) in [
            (&b"Content-Length"[..], Role::ContentLength),
            (b"content-LENGTH", Role::ContentLength),
            (b"Connection", Role::Connection),
            (b"CONNECTION", Role::Connection),
            (b"Transfer-Encoding", Role::TransferEncoding),
            (b"transfer-encoding", Role::TransferEncoding),
            (b"TE", Role::HopByHop),
            (b"Trailer", Role::HopByHop),
            (b"Upgrade", Role::HopByHop),
            (b"Keep-Alive", Role::HopByHop),
            (b"Proxy-Authenticate", Role::HopByHop),
            (b"Server", Role::Plain),
            (b"X-Custom", Role::Plain),
            (b"Content-Type", Role::Plain),
        ] {
            assert_eq!(
                field_name(raw).map(|(_, r)| r),
                Some(role),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        for raw in [
            &b""[..],
            b"Bad Name",
            b"Bad:Name",
            b"\xffx",
            b"Content-Lengt\xe9",
        ] {
            assert_eq!(field_name(raw), None, "{raw:?}");
        }
    }
}

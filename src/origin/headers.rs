//! Header rules at the proxy boundary: removing hop-by-hop fields
//! (RFC 9110 §7.6.1) and adding `Via` (§7.6.3), `X-Forwarded-For` and
//! `X-Forwarded-Proto`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Whether a request or response asks for a protocol upgrade
/// (`Connection: upgrade` plus `Upgrade`, RFC 9110 §7.8).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    crate::fields::has(headers, &header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// The tokens of every `Connection` field line, as sent.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether `name` is hop-by-hop whatever `Connection` says: `Connection`,
/// `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` (RFC 9110 §7.6.1), and
/// the obsolete `Keep-Alive` and `Proxy-*` of RFC 7230.
pub(crate) fn always_hop_by_hop(name: &HeaderName) -> bool {
    // Names are lower-case; the first byte rules out most of them (this
    // runs for every field of every request and response).
    let s = name.as_str();
    match s.as_bytes().first() {
        Some(b'c') => s == "connection",
        Some(b't') => s == "te" || s == "trailer" || s == "transfer-encoding",
        Some(b'u') => s == "upgrade",
        Some(b'k') => s == "keep-alive",
        Some(b'p') => s.starts_with("proxy-"),
        _ => false,
    }
}

/// Removes every field named in `names`.
pub fn remove_fields(headers: &mut HeaderMap, names: &[HeaderName]) {
    if headers.is_empty() {
        return;
    }
    for n in names {
        headers.remove(n);
    }
}

/// Removes hop-by-hop fields: `Connection` and every field it names,
/// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`
/// (RFC 9110 §7.6.1). With `keep_upgrade`, `Upgrade` and a bare
/// `Connection: upgrade` survive so a WebSocket handshake can pass.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages have none, or only `Connection` (an origin's
    // `Connection: keep-alive`): one pass over the names, and only fields
    // that are present are removed.
    let (first, more) = {
        let mut hop = headers.keys().filter(|k| always_hop_by_hop(k));
        match hop.next() {
            None => return,
            Some(f) => (f.clone(), hop.next().is_some()),
        }
    };
    for name in connection_named(connection_tokens(headers), keep_upgrade) {
        headers.remove(name);
    }
    let upgrade = keep_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    if more {
        let present: Vec<HeaderName> = headers
            .keys()
            .filter(|k| always_hop_by_hop(k))
            .cloned()
            .collect();
        for k in present {
            headers.remove(k);
        }
    } else {
        headers.remove(first);
    }
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The fields that `Connection` tokens name for removal: not its `close`
/// and `keep-alive` options (nor `upgrade` with `keep_upgrade`), and
/// never `Content-Length` or `Host`, the end-to-end framing we rely on.
pub(crate) fn connection_named<'a>(
    tokens: impl Iterator<Item = &'a str>,
    keep_upgrade: bool,
) -> Vec<HeaderName> {
    let mut named = Vec::new();
    for t in tokens {
        if t.eq_ignore_ascii_case("keep-alive")
            || t.eq_ignore_ascii_case("close")
            || (keep_upgrade && t.eq_ignore_ascii_case("upgrade"))
        {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(t.as_bytes())
            && name != header::CONTENT_LENGTH
            && name != header::HOST
        {
            named.push(name);
        }
    }
    named
}

/// The `Via` value this hop adds, e.g. `1.1 outpost` (RFC 9110 §7.6.3).
pub fn via_value(version: http::Version, pseudonym: &str) -> Option<HeaderValue> {
    let proto = match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    };
    HeaderValue::from_str(&format!("{proto} {pseudonym}")).ok()
}

/// The `Via` values of this hop for each protocol version, built once
/// (formatting one per response showed up in the hit-path profile).
#[derive(Debug, Clone)]
pub struct ViaValues {
    by_version: [Option<HeaderValue>; 5],
}

impl ViaValues {
    /// The values for `pseudonym` (e.g. `outpost`).
    pub fn new(pseudonym: &str) -> Self {
        use http::Version;
        let v = |ver| via_value(ver, pseudonym);
        Self {
            by_version: [
                v(Version::HTTP_09),
                v(Version::HTTP_10),
                v(Version::HTTP_11),
                v(Version::HTTP_2),
                v(Version::HTTP_3),
            ],
        }
    }

    /// The value for a message of `version`.
    pub fn get(&self, version: http::Version) -> Option<&HeaderValue> {
        use http::Version;
        let i = match version {
            Version::HTTP_09 => 0,
            Version::HTTP_10 => 1,
            Version::HTTP_2 => 3,
            Version::HTTP_3 => 4,
            _ => 2,
        };
        self.by_version[i].as_ref()
    }
}

/// Appends `via` as a new `Via` line after any existing ones.
pub fn add_via(headers: &mut HeaderMap, via: Option<&HeaderValue>) {
    if let Some(v) = via {
        headers.append(header::VIA, v.clone());
    }
}

/// Adds the client address to `X-Forwarded-For` (appended to the existing
/// list, combined into one line) and sets `X-Forwarded-Proto`.
pub fn add_forwarded(headers: &mut HeaderMap, client_ip: std::net::IpAddr, proto: &'static str) {
    // One lookup of the (non-standard, so costly to hash) name for both
    // the check and the write.
    match headers.entry(&XFF) {
        http::header::Entry::Vacant(e) => {
            // The common case: format the address on the stack, one copy.
            let mut buf = [0u8; 64];
            if let Some(ip) = format_ip(client_ip, &mut buf)
                && let Ok(v) = HeaderValue::from_bytes(ip)
            {
                e.insert(v);
            }
        }
        http::header::Entry::Occupied(mut e) => {
            let mut list = String::new();
            for v in e.iter() {
                if let Ok(s) = v.to_str() {
                    let s = s.trim();
                    if !s.is_empty() {
                        list.push_str(s);
                        list.push_str(", ");
                    }
                }
            }
            list.push_str(&client_ip.to_string());
            if let Ok(v) = HeaderValue::from_str(&list) {
                // Replaces every earlier line with the combined one.
                e.insert(v);
            }
        }
    }
    headers.insert(&XFP, HeaderValue::from_static(proto));
}

static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What the node adds to every request it sends to an origin: its `Via`
/// line (RFC 9110 §7.6.3) and `X-Forwarded-For` / `X-Forwarded-Proto`.
///
/// These are added on the way out, not to the request as received: a
/// cache hit never needs them (formatting the address and growing the
/// map cost ~1,000 instructions per hit), and Vary matching sees the
/// client's own fields, the same on store and on lookup.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    pub via: Option<&'a HeaderValue>,
    pub client_ip: std::net::IpAddr,
    pub proto: &'static str,
}

impl Forwarding<'_> {
    /// Adds the fields to a header map (requests sent through hyper).
    pub fn add_to(&self, headers: &mut HeaderMap) {
        add_via(headers, self.via);
        add_forwarded(headers, self.client_ip, self.proto);
    }

    /// Whether `name` is one this writes itself in [`Forwarding::write_fields`]
    /// (the request's own lines of it are left out of the head).
    pub fn replaces(name: &HeaderName) -> bool {
        name == XFF || name == XFP
    }

    /// Writes the fields as head lines after `headers`' own (whose
    /// `X-Forwarded-*` lines were left out): the same result as
    /// [`Forwarding::add_to`] without building them in the map.
    pub fn write_fields(&self, headers: &HeaderMap, out: &mut Vec<u8>) {
        if let Some(via) = self.via {
            out.extend_from_slice(b"via: ");
            out.extend_from_slice(via.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        // The earlier hops' list, as add_forwarded combines it.
        for v in crate::fields::all(headers, &XFF) {
            if let Ok(v) = v.to_str() {
                let v = v.trim();
                if !v.is_empty() {
                    out.extend_from_slice(v.as_bytes());
                    out.extend_from_slice(b", ");
                }
            }
        }
        let mut buf = [0u8; 64];
        if let Some(ip) = format_ip(self.client_ip, &mut buf) {
            out.extend_from_slice(ip);
        }
        out.extend_from_slice(b"\r\nx-forwarded-proto: ");
        out.extend_from_slice(self.proto.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Each octet's decimal digits (up to three) and their count.
static OCTETS: [[u8; 4]; 256] = octet_table();

const fn octet_table() -> [[u8; 4]; 256] {
    let mut t = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        let o = i as u8;
        t[i] = if o >= 100 {
            [b'0' + o / 100, b'0' + o / 10 % 10, b'0' + o % 10, 3]
        } else if o >= 10 {
            [b'0' + o / 10, b'0' + o % 10, 0, 2]
        } else {
            [b'0' + o, 0, 0, 1]
        };
        i += 1;
    }
    t
}

/// `ip` in its text form, written to `buf`: IPv4 by hand (the common case,
/// and `core::fmt` showed up in the pass-through profile), IPv6 through
/// `Display`.
fn format_ip(ip: std::net::IpAddr, buf: &mut [u8; 64]) -> Option<&[u8]> {
    match ip {
        std::net::IpAddr::V4(v4) => {
            // At most 15 bytes: four octets of up to three digits, each
            // copied whole from its entry in the table.
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                let [a, b, c, len] = OCTETS[o as usize];
                buf.get_mut(n..n + 3)?.copy_from_slice(&[a, b, c]);
                let len = len as usize;
                // The separator goes right after the digits.
                if i < 3 {
                    *buf.get_mut(n + len)? = b'.';
                    n += 1;
                }
                n += len;
            }
            buf.get(..n)
        }
        std::net::IpAddr::V6(_) => {
            let mut w = std::io::Cursor::new(&mut buf[..]);
            std::io::Write::write_fmt(&mut w, format_args!("{ip}")).ok()?;
            let n = w.position() as usize;
            buf.get(..n)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn via_values_per_version() {
        let v = ViaValues::new("edge-1");
        assert_eq!(v.get(http::Version::HTTP_11).unwrap(), "1.1 edge-1");
        assert_eq!(v.get(http::Version::HTTP_2).unwrap(), "2 edge-1");
        assert_eq!(v.get(http::Version::HTTP_10).unwrap(), "1.0 edge-1");
        assert!(
            ViaValues::new("bad\nname")
                .get(http::Version::HTTP_11)
                .is_none()
        );
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_fixed_and_named_fields() {
        // RFC 9110 §7.6.1
        let mut h = map(&[
            ("connection", "close, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-keep", "a"),
            ("x-keep", "b"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-keep"]);
        let vals: Vec<_> = h.get_all("x-keep").iter().collect();
        assert_eq!(vals, vec!["a", "b"]);
    }

    #[test]
    fn always_hop_by_hop_names() {
        // RFC 9110 §7.6.1, plus the obsolete `Keep-Alive` and
        // `Proxy-Connection` of RFC 7230.
        let fixed = [
            header::CONNECTION,
            header::TE,
            header::TRAILER,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
        ];
        for n in fixed.iter() {
            assert!(always_hop_by_hop(n), "{n}");
        }
        for n in ["keep-alive", "proxy-authorization", "proxy-connection"] {
            assert!(always_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
        for n in [
            "content-type",
            "cache-control",
            "tea",
            "proxy",
            "upgrade-insecure-requests",
            "x-te",
        ] {
            assert!(!always_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
    }

    #[test]
    fn a_lone_connection_field_and_what_it_names_are_removed() {
        let mut h = map(&[("connection", "keep-alive"), ("x-a", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-a"]);
        let mut h = map(&[("x-b", "1"), ("Connection", "close, X-B"), ("x-a", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-a"]);
        let mut h = map(&[("x-a", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn connection_cannot_strip_content_length() {
        let mut h = map(&[("connection", "content-length"), ("content-length", "5")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.get("content-length").unwrap(), "5");
    }

    #[test]
    fn keeps_websocket_upgrade() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("sec-websocket-key").unwrap(), "k");
    }

    #[test]
    fn addresses_are_formatted_as_text() {
        let mut buf = [0u8; 64];
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "127.0.0.1",
            "9.99.100.109",
            "190.200.1.20",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let got = format_ip(ip.parse().unwrap(), &mut buf).unwrap().to_vec();
            assert_eq!(String::from_utf8(got).unwrap(), ip);
        }
        // Every octet value, in every place: as `Display` writes it.
        for o in 0..=255u8 {
            let ip = std::net::Ipv4Addr::new(o, 255 - o, o / 3, o.wrapping_mul(7));
            let got = format_ip(ip.into(), &mut buf).unwrap().to_vec();
            assert_eq!(String::from_utf8(got).unwrap(), ip.to_string());
        }
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "192.168.10.200".parse().unwrap(), "https");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.168.10.200");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarded(&mut h, "10.0.0.1".parse().unwrap(), "http");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.1.1.1, 10.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        // Several lines (and an empty one) become one list.
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", " "),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        add_forwarded(&mut h, "::1".parse().unwrap(), "http");
        let all: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["1.1.1.1, 2.2.2.2, ::1"]);
    }
}

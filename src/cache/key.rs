//! Primary cache keys (RFC 9111 §2: "the request method and target URI").
//!
//! The key is blake3 over a canonical, unambiguous form: a version tag, then
//! length-prefixed fields — site name, scheme (lower-case), authority (host
//! lower-cased, userinfo dropped, default port removed, explicit non-default
//! port kept as a number), and path-and-query exactly as received, byte for
//! byte (an empty one is `/`, RFC 9110 §4.2.3).
//!
//! HTTP/1 origin-form plus `Host` and HTTP/2 `:authority` (or absolute-form)
//! give the same key because the caller extracts (scheme, authority,
//! path-and-query) the same way for both and passes them here; GET and HEAD
//! share the key (the method is not part of it — only GET responses are
//! stored, HEAD is answered from them).
//!
//! The host a request names ([`request_host`]: absolute-form or HTTP/2
//! authority before `Host`) and its normalised form for routing and purge
//! matching ([`normalise_host`]) live here too, so the key, the route and
//! a purge see the same host.

use std::borrow::Cow;

use http::Uri;

/// `s` lower-cased, borrowed when it already is (the common case on the hit path).
fn ascii_lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Default port of a scheme (RFC 9110 §4.2.1, §4.2.2).
pub fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    }
}

/// Normalises an authority for comparison and keys (RFC 9110 §4.2.3,
/// RFC 3986 §6.2.2–§6.2.3): drops userinfo, lower-cases the host, removes
/// an empty or default port, and writes other ports without leading zeros.
pub fn normalise_authority<'a>(scheme: &str, authority: &'a str) -> Cow<'a, str> {
    // A node's requests carry a handful of authorities: the last one whose
    // form is a slice of itself is remembered per thread.
    let https = match scheme {
        "http" => false,
        "https" => true,
        _ => return normalise_authority_scan(scheme, authority),
    };
    let kind = u8::from(https);
    if let Some((a, b)) = memo_get(&AUTHORITY_MEMO, kind, authority)
        && let Some(form) = authority.get(a..b)
    {
        return Cow::Borrowed(form);
    }
    let form = normalise_authority_scan(scheme, authority);
    if let Cow::Borrowed(f) = &form
        && let Some(span) = span_in(authority, f)
    {
        memo_put(&AUTHORITY_MEMO, kind, authority, span);
    }
    form
}

/// The longest authority or host remembered.
const MEMO_LEN: usize = 62;

/// A string last seen by a normaliser, with what it gave: (kind, its
/// length, its bytes, the form's start and end within it).
type Memo = (u8, u8, [u8; MEMO_LEN], u8, u8);

thread_local! {
    static AUTHORITY_MEMO: std::cell::Cell<Memo> =
        const { std::cell::Cell::new((0, 0, [0; MEMO_LEN], 0, 0)) };
    static HOST_MEMO: std::cell::Cell<Memo> =
        const { std::cell::Cell::new((0, 0, [0; MEMO_LEN], 0, 0)) };
}

/// The form `memo` holds for `s` of `kind`: its start and end in `s`.
fn memo_get(
    memo: &'static std::thread::LocalKey<std::cell::Cell<Memo>>,
    kind: u8,
    s: &str,
) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MEMO_LEN {
        return None;
    }
    memo.try_with(|m| {
        let (k, len, bytes, start, end) = m.get();
        (k == kind && usize::from(len) == b.len() && bytes.get(..b.len()) == Some(b))
            .then_some((usize::from(start), usize::from(end)))
    })
    .ok()
    .flatten()
}

/// Remembers that `s` of `kind` gave `s[start..end]`.
fn memo_put(
    memo: &'static std::thread::LocalKey<std::cell::Cell<Memo>>,
    kind: u8,
    s: &str,
    (start, end): (usize, usize),
) {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MEMO_LEN || end > b.len() {
        return;
    }
    let mut bytes = [0; MEMO_LEN];
    bytes[..b.len()].copy_from_slice(b);
    let _ = memo.try_with(|m| m.set((kind, b.len() as u8, bytes, start as u8, end as u8)));
}

/// Where `part`, a slice of `whole`, lies in it.
fn span_in(whole: &str, part: &str) -> Option<(usize, usize)> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start + part.len();
    (end <= whole.len()).then_some((start, end))
}

/// [`normalise_authority`] without the memo.
fn normalise_authority_scan<'a>(scheme: &str, authority: &'a str) -> Cow<'a, str> {
    // One pass over the bytes (this runs twice per request): where the
    // userinfo ends, where the port starts, and whether anything needs
    // lower-casing.
    let b = authority.as_bytes();
    let (mut at, mut colon, mut bracket, mut upper) = (None, None, None, false);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'@' => {
                at = Some(i);
                // Case before the userinfo's end does not matter.
                upper = false;
            }
            b':' => colon = Some(i),
            b']' => bracket = Some(i),
            c if c.is_ascii_uppercase() => upper = true,
            _ => {}
        }
    }
    let start = at.map_or(0, |i| i + 1);
    let hostport = authority.get(start..).unwrap_or(authority);
    // The port follows the last ':' unless it is inside an IPv6 literal.
    let (host, port) = match colon {
        Some(i) if i >= start && bracket.is_none_or(|r| r < i) => (
            authority.get(start..i).unwrap_or(hostport),
            authority.get(i + 1..),
        ),
        _ => (hostport, None),
    };
    let host = if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    match port {
        None | Some("") => host,
        Some(p) => match parse_port(p) {
            Some(n) => {
                let canonical = matches!(host, Cow::Borrowed(_))
                    && start == 0
                    && !(p.len() > 1 && p.starts_with('0'));
                if Some(n) == default_port(scheme) {
                    host
                } else if canonical {
                    // Lower-case host, no userinfo, no leading zeros: as received.
                    Cow::Borrowed(authority)
                } else {
                    Cow::Owned(format!("{host}:{n}"))
                }
            }
            _ => Cow::Owned(format!("{host}:{p}")),
        },
    }
}

/// A port of digits only (leading zeros allowed) that fits in 16 bits.
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 + p.bytes().take_while(|&b| b == b'0').count() {
        return None;
    }
    let mut n: u32 = 0;
    for b in p.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    u16::try_from(n).ok()
}

/// The canonical byte form hashed by [`primary_key`].
pub fn canonical_form(site: &str, scheme: &str, authority: &str, path_and_query: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + site.len() + authority.len() + path_and_query.len());
    canonical_parts(site, scheme, authority, path_and_query, |b| {
        out.extend_from_slice(b)
    });
    out
}

/// Feeds the canonical form to `sink` piece by piece (no buffer to build).
fn canonical_parts(
    site: &str,
    scheme: &str,
    authority: &str,
    path_and_query: &[u8],
    sink: impl FnMut(&[u8]),
) {
    let scheme = ascii_lower(scheme);
    let authority = normalise_authority(&scheme, authority);
    normalised_parts(site, &scheme, &authority, path_and_query, sink);
}

/// [`canonical_parts`] for a lower-case scheme and an authority already
/// normalised for it.
fn normalised_parts(
    site: &str,
    scheme: &str,
    authority: &str,
    path_and_query: &[u8],
    mut sink: impl FnMut(&[u8]),
) {
    let pq: &[u8] = if path_and_query.is_empty() {
        b"/"
    } else {
        path_and_query
    };
    sink(b"outpost-key-v1\0");
    for field in [site.as_bytes(), scheme.as_bytes(), authority.as_bytes(), pq] {
        sink(&(field.len() as u64).to_le_bytes());
        sink(field);
    }
}

/// The primary key of a request target: blake3 of [`canonical_form`],
/// streamed into the hasher.
pub fn primary_key(site: &str, scheme: &str, authority: &str, path_and_query: &[u8]) -> [u8; 32] {
    let scheme = ascii_lower(scheme);
    let authority = normalise_authority(&scheme, authority);
    primary_key_normalised(site, &scheme, &authority, path_and_query)
}

/// [`primary_key`] for a lower-case `scheme` and an `authority` that
/// [`normalise_authority`] already returned for it (the request path
/// normalises once for the key and the ban subject).
pub fn primary_key_normalised(
    site: &str,
    scheme: &str,
    authority: &str,
    path_and_query: &[u8],
) -> [u8; 32] {
    // Typical forms fit on the stack and take one `blake3::hash` (feeding
    // the hasher piece by piece cost more than the hashing), or none when
    // this thread hashed the same form recently (`key_memo`); longer ones
    // are streamed. All give the same key.
    let mut buf = [0u8; 512];
    let mut n = 0;
    let mut fits = true;
    normalised_parts(site, scheme, authority, path_and_query, |b| {
        match buf.get_mut(n..n + b.len()) {
            Some(dst) if fits => {
                dst.copy_from_slice(b);
                n += b.len();
            }
            _ => fits = false,
        }
    });
    if fits {
        let form = buf.get(..n).unwrap_or_default();
        return super::key_memo::key_of(form, |f| *blake3::hash(f).as_bytes());
    }
    let mut h = blake3::Hasher::new();
    normalised_parts(site, scheme, authority, path_and_query, |b| {
        h.update(b);
    });
    *h.finalize().as_bytes()
}

/// The primary key of an absolute URI (for purges and §4.4 invalidation);
/// `None` unless it has a scheme and an authority.
pub fn key_for_uri(site: &str, uri: &Uri) -> Option<[u8; 32]> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(primary_key(site, scheme, authority, pq.as_bytes()))
}

/// The request's host as sent: the absolute-form or HTTP/2 authority wins
/// over `Host` (RFC 9112 §3.2.2, RFC 9113 §8.3.1). `None` when absent or
/// not valid text.
pub fn request_host<B>(req: &http::Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_owned());
    }
    let mut hosts = crate::fields::all(req.headers(), &http::header::HOST);
    let h = hosts.next()?;
    if hosts.next().is_some() {
        // RFC 9112 §3.2: more than one Host is a bad request.
        return None;
    }
    let s = h.to_str().ok()?.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Lower-cases a host and strips the port (`[::1]:80` → `[::1]`).
pub fn normalise_host(host: &str) -> std::borrow::Cow<'_, str> {
    // As `normalise_authority`: the last host whose form is a slice of it
    // is remembered per thread.
    if let Some((a, b)) = memo_get(&HOST_MEMO, 0, host)
        && let Some(form) = host.get(a..b)
    {
        return std::borrow::Cow::Borrowed(form);
    }
    let form = normalise_host_scan(host);
    if let std::borrow::Cow::Borrowed(f) = &form
        && let Some(span) = span_in(host, f)
    {
        memo_put(&HOST_MEMO, 0, host, span);
    }
    form
}

/// [`normalise_host`] without the memo.
fn normalise_host_scan(host: &str) -> std::borrow::Cow<'_, str> {
    // Bytes, not chars (this runs on every request, and char-wise trimming
    // and searching cost ~300 instructions). Every byte looked for is ASCII,
    // which in UTF-8 never occurs inside another character, so each cut is
    // at a character boundary. A host is ASCII; one that is not (never
    // valid) has `str::trim`'s Unicode white space taken off first.
    let host = if host.is_ascii() { host } else { host.trim() };
    // `str::trim`'s White_Space, as it reads ASCII.
    let space = |b: &u8| matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
    let b = host.as_bytes();
    let start = b.iter().position(|c| !space(c)).unwrap_or(b.len());
    let mut end = b.iter().rposition(|c| !space(c)).map_or(start, |i| i + 1);
    let h = b.get(start..end).unwrap_or_default();
    if h.first() == Some(&b'[') {
        if let Some(i) = h.iter().position(|&c| c == b']') {
            end = start + i + 1;
        }
    } else if let Some(i) = h.iter().rposition(|&c| c == b':')
        && h.get(i + 1..)
            .is_some_and(|p| p.iter().all(u8::is_ascii_digit))
    {
        end = start + i;
    }
    while end > start && b.get(end - 1) == Some(&b'.') {
        end -= 1;
    }
    let h = host.get(start..end).unwrap_or_default();
    // Borrowed when already lower-case (no allocation per request).
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(h.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(h)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn host_normalisation() {
        assert_eq!(normalise_host("Example.COM:8080"), "example.com");
        assert_eq!(normalise_host("example.com."), "example.com");
        assert_eq!(normalise_host("[::1]:80"), "[::1]");
        assert_eq!(normalise_host("[::1]"), "[::1]");
        assert_eq!(normalise_host("h"), "h");
        assert_eq!(normalise_host(" \x0bExample.com.:80 "), "example.com");
        assert_eq!(normalise_host("h:"), "h");
        assert_eq!(normalise_host("h:8x"), "h:8x");
        assert_eq!(normalise_host("..."), "");
        assert_eq!(normalise_host("  "), "");
        assert_eq!(normalise_host("[::1"), "[::1");
        assert_eq!(normalise_host("Ex\u{e9}.com:1"), "ex\u{e9}.com");
        assert_eq!(normalise_host("\u{a0}\u{e9}.A.:8\u{3000}"), "\u{e9}.a");
        for (h, want) in [
            ("a.b:1", "a.b"),
            (" A ", "a"),
            ("[::1]:8", "[::1]"),
            (":", ""),
        ] {
            assert_eq!(normalise_host(h), want, "{h:?}");
        }
    }

    #[test]
    fn streamed_key_is_blake3_of_the_canonical_form() {
        // Keys on disk survive restarts: the streamed hash must not drift.
        for (scheme, auth, pq) in [
            ("http", "example.com", "/a?b"),
            ("HTTP", "User@Example.COM:0080", ""),
            ("https", "[::1]:8443", "/x"),
        ] {
            let want = *blake3::hash(&canonical_form("s", scheme, auth, pq.as_bytes())).as_bytes();
            assert_eq!(primary_key("s", scheme, auth, pq.as_bytes()), want);
        }
        assert_eq!(
            primary_key("s", "http", "Example.com:80", b""),
            primary_key("s", "http", "example.com", b"/")
        );
    }

    #[test]
    fn ports_parse_as_16_bit_digits() {
        assert_eq!(parse_port("80"), Some(80));
        assert_eq!(parse_port("00080"), Some(80));
        assert_eq!(parse_port("000000000443"), Some(443));
        assert_eq!(parse_port("65535"), Some(65535));
        for bad in ["", "65536", "99999", "123456", "+80", "8a", " 80"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_pre_normalised_authority_gives_the_same_key() {
        for (scheme, auth) in [
            ("http", "Example.COM:80"),
            ("https", "h:8443"),
            ("http", "u@[::1]:81"),
        ] {
            let norm = normalise_authority(scheme, auth);
            assert_eq!(
                primary_key_normalised("s", scheme, &norm, b"/p"),
                primary_key("s", scheme, auth, b"/p")
            );
        }
    }

    #[test]
    fn long_targets_are_streamed_to_the_same_key() {
        let long = format!("/{}", "x".repeat(2000));
        let want = *blake3::hash(&canonical_form("s", "http", "h", long.as_bytes())).as_bytes();
        assert_eq!(primary_key("s", "http", "h", long.as_bytes()), want);
    }

    #[test]
    fn the_authority_memo_answers_as_the_scan_does() {
        let authorities = [
            "example.com:80",
            "example.com:443",
            "example.com",
            "Example.com:80",
            "example.com:8080",
            "u@example.com:80",
            "[::1]:80",
            "h:0080",
        ];
        for _ in 0..2 {
            for scheme in ["http", "https", "ftp", "HTTP"] {
                for a in authorities {
                    // Asked twice in a row: the second answer is the memo's.
                    for _ in 0..2 {
                        assert_eq!(
                            normalise_authority(scheme, a),
                            normalise_authority_scan(scheme, a),
                            "{scheme} {a}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_host_memo_answers_as_the_scan_does() {
        let hosts = [
            "example.com:80",
            " example.com ",
            "Example.com",
            "example.com.",
            "[::1]:80",
            "h:0080",
            "\u{a0}example.com",
        ];
        for _ in 0..2 {
            for h in hosts {
                for _ in 0..2 {
                    assert_eq!(normalise_host(h), normalise_host_scan(h), "{h:?}");
                }
            }
        }
    }

    #[test]
    fn authority_normalisation() {
        // RFC 9110 §4.2.3; RFC 3986 §6.2.3
        assert_eq!(normalise_authority("http", "Example.COM"), "example.com");
        assert_eq!(normalise_authority("http", "example.com:80"), "example.com");
        assert_eq!(normalise_authority("http", "example.com:"), "example.com");
        assert_eq!(
            normalise_authority("https", "example.com:443"),
            "example.com"
        );
        assert_eq!(
            normalise_authority("https", "example.com:80"),
            "example.com:80"
        );
        assert_eq!(
            normalise_authority("http", "example.com:0080"),
            "example.com"
        );
        assert_eq!(
            normalise_authority("http", "example.com:8080"),
            "example.com:8080"
        );
        assert_eq!(
            normalise_authority("http", "user:pw@Example.com:80"),
            "example.com"
        );
        assert_eq!(normalise_authority("http", "[::1]:80"), "[::1]");
        assert_eq!(normalise_authority("http", "[::1]"), "[::1]");
        assert_eq!(
            normalise_authority("http", "[2001:DB8::1]:8080"),
            "[2001:db8::1]:8080"
        );
        assert_eq!(normalise_authority("http", "h:99999"), "h:99999");
        assert_eq!(normalise_authority("http", "h:+80"), "h:+80");
        assert_eq!(normalise_authority("http", "A:b@h:81"), "h:81");
        assert_eq!(normalise_authority("http", "a@H:81"), "h:81");
        assert_eq!(normalise_authority("http", "u:p@[::1]"), "[::1]");
        assert!(matches!(
            normalise_authority("http", "example.com:8080"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn http1_and_http2_forms_share_a_key() {
        // RFC 9111 §2 / RFC 9110 §4.2.3: same URL, same key.
        let h1 = primary_key("s", "http", "Example.com:80", b"/a?b=1");
        let h2 = key_for_uri("s", &"http://example.com/a?b=1".parse().unwrap()).unwrap();
        assert_eq!(h1, h2);
        assert_eq!(primary_key("s", "HTTP", "example.com", b"/a?b=1"), h1);
        assert_eq!(
            primary_key("s", "http", "example.com", b""),
            primary_key("s", "http", "example.com", b"/")
        );
    }

    #[test]
    fn distinct_inputs_give_distinct_keys() {
        // RFC 9111 §2: path and query are byte-exact.
        let base = primary_key("s", "http", "example.com", b"/a?b=1");
        for k in [
            primary_key("s2", "http", "example.com", b"/a?b=1"),
            primary_key("s", "https", "example.com", b"/a?b=1"),
            primary_key("s", "http", "example.com:8080", b"/a?b=1"),
            primary_key("s", "http", "example.com", b"/A?b=1"),
            primary_key("s", "http", "example.com", b"/a?b=%31"),
            primary_key("s", "http", "example.com", b"/a?b=1&"),
        ] {
            assert_ne!(k, base);
        }
        // Length prefixes make field boundaries unambiguous.
        assert_ne!(
            primary_key("ab", "http", "c", b"/"),
            primary_key("a", "http", "bc", b"/")
        );
    }

    #[test]
    fn relative_uri_has_no_key() {
        assert!(key_for_uri("s", &"/a".parse().unwrap()).is_none());
    }

    #[test]
    fn hostile_inputs() {
        let long = "a".repeat(100_000);
        let _ = primary_key(&long, "x", &long, long.as_bytes());
        let _ = normalise_authority("http", "::::@@@:[]:");
        let _ = normalise_authority("http", "é:80");
        assert_eq!(normalise_authority("http", ""), "");
    }
}

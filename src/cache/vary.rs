//! `Vary` (RFC 9110 §12.5.5) and secondary cache keys (RFC 9111 §4.1).
//!
//! A response with `Vary` is stored under a *variant key*:
//! `blake3(primary key, normalised values of the named request fields)`.
//! Values are normalised only in ways known to preserve their semantics
//! (§4.1): repeated field lines are combined, list members are trimmed of
//! OWS and empty members dropped (RFC 9110 §5.6.1), whitespace around
//! parameter delimiters is removed, and fields defined as case-insensitive
//! (`Accept-Encoding`, `Accept-Language`, `Accept-Charset`) are lower-cased.
//! The weighted lists `Accept-Language` and `Accept-Encoding` are put in one
//! order (by weight, then value: equally weighted members have no order,
//! RFC 9110 §12.4.2) with canonical weights and no repeats.
//! A missing field is distinct from an empty one.

use http::HeaderMap;
use http::header::{
    ACCEPT, ACCEPT_CHARSET, ACCEPT_ENCODING, ACCEPT_LANGUAGE, COOKIE, HeaderName, VARY,
};

use super::syntax::{split_list, trim_ows};

/// A parsed `Vary` field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Vary {
    /// No `Vary` (or only empty members).
    #[default]
    None,
    /// `*` is a member: never matches (RFC 9111 §4.1).
    Any,
    /// The varying field names: lower-case, de-duplicated, sorted.
    Fields(Vec<HeaderName>),
}

impl Vary {
    /// Parses every `Vary` line of a response (combined, case-insensitive).
    /// Members that are not valid field names are ignored: no request can
    /// carry such a field, so it is always "absent" on both sides.
    pub fn from_headers(headers: &HeaderMap) -> Vary {
        let mut names: Vec<HeaderName> = Vec::new();
        for v in headers.get_all(VARY) {
            for m in split_list(v.as_bytes()) {
                if m == b"*" {
                    return Vary::Any;
                }
                if !super::syntax::is_token(m) {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(m)
                    && !names.contains(&n)
                {
                    names.push(n);
                }
            }
        }
        if names.is_empty() {
            return Vary::None;
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Vary::Fields(names)
    }

    /// The varying names (empty for `None`/`Any`).
    pub fn names(&self) -> &[HeaderName] {
        match self {
            Vary::Fields(f) => f,
            _ => &[],
        }
    }
}

fn is_case_insensitive(name: &HeaderName) -> bool {
    name == ACCEPT_ENCODING || name == ACCEPT_LANGUAGE || name == ACCEPT_CHARSET
}

fn is_list(name: &HeaderName) -> bool {
    is_case_insensitive(name) || name == ACCEPT
}

/// Removes OWS around `;` and `=` outside quoted-strings, and collapses
/// other runs of OWS to one SP (all RFC 9110 §5.6.6 parameter syntax).
fn condense(member: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(member.len());
    let mut in_quote = false;
    let mut escaped = false;
    let mut pending_space = false;
    for &b in member {
        if in_quote {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        match b {
            b' ' | b'\t' => pending_space = true,
            // OWS before a delimiter is dropped; OWS after it is dropped
            // when the next byte is pushed.
            b';' | b'=' => {
                pending_space = false;
                out.push(b);
            }
            _ => {
                if pending_space && !matches!(out.last(), Some(b';' | b'=') | None) {
                    out.push(b' ');
                }
                pending_space = false;
                if b == b'"' {
                    in_quote = true;
                }
                out.push(b);
            }
        }
    }
    out
}

/// Members of a weighted list (`Accept-Language`, RFC 9110 §12.5.4;
/// `Accept-Encoding`, §12.5.3; already condensed and lower-cased) in an order
/// that keeps their meaning: by quality, highest first, and by value among
/// equal qualities (the order of equally weighted members means nothing,
/// §12.4.2), the weight written once in a canonical form (`q=1` left out,
/// `q=0.50` as `q=0.5`) and repeats dropped. A member whose weight is not a
/// qvalue is kept as it is, after the others.
fn by_weight(members: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut weighted: Vec<(u16, Vec<u8>)> = Vec::with_capacity(members.len());
    let mut odd: Vec<Vec<u8>> = Vec::new();
    for m in members {
        let (value, q) = match m.iter().position(|&b| b == b';') {
            None => (m.clone(), Some(1000)),
            Some(i) => match m[i + 1..].strip_prefix(b"q=") {
                Some(q) => (m[..i].to_vec(), qvalue(q)),
                None => (m.clone(), None),
            },
        };
        match q {
            Some(q) => weighted.push((q, value)),
            None => odd.push(m),
        }
    }
    weighted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    weighted.dedup();
    let mut out: Vec<Vec<u8>> = weighted
        .into_iter()
        .map(|(q, mut v)| {
            if q < 1000 {
                let frac = format!("{q:03}");
                v.extend_from_slice(b";q=0.");
                v.extend_from_slice(frac.trim_end_matches('0').as_bytes());
                if q == 0 {
                    v.truncate(v.len() - 1);
                }
            }
            v
        })
        .collect();
    out.extend(odd);
    out
}

/// An RFC 9110 §12.4.2 qvalue in thousandths.
fn qvalue(v: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(v).ok()?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let f: u16 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    match int {
        "0" => Some(f),
        "1" if f == 0 => Some(1000),
        _ => None,
    }
}

/// The normalised value of request field `name` for variant keys, or
/// `None` when the field is absent (RFC 9111 §4.1).
pub fn normalised_value(name: &HeaderName, request: &HeaderMap) -> Option<Vec<u8>> {
    let mut lines = request.get_all(name).iter().peekable();
    lines.peek()?;
    let mut out = Vec::new();
    if is_list(name) {
        let lower = is_case_insensitive(name);
        let mut members: Vec<Vec<u8>> = Vec::new();
        for line in lines {
            for m in split_list(line.as_bytes()) {
                let mut c = condense(m);
                if lower {
                    c.make_ascii_lowercase();
                }
                members.push(c);
            }
        }
        if name == ACCEPT_LANGUAGE || name == ACCEPT_ENCODING {
            members = by_weight(members);
        }
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(m);
        }
    } else {
        // Not known to be a list: combine lines (RFC 9110 §5.3; Cookie uses
        // "; ", RFC 9113 §8.2.3) and only trim the ends.
        let sep: &[u8] = if name == COOKIE { b"; " } else { b", " };
        for (i, line) in lines.enumerate() {
            if i > 0 {
                out.extend_from_slice(sep);
            }
            out.extend_from_slice(trim_ows(line.as_bytes()));
        }
    }
    Some(out)
}

/// The secondary key of a request for a stored response that varies on
/// `names` (RFC 9111 §4.1): blake3 over the primary key and the
/// length-prefixed, name-sorted (name, presence, normalised value) tuples.
pub fn variant_key(primary: &[u8; 32], names: &[HeaderName], request: &HeaderMap) -> [u8; 32] {
    let mut sorted: Vec<&HeaderName> = names.iter().collect();
    sorted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    sorted.dedup();
    let mut h = blake3::Hasher::new();
    h.update(b"outpost-variant-v1\0");
    h.update(primary);
    h.update(&(sorted.len() as u64).to_le_bytes());
    for name in sorted {
        let n = name.as_str().as_bytes();
        h.update(&(n.len() as u64).to_le_bytes());
        h.update(n);
        match normalised_value(name, request) {
            None => {
                h.update(&[0]);
            }
            Some(v) => {
                h.update(&[1]);
                h.update(&(v.len() as u64).to_le_bytes());
                h.update(&v);
            }
        }
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn hm(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }
    const P: [u8; 32] = [7; 32];

    #[test]
    fn parse_vary_lines_case_and_dups() {
        // RFC 9110 §12.5.5: a list of case-insensitive field names.
        let v = Vary::from_headers(&hm(&[
            ("vary", b"Accept-Encoding, accept-language"),
            ("vary", b"ACCEPT-ENCODING,, Origin"),
        ]));
        assert_eq!(
            v.names().iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            ["accept-encoding", "accept-language", "origin"]
        );
        assert_eq!(
            Vary::from_headers(&hm(&[("vary", b"accept, *")])),
            Vary::Any
        );
        assert_eq!(Vary::from_headers(&hm(&[("vary", b"")])), Vary::None);
        assert_eq!(Vary::from_headers(&HeaderMap::new()), Vary::None);
        assert_eq!(
            Vary::from_headers(&hm(&[("vary", b"bad name, \xff")])),
            Vary::None
        );
    }

    #[test]
    fn accept_encoding_normalisation() {
        // RFC 9111 §4.1: case-normalisation and whitespace where semantics allow.
        let n = ACCEPT_ENCODING;
        let a = normalised_value(&n, &hm(&[("accept-encoding", b"GZIP ;q=0.5 ,br")])).unwrap();
        let b = normalised_value(
            &n,
            &hm(&[
                ("accept-encoding", b"gzip; q=0.5"),
                ("accept-encoding", b"br"),
            ]),
        )
        .unwrap();
        assert_eq!(a, b"br, gzip;q=0.5");
        assert_eq!(a, b);
    }

    #[test]
    fn weighted_lists_mean_the_same_in_any_order() {
        // RFC 9110 §12.4.2, §12.5.4: equal weights in any order, weights in any
        // spelling, repeats.
        let al =
            |v: &[u8]| normalised_value(&ACCEPT_LANGUAGE, &hm(&[("accept-language", v)])).unwrap();
        let want: &[u8] = b"en-us, fr, de;q=0.5, *;q=0.05";
        for v in [
            &b"en-US, fr, de;q=0.5, *;q=0.05"[..],
            b"fr,en-us ,DE;Q=0.50,*;q=0.050",
            b"*;q=0.05, de;q=0.5, fr;q=1.0, en-US;q=1",
            b"fr, en-us, fr, de;q=0.500, *;q=0.05",
        ] {
            assert_eq!(al(v), want, "{}", String::from_utf8_lossy(v));
        }
        // Different weights are different preferences.
        assert_ne!(al(b"en, fr;q=0.5"), al(b"fr, en;q=0.5"));
        assert_eq!(al(b"en;q=0, fr"), b"fr, en;q=0");
        // Not a qvalue: kept, after the others.
        assert_eq!(al(b"en;q=2, fr"), b"fr, en;q=2");
        // Accept keeps its order (specificity, not position, ranks it, but its
        // parameters are not all weights): whitespace only.
        let a = normalised_value(&ACCEPT, &hm(&[("accept", b"text/html , */*;q=0.8")])).unwrap();
        assert_eq!(a, b"text/html, */*;q=0.8");
    }

    #[test]
    fn missing_differs_from_empty() {
        // RFC 9111 §4.1: absent and empty are different selecting values.
        let names = [ACCEPT_ENCODING];
        let absent = variant_key(&P, &names, &HeaderMap::new());
        let empty = variant_key(&P, &names, &hm(&[("accept-encoding", b"")]));
        assert_ne!(absent, empty);
        assert_eq!(
            normalised_value(&ACCEPT_ENCODING, &hm(&[("accept-encoding", b" ")])).unwrap(),
            b""
        );
    }

    #[test]
    fn variant_key_is_order_independent_and_sensitive_to_values() {
        // RFC 9111 §4.1
        let req = hm(&[("accept-encoding", b"gzip"), ("accept-language", b"en")]);
        let k1 = variant_key(&P, &[ACCEPT_ENCODING, ACCEPT_LANGUAGE], &req);
        let k2 = variant_key(
            &P,
            &[ACCEPT_LANGUAGE, ACCEPT_ENCODING, ACCEPT_ENCODING],
            &req,
        );
        assert_eq!(k1, k2);
        let req2 = hm(&[("accept-encoding", b"br"), ("accept-language", b"en")]);
        assert_ne!(
            k1,
            variant_key(&P, &[ACCEPT_ENCODING, ACCEPT_LANGUAGE], &req2)
        );
        assert_ne!(
            k1,
            variant_key(&[8; 32], &[ACCEPT_ENCODING, ACCEPT_LANGUAGE], &req)
        );
        // Case of case-sensitive fields matters.
        let o = HeaderName::from_static("x-thing");
        assert_ne!(
            variant_key(&P, std::slice::from_ref(&o), &hm(&[("x-thing", b"A")])),
            variant_key(&P, &[o], &hm(&[("x-thing", b"a")]))
        );
    }

    #[test]
    fn quoted_strings_are_preserved() {
        // Whitespace inside quoted-strings is significant (RFC 9110 §5.6.4).
        let v =
            normalised_value(&ACCEPT, &hm(&[("accept", b"text/html; x=\"a  b\"  ; q=1")])).unwrap();
        assert_eq!(v, b"text/html;x=\"a  b\";q=1");
    }

    #[test]
    fn cookie_lines_combine_with_semicolon() {
        // RFC 9113 §8.2.3: split Cookie lines rejoin with "; ".
        let a = normalised_value(&COOKIE, &hm(&[("cookie", b"a=1"), ("cookie", b"b=2")])).unwrap();
        assert_eq!(a, b"a=1; b=2");
        let b = normalised_value(&COOKIE, &hm(&[("cookie", b" a=1; b=2 ")])).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn hostile_values() {
        let big = vec![b','; 100_000];
        let _ = normalised_value(&ACCEPT_ENCODING, &hm(&[("accept-encoding", &big)]));
        let v = normalised_value(
            &ACCEPT_LANGUAGE,
            &hm(&[("accept-language", b"\xc3\xa9N, \"un")]),
        )
        .unwrap();
        // ASCII lower-cased only; equal weights sorted.
        assert_eq!(v, b"\"un, \xc3\xa9n");
    }
}

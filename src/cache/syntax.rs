//! Low-level field-value syntax shared by the cache modules (RFC 9110 §5.5,
//! §5.6): tokens, comma-separated lists that respect quoted strings,
//! quoted-string unescaping, delta-seconds and HTTP-dates.
//!
//! Everything here works on raw bytes and never panics: field values may be
//! non-UTF-8 (obs-text) or hostile.

use std::time::SystemTime;

use http::HeaderMap;
use http::header::HeaderName;

/// The value delta-seconds overflow clamps to (RFC 9111 §1.2.2).
pub const DELTA_SECONDS_MAX: u32 = 1 << 31;

/// `tchar` (RFC 9110 §5.6.2).
pub const fn is_tchar(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
    ) || b.is_ascii_alphanumeric()
}

/// A non-empty run of `tchar` (RFC 9110 §5.6.2).
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// OWS (RFC 9110 §5.6.3).
pub fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Strips leading and trailing OWS.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ows(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ows(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Splits a list-based field value on commas that are not inside a
/// quoted-string, trims OWS and drops empty elements (RFC 9110 §5.6.1:
/// recipients ignore empty list elements). An unterminated quoted-string
/// runs to the end of the value.
pub fn split_list(value: &[u8]) -> ListItems<'_> {
    ListItems { rest: Some(value) }
}

/// The elements of a list-based field value (see [`split_list`]), found
/// lazily: no allocation.
#[derive(Debug, Clone)]
pub struct ListItems<'a> {
    /// What is left to split; `None` once the last element was taken.
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for ListItems<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let value = self.rest?;
            let mut in_quote = false;
            let mut escaped = false;
            let mut end = None;
            for (i, &b) in value.iter().enumerate() {
                if in_quote {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_quote = false;
                    }
                } else if b == b'"' {
                    in_quote = true;
                } else if b == b',' {
                    end = Some(i);
                    break;
                }
            }
            let item = match end {
                Some(i) => {
                    self.rest = value.get(i + 1..);
                    value.get(..i).unwrap_or_default()
                }
                None => {
                    self.rest = None;
                    value
                }
            };
            let t = trim_ows(item);
            if !t.is_empty() {
                return Some(t);
            }
        }
    }
}

/// The elements of every field line named `name`, as one list (RFC 9110
/// §5.3: multiple field lines of a list-based field combine in order).
pub fn list_elements<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Vec<&'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| split_list(v.as_bytes()))
        .collect()
}

/// Unescapes a complete quoted-string (`"..."`, RFC 9110 §5.6.4). Returns
/// `None` when `s` is not exactly one well-formed quoted-string.
pub fn unquote(s: &[u8]) -> Option<Vec<u8>> {
    let inner = s.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.iter();
    while let Some(&b) = it.next() {
        match b {
            b'\\' => out.push(*it.next()?),
            b'"' => return None,
            _ => out.push(b),
        }
    }
    Some(out)
}

/// Parses delta-seconds (RFC 9111 §1.2.2): `1*DIGIT`. Values that overflow
/// clamp to 2^31 as the RFC requires; anything else is `None`.
pub fn parse_delta_seconds(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in s {
        v = v * 10 + u64::from(d - b'0');
        if v >= u64::from(DELTA_SECONDS_MAX) {
            return Some(DELTA_SECONDS_MAX); // RFC 9111 §1.2.2
        }
    }
    u32::try_from(v).ok()
}

/// Parses a decimal integer with saturation at `u64::MAX` (no sign).
pub fn parse_u64_saturating(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in s {
        v = v.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    Some(v)
}

/// Parses an HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, the obsolete RFC 850
/// and ANSI C `asctime` formats, with day and month names in any case
/// (recipients are to be lenient there).
pub fn parse_http_date(s: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(trim_ows(s)).ok()?;
    if let Ok(t) = httpdate::parse_http_date(s) {
        return Some(t);
    }
    // Names in their canonical case (`sun` → `Sun`, `gmt` → `GMT`).
    let mut fixed = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.eq_ignore_ascii_case("gmt") {
            out.push_str("GMT");
        } else {
            let mut cs = word.chars();
            if let Some(c) = cs.next() {
                out.push(c.to_ascii_uppercase());
                out.extend(cs.map(|c| c.to_ascii_lowercase()));
            }
        }
        word.clear();
    };
    for c in s.chars() {
        if c.is_ascii_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut fixed);
            fixed.push(c);
        }
    }
    flush(&mut word, &mut fixed);
    httpdate::parse_http_date(&fixed).ok()
}

#[cfg(test)]
mod date_tests {
    use super::parse_http_date;

    #[test]
    fn all_three_formats_in_any_case() {
        let want = parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(want.is_some());
        for s in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUNDAY, 06-NOV-94 08:49:37 GMT",
            "sun nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse_http_date(s.as_bytes()), want, "{s}");
        }
        for bad in ["0", "yesterday", "Sun, 32 Nov 1994 08:49:37 GMT", ""] {
            assert_eq!(parse_http_date(bad.as_bytes()), None, "{bad}");
        }
    }
}

/// The single HTTP-date value of a singleton date field, or `None` if the
/// field is absent, repeated with differing values, or invalid.
pub fn header_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.any(|v| v != first) {
        return None;
    }
    parse_http_date(first.as_bytes())
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds from `earlier` to `later`, 0 when `later` is not after it.
pub fn secs_between(earlier: SystemTime, later: SystemTime) -> u64 {
    later
        .duration_since(earlier)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn list_split_respects_quotes_and_drops_empty() {
        // RFC 9110 §5.6.1: empty elements are ignored; commas in quoted-strings do not split.
        let v: Vec<_> = split_list(b" a , ,b=\"x, y\",, c ").collect();
        assert_eq!(v, vec![&b"a"[..], &b"b=\"x, y\""[..], &b"c"[..]]);
        assert_eq!(split_list(b"").count(), 0);
        assert_eq!(split_list(b" , ,").count(), 0);
        assert_eq!(split_list(b",a,").collect::<Vec<_>>(), vec![&b"a"[..]]);
        // Unterminated quote runs to the end.
        assert_eq!(
            split_list(b"a=\"x,y").collect::<Vec<_>>(),
            vec![&b"a=\"x,y"[..]]
        );
        // Escaped quote inside a quoted-string.
        assert_eq!(
            split_list(br#"a="x\",y",b"#).collect::<Vec<_>>(),
            vec![&br#"a="x\",y""#[..], &b"b"[..]]
        );
    }

    #[test]
    fn unquote_handles_escapes_and_rejects_garbage() {
        // RFC 9110 §5.6.4
        assert_eq!(unquote(br#""a\"b""#).unwrap(), b"a\"b");
        assert_eq!(unquote(b"\"\"").unwrap(), b"");
        assert!(unquote(b"\"abc").is_none());
        assert!(unquote(b"abc").is_none());
        assert!(unquote(b"\"a\"b\"").is_none());
        assert!(unquote(b"\"a\\\"").is_none());
        assert!(unquote(b"\"").is_none());
    }

    #[test]
    fn delta_seconds_clamps_to_2_pow_31() {
        // RFC 9111 §1.2.2
        assert_eq!(parse_delta_seconds(b"0"), Some(0));
        assert_eq!(parse_delta_seconds(b"2147483647"), Some(2_147_483_647));
        assert_eq!(parse_delta_seconds(b"2147483648"), Some(DELTA_SECONDS_MAX));
        assert_eq!(
            parse_delta_seconds(b"99999999999999999999999999999999"),
            Some(DELTA_SECONDS_MAX)
        );
        assert_eq!(parse_delta_seconds(b""), None);
        assert_eq!(parse_delta_seconds(b"-1"), None);
        assert_eq!(parse_delta_seconds(b"1.5"), None);
        assert_eq!(parse_delta_seconds(b" 1"), None);
        assert_eq!(parse_delta_seconds("１".as_bytes()), None);
    }

    #[test]
    fn u64_saturates() {
        assert_eq!(
            parse_u64_saturating(b"18446744073709551616"),
            Some(u64::MAX)
        );
        assert_eq!(parse_u64_saturating(b"12"), Some(12));
        assert_eq!(parse_u64_saturating(b"1a"), None);
    }

    #[test]
    fn http_date_formats_and_repeats() {
        // RFC 9110 §5.6.7: IMF-fixdate, rfc850 and asctime are all accepted.
        let a = parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(a));
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(a));
        assert_eq!(parse_http_date(b"0"), None);
        assert_eq!(parse_http_date(b"\xff\xfe"), None);
        let mut h = HeaderMap::new();
        h.append("date", "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
        assert_eq!(header_date(&h, &http::header::DATE), Some(a));
        h.append("date", "Mon, 07 Nov 1994 08:49:37 GMT".parse().unwrap());
        assert_eq!(header_date(&h, &http::header::DATE), None);
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"max-age"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a\"b"));
        assert!(!is_token("é".as_bytes()));
    }
}

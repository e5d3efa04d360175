//! Parsing the RFC 9211 `Cache-Status` response header and classifying a warm
//! request's outcome from it.
//!
//! The header is a Structured Fields list (RFC 8941): members separated by
//! commas, each an item (a token or an sf-string naming the cache) followed by
//! `;key` or `;key=value` parameters, values being tokens, integers or
//! sf-strings in double quotes with `\"` and `\\` escapes. Several header
//! fields concatenate into one list. We take the first member whose name is
//! the node's cache name (`Outpost` by default, compared case-insensitively).
//!
//! The parser is lenient: it never fails, it skips what it cannot read, so a
//! slightly odd header still classifies.

/// The header's name.
pub const HEADER: &str = "cache-status";

/// One `Cache-Status` member, reduced to the parameters `outpostctl` uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// The cache's name (the member's item).
    pub name: String,
    /// `hit`: served from cache without going forward.
    pub hit: bool,
    /// `fwd=REASON`: the request went forward (to the origin).
    pub fwd: Option<String>,
    /// `fwd-status=N`: the status the origin answered.
    pub fwd_status: Option<u16>,
    /// `stored`: the forwarded response was stored.
    pub stored: bool,
    /// `collapsed`: the request was collapsed into another one.
    pub collapsed: bool,
    /// `ttl=N`: remaining freshness in seconds (may be negative).
    pub ttl: Option<i64>,
}

/// What a warm request did to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `hit`: the object was already cached.
    AlreadyCached,
    /// `fwd=…; stored`: fetched from the origin and stored now.
    NewlyStored,
    /// `fwd=…` without `stored` (or no `hit`/`fwd` at all): not cacheable.
    NotCacheable,
}

impl CacheStatus {
    /// Classifies this member: `hit` wins, then `fwd` + `stored`, else not
    /// cacheable.
    pub fn outcome(&self) -> Outcome {
        if self.hit {
            Outcome::AlreadyCached
        } else if self.fwd.is_some() && self.stored {
            Outcome::NewlyStored
        } else {
            Outcome::NotCacheable
        }
    }
}

/// Finds the first member named `cache_name` (case-insensitive) among all the
/// given `Cache-Status` field values, in order.
pub fn find<'a, I>(values: I, cache_name: &str) -> Option<CacheStatus>
where
    I: IntoIterator<Item = &'a str>,
{
    values
        .into_iter()
        .flat_map(split_top_level(b','))
        .filter_map(parse_member)
        .find(|m| m.name.eq_ignore_ascii_case(cache_name))
}

/// Splits `s` on `sep` outside double-quoted strings (honouring `\` escapes).
fn split_top_level(sep: u8) -> impl Fn(&str) -> Vec<&str> {
    move |s: &str| {
        let bytes = s.as_bytes();
        let mut parts = Vec::new();
        let mut start = 0;
        let mut in_quotes = false;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_quotes => i += 1,
                b'"' => in_quotes = !in_quotes,
                b if b == sep && !in_quotes => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        parts.push(&s[start..]);
        parts
    }
}

/// Decodes a bare item: an sf-string (quotes removed, escapes resolved) or
/// anything else trimmed as is.
fn bare_item(raw: &str) -> String {
    let raw = raw.trim();
    match raw.strip_prefix('"') {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => break,
                    c => out.push(c),
                }
            }
            out
        }
        None => raw.to_string(),
    }
}

fn parse_member(member: &str) -> Option<CacheStatus> {
    let mut parts = split_top_level(b';')(member).into_iter();
    let name = bare_item(parts.next()?);
    if name.is_empty() {
        return None;
    }
    let mut status = CacheStatus {
        name,
        ..CacheStatus::default()
    };
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(bare_item(v))),
            None => (param.trim(), None),
        };
        // A boolean parameter is true when bare or `=?1`.
        let truthy = value.as_deref().is_none_or(|v| v == "?1");
        match key.to_ascii_lowercase().as_str() {
            "hit" => status.hit = truthy,
            "stored" => status.stored = truthy,
            "collapsed" => status.collapsed = truthy,
            "fwd" => status.fwd = value.filter(|v| !v.is_empty()),
            "fwd-status" => status.fwd_status = value.and_then(|v| v.parse().ok()),
            "ttl" => status.ttl = value.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    Some(status)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn one(v: &str) -> Option<CacheStatus> {
        find([v], "Outpost")
    }

    #[test]
    fn hit_with_ttl() {
        let s = one("Outpost; hit; ttl=120").unwrap();
        assert!(s.hit);
        assert_eq!(s.ttl, Some(120));
        assert_eq!(s.outcome(), Outcome::AlreadyCached);
    }

    #[test]
    fn miss_stored() {
        let s = one("Outpost; fwd=uri-miss; fwd-status=200; stored; ttl=300").unwrap();
        assert_eq!(s.fwd.as_deref(), Some("uri-miss"));
        assert_eq!(s.fwd_status, Some(200));
        assert!(s.stored);
        assert_eq!(s.outcome(), Outcome::NewlyStored);
    }

    #[test]
    fn miss_not_stored_and_bypass() {
        let s = one("Outpost; fwd=uri-miss; fwd-status=200").unwrap();
        assert_eq!(s.outcome(), Outcome::NotCacheable);
        let s = one("Outpost; fwd=bypass; fwd-status=200").unwrap();
        assert_eq!(s.outcome(), Outcome::NotCacheable);
    }

    #[test]
    fn revalidated_stale_counts_as_stored() {
        let s = one("Outpost; fwd=stale; fwd-status=304; stored").unwrap();
        assert_eq!(s.fwd_status, Some(304));
        assert_eq!(s.outcome(), Outcome::NewlyStored);
    }

    #[test]
    fn collapsed_hit() {
        let s = one("Outpost; hit; collapsed").unwrap();
        assert!(s.collapsed);
        assert_eq!(s.outcome(), Outcome::AlreadyCached);
    }

    #[test]
    fn first_outpost_member_among_several_and_across_fields() {
        let s = find(
            [
                "OriginCache; hit",
                "\"Some, CDN\"; fwd=miss, Outpost; fwd=uri-miss; stored, Outpost; hit",
            ],
            "Outpost",
        )
        .unwrap();
        assert_eq!(s.outcome(), Outcome::NewlyStored);
        assert!(find(["OriginCache; hit"], "Outpost").is_none());
    }

    #[test]
    fn quoted_names_values_and_case() {
        let s = find(
            [r#""outpost"; fwd="uri-miss"; detail="a;b,c\"d"; stored=?1"#],
            "Outpost",
        )
        .unwrap();
        assert_eq!(s.fwd.as_deref(), Some("uri-miss"));
        assert!(s.stored);
        let s = one("Outpost; fwd=uri-miss; stored=?0").unwrap();
        assert!(!s.stored);
        assert_eq!(s.outcome(), Outcome::NotCacheable);
    }

    #[test]
    fn custom_cache_name_and_garbage() {
        let s = find(["edge-7; hit"], "edge-7").unwrap();
        assert!(s.hit);
        assert!(one("").is_none());
        assert!(one(";;;, ,").is_none());
        let s = one("Outpost; ttl=abc; fwd-status=xyz").unwrap();
        assert_eq!((s.ttl, s.fwd_status), (None, None));
        assert_eq!(s.outcome(), Outcome::NotCacheable);
    }
}

//! Storing and updating header fields: §3.1 exclusions, §3.2 updates, the
//! §4.3.4 choice of stored response a 304 refreshes, and §4.3.5 HEAD
//! freshening (RFC 9111).

use http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderName, LAST_MODIFIED, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue};

use super::conditional::EntityTag;
use super::syntax::{header_date, list_elements, parse_u64_saturating, trim_ows};

/// A stored header list: order and repeated fields preserved.
pub type HeaderList = Vec<(HeaderName, HeaderValue)>;

/// Fields a cache does not store (RFC 9111 §3.1): `Connection`, the
/// fields it names, `Proxy-Connection`, `Keep-Alive`, `TE`,
/// `Transfer-Encoding`, `Upgrade` (RFC 9110 §7.6.1), and `Trailer`.
pub fn excluded_from_storage(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out = vec![
        CONNECTION,
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("keep-alive"),
        TE,
        TRANSFER_ENCODING,
        UPGRADE,
        TRAILER,
    ];
    for m in list_elements(headers, &CONNECTION) {
        if let Ok(n) = HeaderName::from_bytes(m)
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// The header list to store for a response, without `strip` fields
/// (e.g. [`super::freshness::Storable::strip_fields`]).
pub fn stored_header_list(headers: &HeaderMap, strip: &[HeaderName]) -> HeaderList {
    headers
        .iter()
        .filter(|(n, _)| !strip.contains(n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// Rebuilds a `HeaderMap` from a stored list (repeats kept).
pub fn to_header_map(list: &[(HeaderName, HeaderValue)]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(list.len());
    for (n, v) in list {
        h.append(n.clone(), v.clone());
    }
    h
}

/// Updates stored header fields from a newer response's (RFC 9111 §3.2):
/// each field in `new` replaces every stored instance of that field (in the
/// position of the first one; new fields are appended), except
/// `Content-Length`, `Content-Range` (processed by the recipient), the
/// §3.1 exclusions of `new`, and the caller's `protect` list (fields the
/// stored content depends on, e.g. `Content-Encoding` when the cache stored
/// an encoding it produced itself, or qualified private/no-cache fields).
pub fn update_headers(
    stored: &[(HeaderName, HeaderValue)],
    new: &HeaderMap,
    protect: &[HeaderName],
) -> HeaderList {
    let mut skip = excluded_from_storage(new);
    skip.push(CONTENT_LENGTH);
    skip.push(CONTENT_RANGE);
    skip.extend_from_slice(protect);
    let replaced = |n: &HeaderName| new.contains_key(n) && !skip.contains(n);
    let mut out: HeaderList = Vec::with_capacity(stored.len() + new.len());
    let mut done: Vec<&HeaderName> = Vec::new();
    for (n, v) in stored {
        if replaced(n) {
            if !done.contains(&n) {
                done.push(n);
                out.extend(new.get_all(n).iter().map(|nv| (n.clone(), nv.clone())));
            }
        } else {
            out.push((n.clone(), v.clone()));
        }
    }
    for n in new.keys() {
        if replaced(n) && !done.contains(&n) {
            out.extend(new.get_all(n).iter().map(|nv| (n.clone(), nv.clone())));
        }
    }
    out
}

/// Whether a 304 response may update the stored response (RFC 9111
/// §4.3.4, for a single candidate):
/// - a strong ETag in the 304 must strongly match the stored ETag;
/// - else a weak ETag must weakly match, or a Last-Modified must equal the
///   stored one;
/// - else (no validator) the stored response must lack validators too —
///   or, a judgement call, `cache_generated` is true: the conditional
///   request was built by this cache from this stored response's own
///   validators (§4.3.1), so the 304 can only refer to it.
pub fn select_for_update(
    stored: &HeaderMap,
    not_modified: &HeaderMap,
    cache_generated: bool,
) -> bool {
    let new_etag = EntityTag::from_headers(not_modified);
    let old_etag = EntityTag::from_headers(stored);
    if let Some(t) = new_etag.as_ref().filter(|t| !t.weak) {
        return old_etag.is_some_and(|o| o.strong_eq(t));
    }
    let new_lm = header_date(not_modified, &LAST_MODIFIED);
    if new_etag.is_some() || new_lm.is_some() {
        let etag_ok = new_etag
            .as_ref()
            .is_some_and(|t| old_etag.as_ref().is_some_and(|o| o.weak_eq(t)));
        let lm_ok = new_lm.is_some_and(|lm| header_date(stored, &LAST_MODIFIED) == Some(lm));
        return etag_ok || lm_ok;
    }
    let stored_has_validator = stored.contains_key(ETAG) || stored.contains_key(LAST_MODIFIED);
    !stored_has_validator || cache_generated
}

/// What a 200 response to a HEAD request means for a stored GET response
/// (RFC 9111 §4.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadOutcome {
    /// Validators (and Content-Length) agree: update the stored headers
    /// with [`update_headers`].
    Update,
    /// They differ: the stored response is to be considered stale.
    Stale,
}

/// Compares a HEAD 200 response with a stored GET response (§4.3.5): every
/// validator the HEAD response carries (ETag, Last-Modified) must match the
/// stored one, and its Content-Length, if any, must equal `stored_len`
/// (the stored body length; `None` = unknown, which cannot match).
pub fn head_outcome(stored: &HeaderMap, head: &HeaderMap, stored_len: Option<u64>) -> HeadOutcome {
    if head.contains_key(ETAG) {
        let same = match (
            EntityTag::from_headers(head),
            EntityTag::from_headers(stored),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if !same {
            return HeadOutcome::Stale;
        }
    }
    if head.contains_key(LAST_MODIFIED) {
        let a = header_date(head, &LAST_MODIFIED);
        if a.is_none() || a != header_date(stored, &LAST_MODIFIED) {
            return HeadOutcome::Stale;
        }
    }
    if let Some(cl) = head.get(CONTENT_LENGTH) {
        let head_len = parse_u64_saturating(trim_ows(cl.as_bytes()));
        if head_len.is_none() || head_len != stored_len {
            return HeadOutcome::Stale;
        }
    }
    HeadOutcome::Update
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }
    fn list(pairs: &[(&str, &str)]) -> HeaderList {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }
    fn render(l: &HeaderList) -> Vec<String> {
        l.iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn excluded_fields_include_connection_listed() {
        // RFC 9111 §3.1
        let h = hm(&[
            ("connection", "close, X-Hop"),
            ("x-hop", "1"),
            ("keep-alive", "5"),
        ]);
        let ex = excluded_from_storage(&h);
        assert!(ex.contains(&HeaderName::from_static("x-hop")));
        assert!(ex.contains(&TRANSFER_ENCODING));
        let stored = stored_header_list(&h, &ex);
        assert!(stored.is_empty(), "{:?}", render(&stored));
    }

    #[test]
    fn update_replaces_all_instances_in_place() {
        // RFC 9111 §3.2, §4.3.4
        let stored = list(&[
            ("date", "old"),
            ("x-a", "1"),
            ("cache-control", "max-age=1"),
            ("x-a", "2"),
            ("content-length", "10"),
            ("content-type", "text/plain"),
        ]);
        let new = hm(&[
            ("x-a", "3"),
            ("date", "new"),
            ("content-length", "0"),
            ("etag", "\"e\""),
            ("connection", "x-b"),
            ("x-b", "hop"),
            ("content-type", "text/html"),
        ]);
        let out = update_headers(&stored, &new, &[]);
        assert_eq!(
            render(&out),
            [
                "date: new",
                "x-a: 3",
                "cache-control: max-age=1",
                "content-length: 10",
                "content-type: text/html",
                "etag: \"e\"",
            ]
        );
        // Protected fields keep their stored value.
        let out = update_headers(&stored, &new, &[http::header::CONTENT_TYPE]);
        assert!(render(&out).contains(&"content-type: text/plain".to_string()));
    }

    #[test]
    fn repeated_new_fields_are_all_kept() {
        // RFC 9111 §3.2: "add each header field" — every line of a repeated field.
        let out = update_headers(
            &list(&[("link", "a")]),
            &hm(&[("link", "b"), ("link", "c")]),
            &[],
        );
        assert_eq!(render(&out), ["link: b", "link: c"]);
    }

    #[test]
    fn select_304_strong_validator() {
        // RFC 9111 §4.3.4 first bullet.
        let stored = hm(&[("etag", "\"v1\"")]);
        assert!(select_for_update(
            &stored,
            &hm(&[("etag", "\"v1\"")]),
            false
        ));
        assert!(!select_for_update(
            &stored,
            &hm(&[("etag", "\"v2\"")]),
            true
        ));
        assert!(!select_for_update(
            &hm(&[("etag", "W/\"v1\"")]),
            &hm(&[("etag", "\"v1\"")]),
            false
        ));
    }

    #[test]
    fn select_304_weak_validators() {
        // RFC 9111 §4.3.4 second bullet.
        let stored = hm(&[
            ("etag", "W/\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(select_for_update(
            &stored,
            &hm(&[("etag", "W/\"v1\"")]),
            false
        ));
        assert!(select_for_update(
            &stored,
            &hm(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            false
        ));
        assert!(!select_for_update(
            &stored,
            &hm(&[("last-modified", "Mon, 07 Nov 1994 08:49:37 GMT")]),
            true
        ));
    }

    #[test]
    fn select_304_without_validators() {
        // RFC 9111 §4.3.4 third bullet (+ the cache-generated judgement call).
        assert!(select_for_update(&hm(&[]), &hm(&[("date", "x")]), false));
        let stored = hm(&[("etag", "\"v1\"")]);
        assert!(!select_for_update(&stored, &hm(&[]), false));
        assert!(select_for_update(&stored, &hm(&[]), true));
    }

    #[test]
    fn head_freshening() {
        // RFC 9111 §4.3.5
        let stored = hm(&[
            ("etag", "\"a\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert_eq!(
            head_outcome(
                &stored,
                &hm(&[("etag", "\"a\""), ("content-length", "5")]),
                Some(5)
            ),
            HeadOutcome::Update
        );
        assert_eq!(
            head_outcome(&stored, &hm(&[("etag", "\"b\"")]), Some(5)),
            HeadOutcome::Stale
        );
        assert_eq!(
            head_outcome(&stored, &hm(&[("content-length", "6")]), Some(5)),
            HeadOutcome::Stale
        );
        assert_eq!(
            head_outcome(&stored, &hm(&[("content-length", "x")]), Some(5)),
            HeadOutcome::Stale
        );
        assert_eq!(
            head_outcome(
                &stored,
                &hm(&[("last-modified", "Mon, 07 Nov 1994 08:49:37 GMT")]),
                None
            ),
            HeadOutcome::Stale
        );
        assert_eq!(
            head_outcome(&stored, &hm(&[("x", "y")]), None),
            HeadOutcome::Update
        );
        assert_eq!(
            head_outcome(&hm(&[]), &hm(&[("etag", "\"a\"")]), None),
            HeadOutcome::Stale
        );
    }
}

//! Invalidation after unsafe requests (RFC 9111 §4.4).
//!
//! A non-error response (2xx, 3xx) to an unsafe method (anything but GET,
//! HEAD, OPTIONS, TRACE — including unknown methods) invalidates the target
//! URI, and the URIs in `Location` and `Content-Location` when they have the
//! same origin (scheme, host, port) as the target; cross-origin ones are
//! ignored (§4.4: "MUST NOT trigger an invalidation ... if the origin ...
//! differs"). References are resolved per RFC 3986 §5.2.

use http::header::{CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, Method, StatusCode};

use super::key::{normalise_authority, primary_key};

/// Whether a method is unsafe for §4.4 (RFC 9110 §9.2.1: only GET, HEAD,
/// OPTIONS and TRACE are safe; unknown methods are treated as unsafe).
pub fn is_unsafe_method(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// "Non-error status code" (§4.4): 2xx or 3xx.
pub fn is_non_error_status(status: StatusCode) -> bool {
    status.is_success() || status.is_redirection()
}

/// Whether this exchange triggers invalidation (§4.4).
pub fn should_invalidate(method: &Method, status: StatusCode) -> bool {
    is_unsafe_method(method) && is_non_error_status(status)
}

/// The request target, as the cache keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// Scheme (`http`/`https`).
    pub scheme: &'a str,
    /// Authority as received (Host or `:authority`).
    pub authority: &'a str,
    /// Path and query as received.
    pub path_and_query: &'a str,
}

/// A resolved absolute reference without fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Lower-case scheme.
    pub scheme: String,
    /// Authority as written.
    pub authority: String,
    /// Path (dot segments removed) and query.
    pub path_and_query: String,
}

struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

/// RFC 3986 §3 / Appendix B component split.
fn split(r: &str) -> Parts<'_> {
    let r = r.split_once('#').map_or(r, |(a, _)| a);
    let mut rest = r;
    let mut scheme = None;
    if let Some(i) = rest.find(':') {
        let cand = rest.get(..i).unwrap_or("");
        let valid = cand.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && cand
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if valid && !cand.contains(['/', '?']) {
            scheme = Some(cand);
            rest = rest.get(i + 1..).unwrap_or("");
        }
    }
    let mut authority = None;
    if let Some(a) = rest.strip_prefix("//") {
        let end = a.find(['/', '?']).unwrap_or(a.len());
        authority = a.get(..end);
        rest = a.get(end..).unwrap_or("");
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    Parts {
        scheme,
        authority,
        path,
        query,
    }
}

/// RFC 3986 §5.2.4
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    let segs: Vec<&str> = path.split('/').collect();
    let n = segs.len();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == n;
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > usize::from(absolute) {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut s = out.join("/");
    if absolute && !s.starts_with('/') {
        s.insert(0, '/');
    }
    s
}

/// RFC 3986 §5.2.3
fn merge(base_path: &str, rel: &str, base_has_authority: bool) -> String {
    if base_has_authority && base_path.is_empty() {
        return format!("/{rel}");
    }
    match base_path.rfind('/') {
        Some(i) => format!("{}{rel}", base_path.get(..=i).unwrap_or("/")),
        None => rel.to_owned(),
    }
}

/// Resolves a URI reference against the target (RFC 3986 §5.2.2).
pub fn resolve_reference(base: &Target<'_>, reference: &str) -> Option<Resolved> {
    let r = split(reference.trim());
    let b = split(base.path_and_query);
    let (scheme, authority, path, query) = if let Some(s) = r.scheme {
        (
            s.to_owned(),
            r.authority?.to_owned(),
            remove_dot_segments(r.path),
            r.query,
        )
    } else if let Some(a) = r.authority {
        (
            base.scheme.to_owned(),
            a.to_owned(),
            remove_dot_segments(r.path),
            r.query,
        )
    } else if r.path.is_empty() {
        (
            base.scheme.to_owned(),
            base.authority.to_owned(),
            b.path.to_owned(),
            r.query.or(b.query),
        )
    } else if r.path.starts_with('/') {
        (
            base.scheme.to_owned(),
            base.authority.to_owned(),
            remove_dot_segments(r.path),
            r.query,
        )
    } else {
        let merged = merge(b.path, r.path, true);
        (
            base.scheme.to_owned(),
            base.authority.to_owned(),
            remove_dot_segments(&merged),
            r.query,
        )
    };
    let mut pq = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Some(Resolved {
        scheme: scheme.to_ascii_lowercase(),
        authority,
        path_and_query: pq,
    })
}

/// Whether two (scheme, authority) pairs are the same origin (RFC 9110
/// §4.3.1: scheme, host and port; default ports normalised).
pub fn same_origin(a_scheme: &str, a_authority: &str, b_scheme: &str, b_authority: &str) -> bool {
    a_scheme.eq_ignore_ascii_case(b_scheme)
        && normalise_authority(a_scheme, a_authority) == normalise_authority(b_scheme, b_authority)
}

/// The same-origin `Location` / `Content-Location` targets of a response
/// (path-and-query, de-duplicated, the request target excluded), for §4.4.
/// Values that are not ASCII, not resolvable, or cross-origin are ignored.
pub fn extra_targets(target: &Target<'_>, response: &HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in [LOCATION, CONTENT_LOCATION] {
        for v in response.get_all(name) {
            let Ok(s) = v.to_str() else { continue };
            let Some(r) = resolve_reference(target, s) else {
                continue;
            };
            if !same_origin(target.scheme, target.authority, &r.scheme, &r.authority) {
                continue;
            }
            if r.path_and_query != target.path_and_query && !out.contains(&r.path_and_query) {
                out.push(r.path_and_query);
            }
        }
    }
    out
}

/// Primary keys to invalidate after an exchange (§4.4): empty unless
/// [`should_invalidate`]; otherwise the target and same-origin extra targets.
pub fn invalidation_keys(
    site: &str,
    method: &Method,
    status: StatusCode,
    target: &Target<'_>,
    response: &HeaderMap,
) -> Vec<[u8; 32]> {
    if !should_invalidate(method, status) {
        return Vec::new();
    }
    let mut keys = vec![primary_key(
        site,
        target.scheme,
        target.authority,
        target.path_and_query.as_bytes(),
    )];
    for pq in extra_targets(target, response) {
        keys.push(primary_key(
            site,
            target.scheme,
            target.authority,
            pq.as_bytes(),
        ));
    }
    keys
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "invalidate_tests.rs"]
mod tests;

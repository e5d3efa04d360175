//! A POST's response stored for later GETs of its URI (RFC 9110 §9.3.3,
//! RFC 9111 §4): allowed when the response has explicit freshness and a
//! `Content-Location` equal to the request's target URI, which says the
//! content is the target's current representation. Off unless a site sets
//! `cache_post_responses`; a POST itself is never answered from the cache.
//!
//! Owns: that rule. Must not know: how the response is stored (`layer`,
//! the pipeline).

use http::header::{CONTENT_LOCATION, EXPIRES};
use http::{HeaderMap, Method, StatusCode};

use super::control::{EffectiveControl, RequestDirectives};
use super::freshness::{Storable, storability};
use super::invalidate::{Target, resolve_reference, same_origin};
use super::status::NoCacheReason;

/// Whether `response` to a POST of `target` may be stored as `target`'s
/// GET response, and which fields to leave out when it is.
pub fn post_storability(
    target: &Target<'_>,
    request_headers: &HeaderMap,
    request_cc: &RequestDirectives,
    status: StatusCode,
    response: &HeaderMap,
    control: &EffectiveControl,
) -> Result<Storable, NoCacheReason> {
    if !content_location_is_target(target, response) {
        return Err(NoCacheReason::Method);
    }
    // RFC 9110 §9.3.3: only with explicit freshness (no heuristics).
    let expires = !control.ignores_expires() && response.contains_key(EXPIRES);
    if !(control.directives.has_explicit_lifetime() || expires) {
        return Err(NoCacheReason::NotCacheable);
    }
    // The rest as for the GET it will answer (RFC 9111 §3).
    storability(
        &Method::GET,
        request_headers,
        request_cc,
        status,
        response,
        control,
    )
}

/// Exactly one `Content-Location`, resolving to the target URI (same
/// origin, same path and query; RFC 9110 §8.7 resolves a relative one
/// against the target).
pub fn content_location_is_target(target: &Target<'_>, response: &HeaderMap) -> bool {
    let mut values = response.get_all(CONTENT_LOCATION).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(r) = v.to_str().ok().and_then(|s| resolve_reference(target, s)) else {
        return false;
    };
    same_origin(target.scheme, target.authority, &r.scheme, &r.authority)
        && r.path_and_query == target.path_and_query
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn target() -> Target<'static> {
        Target {
            scheme: "https",
            authority: "shop.example",
            path_and_query: "/cart?id=7",
        }
    }

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CONTENT_LOCATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn content_location_must_name_the_target() {
        let t = target();
        for ok in [
            "/cart?id=7",
            "https://shop.example/cart?id=7",
            "https://SHOP.example:443/cart?id=7",
            "cart?id=7",
        ] {
            assert!(content_location_is_target(&t, &with(&[ok])), "{ok}");
        }
        for bad in [
            "/cart",
            "/cart?id=8",
            "http://shop.example/cart?id=7",
            "https://other.example/cart?id=7",
        ] {
            assert!(!content_location_is_target(&t, &with(&[bad])), "{bad}");
        }
        assert!(!content_location_is_target(&t, &with(&[])));
        assert!(!content_location_is_target(
            &t,
            &with(&["/cart?id=7", "/cart?id=7"])
        ));
    }
}

//! One request on the cached path ([`Ctx`]): what the pipeline derives from
//! it once (keys, directives, the ban subject, the balancer's key) and
//! carries through lookup, fetch and response. Knows nothing of how they
//! are used.

use std::sync::Arc;

use http::{HeaderMap, Method, Version};

use super::SiteRuntime;
use super::body::AccessRecord;
use crate::cache::RequestTarget;
use crate::cache::bans::BanSubject;
use crate::cache::coalesce::Key;
use crate::cache::control::RequestDirectives;
use crate::cache::freshness::ReuseOptions;
use crate::cache::key::{normalise_authority, primary_key_normalised};
use crate::cache::meta::VaryMarker;
use crate::compress::Accepts;
use crate::origin::{HashOn, StickyRequest, client_key};

/// One request on the cached path.
pub struct Ctx {
    pub(super) site: Arc<SiteRuntime>,
    pub(super) method: Method,
    /// The request's fields as received, hop-by-hop ones removed (`Via`
    /// and `X-Forwarded-*` are added only on the way to the origin).
    pub(super) headers: HeaderMap,
    pub(super) target: RequestTarget,
    pub(super) primary: Key,
    pub(super) dirs: RequestDirectives,
    pub(super) reuse: ReuseOptions,
    pub(super) client_version: Version,
    /// For `X-Forwarded-For` on requests to the origin.
    pub(super) client_ip: std::net::IpAddr,
    pub(super) rec: AccessRecord,
    /// The vary marker found under the primary key, if any.
    pub(super) marker: Option<VaryMarker>,
    /// The authority's normal form, for the ban subject ([`Ctx::ban_subject`]).
    authority: AuthorityForm,
    /// What the balancer hashes (`balance = "hash"` or `"client_ip"`).
    pub(super) balance_key: Option<[u8; 32]>,
    /// The origin the request's sticky cookie names, if any.
    pub(super) sticky: StickyRequest,
    /// The codings the client accepts (its `Accept-Encoding`, which the origin does not
    /// see when the site compresses).
    pub(super) accepts: Accepts,
    /// Why a stored response was not used (`Cache-Status` `detail` of the fetch).
    pub(super) detail: Option<&'static str>,
    /// The first piece of the hit's body, read before its head was sent, with the
    /// reader that goes on from it (see `first_piece_intact`).
    /// Boxed: few hits have one, and every request's `Ctx` would carry its room.
    pub(super) prefetched:
        std::sync::Mutex<Option<Box<(outpost_storage::BodyReader, bytes::Bytes)>>>,
    /// The request came from an edge (`cluster::HOP`): never ask a shield.
    pub(super) shield_hop: bool,
    /// Its connection's writer takes a hit's head in wire form
    /// (`ConnInfo::wire_heads`).
    pub(super) wire_heads: bool,
}

/// A request's authority in the form the key and ban subject use: most
/// often a slice of the authority as received (kept as its span, so a
/// request that never asks for its ban subject makes no string), else its
/// own string.
#[derive(Clone)]
enum AuthorityForm {
    Span(usize, usize),
    Owned(String),
}

impl AuthorityForm {
    fn of(received: &str, form: std::borrow::Cow<'_, str>) -> Self {
        match form {
            std::borrow::Cow::Borrowed(f) => {
                let at = (f.as_ptr() as usize).wrapping_sub(received.as_ptr() as usize);
                let end = at.checked_add(f.len());
                match end.and_then(|end| Some((end, received.get(at..end)?))) {
                    // The same bytes at that place: `f` is a slice of it.
                    Some((end, s)) if s.as_ptr() == f.as_ptr() => AuthorityForm::Span(at, end),
                    _ => AuthorityForm::Owned(f.to_owned()),
                }
            }
            std::borrow::Cow::Owned(f) => AuthorityForm::Owned(f),
        }
    }
}

impl Ctx {
    /// What URL and prefix bans match (`crate::cache::bans::ban_subject`).
    pub(super) fn ban_subject(&self) -> BanSubject<'_> {
        let authority = match &self.authority {
            AuthorityForm::Span(a, b) => self.target.authority.get(*a..*b).unwrap_or_default(),
            AuthorityForm::Owned(s) => s,
        };
        BanSubject::new(authority, &self.target.path_and_query)
    }

    pub(super) fn new(
        site: Arc<SiteRuntime>,
        method: Method,
        headers: HeaderMap,
        target: RequestTarget,
        client_version: Version,
        client_ip: std::net::IpAddr,
        rec: AccessRecord,
    ) -> Ctx {
        // Normalised once for the key and the ban subject. The scheme is
        // the connection's, `http` or `https`: already lower-case.
        let scheme = target.scheme;
        let authority = normalise_authority(scheme, &target.authority);
        let primary = primary_key_normalised(
            &site.name,
            scheme,
            &authority,
            target.path_and_query.as_bytes(),
        );
        let authority = AuthorityForm::of(&target.authority, authority);
        let dirs = RequestDirectives::from_headers(&headers);
        let reuse = ReuseOptions {
            ignore_client_reload: site.ignore_client_reload,
            stale_on_error: site.stale_on_error,
            ..ReuseOptions::default()
        };
        let balance_key = match site.pool.hash_on() {
            HashOn::Nothing => None,
            HashOn::CacheKey => Some(primary),
            HashOn::ClientIp => Some(client_key(client_ip)),
        };
        Ctx {
            site,
            method,
            headers,
            target,
            primary,
            dirs,
            reuse,
            client_version,
            client_ip,
            rec,
            marker: None,
            authority,
            balance_key,
            sticky: StickyRequest::default(),
            accepts: Accepts::default(),
            detail: None,
            prefetched: std::sync::Mutex::new(None),
            shield_hop: false,
            wire_heads: false,
        }
    }

    /// A copy for the slices of a body under way (`super::slice`): the
    /// client's directives, no log line of its own.
    pub(super) fn for_slices(&self) -> Ctx {
        let mut c = self.background();
        c.dirs = self.dirs.clone();
        c.marker = self.marker.clone();
        c
    }

    /// A copy for a background refresh: no client directives, no log line.
    pub(super) fn background(&self) -> Ctx {
        let mut rec = self.rec.clone();
        rec.enabled = false;
        Ctx {
            site: self.site.clone(),
            method: Method::GET,
            headers: self.headers.clone(),
            target: self.target.clone(),
            primary: self.primary,
            dirs: RequestDirectives::default(),
            reuse: self.reuse,
            client_version: self.client_version,
            client_ip: self.client_ip,
            rec,
            marker: None,
            authority: self.authority.clone(),
            balance_key: self.balance_key,
            sticky: self.sticky,
            accepts: self.accepts,
            detail: None,
            prefetched: std::sync::Mutex::new(None),
            shield_hop: self.shield_hop,
            // Its responses are not written to a client.
            wire_heads: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn text<'a>(received: &'a str, form: &'a AuthorityForm) -> &'a str {
        match form {
            AuthorityForm::Span(a, b) => received.get(*a..*b).unwrap_or("<bad span>"),
            AuthorityForm::Owned(s) => s,
        }
    }

    #[test]
    fn an_authority_form_is_a_span_only_of_the_authority_received() {
        let received = String::from("Example.com:80");
        let other = String::from("example.com");
        // A slice of what was received: kept as its span.
        let form = AuthorityForm::of(&received, Cow::Borrowed(&received[8..11]));
        assert!(matches!(form, AuthorityForm::Span(8, 11)));
        assert_eq!(text(&received, &form), "com");
        let form = AuthorityForm::of(&received, Cow::Borrowed(&received[..]));
        assert_eq!(text(&received, &form), "Example.com:80");
        // Anything else is its own string, whatever its address.
        let form = AuthorityForm::of(&received, Cow::Borrowed(&other[..]));
        assert!(matches!(form, AuthorityForm::Owned(_)));
        assert_eq!(text(&received, &form), "example.com");
        let form = AuthorityForm::of(&received, Cow::Owned("example.com".into()));
        assert_eq!(text(&received, &form), "example.com");
        let form = AuthorityForm::of(&received, Cow::Borrowed(""));
        assert_eq!(text(&received, &form), "");
    }
}

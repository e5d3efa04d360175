//! Hidden origins: the fields removed from and set on requests to the
//! origin and responses to clients (`[site.headers]`, `[server]
//! server_header`), and the cache poisoning guard.
//!
//! - Requests: from a client that is not a trusted proxy, the fields
//!   origins are known to reflect into answers although they are not in the
//!   cache key (`X-Forwarded-Host`, `X-Host`, `X-Original-URL`,
//!   `X-Rewrite-URL`, `Forwarded`) are removed unless the site passes them;
//!   then `request_remove` and `request_set`.
//! - Responses from the origin, before they are stored or passed on: its
//!   `Server` and the `response_remove` fields (`X-Powered-By` and the
//!   like by default), which the origin layer leaves out of the responses
//!   it returns ([`Hide::response_strip`]), and interim responses lose
//!   here. Stored objects keep none of them, so a hit pays nothing for
//!   this.
//! - Every response to a client: `response_set`, and `Server` when
//!   `server_header` gives one.

use http::header::{HeaderMap, HeaderName, HeaderValue, SERVER};

use crate::cache::control::fields_present;
use crate::config::{HeaderRules, POISONING_GUARD};

/// A site's rules, in the form the request path applies them.
#[derive(Debug, Clone)]
pub struct Hide {
    rules: HeaderRules,
    /// The guarded request fields this site removes.
    guard: Vec<HeaderName>,
    /// `Server` and the `response_remove` fields.
    strip: Vec<HeaderName>,
}

/// Removes those of `names` that `headers` has, with one scan for all.
fn remove_present(headers: &mut HeaderMap, names: &[HeaderName]) {
    if names.is_empty() || headers.is_empty() {
        return;
    }
    let present = fields_present(headers, names);
    for (i, n) in names.iter().enumerate() {
        if present.has(i) {
            headers.remove(n);
        }
    }
}

impl Hide {
    pub fn new(rules: &HeaderRules) -> Hide {
        let guard = POISONING_GUARD
            .iter()
            .map(|n| HeaderName::from_static(n))
            .filter(|n| !rules.pass_request_headers.contains(n))
            .collect();
        let mut strip = vec![SERVER];
        strip.extend(rules.response_remove.iter().cloned());
        Hide {
            rules: rules.clone(),
            guard,
            strip,
        }
    }

    /// A request on its way in: `trusted` when its peer is a trusted proxy.
    pub fn request(&self, headers: &mut HeaderMap, trusted: bool) {
        if !trusted {
            remove_present(headers, &self.guard);
        }
        remove_present(headers, &self.rules.request_remove);
        for (n, v) in &self.rules.request_set {
            headers.insert(n.clone(), v.clone());
        }
    }

    /// What an origin's response loses before it is stored or passed on:
    /// `Server` and the `response_remove` fields.
    pub fn response_strip(&self) -> &[HeaderName] {
        &self.strip
    }

    /// An origin's response (an interim one: a final one comes from the
    /// origin layer without [`Hide::response_strip`]'s fields).
    pub fn origin_response(&self, headers: &mut HeaderMap) {
        remove_present(headers, &self.strip);
    }

    /// Whether [`Hide::client_response`] sets `name` (given a `Server` value
    /// or not).
    pub fn sets_response(&self, name: &HeaderName, server: bool) -> bool {
        (server && name == SERVER) || self.rules.response_set.iter().any(|(n, _)| n == name)
    }

    /// Any response to a client.
    pub fn client_response(&self, headers: &mut HeaderMap, server: Option<&HeaderValue>) {
        for (n, v) in &self.rules.response_set {
            headers.insert(n.clone(), v.clone());
        }
        if let Some(s) = server {
            headers.insert(SERVER, s.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn guarded_fields_go_unless_passed_or_trusted() {
        let rules = HeaderRules {
            pass_request_headers: vec![HeaderName::from_static("x-forwarded-host")],
            request_set: vec![(
                HeaderName::from_static("x-edge"),
                HeaderValue::from_static("1"),
            )],
            ..HeaderRules::default()
        };
        let h = Hide::new(&rules);
        let mut m = HeaderMap::new();
        for n in ["x-forwarded-host", "x-original-url", "forwarded", "accept"] {
            m.insert(HeaderName::from_static(n), HeaderValue::from_static("v"));
        }
        let mut trusted = m.clone();
        h.request(&mut m, false);
        assert!(m.contains_key("x-forwarded-host") && m.contains_key("accept"));
        assert!(!m.contains_key("x-original-url") && !m.contains_key("forwarded"));
        assert_eq!(m["x-edge"], "1");
        h.request(&mut trusted, true);
        assert!(trusted.contains_key("forwarded"));
    }

    #[test]
    fn origin_software_is_removed_and_our_fields_set() {
        let h = Hide::new(&HeaderRules::default());
        let mut m = HeaderMap::new();
        m.insert(SERVER, HeaderValue::from_static("Apache/2.4.1 (Unix)"));
        m.insert("x-powered-by", HeaderValue::from_static("PHP/8"));
        m.insert("content-type", HeaderValue::from_static("text/html"));
        h.origin_response(&mut m);
        assert_eq!(m.len(), 1);
        h.client_response(&mut m, Some(&HeaderValue::from_static("outpost")));
        assert_eq!(m[SERVER], "outpost");
    }
}

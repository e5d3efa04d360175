//! `[site.headers]`, `pass_request_headers` and `[server] server_header`:
//! what is removed from and added to requests on their way to the origin
//! and responses on their way to the client, so that responses do not
//! reveal an origin's address or software and requests do not carry fields
//! origins reflect into cacheable answers.

use http::{HeaderName, HeaderValue};

use super::file::FileHeaders;
use super::validate::Errors;

/// Response fields removed unless configured otherwise: what origins
/// announce of their software.
pub const DEFAULT_RESPONSE_REMOVE: &[&str] = &[
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-runtime",
];

/// Request fields removed before the origin unless a site passes them:
/// fields outside the cache key that origins are known to reflect into
/// their answers (cache poisoning), and `Forwarded` written by the client.
pub const POISONING_GUARD: &[&str] = &[
    "x-forwarded-host",
    "x-host",
    "x-original-url",
    "x-rewrite-url",
    "forwarded",
];

/// A site's header rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRules {
    pub response_remove: Vec<HeaderName>,
    pub response_set: Vec<(HeaderName, HeaderValue)>,
    pub request_remove: Vec<HeaderName>,
    pub request_set: Vec<(HeaderName, HeaderValue)>,
    /// Of [`POISONING_GUARD`], the fields this site's origins may see.
    pub pass_request_headers: Vec<HeaderName>,
}

impl Default for HeaderRules {
    fn default() -> Self {
        HeaderRules {
            response_remove: DEFAULT_RESPONSE_REMOVE
                .iter()
                .map(|n| HeaderName::from_static(n))
                .collect(),
            response_set: Vec::new(),
            request_remove: Vec::new(),
            request_set: Vec::new(),
            pass_request_headers: Vec::new(),
        }
    }
}

fn names(errs: &mut Errors, key: &str, list: Option<&Vec<String>>) -> Option<Vec<HeaderName>> {
    let list = list?;
    let mut out = Vec::new();
    for (i, n) in list.iter().enumerate() {
        match HeaderName::from_bytes(n.as_bytes()) {
            Ok(h) => out.push(h),
            Err(_) => errs.push(format!("{key}[{i}]"), format!("`{n}` is not a field name")),
        }
    }
    Some(out)
}

fn pairs(
    errs: &mut Errors,
    key: &str,
    table: Option<&std::collections::BTreeMap<String, String>>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (n, v) in table.into_iter().flatten() {
        match (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(h), Ok(v)) => out.push((h, v)),
            (Err(_), _) => errs.push(format!("{key}.{n}"), format!("`{n}` is not a field name")),
            (_, Err(_)) => errs.push(format!("{key}.{n}"), "not a field value (visible ASCII)"),
        }
    }
    out
}

/// Validates a site's `[site.headers]` and `pass_request_headers`.
pub(super) fn header_rules(
    errs: &mut Errors,
    base: &str,
    f: Option<&FileHeaders>,
    pass: Option<&Vec<String>>,
) -> HeaderRules {
    let d = HeaderRules::default();
    let key = |k: &str| format!("{base}.headers.{k}");
    let pass_request_headers =
        names(errs, &format!("{base}.pass_request_headers"), pass).unwrap_or_default();
    for (i, n) in pass_request_headers.iter().enumerate() {
        if !POISONING_GUARD.contains(&n.as_str()) {
            errs.push(
                format!("{base}.pass_request_headers[{i}]"),
                format!(
                    "`{n}` is not removed anyway (only {} are)",
                    POISONING_GUARD.join(", ")
                ),
            );
        }
    }
    let Some(f) = f else {
        return HeaderRules {
            pass_request_headers,
            ..d
        };
    };
    let response_remove = names(errs, &key("response_remove"), f.response_remove.as_ref())
        .unwrap_or(d.response_remove);
    for (i, n) in response_remove.iter().enumerate() {
        // RFC 9112 §6.3: the length read from it frames the origin's
        // message, and the client's answer carries one of its own.
        if n == http::header::CONTENT_LENGTH {
            errs.push(
                format!("{}[{i}]", key("response_remove")),
                "`content-length` frames the message and cannot be removed",
            );
        }
    }
    HeaderRules {
        response_remove,
        response_set: pairs(errs, &key("response_set"), f.response_set.as_ref()),
        request_remove: names(errs, &key("request_remove"), f.request_remove.as_ref())
            .unwrap_or_default(),
        request_set: pairs(errs, &key("request_set"), f.request_set.as_ref()),
        pass_request_headers,
    }
}

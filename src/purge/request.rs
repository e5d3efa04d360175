//! A purge request: its JSON form (`POST /purge`, the fleet's purge
//! messages) and its validation into URL, prefix and tag targets.
//!
//! Owns: parsing and naming what is wrong with a request. Must not know:
//! how a purge is applied, logged or propagated.

use serde::{Deserialize, Serialize};

use crate::cache::bans::ban_subject;

/// A purge request as received (`POST /purge` body).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub soft: bool,
    #[serde(default)]
    pub fan_out: bool,
}

/// What was purged, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub urls: u64,
    pub prefixes: u64,
    pub tags: u64,
}

/// One URL of a purge, parsed.
#[derive(Debug, Clone)]
pub(crate) struct UrlTarget {
    pub(crate) authority: String,
    pub(crate) path_and_query: String,
    pub(crate) subject: String,
}

/// A validated purge.
#[derive(Debug, Clone)]
pub struct Validated {
    pub(crate) urls: Vec<UrlTarget>,
    pub(crate) prefixes: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub soft: bool,
    /// The request it came from (without `fan_out`), to send to the fleet.
    pub(crate) request: PurgeRequest,
}

impl PurgeRequest {
    /// Checks every entry; the error names the first bad one.
    pub fn validate(&self) -> Result<Validated, String> {
        if self.urls.is_empty() && self.prefixes.is_empty() && self.tags.is_empty() {
            return Err("empty purge: give at least one of `urls`, `prefixes`, `tags`".into());
        }
        let mut urls = Vec::with_capacity(self.urls.len());
        for (i, u) in self.urls.iter().enumerate() {
            urls.push(parse_url(u).map_err(|e| format!("urls[{i}]: {e}"))?);
        }
        let mut prefixes = Vec::with_capacity(self.prefixes.len());
        for (i, p) in self.prefixes.iter().enumerate() {
            prefixes.push(parse_prefix(p).map_err(|e| format!("prefixes[{i}]: {e}"))?);
        }
        let mut tags = Vec::with_capacity(self.tags.len());
        for (i, t) in self.tags.iter().enumerate() {
            if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "tags[{i}]: {t:?} is not a tag (non-empty, no spaces)"
                ));
            }
            tags.push(t.clone());
        }
        Ok(Validated {
            urls,
            prefixes,
            tags,
            soft: self.soft,
            request: PurgeRequest {
                fan_out: false,
                ..self.clone()
            },
        })
    }
}

impl Validated {
    /// What it purges, per kind.
    pub fn counts(&self) -> Counts {
        Counts {
            urls: self.urls.len() as u64,
            prefixes: self.prefixes.len() as u64,
            tags: self.tags.len() as u64,
        }
    }
}

/// An absolute `http://` or `https://` URL.
fn parse_url(u: &str) -> Result<UrlTarget, String> {
    let uri: http::Uri = u
        .parse()
        .map_err(|_| format!("`{u}` is not an absolute http(s) URL"))?;
    let scheme = uri
        .scheme_str()
        .filter(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
        .ok_or_else(|| format!("`{u}` is not an absolute http(s) URL"))?
        .to_ascii_lowercase();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("`{u}` has no host"))?;
    let path_and_query = uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .filter(|pq| !pq.is_empty())
        .unwrap_or_else(|| "/".into());
    let subject = ban_subject(&scheme, &authority, &path_and_query);
    Ok(UrlTarget {
        authority,
        path_and_query,
        subject,
    })
}

/// `http(s)://host[:port]/path-prefix` or `host[:port]/path-prefix`
/// (a bare host means the whole host).
fn parse_prefix(p: &str) -> Result<String, String> {
    if p.contains("://") {
        // Keep the prefix as given (`parse_url` would turn "" into "/").
        let t = parse_url(p).map_err(|_| format!("`{p}` is not an http(s) URL prefix"))?;
        return Ok(t.subject);
    }
    let (authority, path) = match p.find('/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, "/"),
    };
    if authority.is_empty()
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '@'))
    {
        return Err(format!(
            "`{p}` is not a URL prefix like \"example.com/images/\""
        ));
    }
    Ok(ban_subject("http", authority, path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_are_validated_with_named_problems() {
        let r = PurgeRequest::default();
        assert!(r.validate().unwrap_err().contains("empty purge"));
        let r = PurgeRequest {
            urls: vec!["http://h/a".into(), "/relative".into()],
            ..Default::default()
        };
        assert!(r.validate().unwrap_err().starts_with("urls[1]:"));
        let r = PurgeRequest {
            tags: vec!["a b".into()],
            ..Default::default()
        };
        assert!(r.validate().unwrap_err().starts_with("tags[0]:"));
        let r = PurgeRequest {
            urls: vec!["http://Example.com:80/a?b=1".into()],
            prefixes: vec!["example.com/img/".into(), "https://h:443/x".into()],
            tags: vec!["t1".into()],
            ..Default::default()
        };
        let v = r.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.urls[0].subject, "example.com/a?b=1");
        assert_eq!(v.prefixes, vec!["example.com/img/", "h/x"]);
    }
}

//! Request rules: a site's ordered list of matchers and actions, the first
//! rule whose every matcher holds deciding what happens to a request
//! (refuse it, let it through without asking later rules, pass it by the
//! cache, or count it against a rate limit of its own). Each rule counts
//! the requests it matched.
//!
//! Matchers cost what they are: a method list and a path prefix are
//! compared bytes, an address set is a binary search, a pattern is one
//! `regex` run (compiled once at load, size-limited). A site without rules
//! pays one empty-slice check per request.
//!
//! It knows nothing of caching or origins: the pipeline acts on the rule.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::GetAll;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use outpost_storage::counter::Striped;
use regex::Regex;

use super::{IpSet, RateLimiter};
use crate::config::{RuleAction, RuleConfig, compile_rule_pattern};
use crate::error::{Error, ErrorKind};

/// A site's rules, in order.
#[derive(Debug, Default)]
pub struct Rules {
    list: Vec<Rule>,
}

/// Fields whose lookups one request's match keeps (rules on the same field,
/// `User-Agent` mostly, look it up once).
const MEMO: usize = 4;

/// One rule at run time.
#[derive(Debug)]
pub struct Rule {
    pub name: Arc<str>,
    methods: Vec<Method>,
    path_prefix: Option<String>,
    path_regex: Option<Regex>,
    query_regex: Option<Regex>,
    /// Whether `query_regex` matches an absent query (decided once).
    query_matches_none: bool,
    /// The field (and its place in [`Rules::names`]) and the pattern.
    header: Option<(HeaderName, usize, Regex)>,
    client: Option<IpSet>,
    pub action: Action,
    /// Requests this rule matched.
    pub hits: Arc<Striped>,
}

/// What a matching rule does.
#[derive(Debug)]
pub enum Action {
    Deny { status: StatusCode, body: Bytes },
    Allow,
    BypassCache,
    RateLimit(Box<RateLimiter>),
}

fn pattern(p: &Option<String>, what: &str, rule: &str) -> Result<Option<Regex>, Error> {
    p.as_deref()
        .map(|p| {
            compile_rule_pattern(p).map_err(|e| {
                Error::new(ErrorKind::Setup, format!("rule {rule}: {what} `{p}`: {e}"))
            })
        })
        .transpose()
}

impl Rules {
    /// Compiles the validated rules of a site.
    pub fn new(list: &[RuleConfig]) -> Result<Rules, Error> {
        Rules::renew(list, None)
    }

    /// [`Rules::new`] after a reload: a rule named as one of `old` keeps
    /// its counter.
    pub fn renew(list: &[RuleConfig], old: Option<&Rules>) -> Result<Rules, Error> {
        let mut out = Vec::with_capacity(list.len());
        let mut names: Vec<HeaderName> = Vec::new();
        for r in list {
            let header = match &r.header {
                None => None,
                Some((name, p)) => {
                    let at = names.iter().position(|n| n == name).unwrap_or_else(|| {
                        names.push(name.clone());
                        names.len() - 1
                    });
                    Some((
                        name.clone(),
                        at,
                        pattern(&Some(p.clone()), "header pattern", &r.name)?.ok_or_else(|| {
                            Error::new(ErrorKind::Setup, format!("rule {}: header", r.name))
                        })?,
                    ))
                }
            };
            let query_regex = pattern(&r.query_regex, "query_regex", &r.name)?;
            out.push(Rule {
                query_matches_none: query_regex.as_ref().is_some_and(|q| q.is_match("")),
                query_regex,
                name: r.name.as_str().into(),
                methods: r.methods.clone(),
                path_prefix: r.path_prefix.clone(),
                path_regex: pattern(&r.path_regex, "path_regex", &r.name)?,
                header,
                client: (!r.client.is_empty()).then(|| IpSet::from_nets(r.client.iter().copied())),
                action: match &r.action {
                    RuleAction::Deny { status, body } => Action::Deny {
                        status: StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN),
                        body: Bytes::from(body.clone()),
                    },
                    RuleAction::Allow => Action::Allow,
                    RuleAction::BypassCache => Action::BypassCache,
                    RuleAction::RateLimit(l) => Action::RateLimit(Box::new(RateLimiter::new(
                        l.requests,
                        l.period,
                        l.burst,
                        l.max_tracked_clients,
                    ))),
                },
                hits: old
                    .and_then(|o| o.list.iter().find(|x| *x.name == *r.name))
                    .map_or_else(|| Arc::new(Striped::default()), |x| x.hits.clone()),
            });
        }
        Ok(Rules { list: out })
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first rule that matches the request (its count goes up).
    pub fn first_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Option<&Rule> {
        let mut memo: [Option<GetAll<'_, HeaderValue>>; MEMO] = Default::default();
        let r = self
            .list
            .iter()
            .find(|r| r.matches(method, uri, headers, client, &mut memo))?;
        r.hits.inc();
        Some(r)
    }

    /// Every rule's name and counter, in order.
    pub fn counters(&self) -> impl Iterator<Item = (&str, &Arc<Striped>)> {
        self.list.iter().map(|r| (&*r.name, &r.hits))
    }
}

impl Rule {
    fn matches<'h>(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &'h HeaderMap,
        client: IpAddr,
        memo: &mut [Option<GetAll<'h, HeaderValue>>; MEMO],
    ) -> bool {
        // The cheap matchers first.
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        if let Some(p) = &self.path_prefix
            && !uri.path().starts_with(p.as_str())
        {
            return false;
        }
        if let Some(set) = &self.client
            && !set.contains(client)
        {
            return false;
        }
        if let Some(re) = &self.path_regex
            && !re.is_match(uri.path())
        {
            return false;
        }
        if let Some(re) = &self.query_regex {
            let m = match uri.query() {
                Some(q) => re.is_match(q),
                None => self.query_matches_none,
            };
            if !m {
                return false;
            }
        }
        if let Some((name, at, re)) = &self.header {
            let hit = |all: &GetAll<'_, HeaderValue>| {
                all.iter().any(|v| v.to_str().is_ok_and(|v| re.is_match(v)))
            };
            let m = match memo.get_mut(*at) {
                Some(slot) => hit(slot.get_or_insert_with(|| headers.get_all(name))),
                None => hit(&headers.get_all(name)),
            };
            if !m {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(name: &str, action: RuleAction) -> RuleConfig {
        RuleConfig {
            name: name.into(),
            methods: Vec::new(),
            path_prefix: None,
            path_regex: None,
            query_regex: None,
            header: None,
            client: Vec::new(),
            action,
        }
    }

    #[test]
    fn the_first_rule_whose_every_matcher_holds_decides_and_is_counted() {
        let mut a = rule("admin", RuleAction::Allow);
        a.path_prefix = Some("/admin".into());
        a.client = vec!["10.0.0.0/8".parse().unwrap()];
        let mut b = rule(
            "no-admin",
            RuleAction::Deny {
                status: 404,
                body: "no\n".into(),
            },
        );
        b.path_prefix = Some("/admin".into());
        let mut c = rule("sqlmap", RuleAction::BypassCache);
        c.header = Some(("user-agent".parse().unwrap(), "(?i)sqlmap".into()));
        c.methods = vec![Method::GET];
        let mut d = rule("ids", RuleAction::BypassCache);
        d.query_regex = Some("(^|&)id=[0-9]+$".into());
        d.path_regex = Some(r"^/items/[a-z]+$".into());
        let rules = Rules::new(&[a, b, c, d]).unwrap();
        let name = |m: Method, u: &str, h: &[(&str, &str)], ip: &str| {
            let uri: Uri = u.parse().unwrap();
            let mut hm = HeaderMap::new();
            for (k, v) in h {
                hm.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            rules
                .first_match(&m, &uri, &hm, ip.parse().unwrap())
                .map(|r| r.name.to_string())
        };
        assert_eq!(
            name(Method::GET, "/admin/x", &[], "10.1.2.3").as_deref(),
            Some("admin")
        );
        assert_eq!(
            name(Method::GET, "/admin/x", &[], "192.0.2.1").as_deref(),
            Some("no-admin")
        );
        assert_eq!(
            name(
                Method::GET,
                "/a",
                &[("user-agent", "x"), ("user-agent", "SQLMap/1")],
                "192.0.2.1"
            )
            .as_deref(),
            Some("sqlmap")
        );
        assert_eq!(
            name(Method::POST, "/a", &[("user-agent", "sqlmap")], "192.0.2.1"),
            None
        );
        assert_eq!(
            name(Method::GET, "/items/abc?x=1&id=42", &[], "192.0.2.1").as_deref(),
            Some("ids")
        );
        assert_eq!(name(Method::GET, "/items/abc", &[], "192.0.2.1"), None);
        assert_eq!(name(Method::GET, "/items/ABC?id=1", &[], "192.0.2.1"), None);
        let counts: Vec<(String, u64)> = rules
            .counters()
            .map(|(n, c)| (n.to_owned(), c.get()))
            .collect();
        assert_eq!(
            counts,
            [("admin", 1), ("no-admin", 1), ("sqlmap", 1), ("ids", 1)]
                .map(|(n, c)| (n.to_owned(), c))
        );
    }
}

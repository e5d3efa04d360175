//! `[[site.rules]]`: an ordered list of request rules, each a set of
//! matchers (all given must match) and one action, validated with the key
//! path of every problem. Patterns are compiled here once to be checked
//! (the admission layer compiles its own copy at load).
//!
//! ```toml
//! [[site.rules]]
//! name = "no-admin-from-outside"
//! path_prefix = "/admin"
//! client = ["0.0.0.0/0", "::/0"]
//! action = "deny"          # deny | allow | bypass_cache | rate_limit
//! status = 403             # deny only (400 to 599)
//! body = "not here\n"      # deny only
//! ```

use serde::Deserialize;

use super::access::{RateLimitConfig, nets, rate_limit};
use super::file::FileRateLimit;
use super::validate::Errors;

/// Largest compiled pattern (the `regex` crate's size limit): patterns are
/// matched against every request, so they stay small.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Most rules a site may have.
pub const MAX_RULES: usize = 1000;

/// `[[site.rules]]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileRule {
    pub name: Option<String>,
    pub method: Option<OneOrMany>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub query_regex: Option<String>,
    pub header: Option<FileRuleHeader>,
    pub client: Option<OneOrMany>,
    pub action: Option<String>,
    pub status: Option<i64>,
    pub body: Option<String>,
    pub rate_limit: Option<FileRateLimit>,
}

/// `header = { name = "User-Agent", regex = "(?i)sqlmap" }`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileRuleHeader {
    pub name: Option<String>,
    pub regex: Option<String>,
}

/// A string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleConfig {
    /// Appears in the access log and the counters.
    pub name: String,
    /// Any of these methods (empty: any method).
    pub methods: Vec<http::Method>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub query_regex: Option<String>,
    /// A field whose value (any of its lines) matches the pattern.
    pub header: Option<(http::HeaderName, String)>,
    /// The client address is in one of these networks (empty: any).
    pub client: Vec<ipnet::IpNet>,
    pub action: RuleAction,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Refuse with `status` and `body`.
    Deny { status: u16, body: String },
    /// Serve the request; later rules are not asked.
    Allow,
    /// Pass the request to the origin without the cache.
    BypassCache,
    /// A rate limit of the rule's own per client address.
    RateLimit(RateLimitConfig),
}

/// Compiles `pattern` as the admission layer will.
pub fn compile(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Validates a site's rules.
pub(super) fn rules(errs: &mut Errors, site: &str, list: Option<&[FileRule]>) -> Vec<RuleConfig> {
    let list = list.unwrap_or_default();
    if list.len() > MAX_RULES {
        errs.push(
            format!("{site}.rules"),
            format!("{} rules: a site has at most {MAX_RULES}", list.len()),
        );
        return Vec::new();
    }
    let mut out: Vec<RuleConfig> = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        let base = format!("{site}.rules[{i}]");
        if let Some(r) = rule(errs, &base, f) {
            if out.iter().any(|o| o.name == r.name) {
                errs.push(
                    format!("{base}.name"),
                    format!("`{}` is used by an earlier rule", r.name),
                );
            }
            out.push(r);
        }
    }
    out
}

fn rule(errs: &mut Errors, base: &str, f: &FileRule) -> Option<RuleConfig> {
    let key = |k: &str| format!("{base}.{k}");
    let name = match f.name.as_deref() {
        None | Some("") => {
            errs.push(key("name"), "missing: every rule has a name");
            String::new()
        }
        Some(n)
            if n.len() > 64
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            errs.push(
                key("name"),
                format!("`{n}`: up to 64 letters, digits, `-`, `_` or `.`"),
            );
            n.to_owned()
        }
        Some(n) => n.to_owned(),
    };
    let mut methods = Vec::new();
    for (j, m) in f.method.iter().flat_map(OneOrMany::to_vec).enumerate() {
        match http::Method::from_bytes(m.as_bytes()) {
            Ok(m) => methods.push(m),
            Err(_) => errs.push(
                format!("{base}.method[{j}]"),
                format!("`{m}` is not a method"),
            ),
        }
    }
    if let Some(p) = &f.path_prefix
        && !p.starts_with('/')
    {
        errs.push(key("path_prefix"), format!("`{p}` does not start with /"));
    }
    for (k, p) in [
        ("path_regex", &f.path_regex),
        ("query_regex", &f.query_regex),
    ] {
        if let Some(p) = p
            && let Err(e) = compile(p)
        {
            errs.push(key(k), format!("`{p}`: {e}"));
        }
    }
    let header = f.header.as_ref().and_then(|h| {
        let name = match h
            .name
            .as_deref()
            .map(|n| http::HeaderName::from_bytes(n.as_bytes()))
        {
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                errs.push(key("header.name"), "not a field name");
                None
            }
            None => {
                errs.push(key("header.name"), "missing");
                None
            }
        };
        let regex = match &h.regex {
            None => {
                errs.push(key("header.regex"), "missing");
                None
            }
            Some(p) => match compile(p) {
                Ok(_) => Some(p.clone()),
                Err(e) => {
                    errs.push(key("header.regex"), format!("`{p}`: {e}"));
                    None
                }
            },
        };
        Some((name?, regex?))
    });
    let client = nets(
        errs,
        &key("client"),
        f.client.as_ref().map(|c| c.to_vec()).as_ref(),
    );
    let action = match f.action.as_deref() {
        Some("deny") => RuleAction::Deny {
            status: match f.status {
                None => 403,
                Some(n) if (400..=599).contains(&n) => n as u16,
                Some(n) => {
                    errs.push(key("status"), format!("{n}: a refusal is 400 to 599"));
                    403
                }
            },
            body: f
                .body
                .clone()
                .unwrap_or_else(|| "forbidden: the request was refused by a rule\n".into()),
        },
        Some("allow") => RuleAction::Allow,
        Some("bypass_cache") => RuleAction::BypassCache,
        Some("rate_limit") => match &f.rate_limit {
            Some(r) => RuleAction::RateLimit(rate_limit(errs, base, r)),
            None => {
                errs.push(
                    key("rate_limit"),
                    "missing: action \"rate_limit\" needs rate_limit = { requests = N, period = \"1s\" }",
                );
                RuleAction::Allow
            }
        },
        Some(a) => {
            errs.push(
                key("action"),
                format!("`{a}`: one of deny, allow, bypass_cache, rate_limit"),
            );
            RuleAction::Allow
        }
        None => {
            errs.push(
                key("action"),
                "missing: one of deny, allow, bypass_cache, rate_limit",
            );
            RuleAction::Allow
        }
    };
    if !matches!(action, RuleAction::Deny { .. }) && (f.status.is_some() || f.body.is_some()) {
        errs.push(key("status"), "status and body are for action \"deny\"");
    }
    if !matches!(action, RuleAction::RateLimit(_)) && f.rate_limit.is_some() {
        errs.push(key("rate_limit"), "only for action \"rate_limit\"");
    }
    Some(RuleConfig {
        name,
        methods,
        path_prefix: f.path_prefix.clone(),
        path_regex: f.path_regex.clone(),
        query_regex: f.query_regex.clone(),
        header,
        client,
        action,
    })
}

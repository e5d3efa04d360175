//! `[access]`, `[server] trusted_proxies` and a site's `allow` / `deny`:
//! which client addresses are believed when they forward for others, and
//! which may use the node. Lists are CIDRs (`10.0.0.0/8`, `2001:db8::/32`,
//! or a bare address); `deny_file` names a file of them, read by the
//! admission layer at start-up and by `outpost check`.

use std::path::PathBuf;

use super::file::FileAccess;
use super::validate::{Errors, parse_net};

/// Allow and deny lists: deny wins; an empty allow list allows everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessConfig {
    pub allow: Vec<ipnet::IpNet>,
    pub deny: Vec<ipnet::IpNet>,
    /// One CIDR per line, `#` comments.
    pub deny_file: Option<PathBuf>,
}

/// A list of CIDRs at `key`.
pub(super) fn nets(errs: &mut Errors, key: &str, list: Option<&Vec<String>>) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for (i, n) in list.into_iter().flatten().enumerate() {
        match parse_net(n) {
            Ok(net) => out.push(net),
            Err(e) => errs.push(format!("{key}[{i}]"), e),
        }
    }
    out
}

/// Validates `[access]`.
pub(super) fn access_section(f: Option<&FileAccess>, errs: &mut Errors) -> AccessConfig {
    let Some(f) = f else {
        return AccessConfig::default();
    };
    AccessConfig {
        allow: nets(errs, "access.allow", f.allow.as_ref()),
        deny: nets(errs, "access.deny", f.deny.as_ref()),
        deny_file: match &f.deny_file {
            Some(p) if p.trim().is_empty() => {
                errs.push("access.deny_file", "empty path");
                None
            }
            p => p.as_ref().map(PathBuf::from),
        },
    }
}

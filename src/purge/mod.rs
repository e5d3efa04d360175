//! Purging (DESIGN.md "Purge"): the operators' way to take content out of
//! the cache. It acts on the cache through [`CacheLayer`] and its ban
//! list ([`crate::cache::bans`]), and knows nothing of the request
//! pipeline or the listeners.
//!
//! - [`api`]: `POST /purge` on the admin listener (JSON, bearer token) and
//!   the `PURGE` method on the proxy listener (client networks or token).
//! - [`log`]: the append-only, fsynced `purge.log` that makes purges
//!   survive a restart; it is loaded into the ban list the cache checks on
//!   every hit (prefix, tag and soft purges; hard URL purges until
//!   superseded).
//! - [`fanout`]: forwarding a purge to the `[cluster] peers`.
//!
//! A hard URL purge removes the URL's primary key from the store (its vary
//! marker or its object: every variant, GET and HEAD alike, becomes
//! unreachable at once, RFC 9111 §4.4 style) *and* records an exact-URL ban.
//! The ban is what keeps the purge after a crash: at start-up every URL ban
//! is re-applied to the store ([`Purger::reapply`]), and on every hit the
//! cache consults the ban list ([`BanList::check`]). A soft URL purge marks
//! the stored object `FORCED_STALE` at once when it is not a Vary object
//! and records a soft URL ban for the variants. Prefix and tag purges exist
//! only as bans.
//!
//! Order of a purge: validate → append to `purge.log` and `sync_data` →
//! apply (ban list, store) → answer. The answer is sent only once the purge
//! is durable; if the log cannot be written the purge is still applied in
//! memory and the answer is a 500 saying it is not durable.

pub mod api;
pub mod fanout;
pub mod log;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use log::{Entry, PurgeLog};

use crate::cache::CacheLayer;
use crate::cache::bans::{Ban, BanKind, BanList, ban_subject, millis};
use crate::cache::key::{normalise_host, primary_key};
use crate::cache::meta::{Record, decode_stored_record, flags};
use crate::config::{ClusterConfig, Config, HostPattern, Secret};
use crate::error::{Error, ErrorKind};

/// Environment variable that overrides `[admin] token`.
pub const TOKEN_ENV: &str = "OUTPOST_ADMIN_TOKEN";

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
struct UrlTarget {
    authority: String,
    path_and_query: String,
    subject: String,
}

/// Returns once the wall clock reads a millisecond after `at` (at most a few
/// milliseconds, also when the clock is stepped back meanwhile).
async fn wait_past_millis(at: u64) {
    for _ in 0..5 {
        if millis(SystemTime::now()) > at {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A validated purge.
#[derive(Debug, Clone)]
pub struct Validated {
    urls: Vec<UrlTarget>,
    prefixes: Vec<String>,
    tags: Vec<String>,
    pub soft: bool,
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
        })
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

/// The node's purge machinery: ban list, log, authentication settings and
/// peers. One per node, shared by both listeners.
pub struct Purger {
    bans: Arc<BanList>,
    log: Arc<Mutex<PurgeLog>>,
    /// Serialises purges (log order = application order).
    serial: tokio::sync::Mutex<()>,
    token: Option<Secret>,
    allow: Vec<ipnet::IpNet>,
    sites: Vec<(String, Vec<HostPattern>)>,
    ban_max_age: Duration,
    cluster: ClusterConfig,
    client: fanout::Client,
}

impl std::fmt::Debug for Purger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger")
            .field("bans", &self.bans.len())
            .field("token", &self.token)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl Purger {
    /// Loads `purge.log` from the storage directory (creating it) into a
    /// new ban list and prunes it; the cache is opened with that list
    /// ([`Purger::bans`]). The token comes from `OUTPOST_ADMIN_TOKEN` if
    /// set, else `[admin] token`.
    pub fn open(cfg: &Config) -> Result<Arc<Purger>, Error> {
        let dir = &cfg.storage.path;
        let (mut log, entries) = PurgeLog::open(dir).map_err(|e| {
            Error::new(
                ErrorKind::Storage,
                format!("cannot open the purge log in {}: {e}", dir.display()),
            )
            .with_source(e)
        })?;
        let bans = Arc::new(BanList::new());
        let loaded = entries.len();
        for e in &entries {
            match e {
                Entry::Floor { at } => bans.raise_floor(*at),
                other => {
                    if let Some(b) = other.to_ban() {
                        bans.add(&b);
                    }
                }
            }
        }
        let rose = bans.prune(SystemTime::now(), cfg.purge.ban_max_age);
        if (rose.is_some() || log.wants_compaction(bans.len()))
            && let Err(e) = log.compact(&live_entries(&bans))
        {
            tracing::warn!(error = %e, "purge log compaction failed");
        }
        tracing::info!(loaded, bans = bans.len(), "purge log loaded");
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .or_else(|| cfg.admin.token.clone());
        Ok(Arc::new(Purger {
            bans,
            log: Arc::new(Mutex::new(log)),
            serial: tokio::sync::Mutex::new(()),
            token,
            allow: cfg.purge.allow.clone(),
            sites: cfg
                .sites
                .iter()
                .map(|s| (s.name.clone(), s.hosts.clone()))
                .collect(),
            ban_max_age: cfg.purge.ban_max_age,
            cluster: cfg.cluster.clone(),
            client: fanout::client(),
        }))
    }

    /// The ban list, for the cache to check on every hit.
    pub fn bans(&self) -> &Arc<BanList> {
        &self.bans
    }

    /// Whether a token is configured (purge through the admin listener is
    /// enabled).
    pub fn token_configured(&self) -> bool {
        self.token.is_some()
    }

    /// Compares a presented token with the configured one in constant time
    /// (equal-length blake3 digests, compared by `blake3::Hash`'s
    /// constant-time `PartialEq`).
    pub fn token_matches(&self, presented: &str) -> bool {
        self.token.as_ref().is_some_and(|t| {
            blake3::hash(t.expose().as_bytes()) == blake3::hash(presented.as_bytes())
        })
    }

    /// Whether `ip` is in `[purge] allow`.
    pub fn allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// The site a host is routed to (the proxy's rule: first match).
    fn site_for(&self, authority: &str) -> Option<&str> {
        let host = normalise_host(authority);
        self.sites
            .iter()
            .find(|(_, hosts)| hosts.iter().any(|p| p.matches(&host)))
            .map(|(n, _)| n.as_str())
    }

    /// Applies a validated purge: log it durably, then ban and remove.
    /// Returns the counts, or an error if the log could not be written (the
    /// purge is applied in memory regardless).
    pub async fn purge(&self, v: &Validated, cache: Option<&CacheLayer>) -> Result<Counts, Error> {
        let _serial = self.serial.lock().await;
        let at = millis(SystemTime::now());
        let mut new_bans = Vec::new();
        for u in &v.urls {
            new_bans.push(Ban {
                kind: BanKind::Url,
                pattern: u.subject.clone(),
                at_ms: at,
                soft: v.soft,
            });
        }
        for p in &v.prefixes {
            new_bans.push(Ban {
                kind: BanKind::Prefix,
                pattern: p.clone(),
                at_ms: at,
                soft: v.soft,
            });
        }
        for t in &v.tags {
            new_bans.push(Ban {
                kind: BanKind::Tag,
                pattern: t.clone(),
                at_ms: at,
                soft: v.soft,
            });
        }
        let entries: Vec<Entry> = new_bans.iter().map(Entry::from_ban).collect();
        let durable = self.write_log(entries).await;
        for b in &new_bans {
            self.bans.add(b);
        }
        if let Some(cache) = cache {
            for u in &v.urls {
                self.apply_url(cache, u, at, v.soft).await;
            }
        }
        // Ban times are milliseconds and a soft ban matches objects
        // validated at or before its time, so a revalidation within the
        // ban's own millisecond would still match it and be revalidated
        // again. The answer waits for the next millisecond: whatever the
        // caller does after it is timed after the ban.
        wait_past_millis(at).await;
        let counts = Counts {
            urls: v.urls.len() as u64,
            prefixes: v.prefixes.len() as u64,
            tags: v.tags.len() as u64,
        };
        tracing::info!(
            urls = counts.urls,
            prefixes = counts.prefixes,
            tags = counts.tags,
            soft = v.soft,
            "purged"
        );
        durable.map(|()| counts)
    }

    /// Appends, fsyncs and compacts when due, off the async workers.
    async fn write_log(&self, entries: Vec<Entry>) -> Result<(), Error> {
        let log = self.log.clone();
        let bans = self.bans.clone();
        let max_age = self.ban_max_age;
        let res = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut log = log
                .lock()
                .map_err(|_| std::io::Error::other("purge log lock poisoned"))?;
            log.append(&entries)?;
            // Compaction rewrites the live bans; the new entries are added
            // to the list before the next compaction can run (serialised).
            for e in &entries {
                if let Some(b) = e.to_ban() {
                    bans.add(&b);
                }
            }
            bans.prune(SystemTime::now(), max_age);
            if log.wants_compaction(bans.len()) {
                log.compact(&live_entries(&bans))?;
            }
            Ok(())
        })
        .await;
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "purge log write failed: purge not durable");
                Err(Error::new(
                    ErrorKind::Storage,
                    format!("purge applied but not durable: {e}"),
                ))
            }
            Err(e) => Err(Error::new(
                ErrorKind::Internal,
                format!("purge log task failed: {e}"),
            )),
        }
    }

    /// The store side of a URL purge, for both schemes (bans are
    /// scheme-agnostic). Hard: remove the primary key when the stored
    /// record is not newer than the ban (at purge time it never is).
    /// Soft: mark a non-Vary object `FORCED_STALE`; variants are reached
    /// through the ban list.
    async fn apply_url(&self, cache: &CacheLayer, u: &UrlTarget, at: u64, soft: bool) {
        let Some(site) = self.site_for(&u.authority) else {
            return;
        };
        for scheme in ["http", "https"] {
            let key = primary_key(site, scheme, &u.authority, u.path_and_query.as_bytes());
            let handle = match cache.store().lookup(&key).await {
                Ok(Some(h)) => h,
                Ok(None) => {
                    if !soft {
                        // A fill in flight must not land afterwards.
                        cache.invalidate(&key);
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purge: lookup failed; removing");
                    cache.invalidate(&key);
                    continue;
                }
            };
            match decode_stored_record(handle.meta()) {
                Ok(Record::Object(m)) if soft => {
                    if millis(m.response_time) <= at && !m.has(flags::FORCED_STALE) {
                        let mut m = *m;
                        m.flags |= flags::FORCED_STALE;
                        if let Err(e) = cache
                            .store()
                            .update_meta_of(&key, handle.object_id(), Bytes::from(m.encode()))
                            .await
                        {
                            tracing::warn!(error = %e, "soft purge: update failed; removing");
                            cache.invalidate(&key);
                        }
                    }
                }
                Ok(Record::Vary(_)) if soft => {}
                Ok(Record::Object(m)) if millis(m.created_at) > at => {}
                Ok(Record::Vary(m)) if millis(m.created_at) > at => {}
                _ => cache.invalidate(&key),
            }
        }
    }

    /// Re-applies every URL ban to the store (at start-up): what a crash
    /// may have left behind is removed or marked stale again.
    pub async fn reapply(&self, cache: &CacheLayer) {
        let mut n = 0usize;
        for b in self.bans.bans() {
            if b.kind != BanKind::Url {
                continue;
            }
            let Some(i) = b.pattern.find('/') else {
                continue;
            };
            let (authority, pq) = b.pattern.split_at(i);
            let u = UrlTarget {
                authority: authority.to_owned(),
                path_and_query: pq.to_owned(),
                subject: b.pattern.clone(),
            };
            self.apply_url(cache, &u, b.at_ms, b.soft).await;
            n += 1;
        }
        if n > 0 {
            tracing::info!(urls = n, "URL purges re-applied to the store");
        }
    }

    /// Peers and their per-attempt timeout.
    pub fn cluster(&self) -> &ClusterConfig {
        &self.cluster
    }

    pub(crate) fn client(&self) -> &fanout::Client {
        &self.client
    }
}

/// The live bans plus the floor, as log entries.
fn live_entries(bans: &BanList) -> Vec<Entry> {
    let mut out: Vec<Entry> = bans
        .floor_ms()
        .map(|at| Entry::Floor { at })
        .into_iter()
        .collect();
    out.extend(bans.bans().iter().map(Entry::from_ban));
    out
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

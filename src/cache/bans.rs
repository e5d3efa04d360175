//! The ban list: purges that cannot be applied by removing one key (prefix
//! and tag purges, soft purges, and hard URL purges kept until they are
//! superseded) as `(predicate, time, soft?)`, checked on every cache hit.
//!
//! # Matching
//!
//! A ban matches a stored object when its predicate matches and the object
//! is old enough (times compared in milliseconds, the resolution of
//! `ObjectMeta` times):
//!
//! - a **hard** ban matches an object *created* at or before the ban
//!   (`ObjectMeta::created_at`, kept across revalidations): the object must
//!   not be served at all;
//! - a **soft** ban matches an object last *validated* at or before the
//!   ban (`ObjectMeta::response_time`, reset by a 304): the object is
//!   treated as stale (`flags::FORCED_STALE`), so it is revalidated with a
//!   conditional request and may still be served by stale-if-error
//!   (RFC 5861 §4). Once revalidated it no longer matches.
//!
//! Predicates: an exact URL, a URL prefix, or a tag (one of the object's
//! `Surrogate-Key` values). URLs are written without the scheme as
//! `authority + path-and-query`, the authority normalised like the cache key
//! ([`ban_subject`]).
//!
//! # Dropping bans
//!
//! - Per predicate only the newest hard and the newest soft time are kept:
//!   a newer ban matches everything an older one of the same kind did.
//!   A soft time not newer than the hard time is dropped too (an object
//!   validated before `s` was created before `s ≤ h`).
//! - A hard (soft) prefix ban supersedes older hard (soft) URL and prefix
//!   bans under it.
//! - Bans older than `[purge] ban_max_age` are dropped and the list's
//!   **floor** rises to the newest dropped ban time: every object created at
//!   or before the floor is treated as hard-banned. Dropping a ban therefore
//!   never brings content back; it only costs a refetch of objects older
//!   than `ban_max_age`, which should be longer than any object stays
//!   cached.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::key::normalise_authority;

/// What the ban list says about one stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanVerdict {
    /// Serve it as the cache would anyway.
    None,
    /// Purged: treat as a miss (and drop it).
    Hard,
    /// Soft-purged: treat as stale (set `flags::FORCED_STALE`).
    Soft,
}

/// The kind of predicate of a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BanKind {
    Url,
    Prefix,
    Tag,
}

/// One ban, as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub kind: BanKind,
    /// The URL subject, prefix or tag.
    pub pattern: String,
    /// Ban time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub soft: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Times {
    hard: Option<u64>,
    soft: Option<u64>,
}

impl Times {
    fn add(&mut self, at: u64, soft: bool) {
        let slot = if soft { &mut self.soft } else { &mut self.hard };
        *slot = Some(slot.map_or(at, |t| t.max(at)));
        if let (Some(h), Some(s)) = (self.hard, self.soft)
            && s <= h
        {
            self.soft = None;
        }
    }

    fn is_empty(&self) -> bool {
        self.hard.is_none() && self.soft.is_none()
    }

    /// Hard when created at or before the hard time; soft when validated
    /// at or before the soft time.
    fn verdict(&self, created: u64, validated: u64) -> BanVerdict {
        if self.hard.is_some_and(|h| created <= h) {
            BanVerdict::Hard
        } else if self.soft.is_some_and(|s| validated <= s) {
            BanVerdict::Soft
        } else {
            BanVerdict::None
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    urls: HashMap<String, Times>,
    prefixes: HashMap<String, Times>,
    tags: HashMap<String, Times>,
    /// Objects created at or before this are banned (see the module doc).
    floor_ms: Option<u64>,
}

impl Inner {
    fn map(&mut self, kind: BanKind) -> &mut HashMap<String, Times> {
        match kind {
            BanKind::Url => &mut self.urls,
            BanKind::Prefix => &mut self.prefixes,
            BanKind::Tag => &mut self.tags,
        }
    }

    fn is_empty(&self) -> bool {
        self.floor_ms.is_none()
            && self.urls.is_empty()
            && self.prefixes.is_empty()
            && self.tags.is_empty()
    }
}

/// The node's ban list (shared by the admin handler and the cache lookup).
#[derive(Debug, Default)]
pub struct BanList {
    inner: RwLock<Inner>,
    /// Whether a URL, prefix or tag ban may be kept, and the floor plus
    /// one (0: none): what a lookup reads first, without the lock. A read
    /// lock writes the lock's shared count, a cache line every core then
    /// takes in turn on every hit; most lookups find no ban that could
    /// apply. Both are written under the write lock: `any` set before a ban
    /// goes in, cleared only once a prune left the maps empty.
    any: AtomicBool,
    floor: AtomicU64,
    /// Whether the list is current (a fleet node catching up is not).
    catch_up: super::catch_up::CatchUp,
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The string URL and prefix bans match: the authority normalised as in
/// the cache key (host lower-cased, default port dropped) followed by the
/// path and query as received (`/` when empty). The scheme is not part of
/// it: a purge covers http and https alike.
pub fn ban_subject(scheme: &str, authority: &str, path_and_query: &str) -> String {
    BanSubject::new(&normalise_authority(scheme, authority), path_and_query).text()
}

/// A request's [`ban_subject`], its text made only when a ban could
/// apply: the authority already normalised, the path and query as
/// received.
#[derive(Debug, Clone, Copy)]
pub struct BanSubject<'a> {
    authority: &'a str,
    path_and_query: &'a str,
}

impl<'a> BanSubject<'a> {
    pub fn new(authority: &'a str, path_and_query: &'a str) -> Self {
        BanSubject {
            authority,
            path_and_query,
        }
    }

    /// The subject's text (see [`ban_subject`]).
    pub fn text(&self) -> String {
        ban_subject_normalised(self.authority, self.path_and_query)
    }
}

/// [`ban_subject`] for an authority [`normalise_authority`] already returned.
fn ban_subject_normalised(authority: &str, path_and_query: &str) -> String {
    let a = authority;
    let mut s = String::with_capacity(a.len() + path_and_query.len().max(1));
    s.push_str(a);
    if path_and_query.is_empty() {
        s.push('/');
    } else {
        s.push_str(path_and_query);
    }
    s
}

impl BanList {
    pub fn new() -> BanList {
        BanList::default()
    }

    /// The catch-up gate: hits wait on it while purges the node missed
    /// are being applied.
    pub fn catch_up(&self) -> &super::catch_up::CatchUp {
        &self.catch_up
    }

    /// The verdict for a stored object: the request's `subject`, the
    /// object's tags, its `created_at` and `response_time` (last
    /// validation). Hard wins over soft. With no URL, prefix or tag ban
    /// kept, costs two atomic loads; else the subject's text, one read
    /// lock, one hash lookup per tag and a scan of the prefix bans.
    pub fn check(
        &self,
        subject: &BanSubject<'_>,
        tags: &[String],
        created_at: SystemTime,
        validated_at: SystemTime,
    ) -> BanVerdict {
        if !self.any.load(Ordering::Acquire) {
            let floor = self.floor.load(Ordering::Acquire);
            return if floor != 0 && millis(created_at) < floor {
                BanVerdict::Hard
            } else {
                BanVerdict::None
            };
        }
        let subject = subject.text();
        let subject = subject.as_str();
        let Ok(inner) = self.inner.read() else {
            // A poisoned lock: a writer panicked. Be safe: treat as purged.
            return BanVerdict::Hard;
        };
        if inner.is_empty() {
            return BanVerdict::None;
        }
        let created = millis(created_at);
        let validated = millis(validated_at);
        if inner.floor_ms.is_some_and(|f| created <= f) {
            return BanVerdict::Hard;
        }
        let mut soft = false;
        let candidates = inner
            .urls
            .get(subject)
            .into_iter()
            .chain(tags.iter().filter_map(|t| inner.tags.get(t)))
            .chain(
                inner
                    .prefixes
                    .iter()
                    .filter(|(p, _)| subject.starts_with(p.as_str()))
                    .map(|(_, t)| t),
            );
        for t in candidates {
            match t.verdict(created, validated) {
                BanVerdict::Hard => return BanVerdict::Hard,
                BanVerdict::Soft => soft = true,
                BanVerdict::None => {}
            }
        }
        if soft {
            BanVerdict::Soft
        } else {
            BanVerdict::None
        }
    }

    /// Adds a ban.
    pub fn add(&self, ban: &Ban) {
        if let Ok(mut inner) = self.inner.write() {
            self.any.store(true, Ordering::Release);
            inner
                .map(ban.kind)
                .entry(ban.pattern.clone())
                .or_default()
                .add(ban.at_ms, ban.soft);
        }
    }

    /// Raises the floor to `at_ms` (a persisted floor entry).
    pub fn raise_floor(&self, at_ms: u64) {
        if let Ok(mut inner) = self.inner.write() {
            inner.floor_ms = Some(inner.floor_ms.map_or(at_ms, |f| f.max(at_ms)));
            self.mirror_floor(&inner);
        }
    }

    pub fn floor_ms(&self) -> Option<u64> {
        self.inner.read().ok().and_then(|i| i.floor_ms)
    }

    /// Number of bans kept (predicate × softness).
    pub fn len(&self) -> usize {
        self.inner.read().map_or(0, |i| {
            [&i.urls, &i.prefixes, &i.tags]
                .iter()
                .flat_map(|m| m.values())
                .map(|t| usize::from(t.hard.is_some()) + usize::from(t.soft.is_some()))
                .sum()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every ban kept, for compaction and for re-applying URL purges.
    pub fn bans(&self) -> Vec<Ban> {
        let Ok(i) = self.inner.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (kind, map) in [
            (BanKind::Url, &i.urls),
            (BanKind::Prefix, &i.prefixes),
            (BanKind::Tag, &i.tags),
        ] {
            for (pattern, t) in map {
                for (at, soft) in [(t.hard, false), (t.soft, true)] {
                    if let Some(at_ms) = at {
                        out.push(Ban {
                            kind,
                            pattern: pattern.clone(),
                            at_ms,
                            soft,
                        });
                    }
                }
            }
        }
        out.sort_by_key(|b| b.at_ms);
        out
    }

    /// Drops bans that can no longer match anything (see the module doc):
    /// those older than `max_age` (raising the floor) and those superseded
    /// by a prefix ban. Returns the new floor if it rose.
    pub fn prune(&self, now: SystemTime, max_age: Duration) -> Option<u64> {
        let Ok(mut guard) = self.inner.write() else {
            return None;
        };
        let inner = &mut *guard;
        let cutoff = millis(now).saturating_sub(u64::try_from(max_age.as_millis()).unwrap_or(0));
        let mut dropped: Option<u64> = None;
        for map in [&mut inner.urls, &mut inner.prefixes, &mut inner.tags] {
            for t in map.values_mut() {
                for slot in [&mut t.hard, &mut t.soft] {
                    if let Some(at) = *slot
                        && at < cutoff
                    {
                        dropped = Some(dropped.map_or(at, |d| d.max(at)));
                        *slot = None;
                    }
                }
            }
            map.retain(|_, t| !t.is_empty());
        }
        // Prefix bans supersede older bans of the same softness under them.
        let prefixes: Vec<(String, Times)> = inner
            .prefixes
            .iter()
            .map(|(p, t)| (p.clone(), *t))
            .collect();
        for (p, pt) in &prefixes {
            for (is_prefix_map, map) in [(false, &mut inner.urls), (true, &mut inner.prefixes)] {
                for (k, t) in map.iter_mut() {
                    if !k.starts_with(p.as_str()) || (is_prefix_map && k == p) {
                        continue;
                    }
                    if let (Some(h), Some(ph)) = (t.hard, pt.hard)
                        && h <= ph
                    {
                        t.hard = None;
                    }
                    if let (Some(s), Some(ps)) = (t.soft, pt.soft.or(pt.hard))
                        && s <= ps
                    {
                        t.soft = None;
                    }
                }
                map.retain(|_, t| !t.is_empty());
            }
        }
        let old = inner.floor_ms;
        if let Some(d) = dropped {
            inner.floor_ms = Some(old.map_or(d, |f| f.max(d)));
        }
        self.mirror_floor(inner);
        if inner.urls.is_empty() && inner.prefixes.is_empty() && inner.tags.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        (inner.floor_ms != old).then_some(inner.floor_ms).flatten()
    }

    /// Copies the floor to the atomic a lookup reads first (called under
    /// the write lock).
    fn mirror_floor(&self, inner: &Inner) {
        let plus_one = inner.floor_ms.map_or(0, |f| f.saturating_add(1));
        self.floor.store(plus_one, Ordering::Release);
    }
}

#[cfg(test)]
#[path = "bans_tests.rs"]
mod tests;

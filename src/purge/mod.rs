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
//! - [`request`]: the JSON form of a purge and its validation.
//! - [`stream`]: in a fleet, the NATS JetStream stream every node's purges
//!   travel on (publish, durable consumer, catch-up); `fleet`: what the log
//!   keeps for it (outbox, applied sequence) and how a batch is applied.
//! - [`fanout`]: forwarding a purge to the `[cluster] peers` over HTTP (a
//!   fleet without NATS).
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
mod fleet;
pub mod log;
pub mod request;
pub mod stream;

use fleet::FleetLog;
use request::UrlTarget;
pub use request::{Counts, PurgeRequest, Validated};

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use log::{Entry, PurgeLog};

use crate::cache::CacheLayer;
use crate::cache::bans::{Ban, BanKind, BanList, millis};
use crate::cache::key::{normalise_host, primary_key};
use crate::cache::meta::{Record, decode_stored_record, flags};
use crate::config::{ClusterConfig, Config, HostPattern, Secret};
use crate::error::{Error, ErrorKind};

/// Environment variable that overrides `[admin] token`.
pub const TOKEN_ENV: &str = "OUTPOST_ADMIN_TOKEN";

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
    /// The fleet's side of the purge log: outbox and applied sequence.
    fleet_log: Arc<Mutex<FleetLog>>,
    /// The purge stream, once connected (`start_fleet`).
    fleet: OnceLock<Arc<stream::Fleet>>,
}

/// How far an accepted purge has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// In this node's fsynced purge log (no fleet stream configured).
    Log,
    /// Acknowledged by the fleet's purge stream: every node will apply it.
    Stream,
    /// Applied and logged here, waiting in the outbox for the stream.
    Local,
}

/// The result of an accepted purge.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub counts: Counts,
    pub durable: Durability,
    /// The stream sequence, when [`Durability::Stream`].
    pub seq: Option<u64>,
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
        let mut fleet_log = FleetLog::default();
        for e in entries {
            match e {
                Entry::Floor { at } => bans.raise_floor(at),
                Entry::Outbox { id, message } => fleet_log.outbox.push_back((id, message)),
                Entry::Sent { id } => fleet_log.outbox.retain(|(i, _)| *i != id),
                Entry::Applied { seq } => fleet_log.applied = seq,
                other => {
                    if let Some(b) = other.to_ban() {
                        bans.add(&b);
                    }
                }
            }
        }
        let rose = bans.prune(SystemTime::now(), cfg.purge.ban_max_age);
        if (rose.is_some() || log.wants_compaction(bans.len()))
            && let Err(e) = log.compact(&live_entries(&bans, &fleet_log))
        {
            tracing::warn!(error = %e, "purge log compaction failed");
        }
        tracing::info!(
            loaded,
            bans = bans.len(),
            outbox = fleet_log.outbox.len(),
            applied = fleet_log.applied,
            "purge log loaded"
        );
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
            fleet_log: Arc::new(Mutex::new(fleet_log)),
            fleet: OnceLock::new(),
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

    /// Applies a validated purge: log it durably, then ban and remove; in
    /// a fleet, publish it to the purge stream too (or keep it in the
    /// outbox while the stream is unreachable). Returns the counts and how
    /// durable the purge is, or an error if the log could not be written
    /// (the purge is applied in memory regardless).
    pub async fn purge(&self, v: &Validated, cache: Option<&CacheLayer>) -> Result<Outcome, Error> {
        let _serial = self.serial.lock().await;
        let at = millis(SystemTime::now());
        let fleet = self.fleet.get();
        let mut extra = Vec::new();
        let mut sole = false;
        let mut queued = None;
        if let Some(f) = fleet {
            let (id, message) = f.message(v, at);
            if let Ok(mut fl) = self.fleet_log.lock() {
                sole = fl.outbox.is_empty();
                fl.outbox.push_back((id.clone(), message.clone()));
            }
            extra.push(Entry::Outbox {
                id: id.clone(),
                message: message.clone(),
            });
            queued = Some((id, message));
        }
        let bans = bans_of(v, at);
        let durable = self.record(&bans, extra).await;
        if let Some(cache) = cache {
            for u in &v.urls {
                self.apply_url(cache, u, at, v.soft).await;
            }
        }
        let (durability, seq) = match (fleet, queued) {
            (Some(f), Some((id, message))) => {
                // Older purges wait in the outbox: keep the stream's order.
                let published = if sole {
                    f.publish(&id, &message).await.ok()
                } else {
                    None
                };
                match published {
                    Some(seq) => {
                        self.mark_sent(&id).await;
                        (Durability::Stream, Some(seq))
                    }
                    None => {
                        f.wake_outbox();
                        (Durability::Local, None)
                    }
                }
            }
            _ => (Durability::Log, None),
        };
        // Ban times are milliseconds and a soft ban matches objects
        // validated at or before its time, so a revalidation within the
        // ban's own millisecond would still match it and be revalidated
        // again. The answer waits for the next millisecond: whatever the
        // caller does after it is timed after the ban.
        wait_past_millis(at).await;
        let counts = v.counts();
        tracing::info!(
            urls = counts.urls,
            prefixes = counts.prefixes,
            tags = counts.tags,
            soft = v.soft,
            durable = ?durability,
            seq,
            "purged"
        );
        durable.map(|()| Outcome {
            counts,
            durable: durability,
            seq,
        })
    }

    /// Logs `bans` and `extra` entries durably, then adds the bans to the
    /// list.
    async fn record(&self, bans: &[Ban], extra: Vec<Entry>) -> Result<(), Error> {
        let mut entries: Vec<Entry> = bans.iter().map(Entry::from_ban).collect();
        entries.extend(extra);
        let durable = self.write_log(entries).await;
        for b in bans {
            self.bans.add(b);
        }
        durable
    }

    /// Appends, fsyncs and compacts when due, off the async workers.
    async fn write_log(&self, entries: Vec<Entry>) -> Result<(), Error> {
        let log = self.log.clone();
        let bans = self.bans.clone();
        let fleet_log = self.fleet_log.clone();
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
                let fl = fleet_log
                    .lock()
                    .map_err(|_| std::io::Error::other("fleet log lock poisoned"))?;
                log.compact(&live_entries(&bans, &fl))?;
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

/// A purge's bans, timed `at`.
fn bans_of(v: &Validated, at: u64) -> Vec<Ban> {
    let mut out = Vec::with_capacity(v.urls.len() + v.prefixes.len() + v.tags.len());
    let soft = v.soft;
    for u in &v.urls {
        out.push(Ban {
            kind: BanKind::Url,
            pattern: u.subject.clone(),
            at_ms: at,
            soft,
        });
    }
    for (kind, patterns) in [(BanKind::Prefix, &v.prefixes), (BanKind::Tag, &v.tags)] {
        for p in patterns {
            out.push(Ban {
                kind,
                pattern: p.clone(),
                at_ms: at,
                soft,
            });
        }
    }
    out
}

/// The live bans plus the floor and the fleet's entries, as log entries.
fn live_entries(bans: &BanList, fleet: &FleetLog) -> Vec<Entry> {
    let mut out: Vec<Entry> = bans
        .floor_ms()
        .map(|at| Entry::Floor { at })
        .into_iter()
        .collect();
    out.extend(bans.bans().iter().map(Entry::from_ban));
    out.extend(fleet.entries());
    out
}

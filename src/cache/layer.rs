//! The cache layer: the store, the request coalescer and the settings the
//! cached path needs, plus the lookup of a request's stored response
//! (primary key, then the Vary variant, RFC 9111 §4.1) and invalidation
//! (§4.4).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::{CONTENT_LENGTH, HeaderName};
use http::{HeaderMap, Method, StatusCode};
use outpost_storage::{ReadHandle, Store, StoreConfig};

use super::SiteRuntime;
use super::fill::{FillHead, Invalidations};
use crate::cache::coalesce::{Coalescer, Key};
use crate::cache::control::target_list;
use crate::cache::freshness::HeuristicConfig;
use crate::cache::invalidate::{Target, invalidation_keys};
use crate::cache::meta::{MetaPolicy, ObjectMeta, Record, VaryMarker, flags};
use crate::cache::meta_memo::decode_stored_record_memo;
use crate::cache::vary::variant_key;
use crate::config::Config;
use crate::error::{Error, ErrorKind};

/// The cache's name in `Cache-Status` (RFC 9211 §2).
pub const CACHE_NAME: &str = "Outpost";

/// The request target as the cache keys it.
#[derive(Debug, Clone)]
pub struct RequestTarget {
    pub scheme: &'static str,
    /// Host as received (normalised by the key function).
    pub authority: String,
    /// Path and query as received, byte for byte.
    pub path_and_query: String,
}

/// The store, the coalescer and the cache settings.
pub struct CacheLayer {
    pub(super) store: Store,
    pub(super) coalescer: Arc<Coalescer<FillHead>>,
    /// RFC 9213 targeted fields this cache obeys (and removes on output).
    pub(super) targets: Vec<HeaderName>,
    /// The purge-tag response field, and whether clients get it.
    pub(super) tag_header: HeaderName,
    pub(super) strip_tag_header: bool,
    /// Fields removed from passed-through responses: the targeted fields,
    /// and the tag field when `strip_tag_header`.
    pub(super) pass_strip: Vec<HeaderName>,
    heuristic: HeuristicConfig,
    pub(super) range_fetch_whole: bool,
    pub(super) lock_timeout: std::time::Duration,
    pub(super) max_object_size: u64,
    /// Keys with a stale-while-revalidate refresh running.
    pub(super) refreshing: Mutex<HashSet<Key>>,
    pub(super) invalidations: Arc<Invalidations>,
    /// Running pumps, so shutdown can let them commit.
    pub(super) pumps: tokio_util::task::TaskTracker,
    /// The purge ban list, checked on every hit.
    pub(super) bans: Arc<crate::purge::BanList>,
    /// New for every layer built (each configuration load): names the set
    /// of fields left out of client headers in `cache::meta_memo`.
    pub(super) id: u64,
}

/// One stored response found for a request.
pub(super) struct Found {
    pub(super) key: Key,
    pub(super) handle: ReadHandle,
    pub(super) meta: ObjectMeta,
}

pub(super) enum Lookup {
    Miss,
    VaryMiss(VaryMarker),
    Found(Box<Found>, Option<VaryMarker>),
}

impl CacheLayer {
    /// Opens the store; `None` when caching is off everywhere.
    pub async fn open(cfg: &Config) -> Result<Option<CacheLayer>, Error> {
        if !cfg.cache.enabled || !cfg.sites.iter().any(|s| s.cache) {
            return Ok(None);
        }
        let s = &cfg.storage;
        let mut sc = StoreConfig::new(&s.path, s.memory, s.disk);
        sc.chunk_size = usize::try_from(s.chunk_size).unwrap_or(sc.chunk_size);
        sc.max_object_size = s.max_object_size;
        sc.large_value_share = s.large_value_share;
        let store = Store::open(sc).await.map_err(|e| {
            Error::new(
                ErrorKind::Storage,
                format!("cannot open the cache at {}: {e}", s.path.display()),
            )
            .with_source(e)
        })?;
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Some(CacheLayer {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            store,
            coalescer: Arc::new(Coalescer::new(
                usize::try_from(cfg.cache.coalesce_window).unwrap_or(usize::MAX),
                cfg.cache.lock_timeout,
                cfg.cache.hit_for_pass,
            )),
            targets: target_list(Some(&cfg.cache.targeted_field)),
            tag_header: cfg.purge.tag_header.clone(),
            strip_tag_header: cfg.purge.strip_tag_header,
            pass_strip: {
                let mut names = target_list(Some(&cfg.cache.targeted_field));
                if cfg.purge.strip_tag_header {
                    names.push(cfg.purge.tag_header.clone());
                }
                names
            },
            heuristic: HeuristicConfig {
                fraction: cfg.cache.heuristic_fraction,
                max: cfg.cache.heuristic_max,
            },
            range_fetch_whole: cfg.cache.range_fetch_whole,
            lock_timeout: cfg.cache.lock_timeout,
            max_object_size: s.max_object_size,
            refreshing: Mutex::new(HashSet::new()),
            invalidations: Arc::default(),
            pumps: tokio_util::task::TaskTracker::new(),
            bans: crate::purge::ban_list_for(&s.path),
        }))
    }

    /// The store (stats, purge).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Origin fetches in flight (each ends once its object is committed
    /// or given up).
    pub fn fills_in_flight(&self) -> usize {
        self.coalescer.in_flight()
    }

    /// Lets running fills commit (up to `drain`), then closes the store.
    pub async fn close(&self, drain: std::time::Duration) {
        self.pumps.close();
        if tokio::time::timeout(drain, self.pumps.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.pumps.len(),
                "fills still running at shutdown: not stored"
            );
        }
        if let Err(e) = self.store.close().await {
            tracing::warn!(error = %e, "closing the cache store failed");
        }
    }

    pub(super) fn policy(&self) -> MetaPolicy<'_> {
        MetaPolicy {
            targets: &self.targets,
            heuristic: self.heuristic,
            tag_header: &self.tag_header,
        }
    }

    /// RFC 9111 §4.4: after a non-error response to an unsafe method, the
    /// target URI and same-origin `Location` / `Content-Location` URIs are
    /// invalidated (their primary key: every variant goes with it).
    pub fn invalidate_after(
        &self,
        site: &SiteRuntime,
        method: &Method,
        target: &RequestTarget,
        status: StatusCode,
        headers: &HeaderMap,
    ) {
        let t = Target {
            scheme: target.scheme,
            authority: &target.authority,
            path_and_query: &target.path_and_query,
        };
        for k in invalidation_keys(&site.name, method, status, &t, headers) {
            self.invalidate(&k);
        }
    }

    /// Makes everything stored under primary key `k` unreachable, including
    /// a fetch in flight for it.
    pub fn invalidate(&self, k: &Key) {
        self.invalidations.record(*k);
        self.store.remove(k);
        self.coalescer.forget(k);
        self.coalescer.clear_pass(k);
    }

    async fn get(&self, key: &Key) -> Option<ReadHandle> {
        match self.store.lookup(key).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cache lookup failed; treated as a miss");
                None
            }
        }
    }

    /// Applies the ban list to a found object: `true` when it is purged;
    /// a soft ban marks it stale (revalidate, stale-if-error still allowed).
    fn banned(&self, subject: &str, m: &mut ObjectMeta) -> bool {
        match self
            .bans
            .check(subject, &m.tags, m.created_at, m.response_time)
        {
            crate::purge::BanVerdict::Hard => true,
            crate::purge::BanVerdict::Soft => {
                m.flags |= flags::FORCED_STALE;
                false
            }
            crate::purge::BanVerdict::None => false,
        }
    }

    /// The stored response for a request, following a vary marker; the
    /// ban list is applied to what is found (`subject`: see
    /// `crate::purge::ban_subject`).
    pub(super) async fn lookup(&self, primary: &Key, headers: &HeaderMap, subject: &str) -> Lookup {
        let Some(h) = self.get(primary).await else {
            return Lookup::Miss;
        };
        match decode_stored_record_memo(h.meta()) {
            Err(e) => {
                tracing::warn!(error = %e, "unreadable cache record dropped");
                self.store.remove(primary);
                Lookup::Miss
            }
            Ok(Record::Object(m)) if self.invalidations.predates(primary, m.created_at) => {
                self.store.remove(primary);
                Lookup::Miss
            }
            Ok(Record::Object(mut m)) => {
                if self.banned(subject, &mut m) {
                    return Lookup::Miss;
                }
                Lookup::Found(
                    Box::new(Found {
                        key: *primary,
                        handle: h,
                        meta: *m,
                    }),
                    None,
                )
            }
            Ok(Record::Vary(marker)) => {
                // RFC 9111 §4.1: select the variant by the nominated fields.
                let vk = variant_key(primary, &marker.names, headers);
                let Some(vh) = self.get(&vk).await else {
                    return Lookup::VaryMiss(marker);
                };
                match decode_stored_record_memo(vh.meta()) {
                    // A variant older than the marker predates an
                    // invalidation of the URI: it must not come back.
                    Ok(Record::Object(mut m))
                        if m.created_at >= marker.created_at
                            && !self.invalidations.predates(primary, m.created_at)
                            && same_names(&m.vary, &marker.names) =>
                    {
                        if self.banned(subject, &mut m) {
                            return Lookup::VaryMiss(marker);
                        }
                        Lookup::Found(
                            Box::new(Found {
                                key: vk,
                                handle: vh,
                                meta: *m,
                            }),
                            Some(marker),
                        )
                    }
                    Ok(_) => Lookup::VaryMiss(marker),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable cache record dropped");
                        self.store.remove(&vk);
                        Lookup::VaryMiss(marker)
                    }
                }
            }
        }
    }
}

pub(super) fn same_names(a: &[HeaderName], b: &[HeaderName]) -> bool {
    let mut a: Vec<&str> = a.iter().map(|n| n.as_str()).collect();
    let mut b: Vec<&str> = b.iter().map(|n| n.as_str()).collect();
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    a == b
}

/// Remaining freshness for `Cache-Status` `ttl` (RFC 9211 §2.5).
pub(super) fn ttl(meta: &ObjectMeta, now: SystemTime) -> i64 {
    let lifetime = if meta.has(flags::FORCED_STALE) {
        0
    } else {
        meta.lifetime
    };
    i64::try_from(lifetime)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(meta.current_age(now)).unwrap_or(i64::MAX))
}

pub(super) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

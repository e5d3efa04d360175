//! The cache layer: the component that owns the store. It holds the store,
//! the request coalescer, the ban list and the settings of the cached
//! path, and performs the lookup of a request's stored response (primary
//! key, then the Vary variant, RFC 9111 §4.1, with the ban list applied to
//! what is found), invalidation (§4.4), header refreshes (§4.3.4) and fills
//! (the pump of [`super::fill`]).
//!
//! It knows nothing of sockets, listeners or origin servers: the request
//! pipeline asks the origin and hands the answer's body to [`CacheLayer::start_fill`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::{CONTENT_LENGTH, HeaderName};
use http::{HeaderMap, Method, StatusCode};
use outpost_storage::{ReadHandle, Store, StoreConfig, WriteHandle};

use bytes::Bytes;

use super::bans::{BanList, BanSubject, BanVerdict};
use super::coalesce::{Coalescer, FillWriter, Key};
use super::control::target_list;
use super::fill::{FillHead, FillJob, Invalidations, pump};
use super::freshness::HeuristicConfig;
use super::invalidate::{Target, invalidation_keys};
use super::meta::{MetaPolicy, ObjectMeta, Record, VaryMarker, flags};
use super::meta_memo::decode_stored_record_memo;
use super::vary::variant_key;
use crate::config::Config;
use crate::config::compression::Encoding;
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

/// The store, the coalescer, the ban list and the cache settings.
pub struct CacheLayer {
    store: Store,
    coalescer: Arc<Coalescer<FillHead>>,
    /// RFC 9213 targeted fields this cache obeys (and removes on output).
    targets: Vec<HeaderName>,
    /// The purge-tag response field, and whether clients get it.
    tag_header: HeaderName,
    strip_tag_header: bool,
    /// Fields removed from passed-through responses: the targeted fields,
    /// and the tag field when `strip_tag_header`.
    pass_strip: Vec<HeaderName>,
    heuristic: HeuristicConfig,
    range_fetch_whole: bool,
    lock_timeout: std::time::Duration,
    max_object_size: u64,
    /// Keys with a stale-while-revalidate refresh running.
    refreshing: Mutex<HashSet<Key>>,
    invalidations: Arc<Invalidations>,
    /// Running pumps, so shutdown can let them commit.
    pumps: tokio_util::task::TaskTracker,
    /// The purge ban list, checked on every hit.
    bans: Arc<BanList>,
    /// The origins' Early Hints for cacheable objects, by URI.
    early_hints: super::early_hints::EarlyHints,
    /// New for every layer built (each configuration load): names the set
    /// of fields left out of client headers in `cache::meta_memo`.
    id: u64,
}

/// One stored response found for a request.
pub struct Found {
    /// The store key (the variant key when the response varies).
    pub key: Key,
    pub handle: ReadHandle,
    pub meta: ObjectMeta,
}

/// What a lookup found under a request's primary key.
pub enum Lookup {
    Miss,
    VaryMiss(VaryMarker),
    Found(Box<Found>, Option<VaryMarker>),
}

impl CacheLayer {
    /// Opens the store; `None` when caching is off everywhere. `bans` is
    /// the node's ban list (loaded from the purge log), checked on every
    /// hit.
    pub async fn open(cfg: &Config, bans: Arc<BanList>) -> Result<Option<CacheLayer>, Error> {
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
            bans,
            early_hints: Default::default(),
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

    /// The figures the node's statistics report for the cache.
    pub fn figures(&self) -> crate::metrics::CacheFigures {
        crate::metrics::CacheFigures {
            store: self.store.stats(),
            fills_in_flight: self.fills_in_flight() as u64,
        }
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

    /// Hands the store over to a new process (a binary upgrade): no new lookups or writes,
    /// bodies being read pin what they need (up to `wait`), fills stream on unstored.
    pub async fn hand_over(
        &self,
        wait: std::time::Duration,
    ) -> Result<outpost_storage::HandOver, outpost_storage::Error> {
        self.store.hand_over(wait).await
    }

    /// The coalescer of fills (one origin fetch per key).
    pub fn coalescer(&self) -> &Arc<Coalescer<FillHead>> {
        &self.coalescer
    }

    /// RFC 9213 targeted fields this cache obeys (and removes on output).
    pub fn targets(&self) -> &[HeaderName] {
        &self.targets
    }

    /// The purge-tag field when it is kept from clients.
    pub fn hidden_tag_header(&self) -> Option<&HeaderName> {
        self.strip_tag_header.then_some(&self.tag_header)
    }

    /// Fields removed from passed-through responses: the targeted fields
    /// (for sites that strip them), and the tag field when it is kept from
    /// clients.
    pub fn pass_strip(&self) -> &[HeaderName] {
        &self.pass_strip
    }

    /// Whether a Range miss fetches the whole object (else it is passed).
    pub fn range_fetch_whole(&self) -> bool {
        self.range_fetch_whole
    }

    /// How long a request waits for another's fill before fetching itself.
    pub fn lock_timeout(&self) -> std::time::Duration {
        self.lock_timeout
    }

    /// Largest object stored.
    pub fn max_object_size(&self) -> u64 {
        self.max_object_size
    }

    /// Names this layer's set of fields left out of client headers (new
    /// for every layer built), for `meta_memo::client_headers_memo`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The ban list checked on every hit.
    pub fn bans(&self) -> &Arc<BanList> {
        &self.bans
    }

    /// Claims the one stale-while-revalidate refresh of `key` (RFC 5861
    /// §3); `false` when one is running. [`Self::end_refresh`] releases it.
    pub fn begin_refresh(&self, key: Key) -> bool {
        self.refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key)
    }

    /// Releases the refresh claimed by [`Self::begin_refresh`].
    pub fn end_refresh(&self, key: &Key) {
        self.refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// The vary marker to store under `primary` for a response that varies
    /// on `names` (its time orders it against invalidations).
    pub fn new_vary_marker(&self, primary: &Key, names: Vec<HeaderName>) -> VaryMarker {
        VaryMarker {
            names,
            created_at: self.invalidations.marker_time(primary),
        }
    }

    /// Stores `meta` as the metadata of the object `handle` read under
    /// `key` (RFC 9111 §4.3.4 freshening); `Ok(false)` when that object is
    /// gone or was replaced meanwhile.
    pub async fn update_meta(
        &self,
        key: &Key,
        handle: &ReadHandle,
        meta: &ObjectMeta,
    ) -> Result<bool, outpost_storage::Error> {
        self.store
            .update_meta_of(key, handle.object_id(), Bytes::from(meta.encode()))
            .await
    }

    /// Starts the pump that streams an origin `body` into the store and to
    /// every reader of `fill` (see [`super::fill`]); shutdown lets it
    /// commit ([`Self::close`]).
    pub fn start_fill<B>(&self, job: FillJob, body: B, fill: FillWriter<FillHead>)
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let job = super::fill::PumpJob {
            store: self.store.clone(),
            invalidations: self.invalidations.clone(),
            job,
        };
        self.pumps.spawn(pump(job, body, fill));
    }

    /// The origins' Early Hints for cacheable objects, by primary key.
    pub fn early_hints(&self) -> &super::early_hints::EarlyHints {
        &self.early_hints
    }

    /// The rules that turn a response into stored metadata.
    pub fn policy(&self) -> MetaPolicy<'_> {
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
        site: &str,
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
        for k in invalidation_keys(site, method, status, &t, headers) {
            self.invalidate(&k);
        }
    }

    /// Makes everything stored under primary key `k` unreachable, including
    /// a fetch in flight for it.
    pub fn invalidate(&self, k: &Key) {
        self.invalidations.record(*k);
        self.store.remove(k);
        for e in Encoding::ALL {
            self.store.remove(&coded_key(k, e));
        }
        self.coalescer.forget(k);
        self.coalescer.clear_pass(k);
        self.early_hints.forget(k);
    }

    /// The stored representation in coding `e` of the object under `base` whose version is
    /// `object_id`, if it was compressed and stored (a variant of an older version is not
    /// it: it is replaced when the new one is compressed).
    pub async fn lookup_coded(
        &self,
        base: &Key,
        object_id: &[u8; 16],
        e: Encoding,
    ) -> Option<ReadHandle> {
        let h = self.get(&coded_key(base, e)).await?;
        (h.meta()[..] == coded_tag(object_id, e)[..]).then_some(h)
    }

    /// Starts storing the representation in coding `e` of version `object_id` of the
    /// object under `base` (committed when the write finishes; see `lookup_coded`).
    pub fn begin_coded(
        &self,
        base: &Key,
        object_id: &[u8; 16],
        e: Encoding,
    ) -> Option<WriteHandle> {
        if self.store.handing_over() {
            return None;
        }
        Some(self.store.begin_write(
            coded_key(base, e),
            Bytes::copy_from_slice(&coded_tag(object_id, e)),
        ))
    }

    /// Slice `key` of the object under `primary` ([`super::slice`]), with the
    /// invalidations and purges of `primary` applied: a slice goes with its URI.
    pub async fn lookup_slice(
        &self,
        primary: &Key,
        key: &Key,
        subject: &BanSubject<'_>,
    ) -> Option<Found> {
        let h = self.get(key).await?;
        if self.bans.catch_up().behind() {
            Box::pin(self.bans.catch_up().wait()).await;
        }
        match decode_stored_record_memo(h.meta()) {
            Ok(Record::Object(mut m))
                if m.status == 206 && !self.invalidations.predates(primary, m.created_at) =>
            {
                if self.banned(subject, &mut m) {
                    return None;
                }
                Some(Found {
                    key: *key,
                    handle: h,
                    meta: *m,
                })
            }
            Ok(_) => {
                self.store.remove(key);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "unreadable slice record dropped");
                self.store.remove(key);
                None
            }
        }
    }

    /// Drops the slices of the object under `primary` that cover `total`
    /// bytes in slices of `size` (a validator change restarts the object).
    pub fn remove_slices(&self, primary: &Key, size: u64, total: u64) {
        let count = total.div_ceil(size.max(1));
        for i in 0..count {
            self.store.remove(&super::slice::slice_key(primary, i));
        }
    }

    async fn get(&self, key: &Key) -> Option<ReadHandle> {
        match self.store.lookup(key).await {
            Ok(h) => h,
            // Handed over to a new process: everything is a miss until this one exits.
            Err(e) if e.kind() == outpost_storage::ErrorKind::Closed => None,
            Err(e) => {
                tracing::warn!(error = %e, "cache lookup failed; treated as a miss");
                None
            }
        }
    }

    /// Applies the ban list to a found object: `true` when it is purged;
    /// a soft ban marks it stale (revalidate, stale-if-error still allowed).
    fn banned(&self, subject: &BanSubject<'_>, m: &mut ObjectMeta) -> bool {
        match self
            .bans
            .check(subject, &m.tags, m.created_at, m.response_time)
        {
            BanVerdict::Hard => true,
            BanVerdict::Soft => {
                m.flags |= flags::FORCED_STALE;
                false
            }
            BanVerdict::None => false,
        }
    }

    /// The stored response for a request, following a vary marker; the
    /// ban list is applied to what is found (`subject`: see
    /// [`super::bans::ban_subject`]).
    pub async fn lookup(
        &self,
        primary: &Key,
        headers: &HeaderMap,
        subject: &BanSubject<'_>,
    ) -> Lookup {
        let Some(h) = self.get(primary).await else {
            return Lookup::Miss;
        };
        // A fleet node catching up on missed purges holds its hits
        // (not its misses) until the ban list is current. Boxed: the wait's
        // state stays out of every hit's future.
        if self.bans.catch_up().behind() {
            Box::pin(self.bans.catch_up().wait()).await;
        }
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

pub fn same_names(a: &[HeaderName], b: &[HeaderName]) -> bool {
    let mut a: Vec<&str> = a.iter().map(|n| n.as_str()).collect();
    let mut b: Vec<&str> = b.iter().map(|n| n.as_str()).collect();
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    a == b
}

/// Remaining freshness for `Cache-Status` `ttl` (RFC 9211 §2.5).
pub fn ttl(meta: &ObjectMeta, now: SystemTime) -> i64 {
    let lifetime = if meta.has(flags::FORCED_STALE) {
        0
    } else {
        meta.lifetime
    };
    i64::try_from(lifetime)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(meta.current_age(now)).unwrap_or(i64::MAX))
}

pub fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Where the representation in coding `e` of the object under `base` is stored: beside
/// it, under a key of its own, removed with it (`invalidate`, purges).
pub fn coded_key(base: &Key, e: Encoding) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(b"outpost-coded-v1\0");
    h.update(base);
    h.update(e.as_str().as_bytes());
    *h.finalize().as_bytes()
}

/// The metadata of a coded representation: the version it was made from, and its coding.
fn coded_tag(object_id: &[u8; 16], e: Encoding) -> [u8; 24] {
    let mut t = [0u8; 24];
    t[..6].copy_from_slice(b"coded\0");
    t[6..22].copy_from_slice(object_id);
    t[22] = e.index() as u8;
    t[23] = 1;
    t
}

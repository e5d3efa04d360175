//! The cached request path for GET and HEAD on a caching site: look the
//! request up (primary key, then the Vary variant, RFC 9111 §4.1), decide
//! how a stored response may be reused (§4.2, §5.2.1), serve it, revalidate
//! it (§4.3), or fetch it once for all concurrent requests (coalescing) and
//! stream it into the store and to every waiting client at once.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::RANGE;
use http::{Method, Response, StatusCode};

use super::body::ProxyBody;
use super::respond::Source;
use super::{Proxy, error_response_for};
use crate::cache::coalesce::{Join, Key, WaitError};
use crate::cache::fill::FillHead;
use crate::cache::freshness::{Decision, Reuse, decide};
use crate::cache::layer::ttl;
use crate::cache::status::CachePhase;
use crate::cache::update::{HeadOutcome, head_outcome};
use crate::cache::vary::variant_key;
use crate::cache::{CACHE_NAME, CacheLayer, Found, Lookup};
use crate::error::{Error, ErrorKind};
use crate::origin::strip_response_hop_by_hop;

pub(super) use super::ctx::Ctx;
use super::fetch::Sharing;
pub(super) use crate::cache::conditional::without_preconditions;

impl Proxy {
    pub(super) fn cache_layer(&self) -> Result<&CacheLayer, Error> {
        self.cache
            .as_deref()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "cache path without a cache"))
    }

    /// Serves a GET or HEAD through the cache. Errors become responses that
    /// carry `Cache-Status` too. `ctx` by reference: the caller keeps it in
    /// its own state (a `Ctx` taken by value is copied into this future and
    /// again into its locals, 640 bytes each time).
    pub(super) async fn cached(self: &Arc<Self>, ctx: &mut Ctx) -> Response<ProxyBody> {
        match self.cached_inner(ctx).await {
            Ok(r) => r,
            Err(e) => {
                match e.kind().fault() {
                    crate::error::Fault::Client => tracing::info!(error = %e, "request refused"),
                    _ => tracing::warn!(error = %e, "request failed"),
                }
                let mut rec = ctx.rec.clone();
                let phase = if e.kind() == ErrorKind::NotCached {
                    CachePhase::OnlyIfCachedMiss
                } else {
                    CachePhase::UriMiss
                };
                rec.cache = phase.as_str();
                let mut r = error_response_for(&e, rec);
                phase
                    .cache_status(CACHE_NAME)
                    .detail(e.kind().as_str())
                    .append_to(r.headers_mut());
                r
            }
        }
    }

    async fn cached_inner(self: &Arc<Self>, ctx: &mut Ctx) -> Result<Response<ProxyBody>, Error> {
        let cache = self.cache_layer()?;
        // Hit-for-pass: a URI whose last answer could not be stored goes
        // straight to the origin, without a store lookup. Only for a plain
        // GET: a Range request is forwarded as it is and `only-if-cached`
        // must look (below). The mark is cleared as soon as an answer is
        // stored (`fetch`), so a URI that turns cacheable is looked up again.
        if ctx.method == Method::GET
            && !ctx.dirs.only_if_cached
            && cache.coalescer().is_pass(&ctx.primary)
            && !crate::fields::has(&ctx.headers, &RANGE)
        {
            let w = Sharing::Alone(ctx.primary);
            return self.fetch(ctx, w, None, CachePhase::UriMiss).await;
        }
        // Set when the in-flight fetch for the URI is for another variant.
        let mut join_key: Option<Key> = None;
        let mut sliced_already = false;
        for _round in 0..4 {
            let (stored, phase) = match cache
                .lookup(&ctx.primary, &ctx.headers, &ctx.ban_subject())
                .await
            {
                Lookup::Found(f, marker) => {
                    ctx.marker = marker;
                    let now = SystemTime::now();
                    let d = decide(&f.meta.facts(now), &ctx.dirs, &ctx.reuse);
                    if d.serve_without_origin() && !first_piece_intact(&f.handle, ctx).await {
                        // The object is dropped (its reader did that): a miss now,
                        // rather than a head followed by a cut-off body.
                        crate::metrics::Counters::global().corrupt_miss();
                        ctx.detail = Some("corrupt");
                        ctx.marker = None;
                        continue;
                    }
                    if d.serve_without_origin() {
                        let phase = if d.reuse == Reuse::Fresh {
                            CachePhase::Hit
                        } else {
                            CachePhase::StaleHit
                        };
                        let cs = phase.cache_status(CACHE_NAME).ttl(d.ttl);
                        let age = d.current_age;
                        return Ok(self
                            .respond(
                                ctx,
                                &f.meta,
                                &f.key,
                                age,
                                cs,
                                phase.as_str(),
                                Source::Stored(f.handle),
                            )
                            .await);
                    }
                    if d.only_if_cached_fails(&ctx.dirs) {
                        return Err(Error::new(
                            ErrorKind::NotCached,
                            "only-if-cached: the stored response needs validation",
                        ));
                    }
                    if d.stale_while_revalidate() {
                        // RFC 5861 §3: serve stale now, refresh in the background.
                        self.spawn_refresh(ctx);
                        let phase = CachePhase::StaleWhileRevalidate;
                        let cs = phase.cache_status(CACHE_NAME).ttl(d.ttl);
                        return Ok(self
                            .respond(
                                ctx,
                                &f.meta,
                                &f.key,
                                d.current_age,
                                cs,
                                phase.as_str(),
                                Source::Stored(f.handle),
                            )
                            .await);
                    }
                    let phase = match d.reuse {
                        Reuse::MustRevalidate { reason, .. } if reason.is_request_driven() => {
                            CachePhase::Request
                        }
                        _ => CachePhase::Stale,
                    };
                    (Some((f, d)), phase)
                }
                Lookup::Miss => {
                    ctx.marker = None;
                    (None, CachePhase::UriMiss)
                }
                Lookup::VaryMiss(m) => {
                    ctx.marker = Some(m);
                    (None, CachePhase::VaryMiss)
                }
            };
            // Fetches are shared per variant once the URI's Vary is known.
            let ck = join_key.unwrap_or_else(|| match &ctx.marker {
                Some(m) => variant_key(&ctx.primary, &m.names, &ctx.headers),
                None => ctx.primary,
            });
            if stored.is_none() && ctx.dirs.only_if_cached {
                // RFC 9111 §5.2.1.7: stored, or being stored right now.
                if let Some(r) = self.serve_from_fill(ctx, ck).await {
                    return Ok(r);
                }
                // A sliced object is stored as its slices, each under a key
                // of its own; the sliced path never asks the origin here.
                if ctx.marker.is_none()
                    && let Some(size) = ctx.site.slice
                {
                    let r = if ctx.method == Method::HEAD {
                        self.sliced_head(ctx, size, phase).await?
                    } else if crate::cache::slice::sliceable_request(&ctx.method, &ctx.headers) {
                        self.sliced(ctx, size, phase).await?
                    } else {
                        None
                    };
                    if let Some(r) = r {
                        return Ok(r);
                    }
                }
                return Err(Error::new(
                    ErrorKind::NotCached,
                    "only-if-cached: not stored",
                ));
            }
            if ctx.method == Method::HEAD {
                // A HEAD has no content to store: a miss is forwarded as
                // HEAD, and a stale GET is checked with one (§4.3.5).
                return match stored {
                    None => match self.serve_from_fill(ctx, ck).await {
                        Some(r) => Ok(r),
                        None => {
                            // A sliced object: its fields from its first slice.
                            if ctx.marker.is_none()
                                && let Some(size) = ctx.site.slice
                                && let Some(r) = self.sliced_head(ctx, size, phase).await?
                            {
                                return Ok(r);
                            }
                            self.pass(ctx, phase, None).await
                        }
                    },
                    Some((f, d)) => self.head_revalidate(ctx, *f, d, phase).await,
                };
            }
            // A site with slices answers a miss from slices of the object
            // (`super::slice`); one that cannot be sliced is fetched whole.
            if stored.is_none()
                && ctx.marker.is_none()
                && join_key.is_none()
                && !sliced_already
                && let Some(size) = ctx.site.slice
                && crate::cache::slice::sliceable_request(&ctx.method, &ctx.headers)
            {
                sliced_already = true;
                // An origin without ranges: its whole answer may be arriving.
                if let Some(r) = self.serve_from_fill(ctx, ck).await {
                    return Ok(r);
                }
                if let Some(r) = self.sliced(ctx, size, phase).await? {
                    return Ok(r);
                }
                if crate::fields::has(&ctx.headers, &RANGE) {
                    // Its slices cannot be stored: the range alone, not the object.
                    return self.pass(ctx, phase, Some("range")).await;
                }
            }
            if stored.is_none()
                && !cache.range_fetch_whole()
                && crate::fields::has(&ctx.headers, &RANGE)
            {
                return self.pass(ctx, phase, Some("range")).await;
            }
            tracing::debug!(
                phase = phase.as_str(),
                stored = stored.is_some(),
                "cache lookup"
            );
            match cache.coalescer().join(ck) {
                Join::Leader(w) => {
                    let w = Sharing::Fill(w);
                    // A fill may have committed and left while our lookup
                    // was reading the disk: look again before fetching.
                    if stored.is_none()
                        && matches!(
                            cache
                                .lookup(&ctx.primary, &ctx.headers, &ctx.ban_subject())
                                .await,
                            Lookup::Found(..)
                        )
                    {
                        drop(w); // waiters retry too
                        continue;
                    }
                    return self.fetch(ctx, w, stored, phase).await;
                }
                Join::Wait(waiter) => {
                    // Past the fill's window: once it ends, the object is
                    // in the store; waiting is bounded like any follower's.
                    if tokio::time::timeout(cache.lock_timeout(), waiter.ended())
                        .await
                        .is_err()
                    {
                        let w = Sharing::Alone(ck);
                        return self.fetch(ctx, w, stored, phase).await;
                    }
                    continue;
                }
                Join::Pass => {
                    let w = Sharing::Alone(ck);
                    return self.fetch(ctx, w, stored, phase).await;
                }
                Join::Follower(r) => {
                    // A request that joins after the head arrived is served
                    // from the fill only if the response suits it (§4.2);
                    // one that waited for the fetch shares its response.
                    let late = r.try_head().is_some();
                    match cache.coalescer().wait_head(&r).await {
                        Ok(head) => match &*head {
                            FillHead::Refreshed => continue,
                            FillHead::Failed(kind) => {
                                if let Some((f, d)) = stored {
                                    if d.can_serve_stale_if_error() {
                                        return Ok(self.serve_stale_if_error(ctx, *f, None).await);
                                    }
                                    return Err(Error::new(
                                        ErrorKind::RevalidationFailed,
                                        format!("shared revalidation failed: {}", kind.as_str()),
                                    ));
                                }
                                return Err(Error::new(*kind, "the shared origin fetch failed"));
                            }
                            FillHead::Stream {
                                meta,
                                key,
                                fwd_status,
                            } => {
                                let mine = if meta.vary.is_empty() {
                                    ctx.primary
                                } else {
                                    variant_key(&ctx.primary, &meta.vary, &ctx.headers)
                                };
                                if mine != *key {
                                    // Another variant: share the fetch of ours.
                                    join_key = Some(mine);
                                    continue;
                                }
                                let now = SystemTime::now();
                                let cs = if late {
                                    let d = decide(&meta.facts(now), &ctx.dirs, &ctx.reuse);
                                    if !d.serve_without_origin() {
                                        // Not usable as it is: once stored,
                                        // revalidate it like any stored response.
                                        r.into_waiter().ended().await;
                                        continue;
                                    }
                                    // Not forwarded: a hit on the object being stored.
                                    CachePhase::Hit.cache_status(CACHE_NAME).ttl(d.ttl)
                                } else {
                                    CachePhase::Collapsed
                                        .cache_status(CACHE_NAME)
                                        .fwd_status(*fwd_status)
                                        .ttl(ttl(meta, now))
                                };
                                let phase = if late {
                                    CachePhase::Hit
                                } else {
                                    CachePhase::Collapsed
                                };
                                let age = meta.current_age(now);
                                return Ok(self
                                    .respond(
                                        ctx,
                                        meta,
                                        key,
                                        age,
                                        cs,
                                        phase.as_str(),
                                        Source::Fill(r),
                                    )
                                    .await);
                            }
                        },
                        Err(WaitError::Abandoned) => continue,
                        Err(_) => {
                            let w = Sharing::Alone(ck);
                            return self.fetch(ctx, w, stored, phase).await;
                        }
                    }
                }
            }
        }
        let w = Sharing::Alone(ctx.primary);
        self.fetch(ctx, w, None, CachePhase::UriMiss).await
    }

    /// Serves the request from a fetch in flight for `ck` whose head has
    /// arrived, if it matches the request's variant and is fresh enough.
    async fn serve_from_fill(&self, ctx: &Ctx, ck: Key) -> Option<Response<ProxyBody>> {
        let cache = self.cache.as_ref()?;
        let r = cache.coalescer().join_existing(&ck)?;
        let head = r.try_head()?;
        let FillHead::Stream { meta, key, .. } = &*head else {
            return None;
        };
        if !meta.vary.is_empty() && *key != variant_key(&ctx.primary, &meta.vary, &ctx.headers) {
            return None;
        }
        let d = decide(&meta.facts(SystemTime::now()), &ctx.dirs, &ctx.reuse);
        if !d.serve_without_origin() {
            return None;
        }
        let cs = CachePhase::Hit.cache_status(CACHE_NAME).ttl(d.ttl);
        let phase = CachePhase::Hit.as_str();
        Some(
            self.respond(ctx, meta, key, d.current_age, cs, phase, Source::Fill(r))
                .await,
        )
    }

    /// A HEAD for a stale stored GET: forwarded as HEAD; a 200 whose
    /// validators match freshens the stored GET's headers (RFC 9111 §4.3.5).
    async fn head_revalidate(
        &self,
        ctx: &Ctx,
        f: Found,
        d: Decision,
        phase: CachePhase,
    ) -> Result<Response<ProxyBody>, Error> {
        let cache = self.cache_layer()?;
        let headers = without_preconditions(&ctx.headers);
        let req_time = SystemTime::now();
        let result = self.send_cacheable(ctx, &Method::HEAD, &headers).await;
        let resp_time = SystemTime::now();
        let mut resp = match result {
            Ok(r) => r,
            Err(_) if d.can_serve_stale_if_error() => {
                return Ok(self.serve_stale_if_error(ctx, f, None).await);
            }
            Err(e) => return Err(Error::new(ErrorKind::RevalidationFailed, e.to_string())),
        };
        strip_response_hop_by_hop(&mut resp);
        if resp.status() == StatusCode::OK
            && head_outcome(
                &f.meta.header_map(),
                resp.headers(),
                Some(f.handle.body_len()),
            ) == HeadOutcome::Update
        {
            let mut meta = f.meta;
            meta.apply_update(resp.headers(), &[], &cache.policy(), req_time, resp_time);
            // Boxed: see `fetch`.
            if let Err(e) = Box::pin(cache.update_meta(&f.key, &f.handle, &meta)).await {
                tracing::warn!(error = %e, "storing refreshed headers failed");
            }
        }
        Ok(self.pass_response(ctx, resp, phase, None))
    }

    pub(super) async fn serve_stale_if_error(
        &self,
        ctx: &Ctx,
        f: Found,
        fwd_status: Option<StatusCode>,
    ) -> Response<ProxyBody> {
        // RFC 5861 §4
        let now = SystemTime::now();
        let phase = CachePhase::StaleIfError;
        let mut cs = phase.cache_status(CACHE_NAME).ttl(ttl(&f.meta, now));
        if let Some(s) = fwd_status {
            cs = cs.fwd_status(s.as_u16());
        }
        let age = f.meta.current_age(now);
        self.respond(
            ctx,
            &f.meta,
            &f.key,
            age,
            cs,
            phase.as_str(),
            Source::Stored(f.handle),
        )
        .await
    }

    /// Starts the one background refresh of a stale key (RFC 5861 §3).
    fn spawn_refresh(self: &Arc<Self>, ctx: &Ctx) {
        let Some(cache) = self.cache.as_ref() else {
            return;
        };
        if !cache.begin_refresh(ctx.primary) {
            return;
        }
        let this = self.clone();
        let mut bg = ctx.background();
        tokio::spawn(async move {
            this.refresh(&mut bg).await;
            if let Some(cache) = this.cache.as_ref() {
                cache.end_refresh(&bg.primary);
            }
        });
    }

    async fn refresh(&self, ctx: &mut Ctx) {
        let Some(cache) = self.cache.as_ref() else {
            return;
        };
        let Lookup::Found(f, marker) = cache
            .lookup(&ctx.primary, &ctx.headers, &ctx.ban_subject())
            .await
        else {
            return;
        };
        ctx.marker = marker;
        let d = decide(&f.meta.facts(SystemTime::now()), &ctx.dirs, &ctx.reuse);
        if d.reuse == Reuse::Fresh {
            return;
        }
        // Only if no other fetch for the key is running.
        if let Join::Leader(w) = cache.coalescer().join(ctx.primary) {
            match self
                .fetch(ctx, Sharing::Fill(w), Some((f, d)), CachePhase::Stale)
                .await
            {
                // The pump stores the body without us reading it.
                Ok(resp) => drop(resp),
                Err(e) => tracing::warn!(error = %e, "background refresh failed"),
            }
        }
    }
}

/// Whether the first piece of the body a hit would send can be read (RFC 9111 §3.3: a
/// cache must not send a stored response it cannot send whole). Checked before the head
/// goes out: a body kept in the head needs no check, and neither does a Range request
/// (its pieces are read where it starts) or a HEAD. A piece that fails drops the object;
/// one that reads is kept in `ctx` for the body, which goes on from it.
async fn first_piece_intact(h: &outpost_storage::ReadHandle, ctx: &Ctx) -> bool {
    if h.inline_body().is_some()
        || h.body_len() == 0
        || ctx.method != Method::GET
        || crate::fields::has(&ctx.headers, &RANGE)
    {
        return true;
    }
    let mut reader = h.reader(0);
    match reader.next_chunk().await {
        Ok(Some(first)) => {
            if let Ok(mut p) = ctx.prefetched.lock() {
                *p = Some(Box::new((reader, first)));
            }
            true
        }
        Ok(None) => true,
        Err(_) => false,
    }
}

//! The sliced path of a site with `slice`: a GET that missed is answered
//! from aligned slices of the object ([`crate::cache::slice`]), each looked
//! up on its own, fetched from the origin with a `Range` request when
//! missing (coalesced per slice), stored as a partial response (RFC 9111
//! §3.3), and streamed to the client in order as the body goes on. Only the
//! slices the request covers are fetched. A slice of another
//! representation (RFC 9111 §3.4: strong validators must match) restarts
//! the object: its slices are dropped and the answer is cut off, so no
//! client gets bytes of two versions.
//!
//! It knows the cache layer, the coalescer and the origin fetch; the slice
//! arithmetic and validator rules are the cache's, and the body's walk over
//! the slices is [`super::slice_walk`].

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, AGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, RANGE,
};
use http::{HeaderMap, Method, Response, StatusCode, Version};
use outpost_storage::ReadHandle;

use super::Proxy;
use super::body::ProxyBody;
use super::cached::{Ctx, without_preconditions};
use super::fetch::Sharing;
use crate::cache::coalesce::{FillReader, FillWriter, Join, Key, WaitError};
use crate::cache::conditional::{Validators, evaluate, if_range_allows};
use crate::cache::control::effective_response_control;
use crate::cache::fill::{FillHead, FillJob};
use crate::cache::freshness::{age_header_value, decide};
use crate::cache::layer::{content_length, ttl};
use crate::cache::meta::{ObjectMeta, flags, new_object_id};
use crate::cache::range::{ByteRange, content_range, unsatisfied_content_range};
use crate::cache::slice::{
    Representation, Selected, first_slice, parse_content_range, select, slice_bounds, slice_key,
    slice_request, slice_storability,
};
use crate::cache::status::{CachePhase, CacheStatus, Fwd};
use crate::cache::update::stored_header_list;
use crate::cache::{CACHE_NAME, Found};
use crate::error::{Error, ErrorKind};
use crate::metrics::Counters;
use crate::origin::headers::add_via;
use crate::origin::{ResponseBody, strip_response_hop_by_hop};

/// The most slices an answer may cover and still be checked for a hit.
const HIT_CHECK_SLICES: u64 = 16;
/// The most slices an `only-if-cached` answer may cover: each is looked up
/// before the answer starts; a longer one is answered with a 504.
const ONLY_IF_CACHED_SLICES: u64 = 4096;

/// A slice ready to be read.
pub(super) struct Slice {
    pub(super) index: u64,
    meta: Arc<ObjectMeta>,
    pub(super) rep: Representation,
    /// The bytes of the representation it holds.
    pub(super) bounds: ByteRange,
    pub(super) piece: Piece,
    /// Read from the store, not fetched.
    pub(super) hit: bool,
    /// Stale, served because the origin failed.
    stale: bool,
}

/// Where a slice's bytes come from.
pub(super) enum Piece {
    Stored(ReadHandle),
    Fill(FillReader<FillHead>),
}

/// When a fetch's request was sent, when its response head came, and when
/// it started.
type FetchTimes = (SystemTime, SystemTime, Instant);

/// What asking for a slice gave.
pub(super) enum Got {
    Slice(Box<Slice>),
    /// The origin answered other than with a 206 (it ignores `Range`, or
    /// the object is missing, or an error): its answer, for the
    /// whole-object path, with the times of the fetch.
    Answer(Box<(Response<ResponseBody>, FetchTimes)>),
    /// A 206 that cannot be stored or combined (no strong validator, `Vary`,
    /// `no-store`, a range other than asked): the object is fetched whole.
    Unusable,
}

impl Slice {
    /// A slice from its metadata, if it is the 206 slice `index` should be.
    fn of(meta: Arc<ObjectMeta>, index: u64, size: u64, piece: Piece, hit: bool) -> Option<Slice> {
        let fields = meta.header_map();
        let (bounds, total) = parse_content_range(&fields)?;
        if slice_bounds(index, size, total) != Some(bounds) {
            return None;
        }
        let rep = Representation::of(&fields, total)?;
        Some(Slice {
            index,
            meta,
            rep,
            bounds,
            piece,
            hit,
            stale: false,
        })
    }

    fn from_found(f: Found, index: u64, size: u64) -> Option<Slice> {
        let s = Slice::of(Arc::new(f.meta), index, size, Piece::Stored(f.handle), true)?;
        match &s.piece {
            Piece::Stored(h) if h.body_len() == s.bounds.len() => Some(s),
            _ => None,
        }
    }
}

impl Proxy {
    /// Answers a GET that missed on a site with slices of `size` bytes;
    /// `None` when the object cannot be sliced (it is then fetched whole).
    pub(super) async fn sliced(
        self: &Arc<Self>,
        ctx: &Ctx,
        size: u64,
        phase: CachePhase,
    ) -> Result<Option<Response<ProxyBody>>, Error> {
        let first = first_slice(&ctx.headers, size);
        let s = match Box::pin(self.get_slice(ctx, size, first, None)).await? {
            Got::Slice(s) => s,
            Got::Unusable => return Ok(None),
            Got::Answer(answer) => {
                let (resp, times) = *answer;
                // Stored whole if it can be: later requests are hits on it.
                let coalescer = self.cache_layer()?.coalescer();
                let w = match coalescer.join(ctx.primary) {
                    Join::Leader(w) => Sharing::Fill(w),
                    _ => Sharing::Alone(ctx.primary),
                };
                let r = Box::pin(self.fetched(ctx, w, None, phase, Ok(resp), times)).await?;
                return Ok(Some(r));
            }
        };
        self.slice_response(ctx, size, phase, s).await.map(Some)
    }

    /// A HEAD on a site with slices whose object is not stored whole: the
    /// fields a GET would get (RFC 9110 §9.3.2), from the first slice when
    /// it is stored and may be served without the origin; `None` when it
    /// is not. A HEAD has no content, so no other slice is needed.
    pub(super) async fn sliced_head(
        self: &Arc<Self>,
        ctx: &Ctx,
        size: u64,
        phase: CachePhase,
    ) -> Result<Option<Response<ProxyBody>>, Error> {
        let cache = self.cache_layer()?;
        let key = slice_key(&ctx.primary, 0);
        let Some(f) = cache
            .lookup_slice(&ctx.primary, &key, &ctx.ban_subject())
            .await
        else {
            return Ok(None);
        };
        let d = decide(&f.meta.facts(SystemTime::now()), &ctx.dirs, &ctx.reuse);
        if !d.serve_without_origin() {
            return Ok(None);
        }
        let Some(s) = Slice::from_found(f, 0, size) else {
            return Ok(None);
        };
        Counters::global().slice_hit();
        self.slice_response(ctx, size, phase, Box::new(s))
            .await
            .map(Some)
    }

    /// Whether every slice of `r` but `held` is in the store now (looked at
    /// for answers of up to `limit` slices; longer ones say no). With
    /// `usable`, each must also be one the request may be answered with
    /// without the origin.
    async fn all_stored(
        &self,
        ctx: &Ctx,
        size: u64,
        r: ByteRange,
        held: u64,
        limit: u64,
        usable: bool,
    ) -> bool {
        let (first, last) = (r.start / size, r.end / size);
        if last - first >= limit {
            return false;
        }
        let Ok(cache) = self.cache_layer() else {
            return false;
        };
        for i in (first..=last).filter(|i| *i != held) {
            let key = slice_key(&ctx.primary, i);
            let Some(f) = cache
                .lookup_slice(&ctx.primary, &key, &ctx.ban_subject())
                .await
            else {
                return false;
            };
            if usable
                && !decide(&f.meta.facts(SystemTime::now()), &ctx.dirs, &ctx.reuse)
                    .serve_without_origin()
            {
                return false;
            }
        }
        true
    }

    /// The response to `ctx` whose first slice read is `s`.
    async fn slice_response(
        self: &Arc<Self>,
        ctx: &Ctx,
        size: u64,
        phase: CachePhase,
        s: Box<Slice>,
    ) -> Result<Response<ProxyBody>, Error> {
        let total = s.rep.total;
        let now = SystemTime::now();
        let mut headers = self.client_fields(ctx, &s.meta);
        headers.remove(CONTENT_RANGE);
        headers.insert(AGE, age_header_value(s.meta.current_age(now)));
        add_via(&mut headers, self.via.get(Version::HTTP_11));
        let validators = Validators::from_headers(&headers, Some(s.meta.response_time));
        let head = ctx.method == Method::HEAD;
        // RFC 9110 §14.2: Range applies to GET only.
        let sel = select(
            &ctx.headers,
            total,
            !head && if_range_allows(&ctx.headers, &validators),
        );
        let bytes = sel.bytes(total);
        // A hit when the slice read, and every other slice it covers, is
        // stored; `partial` when some may have to be fetched (RFC 9211 §2.2).
        let within = match bytes {
            // A HEAD sends no slice's bytes.
            _ if head => true,
            Some(r)
                if ctx.dirs.only_if_cached
                    && (r.start < s.bounds.start || r.end > s.bounds.end) =>
            {
                // RFC 9111 §5.2.1.7: every slice stored, or no answer but a 504.
                if !self
                    .all_stored(ctx, size, r, s.index, ONLY_IF_CACHED_SLICES, true)
                    .await
                {
                    return Err(Error::new(
                        ErrorKind::NotCached,
                        "only-if-cached: a slice of the answer is not stored",
                    ));
                }
                true
            }
            Some(r) if s.hit && (r.start < s.bounds.start || r.end > s.bounds.end) => {
                self.all_stored(ctx, size, r, s.index, HIT_CHECK_SLICES, false)
                    .await
            }
            _ => true,
        };
        let (cs, log) = match (s.hit, within) {
            // RFC 9111 §4.2.4: stale, the origin having failed.
            _ if s.stale => (
                CachePhase::StaleIfError
                    .cache_status(CACHE_NAME)
                    .ttl(ttl(&s.meta, now)),
                CachePhase::StaleIfError.as_str(),
            ),
            (true, true) => (
                CachePhase::Hit
                    .cache_status(CACHE_NAME)
                    .ttl(ttl(&s.meta, now)),
                CachePhase::Hit.as_str(),
            ),
            (true, false) => (
                CacheStatus::new(CACHE_NAME)
                    .fwd(Fwd::Partial)
                    .ttl(ttl(&s.meta, now)),
                Fwd::Partial.as_str(),
            ),
            (false, _) => (
                phase
                    .cache_status(CACHE_NAME)
                    .fwd_status(206)
                    .stored()
                    .ttl(ttl(&s.meta, now)),
                phase.as_str(),
            ),
        };
        cs.append_to(&mut headers);
        let mut rec = ctx.rec.clone();
        rec.cache = log;
        // RFC 9110 §13.2.2: preconditions against the representation's validators.
        let outcome = evaluate(&ctx.method, &ctx.headers, &validators);
        let (mut headers, rec) = match self.preconditioned(outcome, headers, rec) {
            Ok(proceed) => proceed,
            Err(answer) => return Ok(answer),
        };
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let Some(r) = bytes else {
            if sel == Selected::Unsatisfiable {
                // RFC 9110 §15.5.17
                headers.insert(CONTENT_RANGE, unsatisfied_content_range(total));
                headers.remove(CONTENT_TYPE);
            }
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
            return Ok(self.build(sel.status(), headers, None, rec));
        };
        if sel != Selected::Full {
            headers.insert(CONTENT_RANGE, content_range(&r, total));
        }
        headers.insert(CONTENT_LENGTH, HeaderValue::from(r.len()));
        if head {
            return Ok(self.build(sel.status(), headers, None, rec));
        }
        let walk = super::slice_walk::Walk {
            proxy: self.clone(),
            ctx: Arc::new(ctx.for_slices()),
            size,
            rep: s.rep.clone(),
            next: r.start,
            end: r.end,
            // RFC 9111 §5.2.1.7: every slice was checked as of now; one
            // that goes stale while the body is sent is still sent, as
            // the origin may not be asked.
            as_of: ctx.dirs.only_if_cached.then_some(now),
            held: Some(s),
            current: None,
            left: 0,
            done: false,
        };
        let body = walk.into_body();
        Ok(self.build(sel.status(), headers, Some(body), rec))
    }

    /// The stored fields a client gets: the targeted fields when the site
    /// strips them, and the tag field when it is hidden, are left out.
    fn client_fields(&self, ctx: &Ctx, meta: &ObjectMeta) -> HeaderMap {
        let Some(cache) = self.cache.as_ref() else {
            return meta.header_map();
        };
        let tag = cache.hidden_tag_header();
        let targets: &[http::HeaderName] = if ctx.site.strip_targeted_fields {
            cache.targets()
        } else {
            &[]
        };
        meta.header_map_without(|n| targets.contains(n) || Some(n) == tag)
    }

    /// Slice `index` of the request's object: from the store when it is
    /// there and fresh, else from the fetch of it in flight, else fetched.
    /// Freshness is judged as of `as_of` when given, else now.
    pub(super) async fn get_slice(
        &self,
        ctx: &Ctx,
        size: u64,
        index: u64,
        as_of: Option<SystemTime>,
    ) -> Result<Got, Error> {
        let cache = self.cache_layer()?;
        let key = slice_key(&ctx.primary, index);
        // A stale slice that may stand in when the origin fails (RFC 9111
        // §4.2.4, `stale-if-error`, a site's `stale_on_error`).
        let mut fallback: Option<Found> = None;
        for _round in 0..4 {
            if let Some(f) = cache
                .lookup_slice(&ctx.primary, &key, &ctx.ban_subject())
                .await
            {
                let at = as_of.unwrap_or_else(SystemTime::now);
                let d = decide(&f.meta.facts(at), &ctx.dirs, &ctx.reuse);
                if d.serve_without_origin() {
                    if let Some(s) = Slice::from_found(f, index, size) {
                        Counters::global().slice_hit();
                        return Ok(Got::Slice(Box::new(s)));
                    }
                    // Not the slice it should be: dropped and fetched again.
                    cache.store().remove(&key);
                } else if d.can_serve_stale_if_error() {
                    fallback = Some(f);
                }
            }
            if ctx.dirs.only_if_cached {
                // RFC 9111 §5.2.1.7: never the origin.
                return Err(Error::new(
                    ErrorKind::NotCached,
                    "only-if-cached: a slice is not stored",
                ));
            }
            match cache.coalescer().join(key) {
                Join::Leader(w) => {
                    let got = self.fetch_slice(ctx, w, size, index, key).await;
                    return stale_on_failure(got, fallback, index, size);
                }
                Join::Pass => break,
                Join::Wait(waiter) => {
                    if tokio::time::timeout(cache.lock_timeout(), waiter.ended())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Join::Follower(r) => match cache.coalescer().wait_head(&r).await {
                    Ok(head) => match &*head {
                        FillHead::Stream { meta, key: k, .. } if *k == key => {
                            let s = Slice::of(meta.clone(), index, size, Piece::Fill(r), false);
                            match s {
                                Some(s) => return Ok(Got::Slice(Box::new(s))),
                                None => break,
                            }
                        }
                        FillHead::Failed(kind) => {
                            return Err(Error::new(*kind, "the shared slice fetch failed"));
                        }
                        _ => {}
                    },
                    Err(WaitError::Abandoned) => {}
                    Err(_) => break,
                },
            }
        }
        let w = cache.coalescer().solo(key);
        let got = self.fetch_slice(ctx, w, size, index, key).await;
        stale_on_failure(got, fallback, index, size)
    }

    /// Fetches slice `index` (stored under `key`) with a `Range` request
    /// (RFC 9110 §14.2) and streams it into the store and to every request
    /// that joined `w`.
    async fn fetch_slice(
        &self,
        ctx: &Ctx,
        w: FillWriter<FillHead>,
        size: u64,
        index: u64,
        key: Key,
    ) -> Result<Got, Error> {
        let cache = self.cache_layer()?;
        let mut headers = without_preconditions(&ctx.headers).into_owned();
        headers.insert(RANGE, slice_request(index, size));
        let req_time = SystemTime::now();
        let started = Instant::now();
        let result = self.send_cacheable(ctx, &Method::GET, &headers).await;
        let resp_time = SystemTime::now();
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                w.publish(Arc::new(FillHead::Failed(e.kind())));
                w.finish();
                return Err(e);
            }
        };
        Counters::global().slice_fetch();
        strip_response_hop_by_hop(&mut resp);
        if resp.status() != StatusCode::PARTIAL_CONTENT {
            w.release_once();
            return Ok(Got::Answer(Box::new((
                resp,
                (req_time, resp_time, started),
            ))));
        }
        let control = effective_response_control(resp.headers(), cache.targets());
        let storable = slice_storability(&ctx.headers, &ctx.dirs, resp.headers(), &control);
        let shape = parse_content_range(resp.headers())
            .filter(|(r, total)| slice_bounds(index, size, *total) == Some(*r));
        let (Ok(s), Some((bounds, total))) = (storable, shape) else {
            tracing::info!(
                index,
                "origin's slice cannot be stored; fetching the object whole"
            );
            w.release_once();
            return Ok(Got::Unusable);
        };
        let Some(rep) = Representation::of(resp.headers(), total) else {
            tracing::info!("slices without a strong validator cannot be combined; fetching whole");
            w.release_once();
            return Ok(Got::Unusable);
        };
        let list = stored_header_list(resp.headers(), &s.strip_fields);
        let mut meta = ObjectMeta::from_response(
            new_object_id(&key),
            StatusCode::PARTIAL_CONTENT,
            list,
            &cache.policy(),
            req_time,
            resp_time,
        );
        if !meta.vary.is_empty() || bounds.len() > cache.max_object_size() {
            w.release_once();
            return Ok(Got::Unusable);
        }
        meta.flags |= flags::COMPLETE;
        let meta = Arc::new(meta);
        let head = Arc::new(FillHead::Stream {
            meta: meta.clone(),
            key,
            fwd_status: 206,
        });
        let Some(reader) = w.publish(head) else {
            return Err(Error::new(
                ErrorKind::Internal,
                "slice fill started without us",
            ));
        };
        let (parts, body) = resp.into_parts();
        let job = FillJob {
            key,
            meta: Bytes::from(meta.encode()),
            marker: None,
            expected_len: content_length(&parts.headers),
            idle: self.idle_body,
            primary: ctx.primary,
            started,
        };
        cache.start_fill(job, body, w);
        Ok(Got::Slice(Box::new(Slice {
            index,
            meta,
            rep,
            bounds,
            piece: Piece::Fill(reader),
            hit: false,
            stale: false,
        })))
    }
}

/// What a slice fetch gave, or the stale slice `fallback` in its place when
/// the origin failed: no answer, or a 5xx (RFC 9111 §4.2.4).
fn stale_on_failure(
    got: Result<Got, Error>,
    fallback: Option<Found>,
    index: u64,
    size: u64,
) -> Result<Got, Error> {
    let failed = match &got {
        Err(_) => true,
        Ok(Got::Answer(a)) => a.0.status().is_server_error(),
        Ok(_) => false,
    };
    match fallback {
        Some(f) if failed => match Slice::from_found(f, index, size) {
            Some(mut s) => {
                s.stale = true;
                tracing::info!(index, "origin failed: a stale slice served");
                Counters::global().slice_hit();
                Ok(Got::Slice(Box::new(s)))
            }
            None => got,
        },
        _ => got,
    }
}

//! Fetching a response for the cache: a whole-object or conditional GET
//! to the origin (RFC 9111 §4.3.1), then a 304 freshens the stored
//! response (§4.3.4), a 5xx may fall back to it (RFC 5861 §4), and a
//! storable answer is streamed into the store and to every waiting client.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Response, StatusCode};

use super::Proxy;
use super::body::ProxyBody;
use super::cached::{Ctx, without_preconditions};
use super::respond::Source;
use crate::cache::coalesce::{Coalescer, FillWriter, Key};
use crate::cache::conditional::revalidation_request_headers;
use crate::cache::control::effective_response_control;
use crate::cache::fill::{FillHead, FillJob};
use crate::cache::freshness::{Decision, storability};
use crate::cache::layer::{content_length, same_names, ttl};
use crate::cache::meta::{ObjectMeta, flags, new_object_id};
use crate::cache::status::{CachePhase, NoCacheReason};
use crate::cache::update::{select_for_update, stored_header_list};
use crate::cache::vary::variant_key;
use crate::cache::{CACHE_NAME, Found};
use crate::error::{Error, ErrorKind};
use crate::origin::OriginRequest;
use crate::origin::interim::Interim;
use crate::origin::strip_response_hop_by_hop;

/// Who shares a fetch's answer: the requests that joined its fill, or
/// nobody (a URI marked hit-for-pass, a request that gave up waiting for
/// another's fetch): then no fill is made unless the answer is stored.
pub(super) enum Sharing {
    Fill(FillWriter<FillHead>),
    /// The key a fill would be made for.
    Alone(Key),
}

impl Sharing {
    /// No answer to share: followers learn why (and fetch themselves).
    fn failed(self, kind: ErrorKind) {
        if let Sharing::Fill(w) = self {
            w.publish(Arc::new(FillHead::Failed(kind)));
            w.finish();
        }
    }

    /// The stored response was freshened: followers look it up again.
    fn refreshed(self) {
        if let Sharing::Fill(w) = self {
            w.publish(Arc::new(FillHead::Refreshed));
            w.finish();
        }
    }

    /// The answer is not shared, this time only (an error status, or a
    /// request-driven reason such as `Authorization`).
    fn release_once(self) {
        if let Sharing::Fill(w) = self {
            w.release_once();
        }
    }

    /// The answer is not shared, and the key is marked hit-for-pass (again).
    fn release(self, coalescer: &Coalescer<FillHead>) {
        match self {
            Sharing::Fill(w) => w.release(),
            Sharing::Alone(key) => coalescer.remember_pass(key),
        }
    }

    /// The fill a storable answer is streamed through.
    fn writer(self, coalescer: &Arc<Coalescer<FillHead>>) -> FillWriter<FillHead> {
        match self {
            Sharing::Fill(w) => w,
            Sharing::Alone(key) => coalescer.solo(key),
        }
    }
}

impl Proxy {
    /// Sends a cache fill or revalidation upstream: to the object's shield
    /// when the site has shields (and the request did not come from an
    /// edge), else, or when no shield answers, to the origin.
    pub(super) async fn send_cacheable(
        &self,
        ctx: &Ctx,
        method: &Method,
        headers: &http::HeaderMap,
    ) -> Result<Response<crate::origin::ResponseBody>, Error> {
        let fwd = self.forwarding(ctx.client_version, ctx.client_ip, ctx.target.scheme);
        if let Some(shields) = ctx.site.shields.as_ref().filter(|_| !ctx.shield_hop) {
            let mut to_shield = headers.clone();
            to_shield.insert(crate::cluster::HOP.clone(), shields.hop().clone());
            let answer = shields
                .send(OriginRequest {
                    method,
                    path_and_query: &ctx.target.path_and_query,
                    headers: &to_shield,
                    body: None,
                    fwd: &fwd,
                    hash_key: Some(&ctx.primary),
                    prefer: None,
                    drop_fields: ctx.site.hide.response_strip(),
                })
                .await;
            if let Some(r) = answer {
                return Ok(r);
            }
        }
        ctx.site
            .pool
            .send(OriginRequest {
                method,
                path_and_query: &ctx.target.path_and_query,
                headers,
                body: None,
                fwd: &fwd,
                hash_key: ctx.balance_key.as_ref(),
                prefer: ctx.sticky.prefer,
                drop_fields: ctx.site.hide.response_strip(),
            })
            .await
    }

    /// Fetches the whole response from the origin (conditionally when a
    /// stale response is stored), stores it if allowed, and answers the
    /// request. `writer`: who shares the response.
    pub(super) async fn fetch(
        &self,
        ctx: &Ctx,
        writer: Sharing,
        stored: Option<(Box<Found>, Decision)>,
        phase: CachePhase,
    ) -> Result<Response<ProxyBody>, Error> {
        let headers = match &stored {
            // RFC 9111 §4.3.1: validators from the stored response.
            Some((f, _)) => std::borrow::Cow::Owned(revalidation_request_headers(
                &ctx.headers,
                &f.meta.header_map(),
            )),
            None => without_preconditions(&ctx.headers),
        };
        if ctx.site.early_hints {
            self.send_early_hints(ctx, stored.as_ref().map(|(f, _)| &f.meta));
        }
        // Precise clocks: the response time becomes the object's creation
        // time, which is ordered against Vary markers and purges.
        let req_time = SystemTime::now();
        let started = Instant::now();
        let result = self.send_cacheable(ctx, &Method::GET, &headers).await;
        let resp_time = SystemTime::now();
        self.fetched(
            ctx,
            writer,
            stored,
            phase,
            result,
            (req_time, resp_time, started),
        )
        .await
    }

    /// Handles the origin's answer to a fetch (see [`Self::fetch`]); `times`:
    /// when the request was sent, when its response head came, and when the
    /// fetch started.
    pub(super) async fn fetched(
        &self,
        ctx: &Ctx,
        writer: Sharing,
        stored: Option<(Box<Found>, Decision)>,
        phase: CachePhase,
        result: Result<Response<crate::origin::ResponseBody>, Error>,
        times: (SystemTime, SystemTime, Instant),
    ) -> Result<Response<ProxyBody>, Error> {
        let cache = self.cache_layer()?;
        let (req_time, resp_time, started) = times;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                writer.failed(e.kind());
                return match stored {
                    Some((f, d)) if d.can_serve_stale_if_error() => {
                        Ok(self.serve_stale_if_error(ctx, *f, None).await)
                    }
                    // RFC 9111 §5.2.2.2: an error, not the stale response.
                    Some(_) => Err(Error::new(ErrorKind::RevalidationFailed, e.to_string())),
                    None => Err(e),
                };
            }
        };
        // Hop-by-hop fields are neither stored nor forwarded (RFC 9110 §7.6.1).
        strip_response_hop_by_hop(&mut resp);
        let status = resp.status();
        let (stored, stored_decision) = match stored {
            Some((f, d)) => (Some(f), Some(d)),
            None => (None, None),
        };

        // RFC 9111 §4.3.3, §4.3.4: a 304 freshens the stored response.
        if status == StatusCode::NOT_MODIFIED
            && let Some(f) = stored.as_ref()
            && select_for_update(&f.meta.header_map(), resp.headers(), true)
        {
            let Some(f) = stored else {
                return Err(Error::new(ErrorKind::Internal, "stored response vanished"));
            };
            let mut meta = f.meta;
            meta.apply_update(resp.headers(), &[], &cache.policy(), req_time, resp_time);
            // Boxed: the store's future is large and revalidations are
            // rare; inline, it would grow every request's future.
            match Box::pin(cache.update_meta(&f.key, &f.handle, &meta)).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!("revalidated object was evicted meanwhile"),
                Err(e) => tracing::warn!(error = %e, "storing refreshed headers failed"),
            }
            writer.refreshed();
            let now = SystemTime::now();
            let phase = CachePhase::Revalidated;
            let cs = phase
                .cache_status(CACHE_NAME)
                .fwd_status(304)
                .ttl(ttl(&meta, now));
            let age = meta.current_age(now);
            return Ok(self
                .respond(
                    ctx,
                    &meta,
                    &f.key,
                    age,
                    cs,
                    phase.as_str(),
                    Source::Refreshed(f.handle),
                )
                .await);
        }

        // RFC 5861 §4: a 5xx while stale-if-error allows the stored response.
        if status.is_server_error()
            && stored_decision.is_some_and(|d| d.can_serve_stale_if_error())
            && let Some(f) = stored
        {
            writer.release_once();
            return Ok(self.serve_stale_if_error(ctx, *f, Some(status)).await);
        }

        let control = effective_response_control(resp.headers(), cache.targets());
        let storable = storability(
            &Method::GET,
            &ctx.headers,
            &ctx.dirs,
            status,
            resp.headers(),
            &control,
        )
        .and_then(|s| match content_length(resp.headers()) {
            Some(l) if l > cache.max_object_size() => Err(NoCacheReason::TooLarge),
            _ => Ok(s),
        });
        let phase = if stored.is_some() {
            phase
        } else {
            match phase {
                CachePhase::Revalidated | CachePhase::StaleIfError => CachePhase::Stale,
                p => p,
            }
        };
        match storable {
            Ok(s) => {
                let w = writer.writer(cache.coalescer());
                self.store_response(ctx, w, resp, s, phase, (req_time, resp_time, started))
                    .await
            }
            Err(reason) => {
                let request_driven = matches!(
                    reason,
                    NoCacheReason::Authorization | NoCacheReason::RequestNoStore
                );
                if status.is_server_error() || request_driven {
                    writer.release_once();
                } else {
                    // Hit-for-pass: later requests do not wait.
                    writer.release(cache.coalescer());
                }
                Ok(self.pass_response(ctx, resp, phase, Some(reason.as_str())))
            }
        }
    }

    /// Streams a storable response into the store (under the request's
    /// variant key, with a new vary marker when its `Vary` names other
    /// fields) and to the client and every request that joined `w`.
    /// `times`: when the request was sent, when its response head came, and
    /// when the fill started (an invalidation after it cancels the commit).
    pub(super) async fn store_response(
        &self,
        ctx: &Ctx,
        w: FillWriter<FillHead>,
        resp: Response<crate::origin::ResponseBody>,
        s: crate::cache::freshness::Storable,
        phase: CachePhase,
        times: (SystemTime, SystemTime, Instant),
    ) -> Result<Response<ProxyBody>, Error> {
        let cache = self.cache_layer()?;
        let (req_time, resp_time, started) = times;
        let status = resp.status();
        // Stored from now on: no longer hit-for-pass (see `cached_inner`).
        cache.coalescer().clear_pass(&ctx.primary);
        let list = stored_header_list(resp.headers(), &s.strip_fields);
        let mut meta = ObjectMeta::from_response(
            new_object_id(&ctx.primary),
            status,
            list,
            &cache.policy(),
            req_time,
            resp_time,
        );
        meta.flags |= flags::COMPLETE;
        // RFC 8297: the origin's Early Hints for it, kept to be sent on a
        // later miss or revalidation before the origin is asked.
        if ctx.site.early_hints
            && let Some(i) = Interim::current()
        {
            let links = i.links();
            cache.early_hints().remember(ctx.primary, &links);
            meta.early_hints = links;
        }
        let (key, marker) = if meta.vary.is_empty() {
            (ctx.primary, None)
        } else {
            let vk = variant_key(&ctx.primary, &meta.vary, &ctx.headers);
            // Keep the existing marker (and so the other variants)
            // when it nominates the same fields.
            let keep = ctx
                .marker
                .as_ref()
                .is_some_and(|m| same_names(&m.names, &meta.vary));
            let marker = (!keep).then(|| {
                (
                    ctx.primary,
                    cache.new_vary_marker(&ctx.primary, meta.vary.clone()),
                )
            });
            (vk, marker)
        };
        let meta = Arc::new(meta);
        let head = Arc::new(FillHead::Stream {
            meta: meta.clone(),
            key,
            fwd_status: status.as_u16(),
        });
        let Some(reader) = w.publish(head) else {
            return Err(Error::new(ErrorKind::Internal, "fill started without us"));
        };
        let (parts, body) = resp.into_parts();
        let job = FillJob {
            key,
            meta: Bytes::from(meta.encode()),
            marker,
            expected_len: content_length(&parts.headers),
            idle: self.idle_body,
            primary: ctx.primary,
            started,
        };
        cache.start_fill(job, body, w);
        let now = SystemTime::now();
        let mut cs = phase
            .cache_status(CACHE_NAME)
            .fwd_status(status.as_u16())
            .stored()
            .ttl(ttl(&meta, now));
        if let Some(d) = ctx.detail {
            cs = cs.detail(d);
        }
        let age = meta.current_age(now);
        Ok(self
            .respond(
                ctx,
                &meta,
                &key,
                age,
                cs,
                phase.as_str(),
                Source::Fill(reader),
            )
            .await)
    }

    /// Queues a 103 (Early Hints, RFC 8297) for the client with the `Link`
    /// values the origin sent earlier for the object (`stored`, or the URI's
    /// remembered ones on a miss): the client can fetch them while the
    /// origin is asked. Only for a connection that can send it.
    fn send_early_hints(&self, ctx: &Ctx, stored: Option<&ObjectMeta>) {
        let Some(i) = Interim::current() else {
            return;
        };
        let links: Vec<http::HeaderValue> = match stored {
            Some(m) if !m.early_hints.is_empty() => m.early_hints.clone(),
            _ => match self
                .cache
                .as_ref()
                .and_then(|c| c.early_hints().get(&ctx.primary))
            {
                Some(l) => l.to_vec(),
                None => return,
            },
        };
        let mut fields = http::HeaderMap::with_capacity(links.len());
        for l in links {
            fields.append(http::header::LINK, l);
        }
        i.send(StatusCode::EARLY_HINTS, fields);
    }

    /// Stores a POST's response (`post_storable`) as its target's GET
    /// response while it streams to the client.
    pub(super) async fn store_post(
        &self,
        ctx: Ctx,
        resp: Response<crate::origin::ResponseBody>,
        s: crate::cache::freshness::Storable,
    ) -> Result<Response<ProxyBody>, Error> {
        let cache = self.cache_layer()?;
        // The POST has just invalidated its target (RFC 9111 §4.4): the
        // stored response must be newer than that, to the millisecond its
        // times are kept in.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let now = SystemTime::now();
        let w = cache.coalescer().solo(ctx.primary);
        self.store_response(
            &ctx,
            w,
            resp,
            s,
            CachePhase::Method,
            (now, now, Instant::now()),
        )
        .await
    }
}

/// What of a POST's response may be stored for GETs of its target, if
/// anything (`cache::post`).
pub(super) fn post_storable(
    cache: &crate::cache::CacheLayer,
    target: &crate::cache::layer::RequestTarget,
    request: &http::HeaderMap,
    resp: &Response<crate::origin::ResponseBody>,
) -> Option<crate::cache::freshness::Storable> {
    let t = crate::cache::invalidate::Target {
        scheme: target.scheme,
        authority: &target.authority,
        path_and_query: &target.path_and_query,
    };
    let control = effective_response_control(resp.headers(), cache.targets());
    crate::cache::post::post_storability(
        &t,
        request,
        &crate::cache::control::RequestDirectives::from_headers(request),
        resp.status(),
        resp.headers(),
        &control,
    )
    .ok()
}

//! Client responses built from a stored object or from an in-flight fill:
//! the stored header fields minus the targeted cache-control fields,
//! `Age` (RFC 9111 §4.2.3, §5.1), `Cache-Status` (RFC 9211), conditional
//! requests (RFC 9110 §13.2.2), byte ranges (RFC 9110 §14) and HEAD.

use bytes::Bytes;
use http::header::{
    self, AGE, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    HeaderValue,
};
use http::{HeaderMap, Method, Response, StatusCode, Version};
use outpost_storage::ReadHandle;

use super::Proxy;
use super::body::{AccessRecord, ProxyBody, WireHead};
use super::cached::Ctx;
use super::encode::Coded;
use crate::cache::coalesce::FillReader;
use crate::cache::coalesce::Key;
use crate::cache::conditional::{Precondition, Validators, evaluate, if_range_allows};
use crate::cache::control::fields_present;
use crate::cache::fill::FillHead;
use crate::cache::freshness::age_header_value;
use crate::cache::meta::ObjectMeta;
use crate::cache::meta_memo::{client_headers_memo, wire_fields_memo};
use crate::cache::range::{self, MultipartPlan, RangeOutcome, generate_boundary};
use crate::cache::status::{CACHE_STATUS, CacheStatus};
use crate::cache::stored_body::{Segment, fill_body, stored_body, stored_body_from};
use crate::compress;
use crate::fields::WireFields;
use crate::origin::headers::add_via;

/// Where the body comes from.
pub(super) enum Source {
    /// A committed object in the store (seekable), answered with the
    /// headers as stored (the metadata given is its head's decode).
    Stored(ReadHandle),
    /// The same, with metadata updated since (a 304, RFC 9111 §4.3.4):
    /// the head's bytes no longer describe the response.
    Refreshed(ReadHandle),
    /// A response still arriving from the origin (read from the start).
    Fill(FillReader<FillHead>),
}

impl Proxy {
    /// The response for `ctx`'s request from `meta` (stored under `key`) and its body
    /// `src`, in the representation the client gets (`encode`). `phase` is the access
    /// log's cache field.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn respond(
        &self,
        ctx: &Ctx,
        meta: &ObjectMeta,
        key: &Key,
        age: u64,
        cs: CacheStatus,
        phase: &'static str,
        src: Source,
    ) -> Response<ProxyBody> {
        let coded = self.coded(ctx, meta, key, &src).await;
        self.respond_coded(ctx, meta, age, cs, phase, src, coded)
    }

    /// A stored response's fields with what every response from the cache
    /// adds already in place: `Via`, and `Age` and (unless the stored
    /// fields have one) `Cache-Status` as placeholders that are replaced,
    /// not added. A map cloned from the memo has no spare room, and the
    /// first field added to it reallocated its entries (~360 instructions
    /// per hit).
    fn with_room(&self, mut headers: HeaderMap) -> HeaderMap {
        headers.insert(AGE, HeaderValue::from_static("0"));
        add_via(&mut headers, self.via.get(Version::HTTP_11));
        CacheStatus::make_room(&mut headers);
        headers
    }

    /// [`Self::respond`] with the representation chosen.
    #[allow(clippy::too_many_arguments)]
    fn respond_coded(
        &self,
        ctx: &Ctx,
        meta: &ObjectMeta,
        age: u64,
        cs: CacheStatus,
        phase: &'static str,
        src: Source,
        coded: Coded,
    ) -> Response<ProxyBody> {
        // One scan of the request's names for all of them (RFC 9110 §13.1
        // preconditions, §13.1.5 If-Range, §14.2 Range).
        let asked = fields_present(&ctx.headers, &CONDITIONAL_AND_RANGE);
        let plain = (0..CONDITIONAL_AND_RANGE.len()).all(|i| !asked.has(i));
        let src = match self.wire_hit(ctx, meta, age, &cs, phase, src, &coded, plain) {
            Ok(answer) => return answer,
            Err(src) => src,
        };
        // Targeted fields (RFC 9213) when the site strips them and, if
        // configured, the tag field are left out as the map is built: a lookup of each (non-standard)
        // name to remove it cost ~180 instructions per hit.
        let mut headers = match self.cache.as_ref() {
            Some(cache) => {
                let tag = cache.hidden_tag_header();
                // RFC 9213 §2.1: targeted fields go on downstream (a further
                // CDN may need them) unless the site strips them.
                let targets: &[http::HeaderName] = if ctx.site.strip_targeted_fields {
                    cache.targets()
                } else {
                    &[]
                };
                let build = || {
                    self.with_room(
                        meta.header_map_without(|n| targets.contains(n) || Some(n) == tag),
                    )
                };
                match &src {
                    // A hot object's map is cloned from the per-thread memo.
                    Source::Stored(h) => client_headers_memo(h.meta(), cache.id(), build),
                    _ => build(),
                }
            }
            None => self.with_room(meta.header_map()),
        };
        // RFC 9111 §5.1: Age on every response served from a cache.
        headers.insert(AGE, age_header_value(age));
        cs.append_to(&mut headers);
        let mut rec = ctx.rec.clone();
        rec.cache = phase;
        let status = StatusCode::from_u16(meta.status).unwrap_or(StatusCode::OK);
        // The representation's fields (RFC 9110 §8.4, §8.8.3, §12.5.5) before any
        // precondition is evaluated against its validator.
        let (src, transform) = match coded {
            Coded::AsIs { vary } => {
                if vary {
                    compress::vary_on_accept_encoding(&mut headers);
                }
                (src, None)
            }
            Coded::Variant(e, h) => {
                compress::to_coded(&mut headers, e);
                (Source::Stored(h), None)
            }
            c @ Coded::Compress { e, .. } => {
                compress::to_coded(&mut headers, e);
                (src, Some(c))
            }
            c @ Coded::Decode(_) => {
                compress::to_decoded(&mut headers);
                (src, Some(c))
            }
            Coded::NotAcceptable => {
                let mut h = HeaderMap::new();
                cs_copy(&headers, &mut h);
                compress::vary_on_accept_encoding(&mut h);
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                let msg = "none of the codings this resource is available in is acceptable\n";
                h.insert(CONTENT_LENGTH, HeaderValue::from(msg.len()));
                let body = (ctx.method != Method::HEAD)
                    .then(|| super::body::full_inner(Bytes::from_static(msg.as_bytes())));
                return self.build(StatusCode::NOT_ACCEPTABLE, h, body, rec);
            }
        };
        let len = match &src {
            _ if transform.is_some() => None,
            Source::Stored(h) | Source::Refreshed(h) => Some(h.body_len()),
            Source::Fill(_) => headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse::<u64>().ok()),
        };
        let method = &ctx.method;
        // Validators matter only to a conditional or range request; parsing
        // their dates on every plain hit showed up in the profile. They come
        // from the map just built (the removed targeted and tag fields carry
        // none).
        let preconditions = (0..4).any(|i| asked.has(i));
        let validators = if preconditions || asked.has(4) {
            Validators::from_headers(&headers, Some(meta.response_time))
        } else {
            Validators::default()
        };

        // RFC 9110 §13.2.1: preconditions apply when the response would be 2xx.
        // Without any precondition field, evaluation proceeds (§13.2.2).
        if status.is_success() && preconditions {
            match self.preconditioned(evaluate(method, &ctx.headers, &validators), headers, rec) {
                Ok((h, r)) => (headers, rec) = (h, r),
                Err(answer) => return answer,
            }
        }

        // RFC 9110 §14.2: Range applies to GET only, on a 200, when If-Range allows.
        if *method == Method::GET
            && status == StatusCode::OK
            && transform.is_none()
            && let Some(len) = len
            && asked.has(5)
            && if_range_allows(&ctx.headers, &validators)
        {
            match (range::resolve(&ctx.headers, len), src) {
                (RangeOutcome::Full, src) => return self.full(status, headers, len, src, ctx, rec),
                (RangeOutcome::Unsatisfiable, _) => {
                    // RFC 9110 §15.5.17
                    let mut h = headers;
                    h.insert(CONTENT_RANGE, range::unsatisfied_content_range(len));
                    h.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
                    h.remove(CONTENT_TYPE);
                    return self.build(StatusCode::RANGE_NOT_SATISFIABLE, h, None, rec);
                }
                (RangeOutcome::Satisfiable(rs), src) if rs.len() == 1 => {
                    let r = rs[0];
                    headers.insert(CONTENT_RANGE, range::content_range(&r, len));
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(r.len()));
                    let body = match src {
                        Source::Stored(h) | Source::Refreshed(h) => stored_body(
                            h,
                            vec![Segment::Stored {
                                offset: r.start,
                                len: r.len(),
                            }],
                        ),
                        Source::Fill(f) => fill_body(f, r.start, Some(r.len())),
                    };
                    return self.build(StatusCode::PARTIAL_CONTENT, headers, Some(body), rec);
                }
                (RangeOutcome::Satisfiable(rs), Source::Stored(h) | Source::Refreshed(h)) => {
                    // RFC 9110 §14.6: multipart/byteranges, streamed part by part.
                    let plan = MultipartPlan::new(
                        &rs,
                        len,
                        headers.get(CONTENT_TYPE),
                        generate_boundary(&meta.object_id),
                    );
                    let mut segs = Vec::with_capacity(plan.parts.len() * 2 + 1);
                    for (head, r) in plan.parts.iter() {
                        segs.push(Segment::Literal(Bytes::from(head.clone())));
                        segs.push(Segment::Stored {
                            offset: r.start,
                            len: r.len(),
                        });
                    }
                    segs.push(Segment::Literal(Bytes::from(plan.trailer.clone())));
                    headers.insert(CONTENT_TYPE, plan.content_type());
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(plan.content_length));
                    let body = stored_body(h, segs);
                    return self.build(StatusCode::PARTIAL_CONTENT, headers, Some(body), rec);
                }
                // Several ranges while the body is still arriving: a server
                // may ignore Range (RFC 9110 §14.2); send it whole.
                (RangeOutcome::Satisfiable(_), src) => {
                    return self.full(status, headers, len, src, ctx, rec);
                }
            }
        }
        match len {
            Some(len) => self.full(status, headers, len, src, ctx, rec),
            None => {
                let body = match (method == Method::HEAD, src) {
                    (true, _) => None,
                    (false, Source::Fill(f)) => Some(fill_body(f, 0, None)),
                    (false, Source::Stored(h) | Source::Refreshed(h)) => {
                        let len = h.body_len();
                        Some(stored_body(h, vec![Segment::Stored { offset: 0, len }]))
                    }
                };
                let body = match (body, transform) {
                    (Some(b), Some(Coded::Compress { e, level, sink })) => {
                        Some(compress::stream::encode(b, e, level, sink.map(|s| *s)))
                    }
                    (Some(b), Some(Coded::Decode(e))) => Some(compress::stream::decode(b, e)),
                    (b, _) => b,
                };
                self.build(status, headers, body, rec)
            }
        }
    }

    fn full(
        &self,
        status: StatusCode,
        mut headers: HeaderMap,
        len: u64,
        src: Source,
        ctx: &Ctx,
        rec: AccessRecord,
    ) -> Response<ProxyBody> {
        if status != StatusCode::NOT_MODIFIED && status != StatusCode::NO_CONTENT {
            headers.insert(CONTENT_LENGTH, crate::fields::number(len));
        }
        if headers.get(header::ACCEPT_RANGES).is_none() && status == StatusCode::OK {
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        let body = whole_body(ctx, len, src);
        self.build(status, headers, body, rec)
    }

    /// A plain hit (a GET with no precondition or range (`plain`), the stored
    /// representation as it is, a 200) on a connection whose writer takes
    /// heads in wire form, when the stored fields are kept for it on this
    /// thread: the response [`Self::full`] would make, its fields in wire
    /// form ([`WireHead`]) and its map empty. `src` back otherwise.
    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    fn wire_hit(
        &self,
        ctx: &Ctx,
        meta: &ObjectMeta,
        age: u64,
        cs: &CacheStatus,
        phase: &'static str,
        src: Source,
        coded: &Coded,
        plain: bool,
    ) -> Result<Response<ProxyBody>, Source> {
        let (Some(cache), Source::Stored(h), Coded::AsIs { vary: false }) =
            (self.cache.as_ref(), &src, coded)
        else {
            return Err(src);
        };
        if !plain || !ctx.wire_heads || ctx.method != Method::GET || meta.status != 200 {
            return Err(src);
        }
        let site = &ctx.site;
        let key = (cache.id(), site.generation);
        // The lines straight from the stored list, filtered as the map
        // would be: made once for a head the memo keeps; made for each hit
        // of one it does not keep (a large hot set's mostly), which still
        // costs less than building, filling, encoding and dropping a map.
        let tag = cache.hidden_tag_header();
        let targets: &[http::HeaderName] = if site.strip_targeted_fields {
            cache.targets()
        } else {
            &[]
        };
        let make = || {
            let stored = || {
                meta.headers
                    .iter()
                    .map(|(n, v)| (n, v))
                    .filter(|(n, _)| !targets.contains(n) && tag != Some(*n))
            };
            self.wire_fields(site, stored, self.via.get(Version::HTTP_11))
        };
        let made = match wire_fields_memo(h.meta(), key, make) {
            Some(kept) => kept,
            None => make(),
        };
        let Some(fields) = made else {
            return Err(src);
        };
        let len = h.body_len();
        let mut rec = ctx.rec.clone();
        rec.cache = phase;
        rec.status = 200;
        let body = match whole_body(ctx, len, src) {
            Some(b) => ProxyBody::new(b, None, rec),
            None => ProxyBody::empty(rec),
        };
        Ok(Response::new(body.with_wire(Box::new(WireHead {
            fields,
            age: age_header_value(age),
            cache_status: cs.field_value(),
            len,
        }))))
    }

    /// The lines a plain hit of a stored head sends: its fields as
    /// `fields` gives them (the stored list filtered as
    /// [`Self::respond_coded`] filters it), `via`, and `Accept-Ranges`
    /// (RFC 9110 §14.3) when there is none; `None`
    /// when a field the response gets later could end up twice: one
    /// the site or the node sets (`Server`, `Strict-Transport-Security`,
    /// `response_set`), a `Cache-Status` from upstream (ours is appended to
    /// it), or framing fields (never stored).
    fn wire_fields<'a, I>(
        &self,
        site: &super::SiteRuntime,
        fields: impl Fn() -> I,
        via: Option<&'a HeaderValue>,
    ) -> Option<WireFields>
    where
        I: Iterator<Item = (&'a http::HeaderName, &'a HeaderValue)>,
    {
        let server = self.server_header.is_some();
        // Replaced on each response: Age, our Cache-Status placeholder and
        // Content-Length (the writer's framing).
        let per_response = |n: &http::HeaderName, v: &HeaderValue| {
            n == AGE || n == CONTENT_LENGTH || (n == CACHE_STATUS && v.is_empty())
        };
        let mut ranges = false;
        for (n, v) in fields() {
            if per_response(n, v) {
                continue;
            }
            ranges |= n == header::ACCEPT_RANGES;
            if n == CACHE_STATUS
                || n == header::TRANSFER_ENCODING
                || n == header::CONNECTION
                || (n == header::STRICT_TRANSPORT_SECURITY && site.hsts.is_some())
                || site.hide.sets_response(n, server)
            {
                return None;
            }
        }
        let via = via.map(|v| (&header::VIA, v));
        static BYTES: HeaderValue = HeaderValue::from_static("bytes");
        let ranges = (!ranges).then_some((&header::ACCEPT_RANGES, &BYTES));
        Some(WireFields::encode(
            fields()
                .filter(|(n, v)| !per_response(n, v))
                .chain(via)
                .chain(ranges),
        ))
    }

    /// What a request gets when its preconditions (RFC 9110 §13.2.2) did not
    /// let it proceed (`Err`), or `headers` and `rec` back when they did.
    #[allow(clippy::result_large_err)] // the error is the answer, at once sent
    pub(super) fn preconditioned(
        &self,
        outcome: Precondition,
        mut headers: HeaderMap,
        rec: AccessRecord,
    ) -> Result<(HeaderMap, AccessRecord), Response<ProxyBody>> {
        match outcome {
            Precondition::Proceed => Ok((headers, rec)),
            Precondition::NotModified => {
                // RFC 9110 §15.4.5: the fields a 200 would carry, minus
                // representation metadata; no content.
                for n in [
                    CONTENT_LENGTH,
                    CONTENT_TYPE,
                    CONTENT_ENCODING,
                    CONTENT_LANGUAGE,
                    CONTENT_RANGE,
                ] {
                    headers.remove(n);
                }
                Err(self.build(StatusCode::NOT_MODIFIED, headers, None, rec))
            }
            Precondition::PreconditionFailed => {
                let mut h = HeaderMap::new();
                cs_copy(&headers, &mut h);
                h.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
                Err(self.build(StatusCode::PRECONDITION_FAILED, h, None, rec))
            }
        }
    }

    pub(super) fn build(
        &self,
        status: StatusCode,
        headers: HeaderMap,
        body: Option<super::body::InnerBody>,
        mut rec: AccessRecord,
    ) -> Response<ProxyBody> {
        rec.status = status.as_u16();
        let body = match body {
            Some(b) => ProxyBody::new(b, None, rec),
            None => ProxyBody::empty(rec),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }
}

/// The four precondition fields (RFC 9110 §13.1), If-Range and Range, in
/// the order `respond` tests them.
static CONDITIONAL_AND_RANGE: [http::HeaderName; 6] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

/// Copies `Cache-Status` and `Age` (for a 412 built from a stored object).
fn cs_copy(from: &HeaderMap, to: &mut HeaderMap) {
    for n in [&crate::cache::status::CACHE_STATUS, &AGE] {
        for v in from.get_all(n) {
            to.append(n.clone(), v.clone());
        }
    }
}

/// The body of a whole response of `len` bytes from `src`: none for HEAD
/// or no content.
fn whole_body(ctx: &Ctx, len: u64, src: Source) -> Option<super::body::InnerBody> {
    if ctx.method == Method::HEAD || len == 0 {
        return None;
    }
    Some(match src {
        // A body kept in the head goes out as it is: no stream of
        // chunks to poll (~1,000 instructions per small hit).
        Source::Stored(h) | Source::Refreshed(h) => match h.inline_body() {
            Some(b) if b.len() as u64 == len => super::body::full_inner(b),
            _ => match prefetched(ctx, &h, len) {
                Some((reader, first)) => stored_body_from(h, reader, first, len),
                None => stored_body(h, vec![Segment::Stored { offset: 0, len }]),
            },
        },
        Source::Fill(f) => fill_body(f, 0, None),
    })
}

/// The first piece of `h`'s body read before the head went out, if it was of this very
/// object (a coded variant's body is another) and the whole body is sent.
fn prefetched(ctx: &Ctx, h: &ReadHandle, len: u64) -> Option<(outpost_storage::BodyReader, Bytes)> {
    let (reader, first) = *ctx.prefetched.lock().ok()?.take()?;
    (len == h.body_len() && reader.is_of(h)).then_some((reader, first))
}

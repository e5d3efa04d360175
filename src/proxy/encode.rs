//! Which representation of a cached response a client gets (RFC 9110 §12.5.3): as stored,
//! a compressed variant stored beside it, compressed now while streaming (and stored for
//! the next client), or decoded when the client does not accept the stored coding.
//!
//! An object is stored once as fetched (fills ask the origin for `identity`); each coding
//! is produced at most once per version and kept under its own key (`CacheLayer::
//! begin_coded`), so later requests for it are plain hits. A Range request is answered from
//! the stored representation (RFC 9110 §14: a range of that representation).
//!
//! Owns: the choice and the variant's lookup. Must not know: how codings run (`compress`).

use http::header::{ACCEPT_ENCODING, RANGE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use outpost_storage::{ReadHandle, WriteHandle};

use super::Proxy;
use super::cached::Ctx;
use super::respond::Source;
use crate::cache::coalesce::Key;
use crate::cache::meta::ObjectMeta;
use crate::compress::{
    Accepts, Coding, CompressionConfig, Encoding, Fields, compressible, content_coding,
};

/// The representation sent.
pub(super) enum Coded {
    /// As stored; `vary`: it is one of several (`Vary: Accept-Encoding`).
    AsIs { vary: bool },
    /// The stored variant in coding `e`.
    Variant(Encoding, ReadHandle),
    /// Compressed with `e` at `level` while streaming, written to `sink` too.
    Compress {
        e: Encoding,
        level: u32,
        sink: Option<Box<WriteHandle>>,
    },
    /// The stored coding `e` decoded (the client does not accept it).
    Decode(Encoding),
    /// Nothing the node can send is acceptable: 406 (RFC 9110 §15.5.7).
    NotAcceptable,
}

/// The codings `headers` (a request on its way to the cache) accepts. When the site
/// compresses, a request that names codings asks the origin for `identity` instead: the
/// node stores one representation and makes the others, and every spelling of
/// `Accept-Encoding` then selects the same stored response under `Vary:
/// Accept-Encoding` (a request without the field, which leaves the coding to the
/// origin, selects at most one more).
pub(super) fn take_accepts(cfg: &CompressionConfig, headers: &mut HeaderMap) -> Accepts {
    if !cfg.enabled || !crate::fields::has(headers, &ACCEPT_ENCODING) {
        return Accepts::default();
    }
    let a = Accepts::from_headers(headers);
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    a
}

impl Proxy {
    /// The representation of `meta` (stored under `key`, body `src`) for `ctx`'s client.
    pub(super) async fn coded(
        &self,
        ctx: &Ctx,
        meta: &ObjectMeta,
        key: &Key,
        src: &Source,
    ) -> Coded {
        let cfg = &ctx.site.compression;
        if !cfg.enabled {
            return Coded::AsIs { vary: false };
        }
        let status = StatusCode::from_u16(meta.status).unwrap_or(StatusCode::OK);
        let fields: &[_] = &meta.headers;
        let accepts = &ctx.accepts;
        match content_coding(fields) {
            Coding::Other => return Coded::AsIs { vary: false },
            Coding::Known(e) => {
                // Stored coded (an origin that compresses whatever it is asked): as it is
                // to a client that takes it, decoded for one that does not.
                if accepts.accepts(e) || !accepts.accepts_identity() || status != StatusCode::OK {
                    return Coded::AsIs { vary: true };
                }
                return Coded::Decode(e);
            }
            Coding::Identity => {}
        }
        // A hot object's answer is the same on every hit: asked once per thread.
        let memo_key = match src {
            Source::Stored(h) => memo_key(h.meta(), ctx.site.generation),
            _ => None,
        };
        let known = memo_key.and_then(memo_get);
        let len = match src {
            Source::Stored(h) | Source::Refreshed(h) => Some(h.body_len()),
            Source::Fill(_) => meta.body_len.or_else(|| {
                Fields::first(fields, &http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
            }),
        };
        let yes = known.unwrap_or_else(|| {
            let yes = compressible(cfg, status, fields, len);
            if let Some(k) = memo_key {
                memo_put(k, yes);
            }
            yes
        });
        if !yes {
            return Coded::AsIs { vary: false };
        }
        if crate::fields::has(&ctx.headers, &RANGE) && ctx.method == Method::GET {
            return Coded::AsIs { vary: true };
        }
        let Some(e) = accepts.best(&cfg.prefer) else {
            // `identity;q=0` (or `*;q=0`) and none of the codings the site makes.
            if !accepts.accepts_identity() {
                return Coded::NotAcceptable;
            }
            return Coded::AsIs { vary: true };
        };
        let Some(cache) = self.cache.as_deref() else {
            return Coded::AsIs { vary: true };
        };
        if let Some(h) = cache.lookup_coded(key, &meta.object_id, e).await {
            return Coded::Variant(e, h);
        }
        // A HEAD learns the fields; the first GET compresses and stores.
        let sink = (ctx.method == Method::GET)
            .then(|| cache.begin_coded(key, &meta.object_id, e))
            .flatten()
            .map(Box::new);
        Coded::Compress {
            e,
            level: cfg.level(e),
            sink,
        }
    }
}

/// For a response that is not stored: the coding to compress it with on its way to the
/// client (per `compress_uncacheable`), its fields already turned into the coded
/// representation's. `None`: sent as it is (a HEAD, a response that may not or need not
/// be compressed, a client that takes no coding).
pub(super) fn code_passed(
    cfg: &CompressionConfig,
    accepts: &Accepts,
    method: &Method,
    resp: &mut http::Response<crate::origin::ResponseBody>,
) -> Option<(Encoding, u32)> {
    if !cfg.enabled || !cfg.compress_uncacheable || *method == Method::HEAD {
        return None;
    }
    // The length the body is framed with (its Content-Length, read once
    // as the head was parsed), not looked up and parsed again.
    let len = http_body::Body::size_hint(resp.body()).exact();
    if !compressible(cfg, resp.status(), resp.headers(), len) {
        return None;
    }
    crate::compress::vary_on_accept_encoding(resp.headers_mut());
    let e = accepts.best(&cfg.prefer)?;
    crate::compress::to_coded(resp.headers_mut(), e);
    Some((e, cfg.level(e)))
}

/// A new site generation (see `SiteRuntime::generation`).
pub(super) fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Slots of the per-thread memo of compressibility.
const MEMO_SLOTS: usize = 256;

thread_local! {
    /// (stored head's checksum word, site generation) → compressible, direct-mapped.
    static MEMO: std::cell::RefCell<[(u64, u64, bool); MEMO_SLOTS]> =
        const { std::cell::RefCell::new([(0, 0, false); MEMO_SLOTS]) };
}

/// The stored head's identity (its trailing checksum, which changes with
/// every byte of it: a 304's new fields included) and the site's generation.
fn memo_key(meta: &bytes::Bytes, generation: u64) -> Option<(u64, u64)> {
    let at = meta.len().checked_sub(crate::cache::meta::CHECKSUM_LEN)?;
    let w = meta.get(at..at + 8)?;
    Some((u64::from_le_bytes(<[u8; 8]>::try_from(w).ok()?), generation))
}

fn memo_get(k: (u64, u64)) -> Option<bool> {
    MEMO.try_with(|m| {
        let m = m.try_borrow().ok()?;
        let (w, g, v) = m[(k.0 as usize) & (MEMO_SLOTS - 1)];
        (w == k.0 && g == k.1).then_some(v)
    })
    .ok()
    .flatten()
}

fn memo_put(k: (u64, u64), v: bool) {
    let _ = MEMO.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m[(k.0 as usize) & (MEMO_SLOTS - 1)] = (k.0, k.1, v);
        }
    });
}

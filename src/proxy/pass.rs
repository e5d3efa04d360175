//! The pass-through half of the cached path: a request the cache does not answer and
//! whose answer is not stored goes to the origin as it is, and comes back with
//! `Cache-Status` and, when the site says so, compressed on the way.
//!
//! Owns: forwarding such a request and the client's copy of its answer. Must not know:
//! the store (nothing here is stored).

use http::Response;

use super::Proxy;
use super::body::ProxyBody;
use super::cached::Ctx;
use crate::cache::CACHE_NAME;
use crate::cache::control::fields_present;
use crate::cache::status::CachePhase;
use crate::error::Error;
use crate::origin::{OriginRequest, ResponseBody, strip_response_hop_by_hop};

impl Proxy {
    /// Forwards the request as it is (not stored).
    pub(super) async fn pass(
        &self,
        ctx: &Ctx,
        phase: CachePhase,
        detail: Option<&'static str>,
    ) -> Result<Response<ProxyBody>, Error> {
        let mut resp = ctx
            .site
            .pool
            .send(OriginRequest {
                method: &ctx.method,
                path_and_query: &ctx.target.path_and_query,
                headers: &ctx.headers,
                body: None,
                fwd: &self.forwarding(ctx.client_version, ctx.client_ip, ctx.target.scheme),
                hash_key: ctx.balance_key.as_ref(),
                prefer: ctx.sticky.prefer,
                drop_fields: ctx.site.hide.response_strip(),
            })
            .await?;
        strip_response_hop_by_hop(&mut resp);
        Ok(self.pass_response(ctx, resp, phase, detail))
    }

    /// The client's copy of a response that is not stored; its hop-by-hop
    /// fields must already be stripped (RFC 9110 §7.6.1).
    pub(super) fn pass_response(
        &self,
        ctx: &Ctx,
        mut resp: Response<ResponseBody>,
        phase: CachePhase,
        detail: Option<&'static str>,
    ) -> Response<ProxyBody> {
        let coding =
            super::encode::code_passed(&ctx.site.compression, &ctx.accepts, &ctx.method, &mut resp);
        let status = resp.status().as_u16();
        let mut rec = ctx.rec.clone();
        rec.status = status;
        rec.cache = phase.as_str();
        // Only a response that is not stored names its origin in a cookie.
        let set_cookie =
            ctx.site
                .pool
                .sticky_set_cookie(&resp, ctx.sticky, ctx.target.scheme == "https");
        let mut out = self.client_response_stripped(resp, ctx.client_version, rec, coding);
        if let Some(c) = set_cookie {
            out.headers_mut().append(http::header::SET_COOKIE, c);
        }
        if let Some(cache) = self.cache.as_ref() {
            // One scan for the fields to remove, instead of a hashed
            // removal of each (crate::cache::control::fields_present).
            let present = fields_present(out.headers(), cache.pass_strip());
            let strip_targets = ctx.site.strip_targeted_fields;
            for (i, name) in cache.pass_strip().iter().enumerate() {
                if present.has(i) && (strip_targets || !cache.targets().contains(name)) {
                    out.headers_mut().remove(name);
                }
            }
        }
        let mut cs = phase.cache_status(CACHE_NAME).fwd_status(status);
        if let Some(d) = detail {
            cs = cs.detail(d);
        }
        cs.append_to(out.headers_mut());
        out
    }
}

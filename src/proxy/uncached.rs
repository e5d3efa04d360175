//! Requests the cache does not see (methods other than GET and HEAD, a
//! site or request that bypasses the cache, protocol upgrades): forwarded
//! to the origin as they are, and their answers invalidate what is stored
//! (RFC 9111 §4.4) or, for a POST, may be stored for its target.
//!
//! Owns: that path, from a prepared request to the client's response.
//! Must not know: the cache path's lookups and fills.

use std::sync::Arc;

use http::header;
use http::{Method, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;

use super::body::{AccessRecord, ProxyBody};
use super::{ConnInfo, Proxy, SiteRuntime, cached, encode, fetch, gate};
use crate::cache::key::primary_key;
use crate::cache::status::{CacheStatus, Fwd};
use crate::cache::{CACHE_NAME, RequestTarget};
use crate::error::Error;
use crate::origin::headers::{add_via, strip_hop_by_hop};
use crate::origin::{HashOn, OriginRequest, RequestBody, StickyRequest, client_key};

/// A request ready for the origin path (see `Proxy::ready`).
pub(super) struct ToOrigin {
    pub(super) site: Arc<SiteRuntime>,
    pub(super) method: Method,
    pub(super) target: RequestTarget,
    /// Its fields free of hop-by-hop ones and of what the site hides.
    pub(super) parts: http::request::Parts,
    pub(super) body: RequestBody,
    pub(super) client_version: Version,
    pub(super) client_ip: std::net::IpAddr,
    pub(super) sticky: StickyRequest,
    pub(super) trip: Option<crate::origin::request_body::Trip>,
    pub(super) client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Proxy {
    /// Sends a request the cache does not see to the origin and answers it.
    pub(super) async fn forward_uncached(
        self: &Arc<Self>,
        to_origin: ToOrigin,
        conn: ConnInfo,
        rec: &mut AccessRecord,
    ) -> Result<Response<ProxyBody>, Error> {
        let ToOrigin {
            site,
            method,
            target,
            mut parts,
            body,
            client_version,
            client_ip,
            sticky,
            trip,
            client_upgrade,
        } = to_origin;
        let hsts = (conn.scheme == "https")
            .then_some(site.hsts.as_ref())
            .flatten();
        // What the client takes, for a response compressed on its way.
        let accepts = if site.compression.enabled && site.compression.compress_uncacheable {
            crate::compress::Accepts::from_headers(&parts.headers)
        } else {
            crate::compress::Accepts::default()
        };
        // `balance = "hash"` sends a URL to one origin (the cache key's),
        // `client_ip` a client.
        let key = match site.pool.hash_on() {
            HashOn::Nothing => None,
            HashOn::CacheKey => Some(primary_key(
                &site.name,
                target.scheme,
                &target.authority,
                target.path_and_query.as_bytes(),
            )),
            HashOn::ClientIp => Some(client_key(client_ip)),
        };
        let sent = site
            .pool
            .send(OriginRequest {
                method: &method,
                path_and_query: &target.path_and_query,
                headers: &parts.headers,
                body: Some(body),
                fwd: &self.forwarding(client_version, client_ip, conn.scheme),
                hash_key: key.as_ref(),
                prefer: sticky.prefer,
                drop_fields: site.hide.response_strip(),
            })
            .await;
        // Content over its limits ends the origin request: the client is
        // told why, not that the origin failed.
        let mut resp = sent.map_err(|e| gate::tripped(trip.as_ref()).unwrap_or(e))?;
        let set_cookie = site
            .pool
            .sticky_set_cookie(&resp, sticky, conn.scheme == "https");
        rec.status = resp.status().as_u16();
        if let Some(cache) = self.cache.as_ref() {
            // RFC 9111 §4.4: a successful unsafe request invalidates.
            cache.invalidate_after(&site.name, &method, &target, resp.status(), resp.headers());
            // RFC 9110 §9.3.3: a POST's response may answer later GETs.
            if method == Method::POST
                && site.cache
                && site.cache_post_responses
                && let Some(s) = fetch::post_storable(cache, &target, &parts.headers, &resp)
            {
                crate::origin::strip_response_hop_by_hop(&mut resp);
                let ctx = cached::Ctx::new(
                    site.clone(),
                    method,
                    std::mem::take(&mut parts.headers),
                    target,
                    client_version,
                    client_ip,
                    rec.clone(),
                );
                let mut out = self.store_post(ctx, resp, s).await?;
                self.finish_passed(&site, out.headers_mut(), set_cookie, hsts);
                return Ok(out);
            }
        }
        if let Some(client_up) = client_upgrade
            && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let origin_up = hyper::upgrade::on(&mut resp);
            // The tunnel counts as in flight on its origin while it lasts.
            let lease = resp.body_mut().take_lease();
            tokio::spawn(async move {
                tunnel(client_up, origin_up).await;
                drop(lease);
            });
            let (mut rp, _) = resp.into_parts();
            strip_hop_by_hop(&mut rp.headers, true);
            add_via(&mut rp.headers, self.via.get(rp.version));
            rp.version = client_version;
            site.hide
                .client_response(&mut rp.headers, self.server_header.as_ref());
            if let Some(c) = set_cookie {
                rp.headers.append(header::SET_COOKIE, c);
            }
            return Ok(Response::from_parts(rp, ProxyBody::empty(rec.take())));
        }
        let bypass = self.cache.is_some() && site.cache;
        if bypass {
            rec.cache = "bypass";
        }
        crate::origin::strip_response_hop_by_hop(&mut resp);
        let coding = encode::code_passed(&site.compression, &accepts, &method, &mut resp);
        let fwd_status = rec.status;
        let mut out = self.client_response_stripped(resp, client_version, rec.take(), coding);
        self.finish_passed(&site, out.headers_mut(), set_cookie, hsts);
        if bypass {
            CacheStatus::new(CACHE_NAME)
                .fwd(Fwd::Bypass)
                .fwd_status(fwd_status)
                .append_to(out.headers_mut());
        }
        Ok(out)
    }
}

/// Copies bytes both ways between an upgraded client and origin connection.
async fn tunnel(client: hyper::upgrade::OnUpgrade, origin: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, origin) {
        Ok((c, o)) => {
            let mut c = TokioIo::new(c);
            let mut o = TokioIo::new(o);
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut o).await {
                tracing::debug!(error = %e, "upgraded connection closed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "protocol upgrade failed"),
    }
}

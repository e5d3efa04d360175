//! The purge endpoints.
//!
//! `POST /purge` on the admin listener:
//!
//! - body `{"urls":[...], "prefixes":[...], "tags":[...], "soft":bool,
//!   "fan_out":bool}` (all optional, at least one entry; unknown fields are
//!   errors so a typo does not purge nothing silently);
//! - `Authorization: Bearer <token>` (RFC 6750 §2.1), compared in constant
//!   time; the token is never logged;
//! - 200 `{"purged":{"urls":N,"prefixes":N,"tags":N},"soft":bool,
//!   "peers":[{"peer","ok","status","error","purged"}]}`, sent once the
//!   purge is durable;
//! - errors as `{"error":"..."}`: 400 (malformed JSON, bad URL, empty
//!   purge; the message names the problem), 401 (missing or wrong token,
//!   with `WWW-Authenticate: Bearer`), 405, 413 (body over 1 MiB), 500 (not
//!   durable), 503 (no token configured: purge disabled; or, with
//!   `Retry-After`, the node has handed over to a new process).
//!
//! `PURGE <target>` on the proxy listener purges one URL (the request's
//! Host and target). It is allowed from `[purge] allow` networks or with the
//! bearer token, else 403. `Outpost-Purge: soft` makes it a soft purge. It
//! answers like `POST /purge` (without peers).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;

use super::fanout::{self, PeerResult};
use super::{Counts, Durability, Outcome, PurgeRequest, Purger};
use crate::cache::CacheLayer;
use crate::cache::key::request_host;

/// Largest accepted purge body.
pub const MAX_BODY: usize = 1 << 20;

/// The 200 answer.
#[derive(Debug, Serialize)]
pub struct PurgeAnswer {
    pub purged: Counts,
    pub soft: bool,
    pub peers: Vec<PeerResult>,
    /// In a fleet: `stream` (acknowledged by the purge stream, with its
    /// sequence) or `local` (applied here, published when NATS is back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durable: Option<Durability>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl PurgeAnswer {
    fn of(o: Outcome, soft: bool, peers: Vec<PeerResult>) -> PurgeAnswer {
        PurgeAnswer {
            purged: o.counts,
            soft,
            peers,
            durable: (o.durable != Durability::Log).then_some(o.durable),
            seq: o.seq,
        }
    }
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    let mut r = json(
        status,
        &E {
            error: message.into(),
        },
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// The bearer token of a request, if any (RFC 6750 §2.1; the scheme is
/// case-insensitive, RFC 9110 §11.1).
fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Checks the admin token: `None` when authorised, else the error answer.
fn authorise(purger: &Purger, h: &HeaderMap) -> Option<Response<Full<Bytes>>> {
    authorise_for(purger, h, "purge")
}

/// Checks the admin token for an admin action (`what`, named in the 503
/// when no token is configured): `None` when authorised, else the answer.
pub fn authorise_for(purger: &Purger, h: &HeaderMap, what: &str) -> Option<Response<Full<Bytes>>> {
    if !purger.token_configured() {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} disabled: no admin token configured"),
        ));
    }
    match bearer(h) {
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer <token>)",
        )),
        Some(t) if purger.token_matches(t) => None,
        Some(_) => Some(error(StatusCode::UNAUTHORIZED, "wrong token")),
    }
}

/// 503 once this node has handed its store to a new process (a binary
/// upgrade): the new process read the purge log before this one could
/// append to it, so a purge here would not reach it. A retry goes to the
/// new process.
fn handed_over(cache: Option<&CacheLayer>) -> Option<Response<Full<Bytes>>> {
    cache.filter(|c| c.store().handing_over()).map(|_| {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has handed over to a new process: retry",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    })
}

/// `POST /purge` on the admin listener; `cache` is `None` when caching is
/// off (the bans are still recorded).
pub async fn handle_admin_purge<B>(
    purger: &Purger,
    cache: Option<&CacheLayer>,
    req: Request<B>,
) -> Response<Full<Bytes>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() != Method::POST {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use POST /purge");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if let Some(denied) = authorise(purger, req.headers()) {
        return denied;
    }
    if let Some(gone) = handed_over(cache) {
        return gone;
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return if e.is::<http_body_util::LengthLimitError>() {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("purge body over {MAX_BODY} bytes"),
                )
            } else {
                error(StatusCode::BAD_REQUEST, "cannot read the request body")
            };
        }
    };
    let parsed: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    let v = match parsed.validate() {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let peers = async {
        let cluster = purger.cluster();
        if !parsed.fan_out || cluster.peers.is_empty() {
            return Vec::new();
        }
        let forward = PurgeRequest {
            fan_out: false,
            ..parsed.clone()
        };
        let body = Bytes::from(serde_json::to_vec(&forward).unwrap_or_default());
        fanout::fan_out(purger.client(), &cluster.peers, cluster.timeout, body).await
    };
    let local = purger.purge(&v, cache);
    let (local, peers) = tokio::join!(local, peers);
    match local {
        Ok(o) => json(StatusCode::OK, &PurgeAnswer::of(o, v.soft, peers)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The `PURGE` method on the proxy listener: purges the request target.
pub async fn handle_purge_method<B>(
    purger: &Purger,
    cache: Option<&CacheLayer>,
    req: &Request<B>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let by_net = purger.allowed(peer.ip());
    let by_token = bearer(req.headers()).is_some_and(|t| purger.token_matches(t));
    if !by_net && !by_token {
        return error(
            StatusCode::FORBIDDEN,
            format!("PURGE is not allowed from {}", peer.ip()),
        );
    }
    if let Some(gone) = handed_over(cache) {
        return gone;
    }
    let Some(host) = request_host(req) else {
        return error(StatusCode::BAD_REQUEST, "PURGE needs a Host");
    };
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let soft = req
        .headers()
        .get("outpost-purge")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("soft"));
    let r = PurgeRequest {
        urls: vec![format!("http://{host}{pq}")],
        soft,
        ..Default::default()
    };
    let v = match r.validate() {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match purger.purge(&v, cache).await {
        Ok(o) => json(StatusCode::OK, &PurgeAnswer::of(o, soft, Vec::new())),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer x"));
        assert_eq!(bearer(&h), Some("x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic x"));
        assert_eq!(bearer(&h), None);
    }
}

//! The origin routes of the admin listener:
//!
//! - `GET /origins`: JSON `{"origins": [{site, origin, weight, state,
//!   reason, in_flight, requests, failures, latency_ms, last_check_ms,
//!   ejected_ms, sticky_hits, sticky_fallbacks, sticky_rewrites}]}`, `state` one of `up`, `down`, `draining` (drained, with
//!   requests in flight) and `disabled` (drained and idle);
//! - `POST /origins/drain` and `POST /origins/enable` with
//!   `{"site": "...", "origin": "http://host:port"}` and the admin bearer
//!   token: a drained origin gets no new request and its requests in
//!   flight finish; enabling puts it back (and forgets its ejection).
//!   Answers the origin's report, 400 for a bad body, 404 for an unknown
//!   site or origin.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};

use crate::origin::{OriginReport, Pool};
use crate::purge::Purger;
use crate::purge::api::{authorise_for, error, json};

/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    site: String,
    origin: String,
}

#[derive(Debug, Serialize)]
struct Listing {
    origins: Vec<OriginReport>,
}

/// `GET /origins`.
pub fn list(pools: &[Arc<Pool>]) -> Response<Full<Bytes>> {
    json(
        StatusCode::OK,
        &Listing {
            origins: pools.iter().flat_map(|p| p.report()).collect(),
        },
    )
}

/// `POST /origins/drain` (`drain`) and `POST /origins/enable`.
pub async fn change<B>(
    pools: &[Arc<Pool>],
    purger: &Purger,
    req: Request<B>,
    drain: bool,
) -> Response<Full<Bytes>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() != Method::POST {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if let Some(denied) = authorise_for(purger, req.headers(), "origin changes") {
        return denied;
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "cannot read the request body"),
    };
    let t: Target = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("malformed JSON (want {{\"site\": \"...\", \"origin\": \"...\"}}): {e}"),
            );
        }
    };
    let Some(pool) = pools.iter().find(|p| p.site() == t.site) else {
        return error(StatusCode::NOT_FOUND, format!("no site `{}`", t.site));
    };
    let Some(origin) = pool.find(&t.origin) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("site `{}` has no origin `{}`", t.site, t.origin),
        );
    };
    pool.set_drained(origin, drain);
    let report = pool
        .report()
        .into_iter()
        .find(|r| r.origin == origin.url.to_string());
    json(StatusCode::OK, &report)
}

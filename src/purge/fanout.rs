//! Fleet purge: forwarding a purge to every `[cluster] peers` entry.
//!
//! Each peer gets the same JSON purge with `fan_out: false` (so a purge
//! never loops through the fleet) on `POST {admin}/purge` with its own
//! bearer token, all peers concurrently. Each attempt is bounded by
//! `[cluster] timeout` (hyper's client has no request timeout of its own);
//! a connection failure, a timeout or a 5xx is retried twice after a short
//! pause (100 ms, then 200 ms); a 4xx is final. So a peer that is down costs
//! at most `3 × timeout + 300 ms` and is reported as failed, never waited
//! for indefinitely.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::config::Peer;

/// Retries after the first attempt.
pub const RETRIES: u32 = 2;

/// The HTTP client used for peers.
pub type Client = HyperClient<HttpConnector, Full<Bytes>>;

pub(crate) fn client() -> Client {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(2)));
    HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(http)
}

/// One peer's result, as reported in the purge answer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerResult {
    pub peer: String,
    pub ok: bool,
    /// The peer's final HTTP status, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The peer's `purged` counts, if it answered 200.
    pub purged: Option<serde_json::Value>,
}

/// Sends `body` (the purge, already with `fan_out: false`) to every peer.
pub async fn fan_out(
    client: &Client,
    peers: &[Peer],
    timeout: Duration,
    body: Bytes,
) -> Vec<PeerResult> {
    let calls = peers
        .iter()
        .map(|p| one_peer(client, p, timeout, body.clone()));
    futures_util::future::join_all(calls).await
}

enum Attempt {
    Answered(StatusCode, Bytes),
    Failed(String),
}

async fn one_peer(client: &Client, peer: &Peer, timeout: Duration, body: Bytes) -> PeerResult {
    let url = format!("{}/purge", peer.admin);
    let mut last = Attempt::Failed("not attempted".into());
    for attempt in 0..=RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        last = send_once(client, peer, &url, timeout, body.clone()).await;
        match &last {
            Attempt::Answered(s, _) if !s.is_server_error() => break,
            Attempt::Answered(s, _) => {
                tracing::warn!(peer = %peer.name, status = s.as_u16(), attempt, "peer purge failed")
            }
            Attempt::Failed(e) => {
                tracing::warn!(peer = %peer.name, error = %e, attempt, "peer purge failed")
            }
        }
    }
    match last {
        Attempt::Answered(status, bytes) => {
            let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
            let ok = status == StatusCode::OK;
            let error = (!ok).then(|| {
                json.as_ref()
                    .and_then(|j| j.get("error"))
                    .and_then(|e| e.as_str())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("status {}", status.as_u16()))
            });
            PeerResult {
                peer: peer.name.clone(),
                ok,
                status: Some(status.as_u16()),
                error,
                purged: json.filter(|_| ok).and_then(|j| j.get("purged").cloned()),
            }
        }
        Attempt::Failed(e) => PeerResult {
            peer: peer.name.clone(),
            ok: false,
            status: None,
            error: Some(e),
            purged: None,
        },
    }
}

async fn send_once(
    client: &Client,
    peer: &Peer,
    url: &str,
    timeout: Duration,
    body: Bytes,
) -> Attempt {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = &peer.token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {}", t.expose()));
    }
    let req = match b.body(Full::new(body)) {
        Ok(r) => r,
        // Only the token can make the request invalid; do not echo it.
        Err(_) => return Attempt::Failed("cannot build the request (bad token?)".into()),
    };
    let call = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("connect: {}", root_cause(&e)))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok((s, b))) => Attempt::Answered(s, b),
        Ok(Err(e)) => Attempt::Failed(e),
        Err(_) => Attempt::Failed(format!("timeout after {timeout:?}")),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

//! `outpostctl purge`: `POST /purge` on a node's admin listener with a bearer
//! token, and a readable account of what was purged, per kind and per peer.
//!
//! Exit codes: 0 purged (every peer too, with `--fan-out`); 1 refused (400,
//! 401, 403, 503, other errors: the node's message is printed) or a peer
//! failed; 2 the admin listener cannot be reached.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::admin;
use crate::cli::PurgeArgs;
use crate::http::BaseUrl;

/// The request body.
#[derive(Debug, Serialize)]
struct PurgeRequest<'a> {
    urls: &'a [String],
    prefixes: &'a [String],
    tags: &'a [String],
    soft: bool,
    fan_out: bool,
}

/// Counts per kind (missing fields read as 0).
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
struct Counts {
    urls: u64,
    prefixes: u64,
    tags: u64,
}

impl Counts {
    fn describe(&self) -> String {
        format!(
            "{} {}, {} {}, {} {}",
            self.urls,
            plural(self.urls, "URL", "URLs"),
            self.prefixes,
            plural(self.prefixes, "prefix", "prefixes"),
            self.tags,
            plural(self.tags, "tag", "tags"),
        )
    }
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// One peer's result of a fan-out.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PeerResult {
    peer: String,
    ok: bool,
    status: Option<u16>,
    error: Option<String>,
    purged: Option<Counts>,
}

/// The 200 answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PurgeAnswer {
    purged: Counts,
    soft: bool,
    peers: Vec<PeerResult>,
}

/// Runs `purge`; returns the exit code.
pub async fn run(args: PurgeArgs) -> Result<u8> {
    let base = BaseUrl::parse(&args.admin)?;
    let body = serde_json::to_vec(&PurgeRequest {
        urls: &args.url,
        prefixes: &args.prefix,
        tags: &args.tag,
        soft: args.soft,
        fan_out: args.fan_out,
    })
    .context("encoding the purge request")?;
    let answer = admin::call(
        &base,
        Method::POST,
        "/purge",
        Some(&args.token),
        Some(body),
        args.timeout,
    )
    .await?;
    if answer.status != StatusCode::OK {
        let hint = match answer.status {
            StatusCode::UNAUTHORIZED => " (check --token / OUTPOST_ADMIN_TOKEN)",
            StatusCode::FORBIDDEN => " (this client is not allowed to purge)",
            _ => "",
        };
        eprintln!(
            "outpostctl: purge refused by {}: {}: {}{hint}",
            base.original,
            answer.status,
            answer.message()
        );
        return Ok(1);
    }
    if args.json {
        println!("{}", String::from_utf8_lossy(&answer.body).trim_end());
        return Ok(peers_failed_code(&answer.body));
    }
    let parsed: PurgeAnswer = match serde_json::from_slice(&answer.body) {
        Ok(p) => p,
        Err(e) => {
            println!("purge accepted (200), but the answer could not be read: {e}");
            println!("{}", String::from_utf8_lossy(&answer.body).trim_end());
            return Ok(0);
        }
    };
    let (text, all_ok) = render(&parsed);
    print!("{text}");
    Ok(if all_ok { 0 } else { 1 })
}

/// 1 when a `--json` answer lists a failed peer.
fn peers_failed_code(body: &[u8]) -> u8 {
    match serde_json::from_slice::<PurgeAnswer>(body) {
        Ok(p) if p.peers.iter().any(|peer| !peer.ok) => 1,
        _ => 0,
    }
}

/// The readable account, and whether every peer succeeded.
fn render(answer: &PurgeAnswer) -> (String, bool) {
    let mut out = String::new();
    let kind = if answer.soft {
        "soft, marked stale"
    } else {
        "hard"
    };
    let _ = writeln!(out, "purged ({kind}): {}", answer.purged.describe());
    if answer.peers.is_empty() {
        return (out, true);
    }
    let ok = answer.peers.iter().filter(|p| p.ok).count();
    let _ = writeln!(out, "peers: {ok} of {} ok", answer.peers.len());
    for peer in &answer.peers {
        let status = peer
            .status
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        if peer.ok {
            let what = peer
                .purged
                .as_ref()
                .map_or_else(|| "no counts".to_string(), Counts::describe);
            let _ = writeln!(out, "  {}: ok ({status}): {what}", peer.peer);
        } else {
            let error = peer.error.as_deref().unwrap_or("no reason given");
            let _ = writeln!(out, "  {}: FAILED ({status}): {error}", peer.peer);
        }
    }
    (out, ok == answer.peers.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn request_body_shape() {
        let urls = vec!["http://h/a?b".to_string()];
        let body = serde_json::to_value(PurgeRequest {
            urls: &urls,
            prefixes: &[],
            tags: &["t1".to_string()],
            soft: true,
            fan_out: false,
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"urls": ["http://h/a?b"], "prefixes": [], "tags": ["t1"],
                "soft": true, "fan_out": false})
        );
    }

    #[test]
    fn renders_counts_and_peers() {
        let answer: PurgeAnswer = serde_json::from_str(
            r#"{"purged": {"urls": 1, "prefixes": 2, "tags": 0}, "soft": false,
                "peers": [
                  {"peer": "edge-2", "ok": true, "status": 200, "error": null,
                   "purged": {"urls": 1, "prefixes": 0, "tags": 0}},
                  {"peer": "http://10.0.0.3:9080", "ok": false, "status": null,
                   "error": "connect: connection refused", "purged": null}
                ], "extra": "ignored"}"#,
        )
        .unwrap();
        let (text, all_ok) = render(&answer);
        assert!(!all_ok);
        assert_eq!(
            text,
            "purged (hard): 1 URL, 2 prefixes, 0 tags\n\
             peers: 1 of 2 ok\n  \
             edge-2: ok (200): 1 URL, 0 prefixes, 0 tags\n  \
             http://10.0.0.3:9080: FAILED (-): connect: connection refused\n"
        );
        let answer: PurgeAnswer =
            serde_json::from_str(r#"{"purged": {"tags": 1}, "soft": true}"#).unwrap();
        let (text, all_ok) = render(&answer);
        assert!(all_ok);
        assert_eq!(
            text,
            "purged (soft, marked stale): 0 URLs, 0 prefixes, 1 tag\n"
        );
    }

    #[test]
    fn json_mode_exit_code_follows_peers() {
        assert_eq!(peers_failed_code(br#"{"peers": [{"ok": true}]}"#), 0);
        assert_eq!(peers_failed_code(br#"{"peers": [{"ok": false}]}"#), 1);
        assert_eq!(peers_failed_code(b"not json"), 0);
    }
}

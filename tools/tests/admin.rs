//! `outpostctl purge` and `stats` against mock admin listeners that record
//! what they receive: the JSON body and bearer token, error answers (400,
//! 401, 403, 503) with the node's message shown, fan-out peer results, an
//! unreachable listener (exit 2), and the stats output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{Req, mock, respond, run};

const TOKEN: &str = "s3cret-token-value";

/// A purge endpoint that checks the token like the node does and records
/// every request.
async fn purge_node(answer: &'static str) -> (common::Mock, Arc<Mutex<Vec<Req>>>) {
    let seen: Arc<Mutex<Vec<Req>>> = Arc::default();
    let s = seen.clone();
    let node = mock(move |req: Req| {
        s.lock().unwrap().push(req.clone());
        async move {
            if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
                return respond(
                    401,
                    &[("content-type", "application/json")],
                    r#"{"error": "invalid admin token"}"#,
                );
            }
            let body: serde_json::Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return respond(400, &[], r#"{"error": "body is not JSON"}"#),
            };
            if body["urls"]
                .as_array()
                .is_some_and(|u| u.iter().any(|u| u == "relative/path"))
            {
                return respond(
                    400,
                    &[],
                    r#"{"error": "urls[0]: not an absolute http URL"}"#,
                );
            }
            respond(200, &[("content-type", "application/json")], answer)
        }
    })
    .await;
    (node, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_sends_the_json_body_and_bearer_token() {
    let (node, seen) =
        purge_node(r#"{"purged": {"urls": 2, "prefixes": 1, "tags": 1}, "soft": false}"#).await;
    let r = run(
        &[
            "purge",
            "--admin",
            &node.url(),
            "--token",
            TOKEN,
            "--url",
            "http://example.com/a?x=1",
            "--url",
            "http://example.com/b",
            "--prefix",
            "example.com/static/",
            "--tag",
            "product-42",
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.stdout, "purged (hard): 2 URLs, 1 prefix, 1 tag\n");
    assert!(!r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, http::Method::POST);
    assert_eq!(req.uri.path(), "/purge");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "urls": ["http://example.com/a?x=1", "http://example.com/b"],
            "prefixes": ["example.com/static/"],
            "tags": ["product-42"],
            "soft": false,
            "fan_out": false
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_token_from_the_environment_and_soft_flag() {
    let (node, seen) =
        purge_node(r#"{"purged": {"urls": 0, "prefixes": 0, "tags": 3}, "soft": true}"#).await;
    let r = run(
        &["purge", "--admin", &node.url(), "--tag", "a", "--soft"],
        &[("OUTPOST_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(
        r.stdout,
        "purged (soft, marked stale): 0 URLs, 0 prefixes, 3 tags\n"
    );
    let body: serde_json::Value = serde_json::from_slice(&seen.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["soft"], true);
    assert_eq!(body["urls"], serde_json::json!([]));

    // No token at all: a usage error before any request.
    let r = run(&["purge", "--admin", &node.url(), "--tag", "a"], &[]).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("--token"), "{r:#?}");
    assert_eq!(seen.lock().unwrap().len(), 1);

    // The help names the variable but never shows its value.
    let r = run(&["purge", "--help"], &[("OUTPOST_ADMIN_TOKEN", TOKEN)]).await;
    assert!(r.stdout.contains("OUTPOST_ADMIN_TOKEN"), "{r:#?}");
    assert!(!r.stdout.contains(TOKEN), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_errors_show_the_node_message_and_exit_1() {
    let (node, _seen) = purge_node("{}").await;
    let wrong = run(
        &[
            "purge",
            "--admin",
            &node.url(),
            "--token",
            "wrong-token",
            "--url",
            "http://e.com/",
        ],
        &[],
    )
    .await;
    assert_eq!(wrong.code, 1, "{wrong:#?}");
    assert!(
        wrong
            .stderr
            .contains("401 Unauthorized: invalid admin token"),
        "{wrong:#?}"
    );
    assert!(wrong.stderr.contains("OUTPOST_ADMIN_TOKEN"), "{wrong:#?}");
    assert!(!wrong.stderr.contains("wrong-token"), "{wrong:#?}");
    assert!(wrong.stdout.is_empty());

    let bad = run(
        &[
            "purge",
            "--admin",
            &node.url(),
            "--token",
            TOKEN,
            "--url",
            "relative/path",
        ],
        &[],
    )
    .await;
    assert_eq!(bad.code, 1, "{bad:#?}");
    assert!(
        bad.stderr
            .contains("400 Bad Request: urls[0]: not an absolute http URL"),
        "{bad:#?}"
    );

    let fixed = |status: u16, body: &'static str| async move {
        mock(move |_req: Req| async move { respond(status, &[], body) }).await
    };
    let disabled = fixed(
        503,
        r#"{"error": "purge disabled: no admin token configured"}"#,
    )
    .await;
    let r = run(
        &[
            "purge",
            "--admin",
            &disabled.url(),
            "--token",
            TOKEN,
            "--tag",
            "t",
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr
            .contains("503 Service Unavailable: purge disabled: no admin token configured"),
        "{r:#?}"
    );

    let forbidden = fixed(403, "").await;
    let r = run(
        &[
            "purge",
            "--admin",
            &forbidden.url(),
            "--token",
            TOKEN,
            "--tag",
            "t",
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stderr.contains("403 Forbidden: Forbidden"), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_prints_each_peer_and_exits_1_when_one_failed() {
    let answer = r#"{"purged": {"urls": 1, "prefixes": 0, "tags": 0}, "soft": false, "peers": [
        {"peer": "edge-2", "ok": true, "status": 200, "error": null, "purged": {"urls": 1, "prefixes": 0, "tags": 0}},
        {"peer": "http://10.0.0.3:9080", "ok": false, "status": null, "error": "connect: connection refused", "purged": null}
    ]}"#;
    let (node, seen) = purge_node(answer).await;
    let r = run(
        &[
            "purge",
            "--admin",
            &node.url(),
            "--token",
            TOKEN,
            "--url",
            "http://e.com/x",
            "--fan-out",
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert_eq!(
        r.stdout,
        "purged (hard): 1 URL, 0 prefixes, 0 tags\n\
         peers: 1 of 2 ok\n  \
         edge-2: ok (200): 1 URL, 0 prefixes, 0 tags\n  \
         http://10.0.0.3:9080: FAILED (-): connect: connection refused\n"
    );
    let body: serde_json::Value = serde_json::from_slice(&seen.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["fan_out"], true);

    // --json prints the answer as is, same exit code.
    let r = run(
        &[
            "purge",
            "--admin",
            &node.url(),
            "--token",
            TOKEN,
            "--url",
            "http://e.com/x",
            "--fan-out",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:#?}");
    let printed: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(printed["peers"][1]["error"], "connect: connection refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_admin_exits_2() {
    let dead = common::dead_port::DeadPort::bind();
    let addr = dead.addr;
    let url = format!("http://{addr}");
    let r = run(
        &["purge", "--admin", &url, "--token", TOKEN, "--tag", "t"],
        &[],
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains(&format!("cannot reach node at {url}: ")),
        "{r:#?}"
    );
    assert!(!r.stderr.contains(TOKEN));
    let r = run(&["stats", "--admin", &url], &[]).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains(&format!("cannot reach node at {url}: ")),
        "{r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_prints_the_numbers_readably_or_raw() {
    const STATS: &str = r#"{"entries": 48213, "memory_bytes": 12582912, "disk_bytes": 3221225472,
        "memory_capacity": 268435456, "disk_capacity": 10737418240, "hits": 9120, "misses": 880,
        "hit_ratio": 0.912, "origin_requests": 1017, "uptime_secs": 7384, "new_field": [1, 2]}"#;
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    let p = paths.clone();
    let node = mock(move |req: Req| {
        p.lock()
            .unwrap()
            .push(format!("{} {}", req.method, req.uri));
        async move {
            if req.uri.path() == "/stats" {
                respond(200, &[("content-type", "application/json")], STATS)
            } else {
                respond(404, &[], "not found")
            }
        }
    })
    .await;
    let r = run(&["stats", "--admin", &node.url()], &[]).await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(
        r.stdout,
        "entries:         48213\n\
         memory:          12.0 MiB of 256.0 MiB (4.7%)\n\
         disk:            3.0 GiB of 10.0 GiB (30.0%)\n\
         hit ratio:       91.2% (9120 hits, 880 misses)\n\
         origin requests: 1017\n\
         uptime:          2h 3m 4s\n"
    );
    assert_eq!(paths.lock().unwrap().as_slice(), ["GET /stats"]);

    let r = run(&["stats", "--admin", &node.url(), "--json"], &[]).await;
    assert_eq!(r.code, 0, "{r:#?}");
    let raw: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(raw["entries"], 48213);
    assert_eq!(raw["new_field"], serde_json::json!([1, 2]));

    // An admin listener without /stats: the answer is shown, exit 1.
    let r = run(
        &["stats", "--admin", &format!("{}/elsewhere", node.url())],
        &[],
    )
    .await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stderr.contains("404 Not Found: not found"), "{r:#?}");
}

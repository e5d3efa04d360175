//! `GET /metrics` through real sockets, read by a Prometheus text-format
//! parser: series move with traffic (a hit, a miss, a 429 refusal, a
//! request the cache is bypassed for),
//! histograms are consistent (`+Inf` and `_count` equal the requests of
//! their series), OpenMetrics is served on `Accept`, and no URL or client
//! address is ever a label.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http::Request;
use prometheus_parse::{Scrape, Value};

async fn scrape(admin: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut b = Request::get(format!("http://{admin}/metrics"));
    if let Some(a) = accept {
        b = b.header("accept", a);
    }
    let (st, h, body) = send(b.body(full(Bytes::new())).unwrap()).await;
    assert_eq!(st, 200);
    (
        h["content-type"].to_str().unwrap().to_owned(),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(b) => b.iter().map(|h| h.count).fold(0.0, f64::max),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn series_move_with_traffic_and_histograms_add_up() {
    let o = TestOrigin::start(|_| async {
        resp_with(200, &[("cache-control", "max-age=600")], "body")
    })
    .await;
    let site = format!(
        "origins = [\"{}\"]\n[site.rate_limit]\nrequests = 1\nperiod = \"1m\"\npath_prefix = \"/limited\"\n",
        o.url()
    );
    let node = TestNode::start_site(&site, "").await;
    let (_, before) = scrape(node.admin, None).await;
    let before = parse(&before);
    let hits0 = value(&before, "outpost_requests_total", &[("cache", "hit")]).unwrap_or(0.0);

    // A miss, then three hits, then a refusal.
    for _ in 0..4 {
        assert_eq!(get(&node.url("/obj")).await.0, 200);
    }
    assert_eq!(get(&node.url("/limited")).await.0, 200);
    assert_eq!(get(&node.url("/limited")).await.0, 429);

    let (kind, text) = scrape(node.admin, None).await;
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    assert!(!text.contains("# EOF"));
    let s = parse(&text);
    let hit = [
        ("site", "default"),
        ("method_class", "GET"),
        ("status_class", "2xx"),
        ("cache", "hit"),
    ];
    assert_eq!(
        value(&s, "outpost_requests_total", &hit).unwrap() - hits0,
        3.0,
        "{text}"
    );
    let miss = [
        ("site", "default"),
        ("status_class", "2xx"),
        ("cache", "uri-miss"),
    ];
    assert!(
        value(&s, "outpost_requests_total", &miss).unwrap() >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(&s, "outpost_requests_total", &[("status_class", "4xx")]).unwrap(),
        1.0,
        "{text}"
    );
    assert!(value(&s, "outpost_refusals_total", &[("reason", "rate_limited")]).unwrap() >= 1.0);
    assert_eq!(
        value(&s, "outpost_origin_up", &[("site", "default")]).unwrap(),
        1.0
    );
    assert!(value(&s, "outpost_build_info", &[]).is_some(), "{text}");
    assert!(value(&s, "outpost_store_capacity_bytes", &[("tier", "memory")]).unwrap() > 0.0);

    // Each histogram series: the +Inf bucket and _count are its requests.
    for h in [
        "outpost_request_duration_seconds",
        "outpost_time_to_first_byte_seconds",
    ] {
        for (phase, labels) in [("hit", &hit[..]), ("uri-miss", &miss[..])] {
            let n: f64 = s
                .samples
                .iter()
                .filter(|x| x.metric == "outpost_requests_total")
                .filter(|x| x.labels.get("site") == Some("default"))
                .filter(|x| x.labels.get("cache") == Some(phase))
                .map(|x| match x.value {
                    Value::Counter(v) | Value::Untyped(v) => v,
                    _ => 0.0,
                })
                .sum();
            let count = value(
                &s,
                &format!("{h}_count"),
                &[("site", "default"), ("cache", phase)],
            )
            .unwrap_or_else(|| panic!("{h}_count {phase}: {text}"));
            assert_eq!(count, n, "{h} {phase} {labels:?}");
            let inf = value(&s, h, &[("site", "default"), ("cache", phase)]).unwrap();
            assert_eq!(inf, n, "{h} {phase} +Inf");
        }
    }
    // Bounded labels: no path, and no label but the configured ones.
    assert!(!text.contains("/obj"), "{text}");
    let allowed = [
        "site",
        "origin",
        "method_class",
        "status_class",
        "cache",
        "result",
        "tier",
        "op",
        "reason",
        "le",
        "version",
        "commit",
        "coding",
    ];
    for x in &s.samples {
        for k in x.labels.keys() {
            assert!(allowed.contains(&k.as_str()), "label {k} on {}", x.metric);
        }
    }

    let (kind, open) = scrape(
        node.admin,
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .await;
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(open.trim_end().ends_with("# EOF"));
    assert!(open.contains("# TYPE outpost_requests counter"));
}

#[tokio::test]
async fn requests_the_cache_is_bypassed_for_count_as_bypass() {
    let o = TestOrigin::start(|_| async { resp_with(200, &[], "done") }).await;
    let node = TestNode::start(&o.url(), "").await;
    // RFC 9111 §4.4: a POST goes to the origin, its answer is not stored.
    for _ in 0..3 {
        let (status, headers, _) = request_with("POST", &node.url("/form"), &[]).await;
        assert_eq!(status, 200);
        let cs = cache_status(&headers);
        assert!(cs.contains("fwd=bypass"), "{cs}");
        assert!(cs.contains("fwd-status=200"), "{cs}");
    }
    let (_, text) = scrape(node.admin, None).await;
    let s = parse(&text);
    let bypass = [("site", "default"), ("cache", "bypass")];
    assert_eq!(
        value(&s, "outpost_requests_total", &bypass),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&s, "outpost_request_duration_seconds_count", &bypass),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&s, "outpost_requests_total", &[("cache", "pass")]),
        None,
        "{text}"
    );
}

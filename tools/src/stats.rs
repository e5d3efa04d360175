//! `outpostctl stats`: `GET /stats` on a node's admin listener, printed
//! readably (or raw with `--json`).
//!
//! Lenient by design: fields are read one by one from the JSON, unknown ones
//! ignored, missing or mistyped ones shown as `-`, so the CLI keeps working
//! while the node's stats grow.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;
use http::{Method, StatusCode};
use serde_json::Value;

use crate::admin;
use crate::cli::StatsArgs;
use crate::units;

/// Runs `stats`; returns the exit code.
pub async fn run(args: StatsArgs) -> Result<u8> {
    let value =
        match admin::call_json(&args.call, Method::GET, "/stats", None, &[StatusCode::OK]).await? {
            admin::Json::Exit(code) => return Ok(code),
            admin::Json::Value(v) => v,
        };
    print!("{}", render(&value));
    Ok(0)
}

fn u64_field(v: &Value, key: &str) -> Option<u64> {
    let field = v.get(key)?;
    field
        .as_u64()
        .or_else(|| field.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".to_string())
}

/// A tier's usage: `12.0 MiB of 256.0 MiB (4.7%)`.
fn tier(used: Option<u64>, capacity: Option<u64>) -> String {
    match (used, capacity) {
        (Some(u), Some(c)) if c > 0 => format!(
            "{} of {} ({:.1}%)",
            units::bytes(u),
            units::bytes(c),
            u as f64 * 100.0 / c as f64
        ),
        (Some(u), Some(c)) => format!("{} of {}", units::bytes(u), units::bytes(c)),
        (Some(u), None) => units::bytes(u),
        (None, Some(c)) => format!("- of {}", units::bytes(c)),
        (None, None) => "-".to_string(),
    }
}

/// The readable form.
fn render(v: &Value) -> String {
    let hits = u64_field(v, "hits");
    let misses = u64_field(v, "misses");
    let ratio = v
        .get("hit_ratio")
        .and_then(Value::as_f64)
        .or_else(|| match (hits, misses) {
            (Some(h), Some(m)) if h + m > 0 => Some(h as f64 / (h + m) as f64),
            _ => None,
        });
    let hit_line = {
        let pct = ratio.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0));
        format!(
            "{pct} ({} hits, {} misses)",
            dash(hits.map(|h| h.to_string())),
            dash(misses.map(|m| m.to_string()))
        )
    };
    let rows = [
        (
            "entries",
            dash(u64_field(v, "entries").map(|n| n.to_string())),
        ),
        (
            "memory",
            tier(
                u64_field(v, "memory_bytes"),
                u64_field(v, "memory_capacity"),
            ),
        ),
        (
            "disk",
            tier(u64_field(v, "disk_bytes"), u64_field(v, "disk_capacity")),
        ),
        ("hit ratio", hit_line),
        (
            "origin requests",
            dash(u64_field(v, "origin_requests").map(|n| n.to_string())),
        ),
        (
            "uptime",
            dash(u64_field(v, "uptime_secs").map(|s| units::duration(Duration::from_secs(s)))),
        ),
    ];
    let mut out = String::new();
    for (key, value) in rows {
        let _ = writeln!(out, "{:<17}{value}", format!("{key}:"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn full_stats() {
        let v = serde_json::json!({
            "entries": 1234, "memory_bytes": 12_582_912u64, "disk_bytes": 1_288_490_188u64,
            "memory_capacity": 268_435_456u64, "disk_capacity": 10_737_418_240u64,
            "hits": 873, "misses": 127, "hit_ratio": 0.873, "origin_requests": 150,
            "uptime_secs": 93_784, "future_field": {"x": 1}
        });
        assert_eq!(
            render(&v),
            "entries:         1234\n\
             memory:          12.0 MiB of 256.0 MiB (4.7%)\n\
             disk:            1.2 GiB of 10.0 GiB (12.0%)\n\
             hit ratio:       87.3% (873 hits, 127 misses)\n\
             origin requests: 150\n\
             uptime:          1d 2h 3m\n"
        );
    }

    #[test]
    fn missing_and_odd_fields() {
        let v =
            serde_json::json!({"hits": 1, "misses": 3, "disk_bytes": "lots", "memory_capacity": 0});
        let text = render(&v);
        assert!(text.contains("entries:         -\n"), "{text}");
        assert!(text.contains("memory:          - of 0 B\n"), "{text}");
        assert!(text.contains("disk:            -\n"), "{text}");
        assert!(
            text.contains("hit ratio:       25.0% (1 hits, 3 misses)\n"),
            "{text}"
        );
        assert!(text.contains("uptime:          -\n"), "{text}");
        assert!(render(&serde_json::json!([])).contains("hit ratio:       - (- hits, - misses)"));
    }
}

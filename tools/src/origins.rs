//! `outpostctl origins`: `GET /origins` on a node's admin listener, printed
//! as a table (or raw with `--json`); `origins drain SITE ORIGIN` and
//! `origins enable SITE ORIGIN` post to `/origins/drain` and
//! `/origins/enable` with the admin token and print the origin's new state.
//!
//! Lenient like `stats`: fields are read one by one, missing ones shown as
//! `-`.

use std::fmt::Write as _;

use anyhow::Result;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin;
use crate::cli::{OriginsAction, OriginsArgs};

/// Runs `origins`; returns the exit code.
pub async fn run(args: OriginsArgs) -> Result<u8> {
    let (method, path, body) = match &args.action {
        None => (Method::GET, "/origins", None),
        Some(OriginsAction::Drain { site, origin }) => (
            Method::POST,
            "/origins/drain",
            Some(json!({ "site": site, "origin": origin })),
        ),
        Some(OriginsAction::Enable { site, origin }) => (
            Method::POST,
            "/origins/enable",
            Some(json!({ "site": site, "origin": origin })),
        ),
    };
    let body = body.map(|b| b.to_string().into_bytes());
    let value = match admin::call_json(&args.call, method, path, body, &[StatusCode::OK]).await? {
        admin::Json::Exit(code) => return Ok(code),
        admin::Json::Value(v) => v,
    };
    let rows: Vec<Value> = match value.get("origins").and_then(Value::as_array) {
        Some(list) => list.clone(),
        None => vec![value],
    };
    print!("{}", render(&rows));
    Ok(0)
}

fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "-".to_string(),
    }
}

/// One line per origin under a header.
pub fn render(rows: &[Value]) -> String {
    let cols = [
        ("SITE", "site"),
        ("ORIGIN", "origin"),
        ("STATE", "state"),
        ("IN FLIGHT", "in_flight"),
        ("REQUESTS", "requests"),
        ("FAILURES", "failures"),
        ("LATENCY MS", "latency_ms"),
        ("REASON", "reason"),
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|(_, k)| field(r, k)).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, vals: Vec<&str>| {
        let mut l = String::new();
        for (i, v) in vals.iter().enumerate() {
            let _ = write!(l, "{v:<w$}  ", w = widths[i]);
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(&mut out, cols.iter().map(|(h, _)| *h).collect());
    for c in &cells {
        line(&mut out, c.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rows_line_up_and_missing_fields_are_dashes() {
        let rows = vec![
            json!({"site": "www", "origin": "http://10.0.0.5:8000", "state": "up",
                   "in_flight": 2, "requests": 120, "failures": 0, "latency_ms": 1.5, "reason": ""}),
            json!({"site": "www", "origin": "http://10.0.0.6:8000", "state": "draining"}),
        ];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("SITE  ORIGIN"));
        assert!(lines[1].contains("up") && lines[1].contains("120"));
        assert!(lines[2].contains("draining") && lines[2].contains(" -"));
        let state_col = lines[0].find("STATE").unwrap();
        assert_eq!(&lines[2][state_col..state_col + 8], "draining");
    }
}

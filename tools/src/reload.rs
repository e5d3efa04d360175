//! `outpostctl reload`: `POST /reload` on a node's admin listener with the
//! admin token, and what it answered: the sites now served and the settings
//! that wait for a restart, or every error of the file (nothing changed).
//! Exit code 0 when the new configuration is in force, 1 otherwise.

use anyhow::Result;
use http::{Method, StatusCode};
use serde_json::Value;

use crate::admin;
use crate::cli::ReloadArgs;

/// Runs `reload`; returns the exit code.
pub async fn run(args: ReloadArgs) -> Result<u8> {
    let v = match admin::call_json(
        &args.call,
        Method::POST,
        "/reload",
        None,
        &[StatusCode::OK, StatusCode::UNPROCESSABLE_ENTITY],
    )
    .await?
    {
        admin::Json::Exit(code) => return Ok(code),
        admin::Json::Value(v) => v,
    };
    print!("{}", render(&v));
    Ok(u8::from(v["ok"] != Value::Bool(true)))
}

/// The report as text.
fn render(v: &Value) -> String {
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("-").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = String::new();
    if v["ok"] == Value::Bool(true) {
        out.push_str(&format!("reloaded: sites {}\n", list("sites").join(", ")));
        let restart = list("needs_restart");
        if !restart.is_empty() {
            out.push_str(&format!(
                "changed, applied at the next start: {}\n",
                restart.join(", ")
            ));
        }
    } else {
        out.push_str("not reloaded; the running configuration is unchanged:\n");
        for e in list("errors") {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_outcomes_read_as_text() {
        let ok = serde_json::json!({"ok": true, "sites": ["a", "b"], "needs_restart": ["server"], "errors": []});
        assert_eq!(
            render(&ok),
            "reloaded: sites a, b\nchanged, applied at the next start: server\n"
        );
        let bad = serde_json::json!({"ok": false, "errors": ["site[0].origins[0]: bad"], "needs_restart": [], "sites": []});
        assert_eq!(
            render(&bad),
            "not reloaded; the running configuration is unchanged:\n  site[0].origins[0]: bad\n"
        );
    }
}

//! Calls to a node's admin listener (`purge`, `stats`, `origins`,
//! `reload`): one request with an optional bearer token and JSON body, the
//! whole answer read (bounded), and the node's error message extracted
//! from `{"error": "..."}` answers.
//!
//! The token only ever goes into the `Authorization` header; it is never
//! printed, not even in error messages.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::Full;

use crate::http::{BaseUrl, classify_error, read_body_limited};

/// The largest admin answer read, in bytes.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// An admin listener's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The node's message for an error answer: the `error` field of a JSON
    /// body, else the body's text (shortened), else the status's reason.
    pub fn message(&self) -> String {
        error_message(self.status, &self.body)
    }
}

/// See [`Answer::message`].
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body)
        && let Some(serde_json::Value::String(msg)) = map.get("error")
    {
        return msg.clone();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string();
    }
    let mut short: String = text.chars().take(500).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// Sends one request to the admin listener at `base`.
///
/// A connection failure is an [`crate::http::Unreachable`] (exit 2); a
/// timeout after connecting is an ordinary error.
pub async fn call(
    base: &BaseUrl,
    method: Method,
    path: &str,
    token: Option<&str>,
    json: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Answer> {
    let client = crate::http::client::<Full<Bytes>>(1);
    let mut builder = Request::builder()
        .method(method)
        .uri(base.join(path)?)
        .header(USER_AGENT, crate::USER_AGENT);
    if let Some(token) = token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow!("the admin token contains characters not allowed in a header"))?;
        value.set_sensitive(true);
        builder = builder.header(AUTHORIZATION, value);
    }
    let body = match json {
        Some(bytes) => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(bytes))
        }
        None => Full::new(Bytes::new()),
    };
    let request = builder.body(body).context("building the admin request")?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                anyhow::Error::new(base.unreachable(connect_reason(&e)))
            } else {
                anyhow!(
                    "admin request to {} failed: {}",
                    base.original,
                    classify_error(&e)
                )
            }
        })?;
        let status = response.status();
        let body = read_body_limited(response.into_body(), MAX_ANSWER)
            .await
            .with_context(|| format!("reading the answer of {}", base.original))?;
        Ok(Answer { status, body })
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        anyhow!(
            "no answer from {} within {}",
            base.original,
            crate::units::duration(timeout)
        )
    })?
}

/// The innermost cause of a connect error (`Connection refused (os error
/// 111)`, a name resolution failure…).
fn connect_reason(err: &hyper_util::client::legacy::Error) -> String {
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        reason = e.to_string();
        source = e.source();
    }
    reason
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let s = StatusCode::BAD_REQUEST;
        assert_eq!(
            error_message(s, br#"{"error": "urls[0]: not an absolute URL"}"#),
            "urls[0]: not an absolute URL"
        );
        assert_eq!(error_message(s, b"  plain text\n"), "plain text");
        assert_eq!(error_message(s, b""), "Bad Request");
        assert_eq!(error_message(s, br#"{"other": 1}"#), r#"{"other": 1}"#);
        let long = "x".repeat(2000);
        assert_eq!(error_message(s, long.as_bytes()).chars().count(), 501);
    }
}

/// What a JSON admin call left to do.
#[derive(Debug)]
pub enum Json {
    /// Done: the exit code (an answer refused, or `--json` printed raw).
    Exit(u8),
    /// The answer's body, to render.
    Value(serde_json::Value),
}

/// One call of `cli::AdminCall`'s node for `path`: an answer outside `ok`
/// is reported (exit 1), `--json` prints it raw (exit 0, or 1 when its
/// status is not the first of `ok`), and anything else is parsed as JSON.
pub async fn call_json(
    call: &crate::cli::AdminCall,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    ok: &[StatusCode],
) -> Result<Json> {
    let base = BaseUrl::parse(&call.admin)?;
    let answer = self::call(
        &base,
        method,
        path,
        call.token.as_deref(),
        body,
        call.timeout,
    )
    .await?;
    if !ok.contains(&answer.status) {
        eprintln!(
            "outpostctl: {path} refused by {}: {}: {}",
            base.original,
            answer.status,
            answer.message()
        );
        return Ok(Json::Exit(1));
    }
    if call.json {
        println!("{}", String::from_utf8_lossy(&answer.body).trim_end());
        return Ok(Json::Exit(u8::from(ok.first() != Some(&answer.status))));
    }
    let value = serde_json::from_slice(&answer.body).with_context(|| {
        format!(
            "{} answered {path} with something other than JSON",
            base.original
        )
    })?;
    Ok(Json::Value(value))
}

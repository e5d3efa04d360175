//! The HTTP plumbing shared by the commands: node and admin base URLs, the
//! hyper-util legacy client over plain TCP (`http://` only: outpostctl has no
//! TLS), error classification, reachability checks and bounded body reads.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::Uri;
use http::uri::{Authority, PathAndQuery};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Connect timeout for every connection outpostctl opens.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The node (or admin listener) could not be reached at all: exit code 2.
#[derive(Debug)]
pub struct Unreachable {
    /// The base URL as the user gave it.
    pub url: String,
    /// Why: connection refused, timed out, name resolution failed…
    pub reason: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot reach node at {}: {}", self.url, self.reason)
    }
}

impl std::error::Error for Unreachable {}

/// A base URL of a node listener: `http://host[:port][/prefix]`.
#[derive(Debug, Clone)]
pub struct BaseUrl {
    /// As given by the user (for messages).
    pub original: String,
    /// `host[:port]` as given, without user info.
    pub authority: Authority,
    /// Host part (brackets stripped for IPv6).
    pub host: String,
    /// Port (80 when not given).
    pub port: u16,
    /// Path prefix without a trailing `/` (empty for the root).
    pub prefix: String,
}

impl BaseUrl {
    /// Parses `http://host:port[/prefix]`; a missing scheme means `http://`.
    /// `https://` is refused: outpostctl speaks cleartext HTTP only.
    pub fn parse(raw: &str) -> Result<Self> {
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("http://{raw}")
        };
        let uri: Uri = with_scheme
            .parse()
            .with_context(|| format!("invalid URL {raw:?}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                bail!("{raw}: https is not supported, outpostctl talks to nodes over plain http://")
            }
            other => bail!("{raw}: unsupported scheme {:?}", other.unwrap_or("")),
        }
        let authority = uri.authority().ok_or_else(|| anyhow!("{raw}: no host"))?;
        let authority = strip_userinfo(authority)?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            bail!("{raw}: no host");
        }
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Self {
            original: raw.to_string(),
            port: authority.port_u16().unwrap_or(80),
            authority,
            host,
            prefix,
        })
    }

    /// The absolute URI of `path_and_query` on this listener (prefix kept).
    pub fn join(&self, path_and_query: &str) -> Result<Uri> {
        let uri = format!("http://{}{}{}", self.authority, self.prefix, path_and_query);
        uri.parse()
            .with_context(|| format!("cannot build a request URI from {uri:?}"))
    }

    /// Opens (and drops) one TCP connection, to fail early with a clear
    /// message when the listener is not there.
    pub async fn check_reachable(&self) -> Result<(), Unreachable> {
        let connect = tokio::net::TcpStream::connect((self.host.as_str(), self.port));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(e)) => Err(self.unreachable(e.to_string())),
            Err(_) => Err(self.unreachable(format!(
                "connect timed out after {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// An [`Unreachable`] error for this URL.
    pub fn unreachable(&self, reason: impl Into<String>) -> Unreachable {
        Unreachable {
            url: self.original.clone(),
            reason: reason.into(),
        }
    }
}

/// Drops any `user:pass@` from an authority.
fn strip_userinfo(authority: &Authority) -> Result<Authority> {
    let s = authority.as_str();
    match s.rsplit_once('@') {
        Some((_, hostport)) => hostport
            .parse()
            .with_context(|| format!("invalid host {hostport:?}")),
        None => Ok(authority.clone()),
    }
}

/// A URL to warm: the `Host` header value and the request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]` from the URL (user info dropped), sent as `Host`.
    pub host: String,
    /// Path and query (fragment dropped), `/` when empty.
    pub path_and_query: String,
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL. The scheme is not sent
    /// to the node (it sees the scheme of its own connection). Non-ASCII
    /// characters are percent-encoded as UTF-8, as browsers do (they fail in
    /// the host: no IDN support).
    pub fn parse(raw: &str) -> Result<Self> {
        let without_fragment = raw.split_once('#').map_or(raw, |(u, _)| u);
        let uri: Uri = percent_encode_non_ascii(without_fragment)
            .parse()
            .map_err(|e| anyhow!("invalid url: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => bail!("invalid url: not an absolute http(s) URL"),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("invalid url: no host"))?;
        let authority = strip_userinfo(authority)?;
        let path_and_query = uri
            .path_and_query()
            .map_or("/", PathAndQuery::as_str)
            .to_string();
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            format!("/{path_and_query}")
        };
        Ok(Self {
            host: authority.as_str().to_string(),
            path_and_query,
        })
    }
}

/// Percent-encodes every non-ASCII byte.
fn percent_encode_non_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A pooled HTTP/1.1 client over plain TCP.
pub fn client<B>(max_idle_per_host: usize) -> Client<HttpConnector, B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// A short, stable reason for a failed request (used as a summary bucket).
pub fn classify_error(err: &hyper_util::client::legacy::Error) -> String {
    if err.is_connect() {
        return "connect".to_string();
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return "connection closed".to_string();
            }
            if h.is_parse() {
                return "bad response".to_string();
            }
            if h.is_timeout() {
                return "timeout".to_string();
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return format!("io: {}", io.kind());
        }
        source = e.source();
    }
    "request error".to_string()
}

/// A short reason for an error while reading a response body.
pub fn classify_body_error(err: &hyper::Error) -> String {
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        "body cut off".to_string()
    } else if err.is_timeout() {
        "timeout".to_string()
    } else {
        "body error".to_string()
    }
}

/// Reads a whole body, failing past `limit` bytes.
pub async fn read_body_limited<B>(mut body: B, limit: usize) -> Result<Bytes>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the response body")?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                bail!("response body larger than {limit} bytes");
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base_url_forms() {
        let b = BaseUrl::parse("http://127.0.0.1:9080").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("127.0.0.1", 9080));
        assert_eq!(
            b.join("/purge").unwrap().to_string(),
            "http://127.0.0.1:9080/purge"
        );
        let b = BaseUrl::parse("localhost:9080/admin/").unwrap();
        assert_eq!(b.prefix, "/admin");
        assert_eq!(
            b.join("/stats").unwrap().to_string(),
            "http://localhost:9080/admin/stats"
        );
        let b = BaseUrl::parse("http://user:pw@[::1]/").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 80));
        assert_eq!(b.authority.as_str(), "[::1]");
        assert!(BaseUrl::parse("https://node:443").is_err());
        assert!(BaseUrl::parse("ftp://node").is_err());
        assert!(BaseUrl::parse("http://").is_err());
    }

    #[test]
    fn target_forms() {
        let t = Target::parse("http://example.com:8000/a/b?x=1&y=2#frag").unwrap();
        assert_eq!(t.host, "example.com:8000");
        assert_eq!(t.path_and_query, "/a/b?x=1&y=2");
        let t = Target::parse("https://u:p@example.com").unwrap();
        assert_eq!(
            (t.host.as_str(), t.path_and_query.as_str()),
            ("example.com", "/")
        );
        let t = Target::parse("http://example.com?q").unwrap();
        assert_eq!(t.path_and_query, "/?q");
        assert!(Target::parse("/just/a/path").is_err());
        assert!(Target::parse("example.com/x").is_err());
        assert!(Target::parse("http://exa mple.com/").is_err());
        let t = Target::parse("http://example.com/é?q=ü").unwrap();
        assert_eq!(t.path_and_query, "/%C3%A9?q=%C3%BC");
        assert!(Target::parse("http://exämple.com/").is_err());
        assert!(Target::parse("ftp://example.com/").is_err());
    }
}

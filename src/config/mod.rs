//! Configuration: the TOML file ([`file`]), its validation ([`validate`]) and
//! the typed [`Config`] the node runs on.
//!
//! Loading goes `text → FileConfig (serde, unknown keys collected) →
//! validate() (every error with its key path) → Config`. With no file the
//! embedded default ([`DEFAULT_CONFIG`]) is used.
//!
//! It knows nothing of the modules that read the configuration.

mod access;
pub mod cluster;
pub mod compression;
mod file;
mod headers;
mod pool;
mod rules;
mod server;
mod site;
mod source;
mod tls;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use access::{AccessConfig, Limits, RateLimitConfig, SiteLimits};
pub use cluster::{ClusterConfig, NatsConfig, Peer, Shield, Tier};
pub use headers::{DEFAULT_RESPONSE_REMOVE, HeaderRules, POISONING_GUARD};
pub use pool::{Balance, HealthCheck, MAX_EJECTION, OriginSpec, PoolPolicy, StickyCookie};
pub use rules::compile as compile_rule_pattern;
pub use rules::{RuleAction, RuleConfig};
pub use site::Site;
pub use source::ConfigSource;
pub use tls::{CertFiles, TlsConfig, TlsDefault};
pub use validate::parse_size;

/// The configuration used when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// One problem in a configuration, with the key it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `site[0].origins[1]`; empty for syntax errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub server: ServerConfig,
    pub timeouts: Timeouts,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub cache: CacheConfig,
    pub admin: AdminConfig,
    pub purge: PurgeConfig,
    pub cluster: ClusterConfig,
    pub tls: TlsConfig,
    pub access: AccessConfig,
    pub limits: Limits,
    pub sites: Vec<Site>,
    /// Where it was read from, to read it again on reload.
    pub source: ConfigSource,
}

/// A secret (a bearer token): its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for comparing or sending; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `[admin]`: the admin listener's purge authentication.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Bearer token for `POST /purge` (and `PURGE` from outside
    /// `purge.allow`). `OUTPOST_ADMIN_TOKEN` overrides it at start-up.
    /// None: purging through the admin listener is disabled.
    pub token: Option<Secret>,
}

/// `[purge]`
#[derive(Debug, Clone)]
pub struct PurgeConfig {
    /// Client networks allowed to send `PURGE` to the proxy listener.
    pub allow: Vec<ipnet::IpNet>,
    /// Bans older than this are dropped; objects created before the newest
    /// dropped ban count as banned (the ban list's floor).
    pub ban_max_age: Duration,
    /// Response field carrying space-separated tags (surrogate keys).
    pub tag_header: http::HeaderName,
    /// Remove the tag field from responses sent to clients.
    pub strip_tag_header: bool,
}

/// `[cache]`: RFC 9111 behaviour and coalescing.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Master switch; sites may turn caching off for themselves.
    pub enabled: bool,
    /// Heuristic freshness: this fraction of the time since Last-Modified
    /// (RFC 9111 §4.2.2) ...
    pub heuristic_fraction: f64,
    /// ... capped at this.
    pub heuristic_max: Duration,
    /// Targeted cache-control field for this cache (RFC 9213), checked
    /// before `CDN-Cache-Control` and `Cache-Control`; never forwarded.
    pub targeted_field: http::HeaderName,
    /// Default for sites: ignore client `no-cache` / `max-age=0` reloads.
    pub ignore_client_reload: bool,
    /// How long a request waits for another's in-flight fetch of the same
    /// object before going to the origin itself.
    pub lock_timeout: Duration,
    /// How long an uncacheable answer makes later requests skip waiting.
    pub hit_for_pass: Duration,
    /// Body bytes kept per in-flight fetch for late joiners.
    pub coalesce_window: u64,
    /// A range request on a miss fetches and stores the whole object.
    pub range_fetch_whole: bool,
}

/// `[listen]`: where the node accepts connections.
#[derive(Debug, Clone)]
pub struct Listen {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS listener (HTTP/1.1 and HTTP/2 by ALPN), if any.
    pub tls: Option<SocketAddr>,
    /// The proxy listener's connections may start with a PROXY protocol
    /// header (v1 or v2), believed from `server.trusted_proxies` only.
    pub proxy_protocol: bool,
    /// The same for the TLS listener (the header precedes the handshake).
    pub tls_proxy_protocol: bool,
}

/// `[server]`: the client-facing side.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long in-flight requests may run after SIGTERM.
    pub drain_timeout: Duration,
    /// Time a client has to send a complete request head (HTTP/1).
    pub header_read_timeout: Duration,
    /// How long an HTTP/1.1 connection may wait idle for its next request.
    pub keepalive_timeout: Duration,
    /// Requests served on one HTTP/1.1 connection before it is closed (0:
    /// no limit).
    pub keepalive_requests: u64,
    /// How long an HTTP/2 connection may stay without a request in progress.
    pub h2_idle_timeout: Duration,
    /// Largest request head accepted (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: u64,
    pub h2_max_concurrent_streams: u32,
    /// Requests a client may cancel on one connection in a second (HTTP/2
    /// RST_STREAM, the rapid-reset attack) before the connection is ended
    /// with GOAWAY.
    pub h2_max_resets_per_second: u32,
    /// Control frames (SETTINGS, PING, PRIORITY, RST_STREAM, WINDOW_UPDATE,
    /// empty DATA) a client may send on one connection in a second.
    pub h2_max_control_frames_per_second: u32,
    /// Longest a response may wait for the client to take more of it (its
    /// HTTP/2 window held shut) before the connection is ended.
    pub send_timeout: Duration,
    /// Pseudonym in the `Via` header (RFC 9110 §7.6.3).
    pub via: String,
    /// Serve `GET`/`HEAD` without content on the own HTTP/1.1 path
    /// (`server::h1`) instead of hyper's.
    pub fast_http1: bool,
    /// Serve HTTP/2 on the own server (`server::h2`, which sends interim
    /// responses) instead of hyper's; with `fast_http1` only.
    pub fast_http2: bool,
    /// `TCP_NOTSENT_LOWAT` of client connections in bytes (0: the kernel's
    /// default, no limit).
    pub tcp_notsent_lowat: u32,
    /// A TLS handshake that takes longer is abandoned.
    pub tls_handshake_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed (load balancers in front).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `Server` sent to clients: `None` removes the origin's.
    pub server_header: Option<http::HeaderValue>,
    /// Client connections open at once, in all and from one address (0:
    /// no limit); beyond them new connections are closed at accept.
    pub max_connections: usize,
    pub max_connections_per_client: u32,
    /// The open-file limit to raise to (default: the hard limit).
    pub max_open_files: Option<u64>,
}

/// `[timeouts]`: the origin side.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub response_header: Duration,
    pub idle_body: Duration,
    pub pool_idle: Duration,
    pub pool_max_idle_per_origin: usize,
}

/// `[storage]`: the cache store.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub path: PathBuf,
    pub memory: u64,
    pub disk: u64,
    pub chunk_size: u64,
    pub max_object_size: u64,
    /// Percent of `disk` for the blob log (values of 32 KiB and more, sent with sendfile).
    pub large_value_share: u8,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]`
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    /// One line per request.
    pub access_log: bool,
    /// Where: a file (reopened on SIGUSR1) instead of stderr.
    pub access_log_path: Option<PathBuf>,
    /// A file's lines: JSON or the combined-like text.
    pub access_log_format: AccessLogFormat,
}

/// The lines of an access log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// The combined log format's order, with the cache outcome after it.
    Combined,
}

/// A host pattern: `example.com`, `*.example.com` or the catch-all `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`: any subdomain (not the bare domain); stores `.example.com`.
    Suffix(String),
    Any,
}

impl HostPattern {
    /// Parses a pattern; hosts are case-insensitive and stored lower-cased.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let s = s.trim().to_ascii_lowercase();
        let valid = |h: &str| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
        if s == "*" {
            Ok(HostPattern::Any)
        } else if let Some(rest) = s.strip_prefix("*.") {
            if valid(rest) {
                Ok(HostPattern::Suffix(format!(".{rest}")))
            } else {
                Err(format!("`*.{rest}` is not a valid wildcard host pattern"))
            }
        } else if valid(&s) {
            Ok(HostPattern::Exact(s))
        } else {
            Err(format!(
                "`{s}` is not a host name (use `example.com`, `*.example.com` or `*`)"
            ))
        }
    }

    /// Whether a lower-cased host (without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            HostPattern::Any => true,
        }
    }
}

/// An origin server's base URL (`http://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
}

impl OriginUrl {
    /// Parses `http://host[:port]` or `https://host[:port]`, with no path
    /// beyond `/`.
    pub fn parse(s: &str) -> Result<OriginUrl, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL ({e})"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("`{s}` needs a scheme, e.g. http://{s}"))?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(format!("`{s}`: an origin is http:// or https://"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("`{s}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{s}`: credentials in origin URLs are not allowed"));
        }
        if let Some(pq) = uri.path_and_query()
            && pq.as_str() != "/"
        {
            return Err(format!(
                "`{s}`: an origin URL is scheme://host:port only, without a path"
            ));
        }
        Ok(OriginUrl { scheme, authority })
    }
}

impl OriginUrl {
    /// Whether the origin is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == http::uri::Scheme::HTTPS
    }

    /// The port to connect to (the scheme's default when none is given).
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }
}

impl fmt::Display for OriginUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Command-line values that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub origin: Option<String>,
    pub listen: Option<String>,
    pub admin: Option<String>,
    /// `--tls ADDR`: the TLS listener.
    pub tls: Option<String>,
    pub cache_dir: Option<PathBuf>,
}

impl Config {
    /// The largest request head any site takes, in field bytes and in
    /// fields: what the listeners read before they refuse with 431.
    pub fn header_caps(&self) -> (u64, usize) {
        self.sites.iter().fold(
            (self.limits.max_header_bytes, self.limits.max_header_count),
            |(b, c), s| {
                let l = s.limits.over(&self.limits);
                (b.max(l.max_header_bytes), c.max(l.max_header_count))
            },
        )
    }

    /// The values every missing key falls back to.
    fn builtin_defaults() -> Config {
        Config {
            listen: Listen {
                proxy: SocketAddr::from(([127, 0, 0, 1], 8080)),
                admin: SocketAddr::from(([127, 0, 0, 1], 9080)),
                tls: None,
                proxy_protocol: false,
                tls_proxy_protocol: false,
            },
            server: ServerConfig {
                drain_timeout: Duration::from_secs(30),
                header_read_timeout: Duration::from_secs(10),
                keepalive_timeout: Duration::from_secs(75),
                keepalive_requests: 1000,
                h2_idle_timeout: Duration::from_secs(180),
                max_header_bytes: 64 << 10,
                h2_max_concurrent_streams: 256,
                h2_max_resets_per_second: 200,
                h2_max_control_frames_per_second: 1000,
                send_timeout: Duration::from_secs(60),
                via: "outpost".into(),
                fast_http1: true,
                fast_http2: true,
                tcp_notsent_lowat: 256 << 10,
                tls_handshake_timeout: Duration::from_secs(10),
                trusted_proxies: Vec::new(),
                server_header: None,
                max_connections: 0,
                max_connections_per_client: 0,
                max_open_files: None,
            },
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                response_header: Duration::from_secs(30),
                idle_body: Duration::from_secs(30),
                pool_idle: Duration::from_secs(60),
                pool_max_idle_per_origin: 256,
            },
            storage: StorageConfig {
                path: default_cache_dir(),
                memory: 256 << 20,
                disk: 4 << 30,
                chunk_size: 1 << 20,
                max_object_size: 1 << 30,
                large_value_share: 75,
            },
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Text,
                access_log: true,
                access_log_path: None,
                access_log_format: AccessLogFormat::Json,
            },
            cache: CacheConfig {
                enabled: true,
                heuristic_fraction: 0.1,
                heuristic_max: Duration::from_secs(86400),
                targeted_field: http::HeaderName::from_static("outpost-cache-control"),
                ignore_client_reload: false,
                lock_timeout: Duration::from_secs(10),
                hit_for_pass: Duration::from_secs(60),
                coalesce_window: 64 << 20,
                range_fetch_whole: true,
            },
            admin: AdminConfig::default(),
            purge: PurgeConfig {
                allow: Vec::new(),
                ban_max_age: Duration::from_secs(30 * 86400),
                tag_header: http::HeaderName::from_static("surrogate-key"),
                strip_tag_header: true,
            },
            cluster: ClusterConfig::default(),
            tls: TlsConfig::default(),
            access: AccessConfig::default(),
            limits: Limits::default(),
            sites: Vec::new(),
            source: ConfigSource::Text,
        }
    }

    /// Parses and validates TOML text, returning every error found.
    pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
        Self::from_toml_with(text, &Overrides::default())
    }

    /// Parses TOML text and applies command-line overrides before validating.
    pub fn from_toml_with(text: &str, ov: &Overrides) -> Result<Config, ConfigErrors> {
        let mut errs = validate::Errors::default();
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: String::new(),
                message: format!("TOML syntax: {}", e.message()),
            }])
        })?;
        let mut unknown = Vec::new();
        let parsed: Result<file::FileConfig, _> =
            serde_ignored::deserialize(de, |path| unknown.push(key_path(&path.to_string())));
        let mut fc = match parsed {
            Ok(fc) => fc,
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    key: String::new(),
                    message: e.to_string().trim_end().to_string(),
                }]));
            }
        };
        for k in unknown {
            errs.push(k, "unknown key");
        }
        if let Some(o) = &ov.origin {
            fc.site = vec![file::FileSite {
                name: Some("default".into()),
                hosts: Some(vec!["*".into()]),
                origins: Some(vec![toml::Value::String(o.clone())]),
                ..Default::default()
            }];
        }
        let listen = fc.listen.get_or_insert_with(Default::default);
        if let Some(l) = &ov.listen {
            listen.proxy = Some(l.clone());
        }
        if let Some(a) = &ov.admin {
            listen.admin = Some(a.clone());
        }
        if let Some(t) = &ov.tls {
            listen.tls = Some(t.clone());
        }
        let mut cfg = validate::validate(&fc, &mut errs);
        if let Some(d) = &ov.cache_dir {
            cfg.storage.path = d.clone();
        }
        if errs.0.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errs.0))
        }
    }

    /// Reads and validates a file.
    pub fn load(path: &Path, ov: &Overrides) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        let mut cfg = Self::from_toml_with(&text, ov)?;
        cfg.source = ConfigSource::File(path.to_owned(), ov.clone());
        Ok(cfg)
    }

    /// The embedded default configuration, with overrides.
    pub fn embedded(ov: &Overrides) -> Result<Config, ConfigErrors> {
        let mut cfg = Self::from_toml_with(DEFAULT_CONFIG, ov)?;
        cfg.source = ConfigSource::Embedded(ov.clone());
        Ok(cfg)
    }
}

/// `$XDG_CACHE_HOME/outpost`, else `$HOME/.cache/outpost`, else a temp dir.
fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("outpost");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache").join("outpost");
    }
    std::env::temp_dir().join("outpost-cache")
}

/// Turns serde_ignored's `site.0.foo` into `site[0].foo`.
fn key_path(dotted: &str) -> String {
    let mut out = String::new();
    for part in dotted.split('.').filter(|p| !p.is_empty() && *p != "?") {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests;

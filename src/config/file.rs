//! The configuration file as written: serde structs mirroring the TOML.
//!
//! Leaf values that can be wrong in more than one way (addresses, URLs,
//! durations, sizes) are kept as strings here and checked by
//! [`super::validate`], so that `outpost check` can report every error at
//! once instead of stopping at the first.

use serde::Deserialize;

/// A byte size: either an integer number of bytes or a string like `"256MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// A plain number of bytes.
    Bytes(i64),
    /// A human-readable size, e.g. `"1GiB"`, `"512 KiB"`, `"10MB"`.
    Text(String),
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileConfig {
    pub listen: Option<FileListen>,
    pub server: Option<FileServer>,
    pub timeouts: Option<FileTimeouts>,
    pub storage: Option<FileStorage>,
    pub log: Option<FileLog>,
    pub cache: Option<FileCache>,
    pub admin: Option<FileAdmin>,
    pub purge: Option<FilePurge>,
    pub cluster: Option<super::cluster::FileCluster>,
    pub tls: Option<FileTls>,
    pub access: Option<FileAccess>,
    pub limits: Option<FileLimits>,
    pub compression: Option<super::compression::FileCompression>,
    #[serde(default)]
    pub site: Vec<FileSite>,
}

/// `[limits]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileLimits {
    pub max_uri_bytes: Option<i64>,
    pub max_body_bytes: Option<SizeValue>,
    pub methods: Option<Vec<String>>,
    pub max_header_bytes: Option<SizeValue>,
    pub max_header_count: Option<i64>,
    pub body_read_timeout: Option<String>,
}

/// `[access]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileAccess {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub deny_file: Option<String>,
}

/// `[tls]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileTls {
    pub default: Option<String>,
    pub ticket_rotation: Option<String>,
    pub session_cache: Option<i64>,
    #[serde(default)]
    pub certificates: Vec<FileCert>,
}

/// `[[tls.certificates]]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileCert {
    pub name: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `[admin]`
#[derive(Clone, Default, Deserialize)]
pub struct FileAdmin {
    /// Bearer token for purge (never printed: no `Debug` of the value).
    pub token: Option<String>,
}

impl std::fmt::Debug for FileAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAdmin")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `[purge]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilePurge {
    pub allow: Option<Vec<String>>,
    pub ban_max_age: Option<String>,
    pub tag_header: Option<String>,
    pub strip_tag_header: Option<bool>,
}

/// `[listen]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileListen {
    pub proxy: Option<String>,
    pub admin: Option<String>,
    pub tls: Option<String>,
    pub proxy_protocol: Option<bool>,
    pub tls_proxy_protocol: Option<bool>,
}

/// `[server]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileServer {
    pub drain_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub keepalive_requests: Option<i64>,
    pub h2_idle_timeout: Option<String>,
    pub max_header_bytes: Option<SizeValue>,
    pub h2_max_concurrent_streams: Option<i64>,
    pub h2_max_resets_per_second: Option<i64>,
    pub h2_max_control_frames_per_second: Option<i64>,
    pub send_timeout: Option<String>,
    pub via: Option<String>,
    pub fast_http1: Option<bool>,
    pub fast_http2: Option<bool>,
    pub tcp_notsent_lowat: Option<SizeValue>,
    pub tls_handshake_timeout: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub server_header: Option<String>,
    pub max_connections: Option<i64>,
    pub max_open_files: Option<i64>,
    pub max_connections_per_client: Option<i64>,
}

/// `[timeouts]`: talking to origins.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileTimeouts {
    pub connect: Option<String>,
    pub response_header: Option<String>,
    pub idle_body: Option<String>,
    pub pool_idle: Option<String>,
    pub pool_max_idle_per_origin: Option<i64>,
}

/// `[storage]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileStorage {
    pub path: Option<String>,
    pub memory: Option<SizeValue>,
    pub disk: Option<SizeValue>,
    pub chunk_size: Option<SizeValue>,
    pub max_object_size: Option<SizeValue>,
    pub large_value_share: Option<i64>,
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileLog {
    pub level: Option<String>,
    pub format: Option<String>,
    /// `true`/`false` (on stderr with the other logs), or a file's path.
    pub access_log: Option<toml::Value>,
    pub access_log_format: Option<String>,
}

/// `[cache]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileCache {
    pub enabled: Option<bool>,
    pub heuristic_fraction: Option<f64>,
    pub heuristic_max: Option<String>,
    pub targeted_field: Option<String>,
    pub ignore_client_reload: Option<bool>,
    pub lock_timeout: Option<String>,
    pub hit_for_pass: Option<String>,
    pub coalesce_window: Option<SizeValue>,
    pub range_fetch_whole: Option<bool>,
}

/// `[[site]]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileSite {
    pub name: Option<String>,
    pub hosts: Option<Vec<String>>,
    /// `"http://h:p"` or `{ url = "http://h:p", weight = N }` each: checked
    /// in `super::site`, with the key of every problem.
    pub origins: Option<Vec<toml::Value>>,
    pub cache: Option<bool>,
    pub ignore_client_reload: Option<bool>,
    pub stale_on_error: Option<String>,
    pub strip_targeted_fields: Option<bool>,
    pub cache_post_responses: Option<bool>,
    pub slice: Option<SizeValue>,
    pub early_hints: Option<bool>,
    pub balance: Option<String>,
    pub retries: Option<i64>,
    pub retry_on: Option<Vec<i64>>,
    pub retry_budget: Option<f64>,
    pub retry_budget_window: Option<String>,
    pub max_fails: Option<i64>,
    pub fail_timeout: Option<String>,
    pub max_conns: Option<i64>,
    pub queue_timeout: Option<String>,
    pub health: Option<FileHealth>,
    pub sticky: Option<FileSticky>,
    pub https_redirect: Option<bool>,
    pub hsts: Option<String>,
    pub origin_sni: Option<String>,
    pub origin_ca: Option<String>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub headers: Option<FileHeaders>,
    pub pass_request_headers: Option<Vec<String>>,
    pub rate_limit: Option<FileRateLimit>,
    pub methods: Option<Vec<String>>,
    pub max_body_bytes: Option<SizeValue>,
    pub max_header_bytes: Option<SizeValue>,
    pub max_header_count: Option<i64>,
    pub body_read_timeout: Option<String>,
    pub rules: Option<Vec<super::rules::FileRule>>,
    pub compression: Option<super::compression::FileCompression>,
}

/// `[site.rate_limit]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileRateLimit {
    pub requests: Option<i64>,
    pub period: Option<String>,
    pub burst: Option<i64>,
    pub path_prefix: Option<String>,
    pub max_tracked_clients: Option<i64>,
}

/// `[site.headers]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileHeaders {
    pub response_remove: Option<Vec<String>>,
    pub response_set: Option<std::collections::BTreeMap<String, String>>,
    pub request_remove: Option<Vec<String>>,
    pub request_set: Option<std::collections::BTreeMap<String, String>>,
}

/// `[site.sticky]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileSticky {
    pub cookie: Option<String>,
    pub max_age: Option<String>,
    pub strip_cookie: Option<bool>,
    pub secret: Option<String>,
}

/// `[site.health]`
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileHealth {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub expect: Option<String>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub host: Option<String>,
}

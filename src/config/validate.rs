//! Turning a [`FileConfig`] into a typed [`Config`], collecting every error
//! with the key path it belongs to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::{FileConfig, SizeValue};
use super::site::site;
use super::{
    AdminConfig, CacheConfig, ClusterConfig, Config, ConfigError, Listen, LogConfig, LogFormat,
    PurgeConfig, Secret, Site, StorageConfig, Timeouts,
};

/// Accumulates `(key path, message)` pairs.
#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }
}

fn addr(errs: &mut Errors, key: &str, v: Option<&String>, default: SocketAddr) -> SocketAddr {
    match v {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|e| {
            errs.push(key, format!("`{s}` is not an IP:port address ({e})"));
            default
        }),
    }
}

pub(super) fn duration(
    errs: &mut Errors,
    key: &str,
    v: Option<&String>,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => {
                errs.push(key, "must be greater than zero");
                default
            }
            Ok(d) => d,
            Err(e) => {
                errs.push(
                    key,
                    format!("`{s}` is not a duration like \"30s\" or \"5m\" ({e})"),
                );
                default
            }
        },
    }
}

/// Parses `"256MiB"`, `"1 GiB"`, `"10MB"`, `"4096"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit `{unit}` (use B, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    if num.is_empty() {
        return Err("missing number".into());
    }
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{num}` is not a number"))?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 / 2.0 {
        return Err("size out of range".into());
    }
    Ok(bytes as u64)
}

pub(super) fn size(errs: &mut Errors, key: &str, v: Option<&SizeValue>, default: u64) -> u64 {
    match v {
        None => default,
        Some(SizeValue::Bytes(n)) if *n >= 0 => *n as u64,
        Some(SizeValue::Bytes(n)) => {
            errs.push(key, format!("{n} is negative"));
            default
        }
        Some(SizeValue::Text(s)) => parse_size(s).unwrap_or_else(|e| {
            errs.push(key, format!("`{s}`: {e}"));
            default
        }),
    }
}

/// Validates the whole file; `Err` holds every problem found.
pub(super) fn validate(f: &FileConfig, errs: &mut Errors) -> Config {
    let d = Config::builtin_defaults();
    let l = f.listen.clone().unwrap_or_default();
    let listen = Listen {
        proxy: addr(errs, "listen.proxy", l.proxy.as_ref(), d.listen.proxy),
        admin: addr(errs, "listen.admin", l.admin.as_ref(), d.listen.admin),
        tls: l
            .tls
            .as_ref()
            .map(|t| addr(errs, "listen.tls", Some(t), d.listen.proxy)),
        proxy_protocol: l.proxy_protocol.unwrap_or(false),
        tls_proxy_protocol: l.tls_proxy_protocol.unwrap_or(false),
    };
    if let Some(t) = listen.tls
        && t.port() != 0
        && (t == listen.proxy || t == listen.admin)
    {
        errs.push(
            "listen.tls",
            "must differ from listen.proxy and listen.admin",
        );
    }
    if listen.proxy == listen.admin && listen.proxy.port() != 0 {
        errs.push("listen.admin", "must differ from listen.proxy");
    }
    let server = super::server::server_section(f.server.as_ref(), errs, &d.server);
    for (on, key) in [
        (listen.proxy_protocol, "listen.proxy_protocol"),
        (listen.tls_proxy_protocol, "listen.tls_proxy_protocol"),
    ] {
        if on && server.trusted_proxies.is_empty() {
            errs.push(
                key,
                "needs server.trusted_proxies: a PROXY header is believed only from them",
            );
        }
    }
    let t = f.timeouts.clone().unwrap_or_default();
    let pool_max = match t.pool_max_idle_per_origin {
        None => d.timeouts.pool_max_idle_per_origin,
        Some(n) if (0..=100_000).contains(&n) => n as usize,
        Some(n) => {
            errs.push(
                "timeouts.pool_max_idle_per_origin",
                format!("{n} is out of range 0..=100000"),
            );
            d.timeouts.pool_max_idle_per_origin
        }
    };
    let timeouts = Timeouts {
        connect: duration(
            errs,
            "timeouts.connect",
            t.connect.as_ref(),
            d.timeouts.connect,
        ),
        response_header: duration(
            errs,
            "timeouts.response_header",
            t.response_header.as_ref(),
            d.timeouts.response_header,
        ),
        idle_body: duration(
            errs,
            "timeouts.idle_body",
            t.idle_body.as_ref(),
            d.timeouts.idle_body,
        ),
        pool_idle: duration(
            errs,
            "timeouts.pool_idle",
            t.pool_idle.as_ref(),
            d.timeouts.pool_idle,
        ),
        pool_max_idle_per_origin: pool_max,
    };
    let st = f.storage.clone().unwrap_or_default();
    let storage = StorageConfig {
        path: st
            .path
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| d.storage.path.clone()),
        memory: size(errs, "storage.memory", st.memory.as_ref(), d.storage.memory),
        disk: size(errs, "storage.disk", st.disk.as_ref(), d.storage.disk),
        chunk_size: size(
            errs,
            "storage.chunk_size",
            st.chunk_size.as_ref(),
            d.storage.chunk_size,
        ),
        max_object_size: 0,
        large_value_share: match st.large_value_share {
            None => d.storage.large_value_share,
            Some(n @ 0..=95) => n as u8,
            Some(_) => {
                errs.push(
                    "storage.large_value_share",
                    "must be a percentage from 0 to 95",
                );
                d.storage.large_value_share
            }
        },
    };
    // Unset, the largest object is the default or a quarter of the disk
    // tier, whichever is smaller; set explicitly, it must be at most half of
    // it (the store needs room to evict while writing one).
    let mut storage = storage;
    storage.max_object_size = size(
        errs,
        "storage.max_object_size",
        st.max_object_size.as_ref(),
        d.storage.max_object_size.min(storage.disk / 4),
    );
    if !(4096..=(64 << 20)).contains(&storage.chunk_size) {
        errs.push("storage.chunk_size", "must be between 4KiB and 64MiB");
    }
    if storage.memory < storage.chunk_size {
        errs.push(
            "storage.memory",
            "must be at least one chunk (storage.chunk_size)",
        );
    }
    if storage.disk < 16 * storage.chunk_size {
        errs.push(
            "storage.disk",
            "must be at least 16 chunks (16 × storage.chunk_size)",
        );
    }
    if storage.max_object_size > storage.disk / 2 {
        errs.push(
            "storage.max_object_size",
            "must be at most half of storage.disk",
        );
    }
    let lg = f.log.clone().unwrap_or_default();
    let format = match lg.format.as_deref() {
        None => d.log.format,
        Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            errs.push(
                "log.format",
                format!("`{other}` is not one of \"text\", \"json\""),
            );
            d.log.format
        }
    };
    let level = lg.level.clone().unwrap_or(d.log.level.clone());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        errs.push(
            "log.level",
            format!("`{level}` is not a log filter like \"info\" or \"outpost=debug\""),
        );
    }
    let (access_log, access_log_path) = match &lg.access_log {
        None => (d.log.access_log, None),
        Some(toml::Value::Boolean(b)) => (*b, None),
        Some(toml::Value::String(p)) if !p.trim().is_empty() => {
            (true, Some(std::path::PathBuf::from(p)))
        }
        Some(_) => {
            errs.push("log.access_log", "true, false, or a file's path");
            (d.log.access_log, None)
        }
    };
    let access_log_format = match lg.access_log_format.as_deref() {
        None | Some("json") => super::AccessLogFormat::Json,
        Some("combined") => super::AccessLogFormat::Combined,
        Some(f) => {
            errs.push(
                "log.access_log_format",
                format!("`{f}`: \"json\" or \"combined\""),
            );
            super::AccessLogFormat::Json
        }
    };
    let log = LogConfig {
        level,
        format,
        access_log,
        access_log_path,
        access_log_format,
    };
    let cache = cache_section(f, errs, &d.cache);
    let compression = super::compression::compression(
        errs,
        "compression",
        f.compression.as_ref(),
        &super::compression::CompressionConfig::default(),
    );
    let sites: Vec<Site> = f
        .site
        .iter()
        .enumerate()
        .map(|(i, s)| site(errs, i, s, &cache, &compression))
        .collect();
    let mut names = std::collections::HashSet::new();
    for (i, s) in sites.iter().enumerate() {
        if !names.insert(s.name.clone()) {
            errs.push(
                format!("site[{i}].name"),
                format!("duplicate site name `{}`", s.name),
            );
        }
    }
    let (admin, purge, cluster) = operator_sections(f, errs, &d);
    let tls = super::tls::tls_section(f.tls.as_ref(), errs, listen.tls.is_some());
    let limits = super::access::limits_section(f.limits.as_ref(), server.max_header_bytes, errs);
    Config {
        listen,
        server,
        timeouts,
        storage,
        log,
        cache,
        admin,
        purge,
        cluster,
        tls,
        access: super::access::access_section(f.access.as_ref(), errs),
        limits,
        sites,
        source: super::ConfigSource::Text,
    }
}

/// A bearer token: non-empty visible ASCII (it goes into an
/// `Authorization` field). The message never repeats the value.
pub(super) fn token(errs: &mut Errors, key: &str, v: Option<&String>) -> Option<Secret> {
    let t = v?;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
        errs.push(
            key,
            "must be non-empty visible ASCII without spaces (the value is not shown)",
        );
        return None;
    }
    Some(Secret::new(t.clone()))
}

/// Parses `10.0.0.0/8`, `::1/128` or a bare address (a single host).
pub(crate) fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<ipnet::IpNet>() {
        return Ok(n.trunc());
    }
    t.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("`{s}` is not a CIDR network like \"10.0.0.0/8\" or an IP address"))
}

/// `[admin]`, `[purge]` and `[cluster]`.
fn operator_sections(
    f: &FileConfig,
    errs: &mut Errors,
    d: &Config,
) -> (AdminConfig, PurgeConfig, ClusterConfig) {
    let a = f.admin.clone().unwrap_or_default();
    let admin = AdminConfig {
        token: token(errs, "admin.token", a.token.as_ref()),
    };
    let p = f.purge.clone().unwrap_or_default();
    let mut allow = Vec::new();
    for (i, n) in p.allow.iter().flatten().enumerate() {
        match parse_net(n) {
            Ok(net) => allow.push(net),
            Err(e) => errs.push(format!("purge.allow[{i}]"), e),
        }
    }
    let tag_header = match &p.tag_header {
        None => d.purge.tag_header.clone(),
        Some(name) => match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                errs.push(
                    "purge.tag_header",
                    format!("`{name}` is not a header field name"),
                );
                d.purge.tag_header.clone()
            }
        },
    };
    let purge = PurgeConfig {
        allow,
        ban_max_age: duration(
            errs,
            "purge.ban_max_age",
            p.ban_max_age.as_ref(),
            d.purge.ban_max_age,
        ),
        tag_header,
        strip_tag_header: p.strip_tag_header.unwrap_or(d.purge.strip_tag_header),
    };
    let cluster = super::cluster::section(f.cluster.as_ref(), errs);
    (admin, purge, cluster)
}

fn cache_section(f: &FileConfig, errs: &mut Errors, d: &CacheConfig) -> CacheConfig {
    let c = f.cache.clone().unwrap_or_default();
    let heuristic_fraction = match c.heuristic_fraction {
        None => d.heuristic_fraction,
        Some(x) if (0.0..=1.0).contains(&x) => x,
        Some(x) => {
            errs.push(
                "cache.heuristic_fraction",
                format!("{x} is not between 0 and 1"),
            );
            d.heuristic_fraction
        }
    };
    let targeted_field = match &c.targeted_field {
        None => d.targeted_field.clone(),
        Some(name) => match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if h != http::header::CACHE_CONTROL => h,
            _ => {
                errs.push(
                    "cache.targeted_field",
                    format!("`{name}` is not a usable header field name"),
                );
                d.targeted_field.clone()
            }
        },
    };
    let coalesce_window = size(
        errs,
        "cache.coalesce_window",
        c.coalesce_window.as_ref(),
        d.coalesce_window,
    );
    CacheConfig {
        enabled: c.enabled.unwrap_or(d.enabled),
        heuristic_fraction,
        heuristic_max: duration(
            errs,
            "cache.heuristic_max",
            c.heuristic_max.as_ref(),
            d.heuristic_max,
        ),
        targeted_field,
        ignore_client_reload: c.ignore_client_reload.unwrap_or(d.ignore_client_reload),
        lock_timeout: duration(
            errs,
            "cache.lock_timeout",
            c.lock_timeout.as_ref(),
            d.lock_timeout,
        ),
        hit_for_pass: duration(
            errs,
            "cache.hit_for_pass",
            c.hit_for_pass.as_ref(),
            d.hit_for_pass,
        ),
        coalesce_window,
        range_fetch_whole: c.range_fetch_whole.unwrap_or(d.range_fetch_whole),
    }
}

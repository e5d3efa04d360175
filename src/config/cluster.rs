//! `[cluster]`: the node's place in a fleet. Its name and tier, the NATS
//! servers that carry purges (a JetStream stream), the shields an edge asks
//! before the origin, and the HTTP peers a purge may still be fanned out to.
//!
//! Owns: the settings and their validation with key paths. Must not know:
//! how a purge is published or applied (`purge`), how a shield is chosen or
//! asked (`cluster`, `proxy`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::validate::{Errors, duration, token};
use super::{OriginUrl, Secret};

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's name: unique in the fleet; names the node's durable
    /// purge consumer and its shield hop in `Via`-style loop checks.
    pub node: String,
    pub tier: Tier,
    /// JetStream purge propagation, when `nats` is set.
    pub nats: Option<NatsConfig>,
    /// The shields an edge asks before the origin (by rendezvous hash of
    /// the cache key). Ignored on a shield.
    pub shields: Vec<Shield>,
    /// How long a shield may take to send a response head before the edge
    /// asks the next shield (or the origin).
    pub shield_timeout: Duration,
    /// HTTP peers a purge is forwarded to with `fan_out: true` (a fleet
    /// without NATS).
    pub peers: Vec<Peer>,
    /// Per-attempt timeout of a forwarded purge.
    pub timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node: default_node_name(),
            tier: Tier::Edge,
            nats: None,
            shields: Vec::new(),
            shield_timeout: Duration::from_secs(5),
            peers: Vec::new(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Where a node sits in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Serves clients; misses go to a shield when shields are configured.
    Edge,
    /// Serves edges; misses go to the origin, never to another shield.
    Shield,
}

/// `nats`, `purge_*` and `catch_up_timeout`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port` URLs of the NATS cluster.
    pub servers: Vec<String>,
    /// A `.creds` file (JWT + NKey seed), when the servers want one.
    pub credentials: Option<PathBuf>,
    /// The JetStream stream of purges (created when missing).
    pub stream: String,
    /// How long the stream keeps a purge: the longest outage after which a
    /// node still catches up (older purges are lost to it).
    pub retention: Duration,
    /// Stream replicas when the node creates the stream.
    pub replicas: usize,
    /// How long a hit waits for a catch-up in progress before it is served
    /// anyway (with a log line and a counter).
    pub catch_up_timeout: Duration,
}

/// One `shields` entry.
#[derive(Debug, Clone)]
pub struct Shield {
    pub name: String,
    /// The shield's proxy listener, `http://host:port`.
    pub url: OriginUrl,
}

/// One `peers` entry.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    /// The peer's admin listener, `http://host:port`.
    pub admin: OriginUrl,
    pub token: Option<Secret>,
}

/// The host's name (`/proc/sys/kernel/hostname`), else `outpost`.
fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| valid_name(s))
        .unwrap_or_else(|| "outpost".into())
}

/// A node name: it becomes a NATS consumer name, so `[A-Za-z0-9_-]`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `[cluster]` in the file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileCluster {
    pub node: Option<String>,
    pub tier: Option<String>,
    pub nats: Option<Vec<String>>,
    pub nats_credentials: Option<PathBuf>,
    pub purge_stream: Option<String>,
    pub purge_retention: Option<String>,
    pub purge_replicas: Option<usize>,
    pub catch_up_timeout: Option<String>,
    pub shields: Option<Vec<FileShield>>,
    pub shield_timeout: Option<String>,
    pub peers: Option<Vec<FilePeer>>,
    pub timeout: Option<String>,
}

/// One `[cluster] shields` entry in the file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileShield {
    pub name: Option<String>,
    pub url: Option<String>,
}

/// One `[cluster] peers` entry in the file.
#[derive(Clone, Default, Deserialize)]
pub struct FilePeer {
    pub name: Option<String>,
    pub admin: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for FilePeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePeer")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Validates `[cluster]`, pushing every error with its key path.
pub(super) fn section(c: Option<&FileCluster>, errs: &mut Errors) -> ClusterConfig {
    let d = ClusterConfig::default();
    let Some(c) = c else {
        return d;
    };
    let node = match &c.node {
        None => d.node.clone(),
        Some(n) if valid_name(n) => n.clone(),
        Some(n) => {
            errs.push(
                "cluster.node",
                format!("`{n}` is not a node name (1-64 of A-Z a-z 0-9 - _)"),
            );
            d.node.clone()
        }
    };
    let tier = match c.tier.as_deref() {
        None | Some("edge") => Tier::Edge,
        Some("shield") => Tier::Shield,
        Some(t) => {
            errs.push(
                "cluster.tier",
                format!("`{t}` is not a tier: \"edge\" or \"shield\""),
            );
            Tier::Edge
        }
    };
    let nats = nats_section(c, errs);
    let mut shields: Vec<Shield> = Vec::new();
    for (i, s) in c.shields.iter().flatten().enumerate() {
        let base = format!("cluster.shields[{i}]");
        let taken = |n: &str| shields.iter().any(|x| x.name == n);
        let Some((name, url)) = named_url(
            errs,
            &base,
            (
                "url",
                s.url.as_deref(),
                "the shield's proxy URL, e.g. \"http://10.0.0.5:80\"",
            ),
            s.name.as_deref(),
            taken,
        ) else {
            continue;
        };
        shields.push(Shield { name, url });
    }
    let mut peers: Vec<Peer> = Vec::new();
    for (i, fp) in c.peers.iter().flatten().enumerate() {
        let base = format!("cluster.peers[{i}]");
        let taken = |n: &str| peers.iter().any(|p| p.name == n);
        let Some((name, admin_url)) = named_url(
            errs,
            &base,
            (
                "admin",
                fp.admin.as_deref(),
                "the peer's admin URL, e.g. \"http://10.0.0.7:9080\"",
            ),
            fp.name.as_deref(),
            taken,
        ) else {
            continue;
        };
        peers.push(Peer {
            name,
            admin: admin_url,
            token: token(errs, &format!("{base}.token"), fp.token.as_ref()),
        });
    }
    ClusterConfig {
        node,
        tier,
        nats,
        shields,
        shield_timeout: duration(
            errs,
            "cluster.shield_timeout",
            c.shield_timeout.as_ref(),
            d.shield_timeout,
        ),
        peers,
        timeout: duration(errs, "cluster.timeout", c.timeout.as_ref(), d.timeout),
    }
}

/// A list entry's URL (`url`: its key, value and what is missing when it
/// is absent) and its name (the URL when not given; `taken` says whether a
/// name is already used).
fn named_url(
    errs: &mut Errors,
    base: &str,
    url: (&str, Option<&str>, &str),
    name: Option<&str>,
    taken: impl Fn(&str) -> bool,
) -> Option<(String, OriginUrl)> {
    let (key, value, wanted) = url;
    let u = match value.map(OriginUrl::parse) {
        None => {
            errs.push(format!("{base}.{key}"), format!("missing: {wanted}"));
            return None;
        }
        Some(Err(e)) => {
            errs.push(format!("{base}.{key}"), e);
            return None;
        }
        Some(Ok(u)) => u,
    };
    let name = name.map_or_else(|| u.to_string(), str::to_owned);
    if taken(&name) {
        errs.push(format!("{base}.name"), format!("duplicate name `{name}`"));
    }
    Some((name, u))
}

fn nats_section(c: &FileCluster, errs: &mut Errors) -> Option<NatsConfig> {
    let servers = c.nats.clone().unwrap_or_default();
    if servers.is_empty() {
        for (set, key) in [
            (c.nats_credentials.is_some(), "cluster.nats_credentials"),
            (c.purge_stream.is_some(), "cluster.purge_stream"),
            (c.purge_retention.is_some(), "cluster.purge_retention"),
            (c.purge_replicas.is_some(), "cluster.purge_replicas"),
            (c.catch_up_timeout.is_some(), "cluster.catch_up_timeout"),
        ] {
            if set {
                errs.push(key, "has no effect without `cluster.nats` servers");
            }
        }
        return None;
    }
    for (i, s) in servers.iter().enumerate() {
        let ok = s
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("nats" | "tls")))
            .and_then(|u| u.port_u16().map(|_| u.host().is_some()))
            .unwrap_or(false);
        if !ok {
            errs.push(
                format!("cluster.nats[{i}]"),
                format!("`{s}` is not a NATS URL like \"nats://10.0.0.9:4222\""),
            );
        }
    }
    let stream = c
        .purge_stream
        .clone()
        .unwrap_or_else(|| "OUTPOST_PURGE".into());
    if !valid_name(&stream) {
        errs.push(
            "cluster.purge_stream",
            format!("`{stream}` is not a stream name (1-64 of A-Z a-z 0-9 - _)"),
        );
    }
    let replicas = c.purge_replicas.unwrap_or(1);
    if !(1..=5).contains(&replicas) {
        errs.push(
            "cluster.purge_replicas",
            "must be 1 to 5 (JetStream's range)",
        );
    }
    Some(NatsConfig {
        servers,
        credentials: c.nats_credentials.clone(),
        stream,
        retention: duration(
            errs,
            "cluster.purge_retention",
            c.purge_retention.as_ref(),
            Duration::from_secs(7 * 24 * 3600),
        ),
        replicas: replicas.clamp(1, 5),
        catch_up_timeout: duration(
            errs,
            "cluster.catch_up_timeout",
            c.catch_up_timeout.as_ref(),
            Duration::from_secs(2),
        ),
    })
}

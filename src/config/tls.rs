//! `[tls]` and `[[tls.certificates]]`: the certificates the TLS listener
//! serves, which one a client without a known SNI name gets, and session
//! resumption. Files are named here and read by the server (at start-up,
//! on reload and by `outpost check`), which reports what is wrong with
//! them.

use std::path::PathBuf;
use std::time::Duration;

use super::file::FileTls;
use super::validate::{Errors, duration};

/// One certificate: a PEM chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// What `[tls] default` calls it (default: `cert0`, `cert1`, …).
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Which certificate a client without SNI, or with a name no certificate
/// covers, gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsDefault {
    /// The named certificate.
    Named(String),
    /// None: the handshake fails.
    Refuse,
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub certificates: Vec<CertFiles>,
    pub default: TlsDefault,
    /// How long a session-ticket key encrypts new tickets (tickets stay
    /// valid for twice that).
    pub ticket_rotation: Duration,
    /// TLS 1.2 sessions kept for resumption by id (0: none).
    pub session_cache: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certificates: Vec::new(),
            default: TlsDefault::Named("cert0".into()),
            ticket_rotation: Duration::from_secs(12 * 3600),
            session_cache: 10_000,
        }
    }
}

/// Validates `[tls]`; `listening` says whether a TLS listener is set (it
/// then needs a certificate).
pub(super) fn tls_section(f: Option<&FileTls>, errs: &mut Errors, listening: bool) -> TlsConfig {
    let d = TlsConfig::default();
    let Some(f) = f else {
        if listening {
            errs.push(
                "tls.certificates",
                "listen.tls is set: give at least one [[tls.certificates]] with `cert` and `key`",
            );
        }
        return d;
    };
    let mut certificates = Vec::new();
    for (i, c) in f.certificates.iter().enumerate() {
        let key = |k: &str| format!("tls.certificates[{i}].{k}");
        let name = c.name.clone().unwrap_or_else(|| format!("cert{i}"));
        if certificates.iter().any(|x: &CertFiles| x.name == name) {
            errs.push(key("name"), format!("duplicate certificate name `{name}`"));
        }
        let path = |k: &str, v: &Option<String>, errs: &mut Errors| match v {
            Some(p) if !p.trim().is_empty() => PathBuf::from(p),
            _ => {
                errs.push(key(k), "missing: the path of a PEM file");
                PathBuf::new()
            }
        };
        let cert = path("cert", &c.cert, errs);
        let pkey = path("key", &c.key, errs);
        certificates.push(CertFiles {
            name,
            cert,
            key: pkey,
        });
    }
    if listening && certificates.is_empty() {
        errs.push(
            "tls.certificates",
            "listen.tls is set: give at least one [[tls.certificates]] with `cert` and `key`",
        );
    }
    let default = match f.default.as_deref() {
        None => match certificates.first() {
            Some(c) => TlsDefault::Named(c.name.clone()),
            None => TlsDefault::Refuse,
        },
        Some("refuse") => TlsDefault::Refuse,
        Some(n) if certificates.iter().any(|c| c.name == n) => TlsDefault::Named(n.to_owned()),
        Some(n) => {
            errs.push(
                "tls.default",
                format!("`{n}` names no [[tls.certificates]] entry (or use \"refuse\")"),
            );
            TlsDefault::Refuse
        }
    };
    let session_cache = match f.session_cache {
        None => d.session_cache,
        Some(n) if (0..=10_000_000).contains(&n) => n as usize,
        Some(n) => {
            errs.push(
                "tls.session_cache",
                format!("{n} is out of range (0 to 10000000)"),
            );
            d.session_cache
        }
    };
    TlsConfig {
        certificates,
        default,
        ticket_rotation: duration(
            errs,
            "tls.ticket_rotation",
            f.ticket_rotation.as_ref(),
            d.ticket_rotation,
        ),
        session_cache,
    }
}

//! TLS termination on rustls with the `ring` provider: the certificates of
//! `[[tls.certificates]]` chosen by SNI, session resumption, and reload.
//!
//! - **Choosing a certificate**: each certificate serves the DNS names of
//!   its subjectAltName, `*.example.com` wildcards included (one label,
//!   RFC 6125 §6.4.3). The client's SNI name picks an exact name first,
//!   then a wildcard; a client without SNI or with a name no certificate
//!   covers gets `[tls] default` (or the handshake fails with `refuse`).
//!   Where RSA and ECDSA certificates cover one name, the client gets the
//!   first whose key signs with a scheme it offered.
//! - **Resumption**: TLS 1.3 tickets under keys that rotate every
//!   `ticket_rotation` (a ticket stays valid for up to twice that), and a
//!   TLS 1.2 session cache of `session_cache` entries.
//! - **Reload** (with the configuration): [`Tls::prepare`] reads every
//!   certificate of the new `[tls]` section, and [`Tls::commit`] swaps the
//!   set atomically (`ArcSwap`): new handshakes use it, and established
//!   connections keep what they negotiated. A certificate that fails to
//!   load fails the whole reload: the running set keeps serving.
//!
//! It knows nothing of HTTP: it hands the server a TLS stream and the
//! protocol ALPN chose.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{CertFiles, TlsConfig, TlsDefault};
use crate::error::{Error, ErrorKind};

pub use crate::origin::tls::provider;

/// A certificate that loaded: its key pair, names and expiry.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// subjectAltName DNS names, lower-case.
    pub names: Vec<String>,
    pub not_after: SystemTime,
}

/// Reads one `[[tls.certificates]]` entry: the chain, the key (PKCS#8,
/// SEC1 or PKCS#1), that the key is the certificate's, and that it has
/// not expired.
pub fn load(files: &CertFiles) -> Result<Loaded, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "{}: not a PEM certificate chain ({e})",
                files.cert.display()
            )
        })?;
    let Some(leaf) = certs.first() else {
        return Err(format!(
            "{}: no certificate in the file",
            files.cert.display()
        ));
    };
    let (names, not_after) =
        describe(leaf).map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if not_after < SystemTime::now() {
        return Err(format!(
            "{}: the certificate has expired",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: not a PEM private key ({e})", key_path(&files.key)))?;
    let ck = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        format!(
            "{} does not go with {}: {e}",
            key_path(&files.key),
            files.cert.display()
        )
    })?;
    Ok(Loaded {
        key: Arc::new(ck),
        names,
        not_after,
    })
}

fn key_path(p: &Path) -> String {
    p.display().to_string()
}

/// The DNS names of a certificate's subjectAltName and its `notAfter`.
fn describe(der: &CertificateDer<'_>) -> Result<(Vec<String>, SystemTime), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        return Err("no DNS name in its subjectAltName".into());
    }
    let secs = cert.validity().not_after.timestamp();
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    Ok((names, not_after))
}

/// The certificates by name, as the resolver reads them.
#[derive(Debug, Default)]
struct Store {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// By the part after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    default: Vec<Arc<CertifiedKey>>,
}

impl Store {
    fn build(loaded: &[(String, Loaded)], default: &TlsDefault) -> Store {
        let mut s = Store::default();
        for (name, l) in loaded {
            for n in &l.names {
                let list = match n.strip_prefix("*.") {
                    Some(rest) => s.wildcard.entry(rest.to_owned()).or_default(),
                    None => s.exact.entry(n.clone()).or_default(),
                };
                list.push(l.key.clone());
            }
            if let TlsDefault::Named(d) = default
                && d == name
            {
                s.default.push(l.key.clone());
            }
        }
        // Other certificates for the default's names serve defaultless
        // clients too (RSA beside ECDSA).
        if let Some((_, first)) = loaded
            .iter()
            .find(|(n, _)| matches!(default, TlsDefault::Named(d) if d == n))
        {
            for n in &first.names {
                for k in s.exact.get(n).into_iter().flatten() {
                    if !s.default.iter().any(|d| Arc::ptr_eq(d, k)) {
                        s.default.push(k.clone());
                    }
                }
            }
        }
        s
    }

    fn candidates(&self, sni: Option<&str>) -> (&[Arc<CertifiedKey>], bool) {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(v) = self.exact.get(&name) {
                return (v, true);
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(v) = self.wildcard.get(parent)
            {
                return (v, true);
            }
        }
        (&self.default, false)
    }
}

/// Picks the certificate for a handshake (see the module docs).
#[derive(Debug)]
struct Resolver {
    store: ArcSwap<Store>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self.store.load();
        let (list, matched) = store.candidates(hello.server_name());
        let schemes = hello.signature_schemes();
        let pick = list
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .cloned();
        if pick.is_none() {
            let why = if list.is_empty() {
                crate::metrics::TlsFailure::UnknownSni
            } else {
                crate::metrics::TlsFailure::NoSharedCipher
            };
            crate::metrics::Counters::global().tls_failed(why);
            tracing::debug!(sni = ?hello.server_name(), matched, reason = why.as_str(), "no certificate for the handshake");
        }
        pick
    }
}

/// Session tickets sealed with ChaCha20-Poly1305 under a random key; the
/// rotator makes a new one every `ticket_rotation`.
struct Ticketer {
    key: ring::aead::LessSafeKey,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticketer")
    }
}

fn make_ticketer() -> Result<Box<dyn ProducesTickets>, rustls::crypto::GetRandomFailed> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| rustls::crypto::GetRandomFailed)?;
    let unbound = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &key)
        .map_err(|_| rustls::crypto::GetRandomFailed)?;
    Ok(Box::new(Ticketer {
        key: ring::aead::LessSafeKey::new(unbound),
    }))
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        // The rotator reports its own lifetime.
        0
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        use ring::rand::SecureRandom;
        let mut nonce = [0u8; 12];
        ring::rand::SystemRandom::new().fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(12 + plain.len() + 16);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let nonce: [u8; 12] = cipher.get(..12)?.try_into().ok()?;
        let mut body = cipher.get(12..)?.to_vec();
        let plain = self
            .key
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut body,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

/// The TLS side of the node: its rustls configuration and certificates.
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    resolver: Arc<Resolver>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads every certificate; fails when one does not load (a node does
    /// not start with a certificate missing).
    pub fn new(settings: &TlsConfig) -> Result<Tls, Error> {
        let mut loaded = Vec::new();
        for c in &settings.certificates {
            let l = load(c).map_err(|e| {
                Error::new(ErrorKind::Setup, format!("certificate `{}`: {e}", c.name))
            })?;
            loaded.push((c.name.clone(), l));
        }
        let resolver = Arc::new(Resolver {
            store: ArcSwap::from_pointee(Store::build(&loaded, &settings.default)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::new(ErrorKind::Internal, format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = if settings.session_cache > 0 {
            rustls::server::ServerSessionMemoryCache::new(settings.session_cache)
        } else {
            Arc::new(rustls::server::NoServerSessionStorage {})
        };
        let lifetime = u32::try_from(settings.ticket_rotation.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        config.ticketer = Arc::new(
            rustls::ticketer::TicketRotator::new(lifetime, make_ticketer)
                .map_err(|e| Error::new(ErrorKind::Internal, format!("TLS tickets: {e}")))?,
        );
        Ok(Tls {
            config: Arc::new(config),
            resolver,
        })
    }

    /// The rustls configuration for the listener.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// Loads every certificate of a new `[tls]` section without serving
    /// them: a config reload puts them in place with [`Tls::commit`] only
    /// when the whole config is good. Errors name each certificate.
    pub fn prepare(&self, settings: &TlsConfig) -> Result<PreparedTls, Vec<String>> {
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        for c in &settings.certificates {
            match load(c) {
                Ok(l) => loaded.push((c.name.clone(), l)),
                Err(e) => errors.push(format!("tls.certificates `{}`: {e}", c.name)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PreparedTls {
            store: Store::build(&loaded, &settings.default),
        })
    }

    /// Serves a prepared set of certificates from the next handshake on.
    pub fn commit(&self, p: PreparedTls) {
        self.resolver.store.store(Arc::new(p.store));
    }
}

/// Certificates loaded for a config reload, not serving yet.
pub struct PreparedTls {
    store: Store,
}

/// What `outpost check` says of the certificates: errors, and warnings for
/// those that expire within 14 days.
pub fn check(settings: &TlsConfig) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let soon = SystemTime::now() + Duration::from_secs(14 * 86400);
    for (i, c) in settings.certificates.iter().enumerate() {
        match load(c) {
            Ok(l) if l.not_after < soon => warnings.push(format!(
                "tls.certificates[{i}] ({}): expires within 14 days",
                c.name
            )),
            Ok(_) => {}
            Err(e) => errors.push(format!("tls.certificates[{i}] ({}): {e}", c.name)),
        }
    }
    (errors, warnings)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_reject_tampering() {
        let t = make_ticketer().unwrap();
        let c = t.encrypt(b"session state").unwrap();
        assert_eq!(t.decrypt(&c).unwrap(), b"session state");
        let mut bad = c.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(t.decrypt(&bad).is_none());
        assert!(t.decrypt(&c[..5]).is_none());
        let other = make_ticketer().unwrap();
        assert!(other.decrypt(&c).is_none(), "another key");
    }
}

//! TLS to `https://` origins: a rustls client (the `ring` provider) that
//! verifies the origin's certificate against the system's trust store, or
//! against a site's `origin_ca`, for the origin's host name or the site's
//! `origin_sni`. Only `http/1.1` is offered (both origin clients speak
//! HTTP/1.1). A certificate that does not verify fails the connection: a
//! 502, never an accepted connection.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::error::{Error, ErrorKind};

/// The one crypto provider of the process: *ring* (DESIGN.md: two
/// providers in one binary make rustls's builders panic). Installed as the
/// process default the first time it is asked for. The TLS listener uses
/// it too.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| {
        // Deprecated for lacking post-quantum key exchange, which *ring*
        // does not implement; it is the provider this node is built on.
        #[allow(deprecated)]
        let p = rustls::crypto::ring::default_provider();
        let _ = p.clone().install_default();
        Arc::new(p)
    })
    .clone()
}

/// How a pool's `https://` origins are reached.
#[derive(Debug, Clone)]
pub struct OriginTls {
    pub config: Arc<rustls::ClientConfig>,
    /// Sent and verified instead of each origin's host.
    pub server_name: Option<ServerName<'static>>,
}

/// The system's trust store, read once.
fn system_roots() -> Arc<RootCertStore> {
    static R: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    R.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the system's CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!("no CA certificate in the system's trust store: https origins without `origin_ca` will not verify");
        }
        tracing::debug!(added, ignored, "system CA certificates loaded");
        Arc::new(roots)
    })
    .clone()
}

/// The client configuration for a site: its `origin_ca` (a PEM file of CA
/// certificates) or the system's trust store, and its `origin_sni`.
pub fn origin_tls(
    ca: Option<&std::path::Path>,
    sni: Option<&str>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<OriginTls, Error> {
    let roots = match ca {
        None => system_roots(),
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Setup,
                        format!(
                            "origin_ca {}: not a PEM file of certificates ({e})",
                            path.display()
                        ),
                    )
                })?;
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::new(
                    ErrorKind::Setup,
                    format!("origin_ca {}: no CA certificate in it", path.display()),
                ));
            }
            Arc::new(roots)
        }
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = match sni {
        None => None,
        Some(n) => Some(
            ServerName::try_from(n.to_owned())
                .map_err(|e| Error::new(ErrorKind::Setup, format!("origin_sni `{n}`: {e}")))?,
        ),
    };
    Ok(OriginTls {
        config: Arc::new(config),
        server_name,
    })
}

/// The error for a failed TLS handshake with an origin: a certificate
/// that does not verify, or anything else.
pub fn handshake_error(origin: &dyn std::fmt::Display, e: std::io::Error) -> Error {
    let tls = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned();
    let kind = match tls {
        Some(rustls::Error::InvalidCertificate(_)) => ErrorKind::OriginCertificate,
        _ => ErrorKind::OriginProtocol,
    };
    tracing::warn!(%origin, error = %e, "TLS handshake with the origin failed");
    Error::new(kind, format!("{origin}: TLS: {e}")).with_source(e)
}

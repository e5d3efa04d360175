//! Test certificates made at test time: one CA for the run, and
//! certificates it signs (ECDSA P-256, or RSA 2048 from the `rsa` crate:
//! *ring* signs with RSA but cannot make keys).

use std::path::Path;
use std::sync::OnceLock;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

pub fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "Outpost test CA");
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    })
}

/// One RSA key for every test (making one takes a moment).
pub fn rsa_key() -> KeyPair {
    static PEM: OnceLock<String> = OnceLock::new();
    let pem = PEM.get_or_init(|| {
        use rsa::pkcs8::EncodePrivateKey;
        let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        k.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    });
    KeyPair::from_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256).unwrap()
}

/// A certificate for `names` signed by the test CA, written to `dir` as
/// `stem.crt` / `stem.key`; returns its DER.
pub fn issue(dir: &Path, stem: &str, names: &[&str], rsa: bool) -> CertificateDer<'static> {
    let key = if rsa {
        rsa_key()
    } else {
        KeyPair::generate().unwrap()
    };
    let p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = p.signed_by(&key, &ca().cert, &ca().key).unwrap();
    std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    cert.der().clone()
}

pub fn cert_entry(dir: &Path, name: &str, stem: &str) -> String {
    format!(
        "[[tls.certificates]]\nname = \"{name}\"\ncert = {:?}\nkey = {:?}\n",
        dir.join(format!("{stem}.crt")).display().to_string(),
        dir.join(format!("{stem}.key")).display().to_string()
    )
}

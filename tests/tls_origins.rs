//! TLS beyond the listener, through real sockets: `https://` origins
//! (a private CA, the wrong name) and what `outpost check` says of
//! certificate files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::certs::{ca, cert_entry, issue};
use common::*;
use http::Request;
use http_body_util::BodyExt;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::CertificateDer;

/// An HTTPS origin on loopback with a certificate for `names` from the
/// test CA; it answers `origin over tls` (and echoes a POST's length).
async fn https_origin(dir: &Path, names: &[&str]) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    issue(dir, "origin", names, false);
    let certs: Vec<CertificateDer<'static>> = {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::pem_file_iter(dir.join("origin.crt"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let key = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("origin.key")).unwrap()
    };
    let cfg = rustls::ServerConfig::builder_with_provider(outpost::server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let post = req.method() == http::Method::POST;
                        let n = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len())
                            .unwrap_or(0);
                        let body = if post {
                            format!("got {n} bytes")
                        } else {
                            "origin over tls".to_string()
                        };
                        Ok::<_, std::convert::Infallible>(resp_with(
                            200,
                            &[("cache-control", "no-store")],
                            body,
                        ))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn https_origins_are_verified_with_a_private_ca_and_a_wrong_name_is_a_502() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca().cert.pem()).unwrap();
    let (addr, _task) = https_origin(dir.path(), &["origin.test"]).await;
    let ca_path = dir.path().join("ca.pem").display().to_string();
    // The origin's name by `origin_sni`, its CA by `origin_ca`: both clients.
    let site = format!(
        "origins = [\"https://{addr}\"]\ncache = false\norigin_sni = \"origin.test\"\norigin_ca = {ca_path:?}\n"
    );
    let node = TestNode::start_site(&site, "").await;
    let (st, _, body) = get(&node.url("/x")).await;
    assert_eq!((st.as_u16(), &body[..]), (200, &b"origin over tls"[..]));
    let post = Request::post(node.url("/form"))
        .body(full(vec![b'x'; 5000]))
        .unwrap();
    let (st, _, body) = send(post).await;
    assert_eq!((st.as_u16(), &body[..]), (200, &b"got 5000 bytes"[..]));
    // Keep-alive: a second request reuses the TLS connection.
    let (st, _, _) = get(&node.url("/y")).await;
    assert_eq!(st, 200);

    // A certificate for another name: a 502, never an accepted connection.
    let wrong = format!(
        "origins = [\"https://{addr}\"]\ncache = false\norigin_sni = \"elsewhere.test\"\norigin_ca = {ca_path:?}\nmax_fails = 1000\n"
    );
    let node = TestNode::start_site(&wrong, "").await;
    let (st, _, body) = get(&node.url("/x")).await;
    assert_eq!(st, 502);
    assert_eq!(
        &body[..],
        b"bad gateway: the origin's TLS certificate could not be verified\n"
    );
    let post = Request::post(node.url("/form")).body(full("data")).unwrap();
    let (st, _, body) = send(post).await;
    assert_eq!(st, 502);
    assert_eq!(
        &body[..],
        b"bad gateway: the origin's TLS certificate could not be verified\n"
    );
    // Not signed by a CA the system trusts: the same.
    let system =
        format!("origins = [\"https://{addr}\"]\ncache = false\norigin_sni = \"origin.test\"\n");
    let node = TestNode::start_site(&system, "").await;
    assert_eq!(get(&node.url("/x")).await.0, 502);
}

#[test]
fn check_reports_certificates_that_do_not_load() {
    let dir = tempfile::tempdir().unwrap();
    issue(dir.path(), "good", &["good.test"], false);
    issue(dir.path(), "other", &["other.test"], false);
    // A key that is not the certificate's, and a missing file.
    std::fs::copy(dir.path().join("other.key"), dir.path().join("mixed.key")).unwrap();
    std::fs::copy(dir.path().join("good.crt"), dir.path().join("mixed.crt")).unwrap();
    let cfg = format!(
        "[listen]\ntls = \"127.0.0.1:0\"\n{}{}{}[[site]]\norigins = [\"http://127.0.0.1:9\"]\n",
        cert_entry(dir.path(), "good", "good"),
        cert_entry(dir.path(), "mixed", "mixed"),
        cert_entry(dir.path(), "gone", "gone"),
    );
    let path = dir.path().join("outpost.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("2 error(s)"), "{err}");
    assert!(
        err.contains("tls.certificates[1] (mixed):") && err.contains("does not go with"),
        "{err}"
    );
    assert!(err.contains("tls.certificates[2] (gone):"), "{err}");
    assert!(!err.contains("(good)"), "{err}");
}

#[test]
fn check_warns_about_a_certificate_that_expires_soon() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["soon.test".to_string()]).unwrap();
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    let cert = p.signed_by(&key, &ca().cert, &ca().key).unwrap();
    std::fs::write(dir.path().join("soon.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("soon.key"), key.serialize_pem()).unwrap();
    let cfg = format!(
        "[listen]\ntls = \"127.0.0.1:0\"\n{}[[site]]\norigins = [\"http://127.0.0.1:9\"]\n",
        cert_entry(dir.path(), "soon", "soon")
    );
    let path = dir.path().join("outpost.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: tls.certificates[0] (soon): expires within 14 days"),
        "{err}"
    );
}

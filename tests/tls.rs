//! TLS termination through real sockets, with certificates made at test
//! time (rcgen; RSA keys from the `rsa` crate): HTTP/1.1 and HTTP/2 by
//! ALPN, SNI (exact, wildcard, unknown with a default and refused), RSA
//! beside ECDSA, resumption, reload during a download, a bad certificate on
//! reload, HSTS and the https redirect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::certs::{ca, cert_entry, issue};
use common::*;
use http::Request;
use http_body_util::BodyExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

const TOKEN: &str = "tls-test-token";

/// Accepts any server certificate and remembers it (the SNI tests look at
/// which one was served, not at whether it verifies).
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<CertificateDer<'static>>>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

fn recorder(schemes: &[SignatureScheme]) -> Arc<Recorder> {
    Arc::new(Recorder {
        seen: Mutex::new(None),
        schemes: schemes.to_vec(),
    })
}

const ECDSA: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];
const RSA: &[SignatureScheme] = &[
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
];
const ANY: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA256,
];

fn client_with(verifier: Option<Arc<Recorder>>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let b = rustls::ClientConfig::builder_with_provider(outpost::server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut c = match verifier {
        Some(v) => b
            .dangerous()
            .with_custom_certificate_verifier(v)
            .with_no_client_auth(),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca().cert.der().clone()).unwrap();
            b.with_root_certificates(roots).with_no_client_auth()
        }
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    c
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
}

/// GET `path` on an established TLS connection, by the protocol ALPN chose.
async fn get_over(tls: Tls, host: &str, path: &str) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = hyper_util::rt::TokioIo::new(tls);
    let (resp, _keep) = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("https://{host}{path}"))
            .body(full(Bytes::new()))
            .unwrap();
        (send.send_request(req).await.unwrap(), ())
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", host)
            .body(full(Bytes::new()))
            .unwrap();
        (send.send_request(req).await.unwrap(), ())
    };
    let (p, b) = resp.into_parts();
    (p.status, p.headers, b.collect().await.unwrap().to_bytes())
}

struct Setup {
    dir: tempfile::TempDir,
    node: TestNode,
    tls: SocketAddr,
    www: CertificateDer<'static>,
    wild: CertificateDer<'static>,
    www_rsa: CertificateDer<'static>,
}

async fn setup(origin: &TestOrigin, tls_extra: &str, site_extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let www = issue(dir.path(), "www", &["www.example.test"], false);
    let www_rsa = issue(dir.path(), "www-rsa", &["www.example.test"], true);
    let wild = issue(dir.path(), "wild", &["*.wild.test"], false);
    let extra = format!(
        "[admin]\ntoken = \"{TOKEN}\"\n[tls]\n{tls_extra}\n{}{}{}",
        cert_entry(dir.path(), "www", "www"),
        cert_entry(dir.path(), "www-rsa", "www-rsa"),
        cert_entry(dir.path(), "wild", "wild"),
    );
    let site = format!("origins = [\"{}\"]\n{site_extra}\n", origin.url());
    let node = TestNode::start_site_listen(&site, "tls = \"127.0.0.1:0\"", &extra).await;
    let tls = node.node.as_ref().unwrap().tls_addr().unwrap();
    Setup {
        dir,
        node,
        tls,
        www,
        wild,
        www_rsa,
    }
}

async fn plain_origin() -> TestOrigin {
    TestOrigin::start(|req| async move {
        let proto = req
            .headers()
            .get("x-forwarded-proto")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        resp_with(
            200,
            &[("cache-control", "max-age=60")],
            format!("proto={proto}"),
        )
    })
    .await
}

#[tokio::test]
async fn http1_and_http2_over_tls_reach_the_same_cache() {
    let o = plain_origin().await;
    let s = setup(&o, "", "").await;
    // HTTP/1.1 by ALPN, certificate verified against the test CA.
    let cfg = Arc::new(client_with(None, &[b"http/1.1"]));
    let tls = connect(s.tls, cfg, "www.example.test").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (st, h, body) = get_over(tls, "www.example.test", "/a").await;
    assert_eq!((st.as_u16(), &body[..]), (200, &b"proto=https"[..]));
    assert!(
        cache_status(&h).contains("fwd=uri-miss"),
        "{}",
        cache_status(&h)
    );
    // HTTP/2 by ALPN: the same cached object.
    let cfg = Arc::new(client_with(None, &[b"h2", b"http/1.1"]));
    let tls = connect(s.tls, cfg, "www.example.test").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (st, h, body) = get_over(tls, "www.example.test", "/a").await;
    assert_eq!((st.as_u16(), &body[..]), (200, &b"proto=https"[..]));
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(o.count(), 1);
    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", s.node.admin)).await.2).unwrap();
    assert!(stats["tls_handshakes"].as_u64().unwrap() >= 2, "{stats}");
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_the_default() {
    let o = plain_origin().await;
    let s = setup(&o, "default = \"www\"", "").await;
    for (sni, want) in [
        ("www.example.test", &s.www),
        ("a.wild.test", &s.wild),
        ("unknown.test", &s.www),
    ] {
        let r = recorder(ECDSA);
        let cfg = Arc::new(client_with(Some(r.clone()), &[b"http/1.1"]));
        let tls = connect(s.tls, cfg, sni).await.unwrap();
        drop(tls);
        assert_eq!(r.seen.lock().unwrap().as_ref(), Some(want), "for {sni}");
    }
    // Two labels under a wildcard are not covered: the default.
    let r = recorder(ECDSA);
    connect(
        s.tls,
        Arc::new(client_with(Some(r.clone()), &[])),
        "a.b.wild.test",
    )
    .await
    .unwrap();
    assert_eq!(r.seen.lock().unwrap().as_ref(), Some(&s.www));

    // With `refuse`, an unknown name gets no handshake.
    let refusing = setup(&o, "default = \"refuse\"", "").await;
    let r = recorder(ECDSA);
    let e = connect(
        refusing.tls,
        Arc::new(client_with(Some(r), &[])),
        "unknown.test",
    )
    .await;
    assert!(e.is_err());
    let ok = connect(
        refusing.tls,
        Arc::new(client_with(Some(recorder(ECDSA)), &[])),
        "a.wild.test",
    )
    .await;
    assert!(ok.is_ok());
    let stats: serde_json::Value = serde_json::from_slice(
        &get(&format!("http://{}/stats", refusing.node.admin))
            .await
            .2,
    )
    .unwrap();
    assert_eq!(stats["tls_failures"]["unknown_sni"], 1, "{stats}");
}

#[tokio::test]
async fn rsa_and_ecdsa_for_one_name_each_client_gets_what_it_supports() {
    let o = plain_origin().await;
    let s = setup(&o, "", "").await;
    for (schemes, want) in [(ECDSA, &s.www), (RSA, &s.www_rsa), (ANY, &s.www)] {
        let r = recorder(schemes);
        connect(
            s.tls,
            Arc::new(client_with(Some(r.clone()), &[])),
            "www.example.test",
        )
        .await
        .unwrap();
        assert_eq!(r.seen.lock().unwrap().as_ref(), Some(want), "{schemes:?}");
    }
}

#[tokio::test]
async fn a_second_connection_resumes_the_session() {
    let o = plain_origin().await;
    let s = setup(&o, "", "").await;
    for versions in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca().cert.der().clone()).unwrap();
        let cfg = Arc::new(
            rustls::ClientConfig::builder_with_provider(outpost::server::tls::provider())
                .with_protocol_versions(&[versions])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let first = connect(s.tls, cfg.clone(), "www.example.test")
            .await
            .unwrap();
        assert_eq!(
            first.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        // Reading a response takes in the TLS 1.3 ticket sent after the handshake.
        let (st, _, _) = get_over(first, "www.example.test", "/r").await;
        assert_eq!(st, 200);
        let second = connect(s.tls, cfg, "www.example.test").await.unwrap();
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{versions:?}"
        );
    }
}

#[tokio::test]
async fn hsts_over_tls_and_a_redirect_for_cleartext() {
    let o = plain_origin().await;
    let s = setup(
        &o,
        "",
        "https_redirect = true\nhsts = \"max-age=31536000; includeSubDomains\"",
    )
    .await;
    let tls = connect(
        s.tls,
        Arc::new(client_with(None, &[b"http/1.1"])),
        "www.example.test",
    )
    .await
    .unwrap();
    let (st, h, _) = get_over(tls, "www.example.test", "/h").await;
    assert_eq!(st, 200);
    assert_eq!(
        h["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let (st, h, _) = get_with(&s.node.url("/h?x=1"), &[("host", "www.example.test:8080")]).await;
    assert_eq!(st, 308);
    assert_eq!(h["location"], "https://www.example.test/h?x=1");
    assert!(h.get("strict-transport-security").is_none());
}

async fn reload(admin: SocketAddr) -> (u16, serde_json::Value) {
    let req = Request::post(format!("http://{admin}/reload"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(full(Bytes::new()))
        .unwrap();
    let (st, _, body) = send(req).await;
    (
        st.as_u16(),
        serde_json::from_slice(&body).unwrap_or_default(),
    )
}

async fn served(s: &Setup) -> CertificateDer<'static> {
    let r = recorder(ECDSA);
    connect(
        s.tls,
        Arc::new(client_with(Some(r.clone()), &[])),
        "www.example.test",
    )
    .await
    .unwrap();
    r.seen.lock().unwrap().clone().unwrap()
}

#[tokio::test]
async fn reload_during_a_download_and_a_bad_certificate_keeps_the_old_one() {
    const SIZE: u64 = 50 << 20;
    let o = TestOrigin::start(|_| async {
        let mut r = http::Response::new(generated_body(SIZE, 64 << 10));
        r.headers_mut()
            .insert("cache-control", "no-store".parse().unwrap());
        r.headers_mut()
            .insert("content-length", SIZE.to_string().parse().unwrap());
        r
    })
    .await;
    let s = setup(&o, "", "").await;
    let (_, want) = hash_body(generated_body(SIZE, 64 << 10)).await.unwrap();
    // The download starts, then the certificate is replaced and reloaded.
    let tls = connect(
        s.tls,
        Arc::new(client_with(None, &[b"http/1.1"])),
        "www.example.test",
    )
    .await
    .unwrap();
    let io = hyper_util::rt::TokioIo::new(tls);
    let (mut send_req, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let resp = send_req
        .send_request(
            Request::get("/big")
                .header("host", "www.example.test")
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    let mut got = first.data_ref().map_or(0, |d| d.len() as u64);
    let mut h = blake3::Hasher::new();
    if let Some(d) = first.data_ref() {
        h.update(d);
    }
    let new = issue(s.dir.path(), "www", &["www.example.test"], false);
    assert_ne!(new, s.www);
    let (st, report) = reload(s.node.admin).await;
    assert_eq!(st, 200, "{report}");
    assert_eq!(
        served(&s).await,
        new,
        "a new connection sees the new certificate"
    );
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            got += d.len() as u64;
            h.update(&d);
        }
    }
    assert_eq!((got, h.finalize().to_hex().to_string()), (SIZE, want));

    // A broken file on reload: reported, and the loaded one keeps serving.
    std::fs::write(s.dir.path().join("www.crt"), "not a certificate").unwrap();
    let (st, report) = reload(s.node.admin).await;
    assert_eq!(st, 422);
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["errors"][0].as_str().unwrap().contains("`www`"),
        "{report}"
    );
    assert_eq!(served(&s).await, new);
    // A key that is not the certificate's: the same.
    issue(s.dir.path(), "www", &["www.example.test"], false);
    let other = PathBuf::from(s.dir.path()).join("wild.key");
    std::fs::copy(other, s.dir.path().join("www.key")).unwrap();
    let (st, report) = reload(s.node.admin).await;
    assert_eq!(st, 422, "{report}");
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .contains("does not go with")
    );
    assert_eq!(served(&s).await, new);
}

#[tokio::test]
async fn a_handshake_that_does_not_finish_is_closed_and_counted() {
    use tokio::io::AsyncReadExt;
    let o = plain_origin().await;
    let dir = tempfile::tempdir().unwrap();
    issue(dir.path(), "www", &["www.example.test"], false);
    let extra = format!(
        "[server]\ntls_handshake_timeout = \"200ms\"\n{}",
        cert_entry(dir.path(), "www", "www")
    );
    let site = format!("origins = [\"{}\"]\n", o.url());
    let node = TestNode::start_site_listen(&site, "tls = \"127.0.0.1:0\"", &extra).await;
    let addr = node.node.as_ref().unwrap().tls_addr().unwrap();
    let before: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    // Connect and say nothing: closed after the timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the node kept a silent connection open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        t0.elapsed() >= std::time::Duration::from_millis(150),
        "{:?}",
        t0.elapsed()
    );
    // Not TLS at all: a bad record.
    let out = raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!out.starts_with("HTTP/1.1 200"), "{out}");
    let after: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2).unwrap();
    let n = |v: &serde_json::Value, k: &str| v["tls_failures"][k].as_u64().unwrap_or(0);
    assert!(n(&after, "timeout") > n(&before, "timeout"), "{after}");
    assert!(
        n(&after, "bad_record") > n(&before, "bad_record"),
        "{after}"
    );
}

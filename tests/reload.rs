//! Config reload through real sockets: `POST /reload` (and SIGHUP, which
//! runs the same code) reads the file again and puts sites, origins, rules,
//! access lists with the deny file, limits and certificates in force for
//! new requests, with no request failing while it happens (2,000 requests
//! a second for 20 s through ten reloads, each observed to take effect); a file with
//! errors changes nothing and the answer lists every error; settings only
//! a restart applies are reported as such.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::BodyExt;

const TOKEN: &str = "reload-test-token";

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

/// An origin that answers its own name.
async fn named(name: &'static str) -> TestOrigin {
    TestOrigin::start(
        move |_| async move { resp_with(200, &[("cache-control", "no-store")], name) },
    )
    .await
}

fn node_text(dir: &std::path::Path, extra: &str, site: &str) -> String {
    format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\nmemory = \"64MiB\"\ndisk = \"256MiB\"\n\
         [admin]\ntoken = \"{TOKEN}\"\n{extra}\n\
         [[site]]\nname = \"default\"\n{site}\n",
        dir.join("cache").display().to_string()
    )
}

async fn start(dir: &std::path::Path, text: &str) -> outpost::Node {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = outpost::config::Config::load(&path, &Default::default()).unwrap();
    outpost::Node::start(cfg).await.unwrap()
}

/// Rewrites the config, keeping the ports the node listens on.
fn rewrite(dir: &std::path::Path, node: &outpost::Node, extra: &str, site: &str) {
    let text = node_text(dir, extra, site)
        .replacen("127.0.0.1:0", &node.proxy_addr().to_string(), 1)
        .replacen("127.0.0.1:0", &node.admin_addr().to_string(), 1);
    std::fs::write(dir.join("outpost.toml"), text).unwrap();
}

#[tokio::test]
async fn sites_rules_and_the_deny_file_change_on_reload_and_bad_files_change_nothing() {
    let a = named("a").await;
    let b = named("b").await;
    let dir = tempfile::tempdir().unwrap();
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "# nobody yet\n192.0.2.0/24\n").unwrap();
    let access = format!("[access]\ndeny_file = {:?}\n", deny.display().to_string());
    let node = start(
        dir.path(),
        &node_text(dir.path(), &access, &format!("origins = [\"{}\"]", a.url())),
    )
    .await;
    let url = format!("http://{}/x", node.proxy_addr());
    assert_eq!(get_from("127.0.0.2", &url, &[]).await, (200, "a".into()));

    // Origins swapped, a rule added, an address denied by the file.
    std::fs::write(&deny, "127.0.0.3\n").unwrap();
    rewrite(
        dir.path(),
        &node,
        &access,
        &format!(
            "origins = [\"{}\"]\n[[site.rules]]\nname = \"no-secret\"\npath_prefix = \"/secret\"\naction = \"deny\"\nstatus = 404\n",
            b.url()
        ),
    );
    let (st, report) = reload(node.admin_addr()).await;
    assert_eq!(st, 200, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["needs_restart"], serde_json::json!([]), "{report}");
    assert_eq!(get_from("127.0.0.2", &url, &[]).await, (200, "b".into()));
    assert_eq!(get_from("127.0.0.3", &url, &[]).await.0, 403);
    let secret = format!("http://{}/secret", node.proxy_addr());
    assert_eq!(get_from("127.0.0.2", &secret, &[]).await.0, 404);

    // Three errors: nothing changes, each is named with its key.
    rewrite(
        dir.path(),
        &node,
        &access,
        "origins = [\"ftp://nowhere\"]\nmax_header_count = 0\n\
         [[site.rules]]\nname = \"bad\"\npath_regex = \"(\"\naction = \"deny\"\n",
    );
    let (st, report) = reload(node.admin_addr()).await;
    assert_eq!(st, 422, "{report}");
    assert_eq!(report["ok"], false);
    let errors: Vec<String> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    for key in [
        "site[0].origins[0]",
        "site[0].max_header_count",
        "site[0].rules[0].path_regex",
    ] {
        assert!(errors.iter().any(|e| e.contains(key)), "{key}: {errors:?}");
    }
    assert_eq!(get_from("127.0.0.2", &url, &[]).await, (200, "b".into()));
    assert_eq!(get_from("127.0.0.2", &secret, &[]).await.0, 404);
    // A deny file that cannot be read is an error too.
    rewrite(
        dir.path(),
        &node,
        "[access]\ndeny_file = \"/nonexistent/deny.txt\"\n",
        &format!("origins = [\"{}\"]", a.url()),
    );
    let (st, report) = reload(node.admin_addr()).await;
    assert_eq!(st, 422, "{report}");
    assert_eq!(get_from("127.0.0.2", &url, &[]).await, (200, "b".into()));

    // A restart-only change is reported and left as it runs.
    rewrite(
        dir.path(),
        &node,
        &format!("{access}[server]\nvia = \"other\"\n"),
        &format!("origins = [\"{}\"]", a.url()),
    );
    let (st, report) = reload(node.admin_addr()).await;
    assert_eq!(st, 200, "{report}");
    assert_eq!(report["needs_restart"], serde_json::json!(["server"]));
    assert_eq!(get_from("127.0.0.2", &url, &[]).await, (200, "a".into()));

    let stats: serde_json::Value =
        serde_json::from_slice(&get(&format!("http://{}/stats", node.admin_addr())).await.2)
            .unwrap();
    assert_eq!(stats["config_reloads"], 2, "{stats}");
    assert_eq!(stats["config_reload_failures"], 2, "{stats}");
    assert!(stats["config_last_reload_unix"].as_u64().unwrap() > 0);
    assert!(node.shutdown().await);
}

/// The certificate a new TLS connection to `addr` is served.
async fn served_cert(addr: SocketAddr) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(common::certs::ca().cert.der().clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(outpost::server::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("www.example.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn ten_reloads_under_2000_requests_a_second_fail_no_request() {
    let origins = [named("a").await, named("b").await, named("c").await];
    let dir = tempfile::tempdir().unwrap();
    let mut cert = common::certs::issue(dir.path(), "www", &["www.example.test"], false).to_vec();
    let tls = common::certs::cert_entry(dir.path(), "www", "www");
    let site = |n: usize, rule: bool| {
        let list: Vec<String> = origins[..n]
            .iter()
            .map(|o| format!("\"{}\"", o.url()))
            .collect();
        let mut s = format!("origins = [{}]\n", list.join(", "));
        if rule {
            s.push_str(
                "[[site.rules]]\nname = \"r\"\npath_prefix = \"/never\"\naction = \"deny\"\n",
            );
        }
        s
    };
    let text = node_text(dir.path(), &tls, &site(1, false)).replacen(
        "admin = \"127.0.0.1:0\"\n",
        "admin = \"127.0.0.1:0\"\ntls = \"127.0.0.1:0\"\n",
        1,
    );
    let node = start(dir.path(), &text).await;
    let tls_addr = node.tls_addr().unwrap();
    assert_eq!(served_cert(tls_addr).await, cert);
    let rewrite_all = |n: usize, rule: bool| {
        let t = node_text(dir.path(), &tls, &site(n, rule))
            .replacen("127.0.0.1:0", &node.proxy_addr().to_string(), 1)
            .replacen("127.0.0.1:0", &node.admin_addr().to_string(), 1)
            .replacen(
                &format!("admin = \"{}\"\n", node.admin_addr()),
                &format!("admin = \"{}\"\ntls = \"{tls_addr}\"\n", node.admin_addr()),
                1,
            );
        std::fs::write(dir.path().join("outpost.toml"), t).unwrap();
    };
    let url = format!("http://{}/load", node.proxy_addr());
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let seen: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Default::default();
    // 2,000 requests a second for 20 s over 20 clients.
    let stop_at = Instant::now() + Duration::from_secs(20);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let (url, ok, failed, seen) = (url.clone(), ok.clone(), failed.clone(), seen.clone());
        clients.push(tokio::spawn(async move {
            let c = client();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while Instant::now() < stop_at {
                tick.tick().await;
                match c
                    .request(Request::get(&url).body(full(Bytes::new())).unwrap())
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let b = r.into_body().collect().await.unwrap().to_bytes();
                        seen.lock()
                            .unwrap()
                            .insert(String::from_utf8_lossy(&b).into());
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Ten reloads: origins added and removed, a rule added and removed, the
    // certificate replaced; each observed to take effect.
    let names = ["a", "b", "c"];
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(1800)).await;
        let (n, rule) = (1 + i % 3, i % 2 == 1);
        if i % 3 == 2 {
            cert = common::certs::issue(dir.path(), "www", &["www.example.test"], false).to_vec();
        }
        rewrite_all(n, rule);
        let (st, report) = reload(node.admin_addr()).await;
        assert_eq!(st, 200, "{report}");
        assert_eq!(served_cert(tls_addr).await, cert, "reload {i}: certificate");
        let never = format!("http://{}/never", node.proxy_addr());
        assert_eq!(
            get(&never).await.0,
            if rule { 403 } else { 200 },
            "reload {i}: rule"
        );
        for _ in 0..6 {
            let (st, _, body) = get(&url).await;
            assert_eq!(st, 200);
            let who = String::from_utf8_lossy(&body).into_owned();
            assert!(
                names[..n].contains(&who.as_str()),
                "reload {i}: {who} not among {n} origins"
            );
        }
    }
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > 30_000, "only {ok} requests in 20 s");
    // Each origin configured at some point answered.
    assert_eq!(
        seen.lock().unwrap().iter().cloned().collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert!(node.shutdown().await);
}

//! Binary upgrade: `outpost serve --upgrade` takes the listening sockets and the store over
//! from the running node while clients send 2,000 requests a second and a 100 MiB body is
//! still being read from the old node's store: no request fails, the download completes
//! byte for byte, the old node exits, and the new one answers hits for objects cached
//! before the upgrade. Without a running node, `--upgrade` fails with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::BodyExt;

const BIG: usize = 100 << 20;

/// The new binary started with `--upgrade` on the config in `dir`.
struct NewNode {
    child: Child,
    _out: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Drop for NewNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the upgrade; returns the new node and its "took over" line.
fn upgrade(dir: &Path) -> (NewNode, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .env("RUST_LOG", "warn")
        .arg("serve")
        .arg("--config")
        .arg(dir.join("outpost.toml"))
        .arg("--upgrade")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let took = loop {
        let line = lines.next().expect("new node exited").unwrap();
        if line.starts_with("outpost: took over") {
            break line;
        }
    };
    (NewNode { child, _out: lines }, took)
}

/// Reads `path` from `addr` on one connection at about 50 MB/s, checking every byte against
/// `content`; tells `started` once the head is in. Returns the bytes read and the head.
fn slow_download(
    addr: SocketAddr,
    path: &str,
    started: std::sync::mpsc::Sender<()>,
) -> (usize, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut body_at = None;
    while body_at.is_none() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the head");
        head.extend_from_slice(&buf[..n]);
        body_at = head
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4);
    }
    let at = body_at.unwrap();
    let head_text = String::from_utf8_lossy(&head[..at]).into_owned();
    let expected = content(BIG);
    let mut got = head.len() - at;
    assert_eq!(&head[at..], &expected[..got]);
    started.send(()).unwrap();
    while got < BIG {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        assert!(buf[..n] == expected[got..got + n], "wrong bytes at {got}");
        got += n;
        std::thread::sleep(Duration::from_millis(5));
    }
    (got, head_text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_load_fails_no_request_and_keeps_the_cache() {
    let origin = sized_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = node_config_sized(
        &origin.url(),
        &dir.path().join("cache"),
        "memory = \"64MiB\"\ndisk = \"512MiB\"\n",
        "",
    );
    let old = NodeProcess::start_text(&text, dir);
    let base = format!("http://{}", old.proxy);
    let small = |i: usize| format!("/size/{}", 2000 + i % 50);
    for i in 0..50 {
        until_stored(&format!("{base}{}", small(i)), &[], old.admin).await;
    }
    let big_path = format!("/size/{BIG}");
    until_stored(&format!("{base}{big_path}"), &[], old.admin).await;

    // 2,000 requests a second over 20 keep-alive clients, before, during and after.
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let errors: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let stop_at = Instant::now() + Duration::from_secs(8);
    let mut clients = Vec::new();
    for c in 0..20 {
        let (base, ok, failed, errors) = (base.clone(), ok.clone(), failed.clone(), errors.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut n = c;
            while Instant::now() < stop_at {
                tick.tick().await;
                n += 7;
                let path = small(n);
                let want = 2000 + n % 50;
                let sent = client
                    .request(
                        Request::get(format!("{base}{path}"))
                            .body(full(Bytes::new()))
                            .unwrap(),
                    )
                    .await;
                let outcome = match sent {
                    Ok(r) if r.status() == 200 => {
                        match r.into_body().collect().await.map(|b| b.to_bytes()) {
                            Ok(b) if b == content(want) => Ok(()),
                            Ok(_) => Err(format!("{path}: wrong body")),
                            Err(e) => Err(format!("{path}: body: {e}")),
                        }
                    }
                    Ok(r) => Err(format!("{path}: status {}", r.status())),
                    Err(e) => Err(format!("{path}: {e:?}")),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.lock().unwrap().push(e);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A 100 MiB hit in flight in the old node, read at ~50 MB/s (about 2 s).
    let (tx, rx) = std::sync::mpsc::channel();
    let proxy = old.proxy;
    let download = std::thread::spawn(move || slow_download(proxy, &format!("/size/{BIG}"), tx));
    rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let cfg_dir = old.dir.path().to_path_buf();
    let (new, took) = tokio::task::spawn_blocking(move || upgrade(&cfg_dir))
        .await
        .unwrap();
    eprintln!("{took}");
    let waited: u64 = took
        .rsplit("waited ")
        .next()
        .and_then(|t| t.trim_end_matches(" ms").parse().ok())
        .expect("the window in the take-over line");
    assert!(waited < 2000, "new connections waited {waited} ms: {took}");

    // The old node drains (the download included) and exits.
    let mut old = old;
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = old.child.try_wait().unwrap() {
                return (st, old);
            }
            assert!(Instant::now() < deadline, "the old node did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let (got, head) = download.join().unwrap();
    assert!(head.contains("hit"), "the download was a hit: {head}");
    assert_eq!(got, BIG, "the 100 MiB download completed");
    let (status, old) = exit.await.unwrap();
    assert!(status.success(), "old node: {status}");
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let errors = errors.lock().unwrap().clone();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed: {errors:?}",
        ok + failed
    );
    assert!(ok > 10_000, "only {ok} requests in 8 s");

    // The new node serves what the old one stored.
    let fetched = origin.count_path(&small(0));
    let (st, h, body) = get(&format!("{base}{}", small(0))).await;
    assert_eq!(st, 200);
    assert!(cache_status(&h).contains("hit"), "{h:?}");
    assert_eq!(body, content(2000));
    let (st, h, body) = get(&format!("{base}{big_path}")).await;
    assert_eq!((st.as_u16(), body.len()), (200, BIG));
    assert!(cache_status(&h).contains("hit"), "{h:?}");
    assert_eq!(origin.count_path(&small(0)), fetched);
    drop((new, old));
}

#[test]
fn upgrade_without_a_running_node_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let text = node_config("http://127.0.0.1:9", &dir.path().join("cache"), "");
    std::fs::write(dir.path().join("outpost.toml"), text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("outpost.toml"))
        .arg("--upgrade")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no running node answers on"), "{err}");
}

/// systemd socket activation: the proxy listener comes from `LISTEN_FDS` (fd 3), already
/// bound and queueing before the node starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_from_systemd_socket_activation_is_served() {
    let origin = sized_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = node_config(&origin.url(), &dir.path().join("cache"), "");
    let cfg = dir.path().join("outpost.toml");
    std::fs::write(&cfg, text).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A connection made before the node runs waits in the socket's queue.
    let mut early = TcpStream::connect(addr).unwrap();
    write!(
        early,
        "GET /size/10 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // The socket goes in as stdin; the shell moves it to fd 3 as systemd would.
    let fd: std::os::fd::OwnedFd = listener.into();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            "exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=proxy \
             exec \"$0\" serve --config \"$1\"",
        )
        .arg(env!("CARGO_BIN_EXE_outpost"))
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::from(fd))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let proxy_line = lines
        .find(|l| l.as_ref().unwrap().starts_with("outpost: proxy listening"))
        .unwrap()
        .unwrap();
    assert_eq!(
        proxy_line,
        format!("outpost: proxy listening on http://{addr}")
    );
    let mut answer = String::new();
    early.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&String::from_utf8_lossy(&content(10)).into_owned()));
    let (st, _, body) = get(&format!("http://{addr}/size/20")).await;
    assert_eq!((st.as_u16(), body), (200, content(20)));
    let _ = child.kill();
    let _ = child.wait();
}

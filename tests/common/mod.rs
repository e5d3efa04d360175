//! Test harness: in-process origins that count and record what they
//! receive, an in-process node or a node child process, and small clients.
//! Everything binds 127.0.0.1:0 and uses temp dirs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub mod certs;
pub mod dead_port;
pub mod h2;
pub mod nats;
pub mod raw;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = UnsyncBoxBody<Bytes, BoxError>;
type HandlerFut = Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>;
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFut + Send + Sync>;

/// What an origin saw of one request (its head).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    /// The request target exactly as hyper parsed it (path and query).
    pub target: String,
    pub version: http::Version,
    pub headers: HeaderMap,
}

/// An in-process origin server.
pub struct TestOrigin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
    down: tokio_util::sync::CancellationToken,
}

impl TestOrigin {
    /// Starts an origin answering every request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> TestOrigin
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        TestOrigin::start_on("127.0.0.1:0".parse().unwrap(), handler).await
    }

    /// [`TestOrigin::start`] on a given address (to restart a stopped
    /// origin on its port).
    pub async fn start_on<F, Fut>(addr: SocketAddr, handler: F) -> TestOrigin
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let seen2 = seen.clone();
        let down = tokio_util::sync::CancellationToken::new();
        let down2 = down.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let h = handler.clone();
                let seen = seen2.clone();
                let down = down2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        seen.lock().unwrap().push(Seen {
                            method: req.method().clone(),
                            target: req
                                .uri()
                                .path_and_query()
                                .map(|p| p.as_str().to_owned())
                                .unwrap_or_default(),
                            version: req.version(),
                            headers: req.headers().clone(),
                        });
                        let h = h.clone();
                        async move { Ok::<_, Infallible>(h(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = down.cancelled() => {}
                    }
                });
            }
        });
        TestOrigin {
            addr,
            seen,
            task,
            down,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received in total.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Requests received for one path (query ignored).
    pub fn count_path(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target.split('?').next() == Some(path))
            .count()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request seen")
    }

    /// Stops accepting and closes every open connection: the origin is down.
    pub fn stop(&self) {
        self.task.abort();
        self.down.cancel();
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.task.abort();
        self.down.cancel();
    }
}

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|n| match n {}).boxed_unsync()
}

/// A response with a body.
pub fn resp(status: u16, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r
}

/// A body of `total` bytes produced in `chunk`-sized pieces on the fly.
pub fn generated_body(total: u64, chunk: usize) -> TestBody {
    let piece = Bytes::from((0..chunk).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let n = total / chunk as u64;
    let rest = (total % chunk as u64) as usize;
    let s = futures_util::stream::iter(
        (0..n)
            .map(move |_| piece.clone())
            .chain((rest > 0).then(|| Bytes::from(vec![7u8; rest]))),
    )
    .map(|b| Ok::<_, BoxError>(http_body::Frame::data(b)));
    http_body_util::StreamBody::new(s).boxed_unsync()
}

use futures_util::StreamExt;

/// blake3 hex of everything in a body, and its length.
pub async fn hash_body<B>(mut body: B) -> Result<(u64, String), B::Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut h = blake3::Hasher::new();
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f?.into_data() {
            n += d.len() as u64;
            h.update(&d);
        }
    }
    Ok((n, h.finalize().to_hex().to_string()))
}

/// Config text for a node in front of `origin` on loopback port 0.
pub fn node_config(origin: &str, cache_dir: &std::path::Path, extra: &str) -> String {
    node_config_sized(
        origin,
        cache_dir,
        "memory = \"64MiB\"\ndisk = \"256MiB\"\n",
        extra,
    )
}

/// [`node_config`] with the `[storage]` sizes given as TOML lines.
pub fn node_config_sized(
    origin: &str,
    cache_dir: &std::path::Path,
    storage: &str,
    extra: &str,
) -> String {
    format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\n{storage}\n\
         [log]\naccess_log = true\n{extra}\n\
         [[site]]\nname = \"default\"\norigins = [\"{origin}\"]\n",
        cache_dir.display().to_string()
    )
}

/// Logs to the test output when `RUST_LOG` is set (for debugging a test).
pub fn test_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// An in-process node with its temp dir.
pub struct TestNode {
    pub node: Option<outpost::Node>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts a node in front of `origin`; `extra` is TOML spliced before the site.
    pub async fn start(origin: &str, extra: &str) -> TestNode {
        TestNode::start_sized(origin, "memory = \"64MiB\"\ndisk = \"256MiB\"\n", extra).await
    }

    /// Starts a node whose only site is `site` (the TOML of one
    /// `[[site]]`, with its `origins`); `extra` is TOML spliced before it.
    pub async fn start_site(site: &str, extra: &str) -> TestNode {
        TestNode::start_site_listen(site, "", extra).await
    }

    /// [`TestNode::start_site`] with more `[listen]` lines (`tls = …`).
    pub async fn start_site_listen(site: &str, listen: &str, extra: &str) -> TestNode {
        test_logging();
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{listen}\n\
             [storage]\npath = {:?}\nmemory = \"64MiB\"\ndisk = \"256MiB\"\n\
             {extra}\n[[site]]\nname = \"default\"\n{site}\n",
            dir.path().display().to_string()
        );
        TestNode::start_text(&text, dir).await
    }

    async fn start_text(text: &str, dir: tempfile::TempDir) -> TestNode {
        // From a file, as `outpost serve --config` does: a reload reads it
        // again.
        let path = dir.path().join("outpost.toml");
        std::fs::write(&path, text).unwrap();
        let cfg = outpost::config::Config::load(&path, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let node = outpost::Node::start(cfg).await.unwrap();
        TestNode {
            proxy: node.proxy_addr(),
            admin: node.admin_addr(),
            node: Some(node),
            dir,
        }
    }

    /// Starts a node with the given `[storage]` size lines.
    pub async fn start_sized(origin: &str, storage: &str, extra: &str) -> TestNode {
        test_logging();
        let dir = tempfile::tempdir().unwrap();
        let text = node_config_sized(origin, dir.path(), storage, extra);
        TestNode::start_text(&text, dir).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    pub async fn shutdown(mut self) -> bool {
        match self.node.take() {
            Some(n) => n.shutdown().await,
            None => true,
        }
    }
}

/// A node running as a child process of the real `outpost` binary.
pub struct NodeProcess {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS listener's address, when the config has one.
    pub tls: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl NodeProcess {
    pub fn start(origin: &str, extra: &str) -> NodeProcess {
        let dir = tempfile::tempdir().unwrap();
        let text = node_config(origin, &dir.path().join("cache"), extra);
        NodeProcess::start_text(&text, dir)
    }

    /// Starts the binary on the config `text`, written into `dir`.
    pub fn start_text(text: &str, dir: tempfile::TempDir) -> NodeProcess {
        NodeProcess::start_with(text, dir, None)
    }

    /// [`NodeProcess::start_text`] with a soft open-file limit of
    /// `nofile` (as a service inherits it), the log at info in
    /// `dir/outpost.log`.
    pub fn start_with(text: &str, dir: tempfile::TempDir, nofile: Option<u64>) -> NodeProcess {
        let cfg_path = dir.path().join("outpost.toml");
        std::fs::write(&cfg_path, text).unwrap();
        let mut cmd = match nofile {
            None => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_outpost"));
                c.env("RUST_LOG", "warn").stderr(Stdio::inherit());
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -Sn {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_outpost"))
                    .env("RUST_LOG", "info")
                    .stderr(std::fs::File::create(dir.path().join("outpost.log")).unwrap());
                c
            }
        };
        let mut child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let mut proxy = None;
        let mut admin = None;
        let mut tls = None;
        // The TLS line comes last: read up to it when the config has one.
        let want_tls = text.contains("\ntls = ");
        while proxy.is_none() || admin.is_none() || (want_tls && tls.is_none()) {
            let line = lines.next().expect("node exited before listening").unwrap();
            if let Some(a) = line.strip_prefix("outpost: proxy listening on http://") {
                proxy = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("outpost: admin listening on http://") {
                admin = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("outpost: tls listening on https://") {
                tls = Some(a.parse().unwrap());
            }
        }
        NodeProcess {
            child,
            proxy: proxy.unwrap(),
            admin: admin.unwrap(),
            tls,
            dir,
        }
    }

    /// Resident memory (VmRSS) of the node now, in bytes.
    pub fn rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// The node's resident memory once it has settled: read every 250 ms until four
    /// readings in a row are within 32 KiB of each other (the allocator gives back what
    /// requests freed when a worker next runs out of work), at most 10 s; the least of
    /// the last four.
    pub async fn settled_rss(&self) -> u64 {
        let mut window = std::collections::VecDeque::new();
        for _ in 0..40 {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            window.push_back(self.rss());
            if window.len() > 4 {
                window.pop_front();
            }
            let lo = window.iter().copied().min().unwrap_or(0);
            let hi = window.iter().copied().max().unwrap_or(0);
            if window.len() == 4 && hi - lo <= 32 << 10 {
                break;
            }
        }
        window.iter().copied().min().unwrap_or(0)
    }

    /// Peak resident memory (VmHWM) of the node, in bytes.
    pub fn peak_rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`HUP`, `USR1`, …).
    pub fn signal(&self, name: &str) {
        let st = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 client (pooled keep-alive).
pub fn client()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>
{
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge (h2c) client.
pub fn h2_client()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>
{
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A simple GET; returns status, headers and the whole body.
pub async fn get(url: &str) -> (http::StatusCode, HeaderMap, Bytes) {
    let req = Request::get(url).body(full(Bytes::new())).unwrap();
    let r = client().request(req).await.unwrap();
    let (p, b) = r.into_parts();
    let body = b.collect().await.unwrap().to_bytes();
    (p.status, p.headers, body)
}

/// Writes raw bytes to `addr` and reads until the peer closes (or `limit`).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts requests per path; handy for handlers.
pub type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// The `Cache-Status` value of a response (empty if absent).
pub fn cache_status(h: &HeaderMap) -> String {
    h.get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Sends `req` to the node and returns status, headers and the whole body.
pub async fn send(req: Request<TestBody>) -> (http::StatusCode, HeaderMap, Bytes) {
    let r = client().request(req).await.unwrap();
    let (p, b) = r.into_parts();
    let body = b.collect().await.unwrap().to_bytes();
    (p.status, p.headers, body)
}

/// A GET with extra request headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> (http::StatusCode, HeaderMap, Bytes) {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(full(Bytes::new())).unwrap()).await
}

/// A response with the given headers and body.
pub fn resp_with(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<TestBody> {
    let mut r = resp(status, body);
    for (k, v) in headers {
        r.headers_mut().append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

/// An HTTP date `secs` seconds from now (negative: in the past).
pub fn http_date(secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let t = if secs >= 0 {
        now + std::time::Duration::from_secs(secs as u64)
    } else {
        now - std::time::Duration::from_secs((-secs) as u64)
    };
    httpdate::fmt_http_date(t)
}

/// A request with any method and extra headers (e.g. `PURGE`, `HEAD`).
pub async fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, HeaderMap, Bytes) {
    let mut b = Request::builder()
        .method(http::Method::from_bytes(method.as_bytes()).unwrap())
        .uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(full(Bytes::new())).unwrap()).await
}

/// `POST /purge` on an admin listener with an optional bearer token;
/// returns the status and the JSON answer (`Null` if not JSON).
pub async fn admin_purge(
    admin: SocketAddr,
    token: Option<&str>,
    body: &str,
) -> (http::StatusCode, serde_json::Value) {
    let mut b =
        Request::post(format!("http://{admin}/purge")).header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let (s, _, body) = send(b.body(full(Bytes::from(body.to_owned()))).unwrap()).await;
    (
        s,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// GETs `url` until the node answers from its cache; panics after about
/// 5 s. Such a hit may still be served from the fill that is storing the
/// object (a late joiner); [`until_stored`] waits for the commit too.
pub async fn until_hit(url: &str, headers: &[(&str, &str)]) {
    for _ in 0..250 {
        let (_, h, _) = get_with(url, headers).await;
        if cache_status(&h).contains("hit") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{url} never became a hit");
}

/// [`until_hit`], then waits until the node behind `admin` has no fill in
/// flight: the object is then committed and later hits come from the store.
pub async fn until_stored(url: &str, headers: &[(&str, &str)], admin: SocketAddr) {
    until_hit(url, headers).await;
    for _ in 0..250 {
        let (s, _, b) = get(&format!("http://{admin}/stats")).await;
        assert_eq!(s, 200);
        let st: serde_json::Value = serde_json::from_slice(&b).unwrap();
        if st["fills_in_flight"].as_u64() == Some(0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{url}: fills still in flight after 5 s");
}

/// Deterministic content: byte i is (i * 7 + i / 1000) mod 256.
pub fn content(len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i.wrapping_mul(7) + i / 1000) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Origin serving `content(size)` at /size/<n>, cacheable, with an ETag.
pub async fn sized_origin() -> TestOrigin {
    TestOrigin::start(|req: Request<hyper::body::Incoming>| async move {
        let n: usize = req
            .uri()
            .path()
            .trim_start_matches("/size/")
            .parse()
            .unwrap_or(0);
        resp_with(
            200,
            &[
                ("cache-control", "max-age=600"),
                ("etag", "\"sized\""),
                ("last-modified", "Mon, 02 Nov 2026 10:00:00 GMT"),
                ("content-type", "application/octet-stream"),
            ],
            content(n),
        )
    })
    .await
}

/// GET `url` from source address `ip` (127.0.0.2, 127.0.0.3, … play
/// several clients) with extra headers: status, headers and body.
pub async fn get_from_full(
    ip: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut conn = hyper_util::client::legacy::connect::HttpConnector::new();
    conn.set_local_address(Some(ip.parse::<std::net::IpAddr>().unwrap()));
    let c = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, TestBody>(conn);
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let r = c
        .request(b.body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (st, h, String::from_utf8_lossy(&body).into_owned())
}

/// [`get_from_full`]'s status and body.
pub async fn get_from(ip: &str, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (st, _, body) = get_from_full(ip, url, headers).await;
    (st, body)
}

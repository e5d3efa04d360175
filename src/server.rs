//! Listeners and connection serving: the proxy and admin listeners, HTTP/1.1
//! and cleartext HTTP/2 (prior knowledge) on one port, and graceful
//! shutdown (stop accepting, drain in-flight requests up to a deadline).
//! Connections write through [`zero_copy::ZeroCopyStream`], which sends
//! large cached bodies with `sendfile(2)`. On the proxy listener, HTTP/1.1
//! `GET` and `HEAD` requests are served by the own path [`h1`] until a
//! request it does not take hands the connection to hyper.
//!
//! It owns sockets and connections and hands each request to the pipeline
//! (`proxy`), `PURGE` to `purge` and the admin listener's requests to
//! `admin`; it knows nothing of caching rules or the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod abuse;
mod conn;
pub mod fds;
pub mod h1;
pub mod h1_write;
pub mod h2_frames;
mod hyper_conn;
mod listen_tls;
pub mod proxy_header;
pub mod reload;
pub mod rewind;
pub mod timer;
pub mod tls;
pub mod zero_copy;

use crate::admission::ConnLimits;
use crate::cache::CacheLayer;
use crate::cache::key::request_host;
use crate::config::{Config, ServerConfig};
use crate::error::{Error, ErrorKind};
use crate::metrics::{NodeStats, SendfileBytes};
use crate::proxy::body::{AccessRecord, ProxyBody};
use crate::proxy::{ConnInfo, Proxy, RequestBody};
use conn::{ConnSetup, ProxyProtocol, open_conn};
use http_body_util::BodyExt;
use hyper_conn::serve_hyper;
use rewind::Rewind;
use zero_copy::ZeroCopyStream;

/// A running node: its bound addresses and the handle to stop it.
pub struct Node {
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<bool>>,
    proxy: Arc<Proxy>,
    drain: Duration,
    sendfile_bytes: SendfileBytes,
    tls_addr: Option<SocketAddr>,
    reloader: Arc<reload::Reloader>,
}

impl Node {
    /// Binds both listeners and starts serving.
    pub async fn start(cfg: Config) -> Result<Node, Error> {
        let nofile = fds::raise_nofile(cfg.server.max_open_files);
        let proxy_l = bind(cfg.listen.proxy, "proxy").await?;
        let admin_l = bind(cfg.listen.admin, "admin").await?;
        let proxy_addr = local(&proxy_l)?;
        let admin_addr = local(&admin_l)?;
        let (tls_l, tls) = match cfg.listen.tls {
            Some(addr) => (
                Some(bind(addr, "tls").await?),
                Some(Arc::new(tls::Tls::new(&cfg.tls)?)),
            ),
            None => (None, None),
        };
        let tls_addr = tls_l.as_ref().map(local).transpose()?;
        crate::access_log::install(&cfg.log)?;
        // Before the cache: the purge log holds the ban list the cache
        // checks on every hit.
        let purger = crate::purge::Purger::open(&cfg)?;
        let cache = CacheLayer::open(&cfg, purger.bans().clone())
            .await?
            .map(Arc::new);
        if let Some(c) = cache.as_ref() {
            purger.reapply(c).await;
        }
        let proxy = Arc::new(Proxy::new(&cfg, cache.clone())?);
        proxy.start_health_checks();
        // The running config names the ports the listeners were given.
        let mut running = cfg.clone();
        running.listen.proxy = proxy_addr;
        running.listen.admin = admin_addr;
        running.listen.tls = tls_addr;
        let reloader = Arc::new(reload::Reloader::new(running, proxy.clone(), tls.clone()));
        let stats = NodeStats::new();
        let sendfile_bytes = stats.sendfile_bytes.clone();
        let admin_state = Arc::new(crate::admin::AdminState {
            cache,
            purger: purger.clone(),
            access_log: cfg.log.access_log,
            stats,
            history: crate::admin::status::History::default(),
            pools: {
                let p = proxy.clone();
                Arc::new(move || p.pools())
            },
            rules: {
                let p = proxy.clone();
                Arc::new(move || p.rule_counters())
            },
            reload: {
                let r = reloader.clone();
                Arc::new(move || {
                    let r = r.clone();
                    Box::pin(async move {
                        let report = run_reload(r).await;
                        (report.ok, serde_json::to_value(report).unwrap_or_default())
                    })
                })
            },
        });
        let cancel = CancellationToken::new();
        let builder = http_builder(&cfg.server, cfg.header_caps());
        let drain = cfg.server.drain_timeout;

        let p = proxy.clone();
        let fast = fast_path(&cfg, &proxy, "http");
        let max_connections = match cfg.server.max_connections {
            0 => fds::default_max_connections(nofile),
            n => n,
        };
        let conn_limits = ConnLimits::new(max_connections, cfg.server.max_connections_per_client);
        let proxy_keep = proxy.clone();
        let purge_state = admin_state.clone();
        let proxy_task = tokio::spawn(serve(
            proxy_l,
            builder.clone(),
            cancel.clone(),
            drain,
            ConnSetup {
                sendfile_bytes: sendfile_bytes.clone(),
                notsent_lowat: cfg.server.tcp_notsent_lowat,
                limits: Some(conn_limits.clone()),
                proxy_protocol: ProxyProtocol::new(cfg.listen.proxy_protocol, &cfg.server),
                abuse: conn::abuse_limits(&cfg.server),
            },
            move |req: Request<Incoming>, peer: SocketAddr| {
                let p = p.clone();
                let purge_state = purge_state.clone();
                async move {
                    if req.method().as_str() == "PURGE" {
                        return purge_method(&purge_state, req, peer).await;
                    }
                    let info = ConnInfo {
                        peer,
                        scheme: "http",
                    };
                    p.handle(req.map(RequestBody::Hyper), info).await
                }
            },
            fast,
        ));
        let mut tasks = Vec::new();
        if let (Some(l), Some(t)) = (tls_l, tls.as_ref()) {
            let p = proxy.clone();
            let fast_tls = fast_path(&cfg, &proxy, "https");
            let purge_state = admin_state.clone();
            tasks.push(tokio::spawn(listen_tls::serve_tls(
                l,
                t.server_config(),
                builder.clone(),
                cancel.clone(),
                drain,
                cfg.server.tls_handshake_timeout,
                ConnSetup {
                    sendfile_bytes: SendfileBytes::default(),
                    notsent_lowat: cfg.server.tcp_notsent_lowat,
                    limits: Some(conn_limits.clone()),
                    proxy_protocol: ProxyProtocol::new(cfg.listen.tls_proxy_protocol, &cfg.server),
                    abuse: conn::abuse_limits(&cfg.server),
                },
                move |req: Request<Incoming>, peer: SocketAddr| {
                    let p = p.clone();
                    let purge_state = purge_state.clone();
                    async move {
                        if req.method().as_str() == "PURGE" {
                            return purge_method(&purge_state, req, peer).await;
                        }
                        let info = ConnInfo {
                            peer,
                            scheme: "https",
                        };
                        p.handle(req.map(RequestBody::Hyper), info).await
                    }
                },
                fast_tls,
            )));
        }
        let admin_sampled = admin_state.clone();
        let admin_task = tokio::spawn(serve(
            admin_l,
            builder,
            cancel.clone(),
            drain,
            ConnSetup {
                sendfile_bytes: SendfileBytes::default(),
                notsent_lowat: 0,
                limits: None,
                proxy_protocol: None,
                abuse: conn::abuse_limits(&cfg.server),
            },
            move |req: Request<Incoming>, _peer| {
                let st = admin_state.clone();
                async move { crate::admin::handle(req, &st).await }
            },
            None,
        ));
        // Every half idle timeout: no connection idles more than 1.5 times it.
        let sweep_every = (cfg.timeouts.pool_idle / 2).max(Duration::from_millis(50));
        let sweeper = tokio::spawn(sweep_idle_origins(
            proxy.clone(),
            sweep_every,
            cancel.clone(),
        ));
        let flusher = tokio::spawn(flush_access_log(cancel.clone()));
        let sampler = tokio::spawn(sample_rates(admin_sampled, cancel.clone()));
        tracing::info!(%proxy_addr, %admin_addr, tls = ?tls_addr, "outpost started");
        tasks.extend([proxy_task, admin_task, sweeper, flusher, sampler]);
        Ok(Node {
            proxy_addr,
            admin_addr,
            cancel,
            tasks,
            proxy: proxy_keep,
            drain,
            sendfile_bytes,
            tls_addr,
            reloader,
        })
    }

    /// The TLS listener's address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Reads the configuration again and puts it in force if it is good
    /// (SIGHUP, `POST /reload`); certificates are read again too.
    pub async fn reload(&self) -> reload::ReloadReport {
        run_reload(self.reloader.clone()).await
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Bytes the proxy listener sent with `sendfile(2)` so far.
    pub fn sendfile_bytes(&self) -> u64 {
        self.sendfile_bytes.get()
    }

    /// Stops accepting, waits for in-flight requests (up to the drain
    /// timeout) and returns whether everything drained in time.
    pub async fn shutdown(self) -> bool {
        self.cancel.cancel();
        let mut clean = true;
        for t in self.tasks {
            clean &= t.await.unwrap_or(false);
        }
        if let Some(c) = self.proxy.cache() {
            c.close(self.drain).await;
        }
        crate::access_log::flush();
        clean
    }
}

/// Samples the status page's rates every 2 s until cancelled (then
/// returns `true`: nothing to drain).
async fn sample_rates(st: Arc<crate::admin::AdminState>, cancel: CancellationToken) -> bool {
    let mut tick = tokio::time::interval(crate::admin::status::SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return true,
            _ = tick.tick() => st.history.sample(&st),
        }
    }
}

/// Writes the access log file's buffer out every second until cancelled
/// (then returns `true`: it has nothing to drain).
async fn flush_access_log(cancel: CancellationToken) -> bool {
    if crate::access_log::sink().is_none() {
        return true;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return true,
            _ = tick.tick() => {
                // A write of at most the buffer: off the serving threads.
                let _ = tokio::task::spawn_blocking(crate::access_log::flush).await;
            }
        }
    }
}

/// A reload off the serving threads: it reads files (certificates, a deny
/// file of any size) and builds every site's pool.
async fn run_reload(r: Arc<reload::Reloader>) -> reload::ReloadReport {
    match tokio::task::spawn_blocking(move || r.reload()).await {
        Ok(report) => report,
        Err(e) => reload::ReloadReport {
            ok: false,
            errors: vec![format!("the reload stopped: {e}")],
            needs_restart: Vec::new(),
            sites: Vec::new(),
        },
    }
}

/// Closes idle origin connections past the idle timeout, `every` so
/// often, until cancelled (then returns `true`: it has nothing to drain).
async fn sweep_idle_origins(proxy: Arc<Proxy>, every: Duration, cancel: CancellationToken) -> bool {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return true,
            _ = tick.tick() => {
                let closed = proxy.sweep_idle_origins();
                if closed > 0 {
                    tracing::debug!(closed, "idle origin connections closed");
                }
            }
        }
    }
}

/// The `PURGE` method on the proxy listener (before routing to a site),
/// with an access-log line like any proxied request.
async fn purge_method(
    st: &crate::admin::AdminState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let rec = AccessRecord {
        method: req.method().clone(),
        host: request_host(&req).unwrap_or_default(),
        path: req.uri().path().to_string(),
        version: req.version(),
        client: peer.ip(),
        status: 0,
        cache: "purge",
        error: None,
        start: st.access_log.then(std::time::Instant::now),
        enabled: st.access_log,
        rule: None,
        site: None,
        ttfb: None,
    };
    let resp =
        crate::purge::api::handle_purge_method(&st.purger, st.cache.as_deref(), &req, peer).await;
    let (parts, body) = resp.into_parts();
    let mut rec = rec;
    rec.status = parts.status.as_u16();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Response::from_parts(parts, ProxyBody::full(bytes, rec))
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::new(
            ErrorKind::Bind,
            format!("cannot listen on {addr} ({what}): {e}"),
        )
        .with_source(e)
    })
}

fn local(l: &TcpListener) -> Result<SocketAddr, Error> {
    l.local_addr()
        .map_err(|e| Error::new(ErrorKind::Bind, format!("local_addr: {e}")).with_source(e))
}

/// hyper's HTTP/1 and HTTP/2 settings; `caps` are the largest request head
/// (bytes, fields) any site takes (`Config::header_caps`): beyond them the
/// listener answers 431 itself.
fn http_builder(s: &ServerConfig, caps: (u64, usize)) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    let max_buf = usize::try_from(caps.0).unwrap_or(usize::MAX);
    // The HTTP/1 timer is set per connection in `serve` (server::timer).
    b.http1()
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(max_buf.max(8192))
        .max_headers(caps.1)
        // A client may close its sending side once its request is out and
        // still read the answer (RFC 9112 §9.6 lets either side close first).
        // Without this hyper takes that EOF for an abort, and it probes for
        // it on every request that waits for an origin, with a fresh 8 KiB
        // read buffer each time (the request still holds the old one):
        // ~660 instructions per pass-through request (benches/load/README.md).
        // A client that goes away is noticed when its answer is written.
        .half_close(true)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(caps.0).unwrap_or(u32::MAX))
        // h2's own rapid-reset guard: streams reset before they are
        // accepted (the rest is counted per connection, server::abuse).
        .max_pending_accept_reset_streams(20)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// The own HTTP/1 path of a listener: its limits, and the pipeline its
/// requests go to with the listener's scheme.
#[derive(Clone)]
struct Fast {
    settings: h1::Settings,
    proxy: Arc<Proxy>,
    scheme: &'static str,
}

/// The own HTTP/1 path for a listener whose connections are `scheme`, when
/// `server.fast_http1` is on.
fn fast_path(cfg: &Config, proxy: &Arc<Proxy>, scheme: &'static str) -> Option<Fast> {
    let s = &cfg.server;
    s.fast_http1.then(|| Fast {
        settings: h1::Settings {
            header_read_timeout: s.header_read_timeout,
            keepalive_timeout: s.keepalive_timeout,
            keepalive_requests: s.keepalive_requests,
            max_head: usize::try_from(cfg.header_caps().0)
                .unwrap_or(usize::MAX)
                .max(8192),
        },
        proxy: proxy.clone(),
        scheme,
    })
}

/// Accepts connections until cancelled, then drains. Returns whether every
/// connection finished within `drain`. With `fast`, a connection starts on
/// the own HTTP/1 path ([`h1`]) and goes to hyper (`handler`) when that
/// path gives it up; without, hyper serves it from the start.
async fn serve<F, Fut, B>(
    listener: TcpListener,
    builder: Builder<TokioExecutor>,
    cancel: CancellationToken,
    drain: Duration,
    conn: ConnSetup,
    handler: F,
    fast: Option<Fast>,
) -> bool
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tracker = tokio_util::task::TaskTracker::new();
    let builder = Arc::new(builder);
    let fast = fast.map(Arc::new);
    let mut backoff = fds::Backoff::default();
    while let Some((mut stream, peer)) = accept(&listener, &cancel, &mut backoff).await {
        let conn = conn.clone();
        let h = handler.clone();
        let builder = builder.clone();
        let fast = fast.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let Some((peer, _guard)) = open_conn(&mut stream, peer, &conn).await else {
                return;
            };
            let io = ZeroCopyStream::new(stream, conn.sendfile_bytes);
            let limits = conn.abuse;
            let stop = cancel.clone();
            let with_hyper =
                move |io: Rewind<ZeroCopyStream>| serve_hyper(io, h, peer, &builder, stop, limits);
            match fast.as_deref() {
                Some(f) => {
                    let (p, scheme) = (f.proxy.clone(), f.scheme);
                    let handler = move |req| {
                        let p = p.clone();
                        async move { p.handle(req, ConnInfo { peer, scheme }).await }
                    };
                    h1::serve(io, f.settings, cancel, handler, with_hyper).await;
                }
                None => with_hyper(Rewind::new(bytes::Bytes::new(), io)).await,
            }
        });
    }
    drop(listener);
    drain_all(tracker, drain).await
}

/// The next connection, or `None` once `cancel` fires. A failed accept
/// (EMFILE and friends) is logged and retried after a pause instead of
/// spinning.
async fn accept(
    listener: &TcpListener,
    cancel: &CancellationToken,
    backoff: &mut fds::Backoff,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return None,
            r = listener.accept() => r,
        };
        let pause = match accepted {
            Ok(x) => {
                backoff.succeeded();
                return Some(x);
            }
            // Out of descriptors: stop accepting a while (one log line per
            // episode); open connections go on being served.
            Err(e) if fds::out_of_descriptors(&e) => backoff.failed(&e),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                Duration::from_millis(20)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return None,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Closes idle connections and waits for the others (up to `drain`);
/// returns whether every connection finished in time.
async fn drain_all(tracker: tokio_util::task::TaskTracker, drain: Duration) -> bool {
    tracker.close();
    let all_done = async {
        tracker.wait().await;
    };
    match tokio::time::timeout(drain, all_done).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                ?drain,
                "drain timeout reached; closing remaining connections"
            );
            false
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::conn::tune;

    #[tokio::test]
    async fn accepted_connections_get_nodelay_and_the_notsent_low_water_mark() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        for lowat in [0u32, 16 << 10] {
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let before = socket2::SockRef::from(&s).tcp_notsent_lowat().unwrap();
            tune(&s, lowat);
            assert!(s.nodelay().unwrap());
            let got = socket2::SockRef::from(&s).tcp_notsent_lowat().unwrap();
            // 0 leaves the kernel's default (net.ipv4.tcp_notsent_lowat) alone.
            assert_eq!(got, if lowat == 0 { before } else { lowat });
        }
    }
}

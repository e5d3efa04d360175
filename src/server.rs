//! Listeners and connection serving: the proxy and admin listeners, HTTP/1.1
//! and cleartext HTTP/2 (prior knowledge) on one port, and graceful
//! shutdown (stop accepting, drain in-flight requests up to a deadline).
//! Connections write through [`zero_copy::ZeroCopyStream`], which sends
//! large cached bodies with `sendfile(2)`. On the proxy listener, HTTP/1.1
//! `GET` and `HEAD` requests are served by the own path [`h1`] until a
//! request it does not take hands the connection to hyper. Listeners may be
//! inherited from systemd or from the node this one replaces ([`upgrade`]),
//! which also hands its store over.
//!
//! It owns sockets and connections and hands each request to the pipeline
//! (`proxy`), `PURGE` to `purge` and the admin listener's requests to
//! `admin`; it knows nothing of caching rules, and of the store only that
//! the cache layer can hand it over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod abuse;
mod conn;
pub mod fds;
pub mod h1;
pub mod h1_head;
pub mod h1_write;
mod h2;
pub mod h2_frames;
mod hyper_conn;
mod listen;
mod listen_tls;
pub mod proxy_header;
pub mod reload;
pub mod rewind;
mod stop;
pub mod timer;
pub mod tls;
pub mod upgrade;
pub mod zero_copy;

use crate::admission::ConnLimits;
use crate::cache::CacheLayer;
use crate::cache::key::request_host;
use crate::config::Config;
use crate::error::Error;
use crate::metrics::{NodeStats, SendfileBytes};
use crate::proxy::body::{AccessRecord, ProxyBody};
use crate::proxy::{ConnInfo, Proxy, RequestBody};
use conn::{ConnSetup, ProxyProtocol};
use http_body_util::BodyExt;
use listen::{fast_path, http_builder, listener, local, serve};
use stop::Stop;

/// A running node: its bound addresses and the handle to stop it.
pub struct Node {
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    stop: Stop,
    tasks: Vec<JoinHandle<bool>>,
    proxy: Arc<Proxy>,
    drain: Duration,
    sendfile_bytes: SendfileBytes,
    tls_addr: Option<SocketAddr>,
    reloader: Arc<reload::Reloader>,
    upgraded: CancellationToken,
    upgrades: JoinHandle<()>,
    upgrade_socket: std::path::PathBuf,
    took_over: Option<TookOver>,
    purger: Arc<crate::purge::Purger>,
}

/// A take-over from a running node (`upgrade`).
#[derive(Debug, Clone)]
pub struct TookOver {
    /// The old node's account of its release.
    pub report: String,
    /// From asking the old node to release until it had.
    pub released: Duration,
    /// From asking until this node accepted: connections waited in the queue this long.
    pub window: Duration,
}

/// How long a hand-over waits for bodies being read to pin their chunks.
const PIN_WAIT: Duration = Duration::from_secs(1);

/// The old node's release (see `upgrade`): stop accepting, hand the store over.
async fn release_to_new_node(
    stop: Stop,
    cache: Option<Arc<CacheLayer>>,
    purger: Arc<crate::purge::Purger>,
) -> String {
    stop.stop();
    // The new process takes the purge stream's durable consumer over.
    purger.stop_fleet();
    let Some(cache) = cache else {
        return "no store".to_owned();
    };
    match cache.hand_over(PIN_WAIT).await {
        Ok(h) => format!(
            "store handed over in {} ms ({} body read(s) pinned, {} cut)",
            h.took.as_millis(),
            h.pinned,
            h.left
        ),
        Err(e) => format!("store closed with an error: {e}"),
    }
}

impl Node {
    /// Binds both listeners and starts serving.
    pub async fn start(cfg: Config) -> Result<Node, Error> {
        Self::start_with(cfg, upgrade::Inherited::default()).await
    }

    /// Starts serving on the `inherited` listeners where there are (binding the others);
    /// when they come from a running node, takes its store over first (`upgrade`).
    pub async fn start_with(cfg: Config, mut inherited: upgrade::Inherited) -> Result<Node, Error> {
        let nofile = fds::raise_nofile(cfg.server.max_open_files);
        let proxy_l = listener(&mut inherited, "proxy", cfg.listen.proxy).await?;
        let admin_l = listener(&mut inherited, "admin", cfg.listen.admin).await?;
        let proxy_addr = local(&proxy_l)?;
        let admin_addr = local(&admin_l)?;
        let (tls_l, tls) = match cfg.listen.tls {
            Some(addr) => (
                Some(listener(&mut inherited, "tls", addr).await?),
                Some(Arc::new(tls::Tls::new(&cfg.tls)?)),
            ),
            None => (None, None),
        };
        let tls_addr = tls_l.as_ref().map(local).transpose()?;
        crate::access_log::install(&cfg.log)?;
        let unused = inherited.unused();
        if !unused.is_empty() {
            tracing::warn!(
                ?unused,
                "inherited listening sockets this config has no use for: closed"
            );
        }
        let mut handover_fds = Vec::new();
        for (name, l) in [
            ("proxy", Some(&proxy_l)),
            ("admin", Some(&admin_l)),
            ("tls", tls_l.as_ref()),
        ] {
            if let Some(fd) = l.and_then(|l| std::os::fd::AsFd::as_fd(l).try_clone_to_owned().ok())
            {
                handover_fds.push((name, fd));
            }
        }
        // Everything that can fail on a bad config or certificate is behind us: only now
        // does the running node stop accepting and close its store.
        let window_start = std::time::Instant::now();
        let released = match inherited.taking() {
            Some(t) => Some(t.release().await?),
            None => None,
        };
        drop(inherited);
        // Before the cache: the purge log holds the ban list the cache
        // checks on every hit.
        let purger = crate::purge::Purger::open(&cfg)?;
        let cache = CacheLayer::open(&cfg, purger.bans().clone())
            .await?
            .map(Arc::new);
        if let Some(c) = cache.as_ref() {
            purger.reapply(c).await;
        }
        purger.start_fleet(cache.clone()).await?;
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
        let stop = Stop::default();
        let cancel = stop.token().clone();
        let builder = http_builder(&cfg.server, cfg.header_caps());
        let drain = cfg.server.drain_timeout;

        let p = proxy.clone();
        let mut fast = fast_path(&cfg, &proxy, "http");
        if let Some(f) = fast.as_mut().filter(|_| cfg.server.fast_http2) {
            f.h2 = Some((
                listen::h2_settings(&cfg),
                h2_handler(proxy.clone(), admin_state.clone(), "http"),
            ));
        }
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
            stop.clone(),
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
                        wire_heads: false,
                    };
                    p.handle(Box::new(req.map(RequestBody::Hyper)), info).await
                }
            },
            fast,
        ));
        let mut tasks = Vec::new();
        if let (Some(l), Some(t)) = (tls_l, tls.as_ref()) {
            let p = proxy.clone();
            let mut fast_tls = fast_path(&cfg, &proxy, "https");
            if let Some(f) = fast_tls.as_mut().filter(|_| cfg.server.fast_http2) {
                f.h2 = Some((
                    listen::h2_settings(&cfg),
                    h2_handler(proxy.clone(), admin_state.clone(), "https"),
                ));
            }
            let purge_state = admin_state.clone();
            tasks.push(tokio::spawn(listen_tls::serve_tls(
                l,
                t.server_config(),
                builder.clone(),
                stop.clone(),
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
                            wire_heads: false,
                        };
                        p.handle(Box::new(req.map(RequestBody::Hyper)), info).await
                    }
                },
                fast_tls,
            )));
        }
        let admin_sampled = admin_state.clone();
        let admin_task = tokio::spawn(serve(
            admin_l,
            builder,
            stop.clone(),
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
        let upgraded = CancellationToken::new();
        let release: upgrade::ReleaseFn = {
            let (stop, cache) = (stop.clone(), proxy_keep.cache().cloned());
            let purger = purger.clone();
            Arc::new(move || {
                let (stop, cache, purger) = (stop.clone(), cache.clone(), purger.clone());
                Box::pin(async move { release_to_new_node(stop, cache, purger).await })
            })
        };
        let upgrades = tokio::spawn(upgrade::serve(
            cfg.storage.path.clone(),
            handover_fds,
            release,
            cancel.clone(),
            upgraded.clone(),
        ));
        let took_over = released.map(|r| TookOver {
            report: r.report,
            released: r.took,
            window: window_start.elapsed(),
        });
        if let Some(t) = &took_over {
            tracing::info!(
                old_node = %t.report,
                released_ms = t.released.as_millis() as u64,
                window_ms = t.window.as_millis() as u64,
                "took over from the running node"
            );
        }
        tracing::info!(%proxy_addr, %admin_addr, tls = ?tls_addr, "outpost started");
        tasks.extend([proxy_task, admin_task, sweeper, flusher, sampler]);
        Ok(Node {
            proxy_addr,
            admin_addr,
            stop,
            tasks,
            proxy: proxy_keep,
            drain,
            sendfile_bytes,
            tls_addr,
            reloader,
            upgraded,
            upgrades,
            upgrade_socket: cfg.storage.path.join(upgrade::SOCKET),
            took_over,
            purger,
        })
    }

    /// Resolves once this node released its listeners and store to a new process
    /// (`outpost serve --upgrade`): it has stopped accepting and should now drain and exit.
    pub async fn handed_over(&self) {
        self.upgraded.cancelled().await;
    }

    /// How this node took over from a running one, if it did.
    pub fn took_over(&self) -> Option<&TookOver> {
        self.took_over.as_ref()
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
        self.stop.stop();
        self.purger.stop_fleet();
        self.upgrades.abort();
        if !self.upgraded.is_cancelled() {
            // Nobody answers on it any more (a node that took over has its own).
            let _ = std::fs::remove_file(self.upgrade_socket);
        }
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
/// The own HTTP/2 server's handler for a proxy listener of `scheme`: the
/// `PURGE` method, as on hyper, else the pipeline.
fn h2_handler(
    proxy: Arc<Proxy>,
    st: Arc<crate::admin::AdminState>,
    scheme: &'static str,
) -> h2::Handler {
    Arc::new(move |req: Request<RequestBody>, peer: SocketAddr| {
        let (p, st) = (proxy.clone(), st.clone());
        Box::pin(async move {
            if req.method().as_str() == "PURGE" {
                return purge_method(&st, req, peer).await;
            }
            p.handle(
                Box::new(req),
                ConnInfo {
                    peer,
                    scheme,
                    wire_heads: false,
                },
            )
            .await
        })
    })
}

async fn purge_method<B>(
    st: &crate::admin::AdminState,
    req: Request<B>,
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
        start: st.access_log.then(crate::clock::Stamp::now),
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

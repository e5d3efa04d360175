//! The `outpost` binary: `serve` runs a node, `check` validates a config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use outpost::config::{Config, Overrides};

/// mimalloc instead of glibc malloc: hyper allocates a fresh 8 KiB read buffer per request and
/// glibc served it from its slow path (`malloc_consolidate`), about 8 % of a 1 KiB hit
/// (benches/load/README.md has the profile).
#[global_allocator]
static GLOBAL: Alloc = Alloc;

/// mimalloc, asked the way std asks the system allocator: plain `mi_malloc` for layouts whose
/// alignment every mimalloc block has (a word), `mi_malloc_aligned` for the rest.
/// `mimalloc::MiMalloc` always calls `mi_malloc_aligned`, whose generic path over-allocates
/// for most sizes above 1 KiB (hyper's 8 KiB read buffer on every request: ~600 instructions
/// per pass-through request, benches/load/README.md).
struct Alloc;

/// The alignment of every mimalloc block (one word).
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: each method forwards to the mimalloc function with the same contract; blocks from
// `mi_malloc` are word-aligned, so they meet any layout with `align <= WORD`. A global
// allocator cannot be written without `unsafe`.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Alloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: plain C allocation calls; see the impl's comment.
        unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_malloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_zalloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from mimalloc with `layout`'s alignment, kept by either call.
        unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                libmimalloc_sys::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// Run by each runtime worker when it runs out of work (tokio's park hook): at most once a
/// second per thread, mimalloc is asked to give the pages freed meanwhile back to the system
/// (`mi_collect`). Its own purge of free pages is delayed (10 ms) and runs only on later
/// allocator calls, so memory freed just before a worker goes quiet (the buffers of
/// connections that turned idle, a burst that ended) would otherwise stay resident until the
/// next burst. Purging on every free instead (`MIMALLOC_PURGE_DELAY=0`) costs the
/// pass-through path ~10 % (an `madvise` per freed page in the request churn).
fn give_back_free_pages() {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    let due = LAST.with(|l| {
        let due = l
            .get()
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if due {
            l.set(Some(now));
        }
        due
    });
    if due {
        // SAFETY: `mi_collect` has no preconditions; it works on the calling thread's heap.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_collect(true)
        };
    }
}

#[derive(Parser)]
#[command(name = "outpost", version, about = "Outpost: an edge caching CDN node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (proxy and admin listeners).
    Serve {
        /// Configuration file (TOML). Without it the embedded default is used.
        #[arg(long, short = 'c', env = "OUTPOST_CONFIG")]
        config: Option<PathBuf>,
        /// Origin URL for a catch-all site, e.g. http://127.0.0.1:8000
        /// (replaces the file's sites).
        #[arg(long)]
        origin: Option<String>,
        /// Proxy listen address, e.g. 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<String>,
        /// Admin listen address, e.g. 127.0.0.1:9080.
        #[arg(long)]
        admin: Option<String>,
        /// TLS listen address, e.g. 0.0.0.0:443 (needs [[tls.certificates]]).
        #[arg(long)]
        tls: Option<String>,
        /// Cache directory (overrides storage.path).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Take over from the node running with this storage path (a new binary, same
        /// config): its listening sockets and its store, without dropping a request.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a configuration file and print every error.
    Check {
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config, &Overrides::default()) {
            Ok(c) => {
                // The certificates' files: readable, matching, not expired.
                let (mut errors, warnings) = outpost::server::tls::check(&c.tls);
                errors.extend(outpost::admission::check(&c));
                for w in &warnings {
                    eprintln!("  warning: {w}");
                }
                if !errors.is_empty() {
                    eprintln!("{}: {} error(s)", config.display(), errors.len());
                    for e in &errors {
                        eprintln!("  {e}");
                    }
                    return ExitCode::from(1);
                }
                println!(
                    "{}: ok ({} site(s), proxy {}, admin {}{})",
                    config.display(),
                    c.sites.len(),
                    c.listen.proxy,
                    c.listen.admin,
                    c.listen
                        .tls
                        .map(|t| format!(", tls {t}"))
                        .unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{}: {} error(s)", config.display(), errs.0.len());
                for e in &errs.0 {
                    eprintln!("  {e}");
                }
                ExitCode::from(1)
            }
        },
        Command::Serve {
            config,
            origin,
            listen,
            admin,
            tls,
            cache_dir,
            upgrade,
        } => {
            let ov = Overrides {
                origin,
                listen,
                admin,
                tls,
                cache_dir,
            };
            let cfg = match &config {
                Some(p) => Config::load(p, &ov),
                None => Config::embedded(&ov),
            };
            let cfg = match cfg {
                Ok(c) => c,
                Err(errs) => {
                    eprintln!("outpost: invalid configuration:");
                    for e in &errs.0 {
                        eprintln!("  {e}");
                    }
                    return ExitCode::from(1);
                }
            };
            if cfg.sites.is_empty() {
                eprintln!(
                    "outpost: no origin configured. Give one with `outpost serve --origin http://HOST:PORT`, \
                     or add a [[site]] with `origins = [\"http://HOST:PORT\"]` to a config file \
                     (see config/outpost.example.toml) and pass it with --config."
                );
                return ExitCode::from(2);
            }
            // Before any thread starts: taking the sockets clears systemd's variables.
            let inherited = if upgrade {
                outpost::server::upgrade::Inherited::from_running(&cfg.storage.path)
            } else {
                outpost::server::upgrade::Inherited::from_systemd(&[
                    ("proxy", Some(cfg.listen.proxy)),
                    ("admin", Some(cfg.listen.admin)),
                    ("tls", cfg.listen.tls),
                ])
            };
            let inherited = match inherited {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("outpost: {e}");
                    return ExitCode::from(1);
                }
            };
            match serve(cfg, inherited) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("outpost: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn serve(cfg: Config, inherited: outpost::server::upgrade::Inherited) -> anyhow::Result<()> {
    outpost::logging::init(&cfg.log);
    // With one CPU to run on (taskset, a cpuset or a CPU quota), a
    // current-thread runtime: the work-stealing scheduler has no other worker
    // to hand tasks to there, and its cross-task wake-ups cost ~9 % of the
    // CPU per proxied request (pass-1k, benches/load/README.md). With more
    // CPUs, the multi-thread runtime spreads connections over them.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = builder
        .enable_all()
        .on_thread_park(give_back_free_pages)
        .thread_name("outpost-worker")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        // Before the node says it listens: a signal sent right after that line
        // must find its handler (SIGHUP's default action ends the process).
        let signals = Signals::install();
        let node = outpost::Node::start_with(cfg, inherited).await?;
        tracing::info!(
            cpus,
            runtime = if cpus == 1 {
                "current-thread"
            } else {
                "multi-thread"
            },
            "runtime started"
        );
        println!("outpost: proxy listening on http://{}", node.proxy_addr());
        println!("outpost: admin listening on http://{}", node.admin_addr());
        if let Some(t) = node.tls_addr() {
            println!("outpost: tls listening on https://{t}");
        }
        if let Some(t) = node.took_over() {
            println!(
                "outpost: took over from the running node ({}); new connections waited {} ms",
                t.report,
                t.window.as_millis()
            );
        }
        tokio::select! {
            () = shutdown_signal(&node, signals) => tracing::info!("shutdown signal received; draining"),
            () = node.handed_over() => tracing::info!("handed over to the new node; draining"),
        }
        let clean = node.shutdown().await;
        tracing::info!(clean, "stopped");
        Ok(())
    })
}

/// The signals the node handles, listened for from the start.
struct Signals {
    hup: Option<tokio::signal::unix::Signal>,
    usr1: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                None
            }
        };
        Signals {
            hup: listen(SignalKind::hangup(), "SIGHUP"),
            usr1: listen(SignalKind::user_defined1(), "SIGUSR1"),
            term: listen(
                SignalKind::terminate(),
                "SIGTERM; only Ctrl-C stops the node",
            ),
        }
    }
}

/// Waits for SIGTERM or Ctrl-C; SIGHUP meanwhile reloads the configuration
/// (certificates included).
async fn shutdown_signal(node: &outpost::Node, signals: Signals) {
    let Signals {
        mut hup,
        mut usr1,
        term,
    } = signals;
    let reopens = async {
        match usr1.as_mut() {
            Some(u) => {
                while u.recv().await.is_some() {
                    match outpost::access_log::reopen() {
                        Ok(()) => tracing::info!("SIGUSR1: access log reopened"),
                        Err(e) => tracing::error!(error = %e, "SIGUSR1: access log not reopened"),
                    }
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    let reloads = async {
        match hup.as_mut() {
            Some(h) => {
                while h.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // The reloader logs what it did and every error.
                    let _ = node.reload().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = wait_for_stop(term) => {}
        () = reloads => {}
        () = reopens => {}
    }
}

async fn wait_for_stop(term: Option<tokio::signal::unix::Signal>) {
    let Some(mut term) = term else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

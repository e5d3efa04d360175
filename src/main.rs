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
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Cache directory (overrides storage.path).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
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
                println!(
                    "{}: ok ({} site(s), proxy {}, admin {})",
                    config.display(),
                    c.sites.len(),
                    c.listen.proxy,
                    c.listen.admin
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
            cache_dir,
        } => {
            let ov = Overrides {
                origin,
                listen,
                admin,
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
            match serve(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("outpost: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn serve(cfg: Config) -> anyhow::Result<()> {
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
        .thread_name("outpost-worker")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let node = outpost::Node::start(cfg).await?;
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
        shutdown_signal().await;
        tracing::info!("shutdown signal received; draining");
        let clean = node.shutdown().await;
        tracing::info!(clean, "stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

//! `outpostctl`: operate Outpost nodes over HTTP: `warm` a node's cache from
//! a URL list or sitemap, `purge` content by URL, prefix or tag (optionally on
//! every peer), show `stats`, and list, drain or enable `origins`. It talks to a node's proxy and admin
//! listeners over plain `http://` only and knows nothing of node internals.
//!
//! Exit codes: 0 success, 1 failure, 2 unreachable node or bad usage, 130
//! interrupted (see `cli::AFTER_HELP`).

mod admin;
mod cache_status;
mod cli;
mod http;
mod origins;
mod purge;
mod reload;
mod sitemap;
mod stats;
mod units;
mod urlfile;
mod warm;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::http::Unreachable;

/// The `User-Agent` of every request outpostctl sends (unless `-H` sets one).
pub const USER_AGENT: &str = concat!("outpostctl/", env!("CARGO_PKG_VERSION"));

/// Exit code: the node or admin listener could not be reached.
pub const EXIT_UNREACHABLE: u8 = 2;
/// Exit code: interrupted by Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("outpostctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Warm(args) => warm::run(args).await,
            Command::Purge(args) => purge::run(args).await,
            Command::Stats(args) => stats::run(args).await,
            Command::Origins(args) => origins::run(args).await,
            Command::Reload(args) => reload::run(args).await,
        }
    });
    // Blocking readers (stdin, the line counter) must not hold the exit up.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if let Some(unreachable) = err.downcast_ref::<Unreachable>() {
                eprintln!("outpostctl: {unreachable}");
                ExitCode::from(EXIT_UNREACHABLE)
            } else {
                eprintln!("outpostctl: {err:#}");
                ExitCode::FAILURE
            }
        }
    }
}

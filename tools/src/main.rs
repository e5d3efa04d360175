//! `outpostctl`: operate Outpost nodes over HTTP (warm, purge, stats).
//!
//! The commands arrive with the purge/warm work; until then this prints its
//! help and says what is coming.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "outpostctl",
    version,
    about = "Operate Outpost nodes over HTTP",
    long_about = "Operate Outpost nodes over HTTP.\n\n\
        Planned commands: `warm` (fetch a URL list through a node), `purge` (by URL, \
        prefix or tag, optionally on every peer) and `stats` (a node's cache statistics). \
        They talk to a node's proxy and admin listeners only."
)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!("outpostctl: no commands yet; see `outpostctl --help`.");
}

//! The command line: `outpostctl warm | purge | stats | origins`, with clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use http::{HeaderName, HeaderValue};

const AFTER_HELP: &str = "\
outpostctl talks to nodes over plain http:// only (no TLS): point it at a
node's proxy listener (warm) or admin listener (purge, stats, origins) on a trusted
network.

Exit codes: 0 success; 1 something failed (a warm request, a purge refused,
a peer failed, a server error); 2 the node or admin listener cannot be
reached, or bad usage; 130 interrupted by Ctrl-C (warm prints its partial
summary first).";

#[derive(Debug, Parser)]
#[command(
    name = "outpostctl",
    version,
    about = "Operate Outpost nodes over HTTP: warm, purge, stats, origins",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a list of URLs through a node so they enter its cache.
    Warm(WarmArgs),
    /// Purge cached content by URL, prefix or tag (optionally fleet-wide).
    Purge(PurgeArgs),
    /// Show a node's cache statistics.
    Stats(StatsArgs),
    /// Show a node's origins and their health; drain or enable one.
    Origins(OriginsArgs),
    /// Make a node read its configuration file again.
    Reload(ReloadArgs),
}

/// How to reach a node's admin listener.
#[derive(Debug, Args)]
pub struct AdminCall {
    /// The node's admin listener, e.g. http://127.0.0.1:9080.
    #[arg(long, value_name = "URL")]
    pub admin: String,
    /// The admin bearer token (needed to change anything; sent when set).
    #[arg(
        long,
        env = "OUTPOST_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "T"
    )]
    pub token: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the answer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub call: AdminCall,
}

#[derive(Debug, Args)]
pub struct OriginsArgs {
    #[command(flatten)]
    pub call: AdminCall,
    #[command(subcommand)]
    pub action: Option<OriginsAction>,
}

#[derive(Debug, Subcommand)]
pub enum OriginsAction {
    /// Stop sending new requests to an origin; its requests in flight finish.
    Drain {
        /// The site's name.
        site: String,
        /// The origin as configured, e.g. http://10.0.0.5:8000.
        origin: String,
    },
    /// Send requests to a drained origin again.
    Enable { site: String, origin: String },
}

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("source").required(true).args(["urls", "sitemap"])),
    after_help = "\
Each URL is fetched with GET through the node at --node: the request goes to
the node's address with the URL's path and query as target and the URL's
host (and port) as Host, so the object enters the cache the normal way. The
URL's scheme is not sent. Bodies are read and discarded.

The outcome of each request comes from the node's Cache-Status header
(RFC 9211): `hit` = already cached, `fwd=...; stored` = newly stored, other
`fwd=...` = not cacheable. Connection errors, timeouts, 5xx, 421 (host not
served by the node) and responses without the node's Cache-Status member
are failures, counted by reason.

--urls streams the file (constant memory, any size; `-` reads stdin); a
second pass counts its entries in the background to give the progress bar a
total and an ETA. On a terminal a progress bar is drawn on stderr, otherwise
a plain line every 2 s. The summary goes to stdout. Ctrl-C stops issuing
requests, gives those in flight 2 s to finish, prints the partial summary
and exits 130."
)]
pub struct WarmArgs {
    /// The node's proxy listener, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub node: String,
    /// A file of URLs, one per line (`#` comments and blank lines skipped).
    #[arg(long, value_name = "FILE")]
    pub urls: Option<PathBuf>,
    /// A sitemap.xml or sitemap index: a file path or an http:// URL.
    #[arg(long, value_name = "FILE_OR_URL")]
    pub sitemap: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Maximum request rate, in requests per second (default: unlimited).
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// An extra request header, `Name: value` (repeatable). Host is always
    /// taken from each URL.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Timeout per request, headers and body (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The cache name to look for in Cache-Status.
    #[arg(long, default_value = "Outpost", value_name = "NAME")]
    pub cache_name: String,
    /// Interval of the plain progress lines when stderr is not a terminal.
    #[arg(long, default_value = "2s", value_parser = parse_duration, hide = true)]
    pub progress_interval: Duration,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["url", "prefix", "tag"])))]
pub struct PurgeArgs {
    /// The node's admin listener, e.g. http://127.0.0.1:9080.
    #[arg(long, value_name = "URL")]
    pub admin: String,
    /// The admin bearer token (prefer the environment variable: a command
    /// line is visible to other users).
    #[arg(
        long,
        env = "OUTPOST_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "T"
    )]
    pub token: String,
    /// A full URL to purge, e.g. http://example.com/a?b (repeatable).
    #[arg(long = "url", value_name = "U")]
    pub url: Vec<String>,
    /// A host + path prefix, e.g. example.com/static/ (repeatable).
    #[arg(long = "prefix", value_name = "P")]
    pub prefix: Vec<String>,
    /// A surrogate key / tag (repeatable).
    #[arg(long = "tag", value_name = "T")]
    pub tag: Vec<String>,
    /// Mark stale (revalidate next time) instead of removing.
    #[arg(long)]
    pub soft: bool,
    /// Ask the node to forward the purge to its configured peers.
    #[arg(long)]
    pub fan_out: bool,
    /// Print the node's JSON answer as is.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the answer (fan-out can take a while).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub call: AdminCall,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err("must be a positive duration".to_string()),
        Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string())?,
    };
    if d.is_zero() {
        return Err("must be more than zero".to_string());
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err("must be a positive number of requests per second".to_string()),
    }
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| "expected `Name: value`".to_string())?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name {:?}", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid value for header {name}"))?;
    Ok((name, value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn headers_rates_durations() {
        let (n, v) = parse_header("X-Warm:  yes please ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-warm", "yes please"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: v").is_err());
        assert_eq!(parse_rate("2.5").unwrap(), 2.5);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-1").is_err());
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn purge_needs_something_to_purge() {
        let r = Cli::try_parse_from(["outpostctl", "purge", "--admin", "x", "--token", "t"]);
        assert!(r.is_err());
        let r = Cli::try_parse_from([
            "outpostctl",
            "purge",
            "--admin",
            "x",
            "--token",
            "t",
            "--tag",
            "a",
            "--url",
            "http://h/",
        ]);
        assert!(r.is_ok());
    }
}

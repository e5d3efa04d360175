//! Where the URLs to warm come from: a URL file (or stdin), streamed, or a
//! sitemap / sitemap index. The source is opened up front (so a missing file
//! or a broken sitemap fails before any request), then a producer task feeds
//! the workers through a bounded channel: memory stays bounded by the
//! channel's capacity whatever the list's size.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncBufRead, BufReader};
use tokio::sync::mpsc::Sender;

use super::progress::Total;
use crate::sitemap::{self, Location, Sitemap};
use crate::urlfile::{self, Entry, UrlLines};

/// One item for the workers.
#[derive(Debug)]
pub enum Item {
    /// A URL to fetch.
    Url(String),
    /// An entry that cannot be fetched, with the failure reason.
    Bad(String),
}

/// An opened source, ready to produce.
pub enum Source {
    /// A URL list (file or stdin), with the path to count when it is a file.
    Lines {
        reader: Box<dyn AsyncBufRead + Send + Unpin>,
        count: Option<PathBuf>,
    },
    /// A parsed top-level sitemap; `base_dir` resolves relative index entries.
    Sitemap {
        top: Sitemap,
        base_dir: Option<PathBuf>,
    },
}

impl Source {
    /// Opens `--urls FILE` (`-` = stdin).
    pub async fn url_file(path: &Path) -> Result<Self> {
        if path == Path::new("-") {
            let reader = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
            return Ok(Self::Lines {
                reader: Box::new(reader),
                count: None,
            });
        }
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open URL list {}", path.display()))?;
        let meta = file
            .metadata()
            .await
            .with_context(|| format!("cannot read URL list {}", path.display()))?;
        if meta.is_dir() {
            bail!("URL list {} is a directory", path.display());
        }
        Ok(Self::Lines {
            reader: Box::new(BufReader::with_capacity(64 * 1024, file)),
            count: meta.is_file().then(|| path.to_path_buf()),
        })
    }

    /// Loads `--sitemap FILE_OR_URL` (the top level only).
    pub async fn sitemap(
        raw: &str,
        client: &Client<HttpConnector, Empty<Bytes>>,
        timeout: Duration,
    ) -> Result<Self> {
        let location = Location::parse(raw, None)?;
        let top = sitemap::load(&location, client, timeout).await?;
        let base_dir = match &location {
            Location::File(p) => p.parent().map(Path::to_path_buf),
            Location::Http(_) => None,
        };
        Ok(Self::Sitemap { top, base_dir })
    }

    /// Feeds the items to `tx` until the source ends or the receiver is gone.
    /// Read errors in the middle of a URL list end the run with an error.
    pub async fn produce(
        self,
        tx: Sender<Item>,
        total: Arc<Total>,
        client: Client<HttpConnector, Empty<Bytes>>,
        timeout: Duration,
    ) -> Result<()> {
        match self {
            Self::Lines { reader, count } => {
                if let Some(path) = count {
                    let total = total.clone();
                    // The count is only for the ETA: an error just leaves it unknown.
                    tokio::task::spawn_blocking(move || {
                        if let Ok(n) = urlfile::count_urls(&path) {
                            total.set(n);
                        }
                    });
                }
                let mut lines = UrlLines::new(reader);
                while let Some(entry) = lines.next_entry().await.context("reading the URL list")? {
                    let item = match entry {
                        Entry::Url(url) => Item::Url(url),
                        Entry::TooLong(line) => {
                            Item::Bad(format!("invalid url (line {line} too long)"))
                        }
                    };
                    if tx.send(item).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            }
            Self::Sitemap { top, base_dir } => {
                let urls = match top {
                    Sitemap::Urls(urls) => urls,
                    Sitemap::Index(children) => {
                        return produce_index(children, base_dir, tx, total, client, timeout).await;
                    }
                };
                total.set(urls.len() as u64);
                send_all(urls, &tx).await;
                Ok(())
            }
        }
    }
}

/// Sends URLs; false when the receiver is gone.
async fn send_all(urls: Vec<String>, tx: &Sender<Item>) -> bool {
    for url in urls {
        if tx.send(Item::Url(url)).await.is_err() {
            return false;
        }
    }
    true
}

/// Follows a sitemap index one level: each child is loaded in turn, and its
/// URLs sent before the next child is loaded. A child that cannot be loaded
/// is reported and counted as one failure.
async fn produce_index(
    children: Vec<String>,
    base_dir: Option<PathBuf>,
    tx: Sender<Item>,
    total: Arc<Total>,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
) -> Result<()> {
    for child in children {
        let loaded = match Location::parse(&child, base_dir.as_deref()) {
            Ok(location) => sitemap::load(&location, &client, timeout).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(Sitemap::Urls(urls)) => {
                total.add(urls.len() as u64);
                if !send_all(urls, &tx).await {
                    return Ok(());
                }
            }
            Ok(Sitemap::Index(_)) => {
                eprintln!(
                    "outpostctl: warning: {child} is a sitemap index inside an index; \
                     only one level is followed, skipped"
                );
            }
            Err(e) => {
                eprintln!("outpostctl: warning: {e:#}");
                total.add(1);
                if tx
                    .send(Item::Bad("sitemap not loaded".to_string()))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
    }
    total.finish();
    Ok(())
}

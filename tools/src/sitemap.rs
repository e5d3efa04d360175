//! Sitemaps (`warm --sitemap FILE_OR_URL`): the sitemaps.org XML protocol.
//!
//! A `<urlset>` lists pages in `<url><loc>…</loc></url>`; a `<sitemapindex>`
//! lists further sitemaps in `<sitemap><loc>…</loc></sitemap>`. Indexes are
//! followed one level (an index inside an index is skipped with a warning).
//! Element names are matched by local name, so namespace prefixes do not
//! matter; `<loc>` text may use entities (`&amp;`) and CDATA.
//!
//! Sitemaps are read from a file or fetched directly from an `http://` URL
//! (not through the node). A `<loc>` in an index that is neither `http://` nor
//! `https://` is taken as a file path relative to the index file (handy for
//! offline lists). Gzip-compressed sitemaps are refused with a clear message:
//! decompress them first. One sitemap holds at most [`MAX_BODY`] bytes
//! (the protocol's limit is 50 MB).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::Uri;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::http::read_body_limited;

/// The largest sitemap accepted, in bytes.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// A parsed sitemap document.
#[derive(Debug, PartialEq, Eq)]
pub enum Sitemap {
    /// `<urlset>`: page URLs.
    Urls(Vec<String>),
    /// `<sitemapindex>`: locations of further sitemaps.
    Index(Vec<String>),
}

/// Where a sitemap lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local file.
    File(PathBuf),
    /// An `http://` URL.
    Http(Uri),
}

impl Location {
    /// Interprets `--sitemap` (or an index's `<loc>`, with `base_dir` the
    /// directory of a local index file).
    pub fn parse(raw: &str, base_dir: Option<&Path>) -> Result<Self> {
        if raw.starts_with("https://") {
            bail!(
                "{raw}: https is not supported (outpostctl has no TLS); download it and pass the file"
            );
        }
        if raw.starts_with("http://") {
            let uri = raw
                .parse()
                .with_context(|| format!("invalid sitemap URL {raw:?}"))?;
            return Ok(Self::Http(uri));
        }
        let path = Path::new(raw.strip_prefix("file://").unwrap_or(raw));
        Ok(Self::File(match base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Http(u) => write!(f, "{u}"),
        }
    }
}

/// Reads and parses the sitemap at `location`.
pub async fn load(
    location: &Location,
    client: &Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
) -> Result<Sitemap> {
    let bytes = match location {
        Location::File(path) => {
            let meta = tokio::fs::metadata(path)
                .await
                .with_context(|| format!("cannot read sitemap {}", path.display()))?;
            if meta.len() > MAX_BODY as u64 {
                bail!("sitemap {} is larger than {MAX_BODY} bytes", path.display());
            }
            Bytes::from(
                tokio::fs::read(path)
                    .await
                    .with_context(|| format!("cannot read sitemap {}", path.display()))?,
            )
        }
        Location::Http(uri) => fetch(uri, client, timeout).await?,
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        bail!("sitemap {location} is gzip-compressed: decompress it and pass the file");
    }
    parse(&bytes[..]).with_context(|| format!("invalid sitemap {location}"))
}

async fn fetch(
    uri: &Uri,
    client: &Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
) -> Result<Bytes> {
    let request = http::Request::get(uri.clone())
        .header(http::header::USER_AGENT, crate::USER_AGENT)
        .body(Empty::new())
        .context("building the sitemap request")?;
    let work = async {
        let response = client.request(request).await.map_err(|e| {
            anyhow!(
                "cannot fetch sitemap {uri}: {}",
                crate::http::classify_error(&e)
            )
        })?;
        let status = response.status();
        if !status.is_success() {
            bail!("cannot fetch sitemap {uri}: status {status}");
        }
        read_body_limited(response.into_body(), MAX_BODY)
            .await
            .with_context(|| format!("cannot fetch sitemap {uri}"))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("cannot fetch sitemap {uri}: timed out after {timeout:?}"))?
}

/// Parses a sitemap or sitemap index document.
pub fn parse<R: BufRead>(input: R) -> Result<Sitemap> {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut root: Option<Vec<u8>> = None;
    let mut locs = Vec::new();
    // `Some(text)` while inside a `<loc>` element.
    let mut current: Option<String> = None;
    loop {
        match reader
            .read_event_into(&mut buf)
            .with_context(|| format!("XML error at byte {}", reader.buffer_position()))?
        {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_vec();
                if root.is_none() {
                    root = Some(name);
                } else if name == b"loc" {
                    current = Some(String::new());
                }
            }
            Event::Empty(e) if root.is_none() => {
                root = Some(e.local_name().as_ref().to_vec());
            }
            Event::End(e) => {
                if e.local_name().as_ref() == b"loc"
                    && let Some(text) = current.take()
                {
                    let text = text.trim();
                    if !text.is_empty() {
                        locs.push(text.to_string());
                    }
                }
            }
            Event::Text(t) => {
                if let Some(cur) = current.as_mut() {
                    cur.push_str(&t.decode().context("undecodable text")?);
                }
            }
            Event::CData(t) => {
                if let Some(cur) = current.as_mut() {
                    cur.push_str(&t.decode().context("undecodable CDATA")?);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(cur) = current.as_mut() {
                    if let Some(c) = r.resolve_char_ref().context("bad character reference")? {
                        cur.push(c);
                    } else {
                        let name = r.decode().context("undecodable entity")?;
                        let entity = format!("&{name};");
                        let resolved = quick_xml::escape::unescape(&entity)
                            .map_err(|_| anyhow!("unknown entity {entity}"))?;
                        cur.push_str(&resolved);
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    match root.as_deref() {
        Some(b"urlset") => Ok(Sitemap::Urls(locs)),
        Some(b"sitemapindex") => Ok(Sitemap::Index(locs)),
        Some(other) => bail!(
            "root element is <{}>, expected <urlset> or <sitemapindex>",
            String::from_utf8_lossy(other)
        ),
        None => bail!("no root element"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn urlset_with_namespace_entities_and_cdata() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <!-- a comment <loc>http://no/</loc> -->
  <url><loc>http://example.com/a?x=1&amp;y=2</loc><lastmod>2024-01-01</lastmod></url>
  <url><loc>
      http://example.com/b
  </loc></url>
  <url><loc><![CDATA[http://example.com/c?p=<1>]]></loc></url>
  <url><loc>http://example.com/&#100;</loc></url>
  <url><loc></loc></url>
</urlset>"#;
        assert_eq!(
            parse(xml.as_bytes()).unwrap(),
            Sitemap::Urls(vec![
                "http://example.com/a?x=1&y=2".into(),
                "http://example.com/b".into(),
                "http://example.com/c?p=<1>".into(),
                "http://example.com/d".into(),
            ])
        );
    }

    #[test]
    fn index_with_prefix() {
        let xml = r#"<sm:sitemapindex xmlns:sm="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sm:sitemap><sm:loc>http://example.com/s1.xml</sm:loc></sm:sitemap>
  <sm:sitemap><sm:loc>s2.xml</sm:loc><sm:lastmod>x</sm:lastmod></sm:sitemap>
</sm:sitemapindex>"#;
        assert_eq!(
            parse(xml.as_bytes()).unwrap(),
            Sitemap::Index(vec!["http://example.com/s1.xml".into(), "s2.xml".into()])
        );
    }

    #[test]
    fn rejects_non_sitemaps_and_broken_xml() {
        assert!(parse("<html><body/></html>".as_bytes()).is_err());
        assert!(parse("".as_bytes()).is_err());
        assert!(parse("<urlset><url><loc>http://a/</url></urlset>".as_bytes()).is_err());
        assert!(parse("<urlset><url><loc>&bogus;</loc></url></urlset>".as_bytes()).is_err());
        assert_eq!(
            parse("<urlset/>".as_bytes()).unwrap(),
            Sitemap::Urls(Vec::new())
        );
    }

    #[test]
    fn locations() {
        let base = Path::new("/srv/maps");
        assert_eq!(
            Location::parse("s2.xml", Some(base)).unwrap(),
            Location::File(PathBuf::from("/srv/maps/s2.xml"))
        );
        assert_eq!(
            Location::parse("file:///abs/s.xml", Some(base)).unwrap(),
            Location::File(PathBuf::from("/abs/s.xml"))
        );
        assert!(matches!(
            Location::parse("http://h:1/s.xml", None).unwrap(),
            Location::Http(_)
        ));
        assert!(Location::parse("https://h/s.xml", None).is_err());
    }
}

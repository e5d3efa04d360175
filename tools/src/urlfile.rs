//! Reading a URL list (`warm --urls FILE`): one URL per line, blank lines and
//! lines starting with `#` skipped, surrounding whitespace trimmed.
//!
//! The file is streamed: one line at a time through a 64 KiB buffer, so a list
//! of millions of URLs never sits in memory. A line longer than
//! [`MAX_LINE`] is skipped (reported as an invalid entry) without being
//! buffered whole. Invalid UTF-8 is replaced, and then fails URL parsing.
//!
//! [`count_urls`] makes the same decisions over a file in a blocking pass, so
//! the progress display can learn the total (for the ETA) while warming runs.

use std::io::{self, BufRead};
use std::path::Path;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// The longest line accepted, in bytes (URLs longer than this are not URLs
/// any server accepts).
pub const MAX_LINE: usize = 64 * 1024;

/// One entry of a URL list.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A URL to warm (trimmed; not yet validated).
    Url(String),
    /// A line that was too long (its 1-based line number).
    TooLong(u64),
}

/// Is this (trimmed) line a URL entry rather than a blank or comment?
fn is_entry(line: &[u8]) -> bool {
    !line.is_empty() && line[0] != b'#'
}

/// Streams the entries of a URL list.
pub struct UrlLines<R> {
    reader: R,
    buf: Vec<u8>,
    line_no: u64,
}

impl<R: AsyncBufRead + Unpin> UrlLines<R> {
    /// Wraps a buffered reader.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buf: Vec::with_capacity(256),
            line_no: 0,
        }
    }

    /// The next entry, or `None` at end of input.
    pub async fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        loop {
            self.buf.clear();
            let limit = (MAX_LINE + 1) as u64;
            let n = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
                .await?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            if self.buf.len() > MAX_LINE && self.buf.last() != Some(&b'\n') {
                // Discard the rest of the overlong line, chunk by chunk.
                loop {
                    self.buf.clear();
                    let n = (&mut self.reader)
                        .take(limit)
                        .read_until(b'\n', &mut self.buf)
                        .await?;
                    if n == 0 || self.buf.last() == Some(&b'\n') {
                        break;
                    }
                }
                return Ok(Some(Entry::TooLong(self.line_no)));
            }
            let line = self.buf.trim_ascii();
            if is_entry(line) {
                return Ok(Some(Entry::Url(String::from_utf8_lossy(line).into_owned())));
            }
        }
    }
}

/// Counts the entries of a URL list file in one blocking pass (same rules as
/// [`UrlLines`]; overlong lines count too, as they are reported).
pub fn count_urls(path: &Path) -> io::Result<u64> {
    let file = std::fs::File::open(path)?;
    count_entries(io::BufReader::with_capacity(64 * 1024, file))
}

fn count_entries<R: BufRead>(mut reader: R) -> io::Result<u64> {
    let mut count = 0u64;
    // Scans bytes without building lines: at each line start, skip leading
    // whitespace and look at the first non-blank byte.
    let mut at_line_start = true;
    let mut decided = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(count);
        }
        for &b in chunk {
            if b == b'\n' {
                at_line_start = true;
                decided = false;
                continue;
            }
            if at_line_start && !decided {
                if b.is_ascii_whitespace() {
                    continue;
                }
                decided = true;
                at_line_start = false;
                if b != b'#' {
                    count += 1;
                }
            }
        }
        let len = chunk.len();
        reader.consume(len);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn all(input: &[u8]) -> Vec<Entry> {
        let mut lines = UrlLines::new(tokio::io::BufReader::new(input));
        let mut out = Vec::new();
        while let Some(e) = lines.next_entry().await.unwrap() {
            out.push(e);
        }
        out
    }

    #[tokio::test]
    async fn skips_blanks_and_comments_and_trims() {
        let input =
            b"# header\n\nhttp://a/1\n  http://a/2  \r\n\t\n  # indented comment\nhttp://a/3";
        assert_eq!(
            all(input).await,
            vec![
                Entry::Url("http://a/1".into()),
                Entry::Url("http://a/2".into()),
                Entry::Url("http://a/3".into()),
            ]
        );
        assert_eq!(count_entries(&input[..]).unwrap(), 3);
        assert_eq!(count_entries(&b""[..]).unwrap(), 0);
        assert_eq!(count_entries(&b"\n\n#x\n"[..]).unwrap(), 0);
    }

    #[tokio::test]
    async fn overlong_line_is_reported_and_skipped() {
        let mut input = b"http://a/1\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE * 3 + 7));
        input.extend(b"\nhttp://a/2\n");
        assert_eq!(
            all(&input).await,
            vec![
                Entry::Url("http://a/1".into()),
                Entry::TooLong(2),
                Entry::Url("http://a/2".into()),
            ]
        );
        assert_eq!(count_entries(&input[..]).unwrap(), 3);
    }

    #[tokio::test]
    async fn line_of_exactly_max_is_kept() {
        let mut input = vec![b'y'; MAX_LINE];
        input.push(b'\n');
        let entries = all(&input).await;
        assert!(matches!(&entries[..], [Entry::Url(u)] if u.len() == MAX_LINE));
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced() {
        let entries = all(b"http://a/\xff\n").await;
        assert_eq!(entries, vec![Entry::Url("http://a/\u{fffd}".into())]);
    }
}

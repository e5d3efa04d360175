//! The persisted purge log: `purge.log` under `[storage] path`, one JSON
//! object per line, appended and fsynced (`File::sync_data`) before a purge
//! is acknowledged, replayed at start-up, compacted when it grows.
//!
//! Line format (`at` is milliseconds since the Unix epoch):
//!
//! ```text
//! {"at":1718000000000,"kind":"url","pattern":"example.com/a.png","soft":false}
//! {"at":1718000000000,"kind":"prefix","pattern":"example.com/img/","soft":true}
//! {"at":1718000000000,"kind":"tag","pattern":"product-42","soft":false}
//! {"at":1715000000000,"kind":"floor"}
//! {"kind":"outbox","id":"fra-1-1718000000000-9f3a","message":"{...}"}
//! {"kind":"sent","id":"fra-1-1718000000000-9f3a"}
//! {"kind":"applied","seq":4711}
//! ```
//!
//! The last three exist in a fleet (`purge::stream`): a purge waiting to be
//! published to the purge stream, its acknowledgement, and how far the
//! node has applied the stream.
//!
//! A line that does not parse (a torn write after a crash, an edit by hand)
//! is skipped with a warning; loading never fails on content, only on I/O.
//! Compaction writes the live entries to `purge.log.tmp`, fsyncs it, renames
//! it over `purge.log` and fsyncs the directory, so a crash leaves either
//! the old or the new file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::bans::{Ban, BanKind};

/// The file name under the storage directory.
pub const FILE_NAME: &str = "purge.log";

/// One persisted line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Entry {
    Url {
        at: u64,
        pattern: String,
        soft: bool,
    },
    Prefix {
        at: u64,
        pattern: String,
        soft: bool,
    },
    Tag {
        at: u64,
        pattern: String,
        soft: bool,
    },
    /// The ban list's floor (see `bans`).
    Floor { at: u64 },
    /// A purge this node accepted for the fleet, as published to the purge
    /// stream (`message`, JSON), until the stream acknowledges it.
    Outbox { id: String, message: String },
    /// The stream acknowledged outbox entry `id`.
    Sent { id: String },
    /// Every purge of the stream up to this sequence is applied here.
    Applied { seq: u64 },
}

impl Entry {
    pub fn from_ban(b: &Ban) -> Entry {
        let (at, pattern, soft) = (b.at_ms, b.pattern.clone(), b.soft);
        match b.kind {
            BanKind::Url => Entry::Url { at, pattern, soft },
            BanKind::Prefix => Entry::Prefix { at, pattern, soft },
            BanKind::Tag => Entry::Tag { at, pattern, soft },
        }
    }

    /// The ban this line records; `None` for a floor line.
    pub fn to_ban(&self) -> Option<Ban> {
        let (kind, at, pattern, soft) = match self {
            Entry::Url { at, pattern, soft } => (BanKind::Url, at, pattern, soft),
            Entry::Prefix { at, pattern, soft } => (BanKind::Prefix, at, pattern, soft),
            Entry::Tag { at, pattern, soft } => (BanKind::Tag, at, pattern, soft),
            Entry::Floor { .. }
            | Entry::Outbox { .. }
            | Entry::Sent { .. }
            | Entry::Applied { .. } => return None,
        };
        Some(Ban {
            kind,
            pattern: pattern.clone(),
            at_ms: *at,
            soft: *soft,
        })
    }
}

/// The open log file.
#[derive(Debug)]
pub struct PurgeLog {
    dir: PathBuf,
    file: File,
    /// Lines in the file (including skipped ones).
    lines: u64,
}

impl PurgeLog {
    /// Opens (creating) `dir/purge.log` and reads every valid entry.
    pub fn open(dir: &Path) -> io::Result<(PurgeLog, Vec<Entry>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut entries = Vec::new();
        let mut lines = 0u64;
        let mut torn_tail = false;
        match File::open(&path) {
            Ok(f) => {
                let mut r = BufReader::new(f);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    if r.read_until(b'\n', &mut buf)? == 0 {
                        break;
                    }
                    lines += 1;
                    torn_tail = buf.last() != Some(&b'\n');
                    let text = String::from_utf8_lossy(&buf);
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Entry>(text) {
                        Ok(e) => entries.push(e),
                        Err(e) => tracing::warn!(
                            file = %path.display(),
                            line = lines,
                            error = %e,
                            "skipping an unreadable purge log line"
                        ),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        if torn_tail {
            // Terminate a torn last line so the next entry starts clean.
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        Ok((
            PurgeLog {
                dir: dir.to_path_buf(),
                file,
                lines,
            },
            entries,
        ))
    }

    /// Appends entries and makes them durable (`sync_data`) before
    /// returning.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(entries.len() * 96);
        for e in entries {
            serde_json::to_writer(&mut buf, e).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.lines += entries.len() as u64;
        Ok(())
    }

    /// Lines in the file.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Whether the file holds many more lines than `live` entries.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > 1024 && self.lines > 2 * live as u64
    }

    /// Replaces the file with exactly `entries`: write a temporary file,
    /// fsync it, rename it over the log, fsync the directory.
    pub fn compact(&mut self, entries: &[Entry]) -> io::Result<()> {
        let path = self.dir.join(FILE_NAME);
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::with_capacity(entries.len() * 96);
            for e in entries {
                serde_json::to_writer(&mut buf, e).map_err(io::Error::other)?;
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.lines = entries.len() as u64;
        Ok(())
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn url(at: u64, p: &str) -> Entry {
        Entry::Url {
            at,
            pattern: p.into(),
            soft: false,
        }
    }

    #[test]
    fn append_reload_skip_corrupt_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, e) = PurgeLog::open(dir.path()).unwrap();
        assert!(e.is_empty());
        log.append(&[url(1, "h/a"), Entry::Floor { at: 0 }])
            .unwrap();
        drop(log);
        // A corrupt line and a torn tail.
        let p = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{not json}\n{\"at\":5,\"kind\":\"tag\",\"pat")
            .unwrap();
        drop(f);
        let (mut log, e) = PurgeLog::open(dir.path()).unwrap();
        assert_eq!(e, vec![url(1, "h/a"), Entry::Floor { at: 0 }]);
        log.append(&[url(2, "h/b")]).unwrap();
        drop(log);
        let (mut log, e) = PurgeLog::open(dir.path()).unwrap();
        assert_eq!(e.len(), 3);
        log.compact(&[url(2, "h/b")]).unwrap();
        log.append(&[url(3, "h/c")]).unwrap();
        drop(log);
        let (_log, e) = PurgeLog::open(dir.path()).unwrap();
        assert_eq!(e, vec![url(2, "h/b"), url(3, "h/c")]);
        assert!(!dir.path().join("purge.log.tmp").exists());
    }
}

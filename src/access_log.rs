//! The access log file: `[log] access_log = "path"`, one line per request
//! as JSON or in the combined-like text format, buffered (written out every
//! second, on reopen and at shutdown, as nginx's `buffer=` does) and
//! reopened on SIGUSR1 so logrotate can move it away. Without a path the
//! access log goes to stderr with the other logs, through `tracing`.
//!
//! It owns the file and the line formats; the pipeline hands it what a
//! request did ([`Line`]).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use serde::Serialize;

use crate::config::{AccessLogFormat, LogConfig};
use crate::error::{Error, ErrorKind};

/// What one request did, as it is written.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    /// Unix time with milliseconds.
    pub time: f64,
    pub client: std::net::IpAddr,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub duration_ms: f64,
    pub cache: &'a str,
    pub outcome: &'a str,
    pub error: &'a str,
    pub rule: &'a str,
}

/// The open file.
pub struct Sink {
    path: PathBuf,
    format: AccessLogFormat,
    out: Mutex<BufWriter<File>>,
}

static SINK: ArcSwapOption<Sink> = ArcSwapOption::const_empty();

/// The buffer between writes to the file.
const BUFFER: usize = 64 << 10;

fn open(path: &Path) -> std::io::Result<BufWriter<File>> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(BufWriter::with_capacity(BUFFER, f))
}

/// Opens the file `cfg` names (a no-op without one).
pub fn install(cfg: &LogConfig) -> Result<(), Error> {
    let Some(path) = cfg.access_log_path.clone() else {
        return Ok(());
    };
    let out = open(&path).map_err(|e| {
        Error::new(
            ErrorKind::Setup,
            format!("log.access_log: cannot open {}: {e}", path.display()),
        )
    })?;
    SINK.store(Some(Arc::new(Sink {
        path,
        format: cfg.access_log_format,
        out: Mutex::new(out),
    })));
    Ok(())
}

/// The file, if the log goes to one.
#[inline]
pub fn sink() -> Option<Arc<Sink>> {
    SINK.load_full()
}

/// Writes out what is buffered.
pub fn flush() {
    if let Some(s) = sink() {
        let mut out = s.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.flush() {
            tracing::warn!(error = %e, path = %s.path.display(), "access log write failed");
        }
    }
}

/// Opens the file again by its path (after logrotate moved it): what was
/// buffered goes to the old file first. `Err` keeps the old one.
pub fn reopen() -> Result<(), String> {
    let Some(s) = sink() else {
        return Ok(());
    };
    let fresh = open(&s.path).map_err(|e| format!("cannot open {}: {e}", s.path.display()))?;
    let mut out = s.out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = out.flush();
    *out = fresh;
    Ok(())
}

impl Sink {
    /// Appends one line.
    pub fn write(&self, line: &Line<'_>) {
        let mut buf = Vec::with_capacity(256);
        match self.format {
            AccessLogFormat::Json => {
                if serde_json::to_writer(&mut buf, line).is_err() {
                    return;
                }
            }
            AccessLogFormat::Combined => combined(&mut buf, line),
        }
        buf.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.write_all(&buf) {
            drop(out);
            tracing::warn!(error = %e, path = %self.path.display(), "access log write failed");
        }
    }
}

/// `client - - [date] "METHOD path VERSION" status bytes "host" cache
/// outcome duration_ms error rule`.
fn combined(buf: &mut Vec<u8>, l: &Line<'_>) {
    let secs = l.time.max(0.0) as u64;
    let date =
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    let _ = write!(
        buf,
        "{} - - [{date}] \"{} {} {}\" {} {} \"{}\" cache={} outcome={} duration_ms={:.3} error={} rule={}",
        l.client,
        l.method,
        l.path.escape_debug(),
        l.version,
        l.status,
        l.bytes,
        l.host.escape_debug(),
        l.cache,
        l.outcome,
        l.duration_ms,
        l.error,
        l.rule,
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_write_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let line = Line {
            time: 1_700_000_000.5,
            client: "203.0.113.9".parse().unwrap(),
            method: "GET",
            host: "example.com",
            path: "/a \"b\"",
            version: "HTTP/1.1",
            status: 200,
            bytes: 1024,
            duration_ms: 1.5,
            cache: "hit",
            outcome: "complete",
            error: "-",
            rule: "-",
        };
        for (format, want) in [
            (AccessLogFormat::Json, "\"path\":\"/a \\\"b\\\"\""),
            (
                AccessLogFormat::Combined,
                "203.0.113.9 - - [Tue, 14 Nov 2023 22:13:20 GMT] \"GET /a \\\"b\\\" HTTP/1.1\" 200 1024 \"example.com\" cache=hit",
            ),
        ] {
            let path = dir.path().join(format!("{format:?}.log"));
            let s = Sink {
                path: path.clone(),
                format,
                out: Mutex::new(open(&path).unwrap()),
            };
            s.write(&line);
            s.out.lock().unwrap().flush().unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), 1);
            assert!(text.contains(want), "{text}");
        }
    }
}

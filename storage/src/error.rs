//! The crate's single error type: [`Error`] with an [`ErrorKind`].
//!
//! The cache layer decides what to do from the kind alone:
//! - [`ErrorKind::TooLarge`]: the object is over `max_object_size`; do not cache it, serve it
//!   from the origin as usual. Nothing was stored.
//! - [`ErrorKind::Corrupt`]: a chunk was missing, evicted or failed its checksum while reading a
//!   body; the object has already been dropped from the store; treat it as a miss (if nothing was
//!   sent yet) or abort the response.
//! - [`ErrorKind::Closed`]: the store was closed (shutdown in progress).
//! - [`ErrorKind::Config`], [`ErrorKind::Io`], [`ErrorKind::Locked`]: only from [`crate::Store::open`]
//!   or `close`; they are our fault, never the client's or the origin's.

use std::fmt;

/// What went wrong, coarse enough to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid (checked by `open`).
    Config,
    /// An I/O error opening, recovering or closing the disk tier.
    Io,
    /// Another store (this or another process) holds the disk directory.
    Locked,
    /// A body chunk is missing (evicted, lost in a crash) or failed its checksum.
    Corrupt,
    /// The object exceeds `max_object_size`: don't cache it. Nothing was stored.
    TooLarge,
    /// The store has been closed.
    Closed,
    /// An internal error of the underlying cache engine.
    Internal,
}

impl ErrorKind {
    /// A short stable label, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Io => "io",
            ErrorKind::Locked => "locked",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Closed => "closed",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error type of `outpost-storage`.
#[derive(Debug, thiserror::Error)]
#[error("storage {kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Source>,
}

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub(crate) fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True for a missing or corrupt chunk (the object is gone; treat as a miss).
    pub fn is_corrupt(&self) -> bool {
        self.kind == ErrorKind::Corrupt
    }

    /// True if the object is over `max_object_size` (don't cache it).
    pub fn is_too_large(&self) -> bool {
        self.kind == ErrorKind::TooLarge
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub(crate) fn io(message: impl Into<String>, e: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, message).with_source(e)
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    pub(crate) fn closed() -> Self {
        Self::new(ErrorKind::Closed, "the store is closed")
    }

    pub(crate) fn foyer(message: impl Into<String>, e: foyer::Error) -> Self {
        let kind = match e.kind() {
            foyer::ErrorKind::Io => ErrorKind::Io,
            foyer::ErrorKind::Config => ErrorKind::Config,
            foyer::ErrorKind::Closed | foyer::ErrorKind::ChannelClosed => ErrorKind::Closed,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, message).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_stable_labels_and_display() {
        let e = Error::new(ErrorKind::TooLarge, "5 GiB > 1 GiB");
        assert!(e.is_too_large());
        assert!(!e.is_corrupt());
        assert_eq!(e.kind().as_str(), "too_large");
        assert_eq!(e.to_string(), "storage too_large: 5 GiB > 1 GiB");
        let c = Error::corrupt("chunk 3 missing");
        assert!(c.is_corrupt());
        let io = Error::io("open", std::io::Error::other("boom"));
        assert_eq!(io.kind(), ErrorKind::Io);
        assert!(std::error::Error::source(&io).is_some());
    }
}

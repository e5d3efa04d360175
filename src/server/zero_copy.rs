//! The proxy listener's socket: a `TcpStream` whose writes send cached bodies with
//! `sendfile(2)` instead of copying them into the socket.
//!
//! Large cached values live in the storage crate's zero-copy arena
//! (`outpost_storage::arena`): memfd pages mapped into the process. hyper hands its
//! connection the body frames as they are (vectored writes queue `Bytes`, they do not flatten
//! them), so a write whose buffer is a slice of an arena value is recognised by its address
//! and sent from the memfd at the matching offset. The kernel then passes page references to
//! the socket and skips the copy that `write(2)` makes — the copy that was 35 % of the CPU of
//! a 100 KiB hit and 48 % of a 1 MiB hit. Anything else (headers, small or uncached bodies,
//! HTTP/2 frames built by h2) is written as usual.
//!
//! When headers precede an arena slice in one vectored write, they are sent with `MSG_MORE`
//! first so they leave in the same segment as the start of the body.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Bytes a listener's connections sent with `sendfile(2)` (shared by them, striped so the
/// cores serving them do not share its cache line).
pub use crate::metrics::SendfileBytes;

/// A client connection of the proxy listener.
#[derive(Debug)]
pub struct ZeroCopyStream {
    inner: TcpStream,
    sent: SendfileBytes,
}

impl ZeroCopyStream {
    pub fn new(inner: TcpStream, sent: SendfileBytes) -> Self {
        Self { inner, sent }
    }
}

#[cfg(target_os = "linux")]
mod send {
    use super::*;
    use outpost_storage::ZERO_COPY_MIN;
    use outpost_storage::arena::{FileRange, locate};
    use rustix::net::{SendAncillaryBuffer, SendFlags};

    use std::sync::atomic::AtomicBool;

    /// Set when the kernel refused `sendfile` from the arena (a kernel or socket type without
    /// it): every later write then copies, as without the arena.
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

    /// The arena file range behind `buf`, if it is worth a `sendfile`.
    pub(super) fn range(buf: &[u8]) -> Option<FileRange<'_>> {
        if buf.len() < ZERO_COPY_MIN / 2 || UNSUPPORTED.load(Relaxed) {
            return None;
        }
        locate(buf)
    }

    /// Whether `e` says `sendfile` cannot work here at all (not a failure of this connection).
    pub(super) fn is_unsupported(e: &io::Error) -> bool {
        use rustix::io::Errno;
        [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP]
            .iter()
            .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
    }

    /// [`is_unsupported`], and if so turns `sendfile` off for the process (one warning).
    fn unsupported(e: &io::Error) -> bool {
        let hit = is_unsupported(e);
        if hit && !UNSUPPORTED.swap(true, Relaxed) {
            tracing::warn!(error = %e, "sendfile refused: cached bodies are copied from now on");
        }
        hit
    }

    /// One non-blocking `sendfile` of up to `len` bytes from `r`.
    pub(super) fn try_sendfile(s: &TcpStream, r: &FileRange<'_>, len: usize) -> io::Result<usize> {
        s.try_io(Interest::WRITABLE, || {
            let mut off = r.offset();
            Ok(rustix::fs::sendfile(s, r, Some(&mut off), len)?)
        })
    }

    /// One non-blocking `sendmsg(MSG_MORE)` of `bufs` (more data follows at once).
    pub(super) fn try_send_more(s: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        s.try_io(Interest::WRITABLE, || {
            let mut anc = SendAncillaryBuffer::default();
            let flags = SendFlags::MORE | SendFlags::NOSIGNAL;
            Ok(rustix::net::sendmsg(s, bufs, &mut anc, flags)?)
        })
    }

    impl ZeroCopyStream {
        /// `None`: not an arena write (or `sendfile` is unavailable): write `bufs` as usual.
        pub(super) fn poll_zero_copy(
            &self,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Option<Poll<io::Result<usize>>> {
            let (i, r) = bufs
                .iter()
                .enumerate()
                .find_map(|(i, b)| range(b).map(|r| (i, r)))?;
            let len = bufs[i].len();
            let prefix = &bufs[..i];
            let prefix_len: usize = prefix.iter().map(|b| b.len()).sum();
            Some(loop {
                match self.inner.poll_write_ready(cx) {
                    Poll::Pending => break Poll::Pending,
                    Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let mut sent = 0;
                if prefix_len > 0 {
                    match try_send_more(&self.inner, prefix) {
                        Ok(n) if n < prefix_len => break Poll::Ready(Ok(n)),
                        Ok(n) => sent = n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => break Poll::Ready(Err(e)),
                    }
                }
                match try_sendfile(&self.inner, &r, len) {
                    Ok(n) => {
                        self.sent.add(n as u64);
                        break Poll::Ready(Ok(sent + n));
                    }
                    // Bytes already sent must be reported; the rest is retried by the caller.
                    Err(e) if sent > 0 => {
                        unsupported(&e);
                        break Poll::Ready(Ok(sent));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if unsupported(&e) => return None,
                    Err(e) => break Poll::Ready(Err(e)),
                }
            })
        }
    }
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        #[cfg(target_os = "linux")]
        if let Some(p) = self.poll_zero_copy(cx, &[IoSlice::new(buf)]) {
            return p;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        #[cfg(target_os = "linux")]
        if let Some(p) = self.poll_zero_copy(cx, bufs) {
            return p;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::send::is_unsupported;
    use std::io;

    #[test]
    fn only_kernel_refusals_turn_sendfile_off() {
        let errno = |n: rustix::io::Errno| io::Error::from_raw_os_error(n.raw_os_error());
        assert!(is_unsupported(&errno(rustix::io::Errno::INVAL)));
        assert!(is_unsupported(&errno(rustix::io::Errno::NOSYS)));
        assert!(is_unsupported(&errno(rustix::io::Errno::OPNOTSUPP)));
        // A client that went away, or a full socket, is about this connection only.
        assert!(!is_unsupported(&errno(rustix::io::Errno::PIPE)));
        assert!(!is_unsupported(&errno(rustix::io::Errno::CONNRESET)));
        assert!(!is_unsupported(&errno(rustix::io::Errno::AGAIN)));
        assert!(!is_unsupported(&io::Error::other("no errno")));
    }
}

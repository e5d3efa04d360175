//! The bytes a client sends on a connection served by hyper, read through
//! a scanner that, on an HTTP/2 connection (one that starts with the client
//! preface, RFC 9113 §3.4), follows the frame headers (§4.1) and counts the
//! control frames into the connection's [`ResetMeter`]: SETTINGS and PING
//! that are not acknowledgements, PRIORITY, RST_STREAM, WINDOW_UPDATE and
//! DATA without content or end of stream. Each costs the node an answer
//! or bookkeeping and the client nothing; h2 sets no limit on them.
//!
//! Any other connection (HTTP/1.1) is recognised by its first bytes and
//! passed through untouched. Payloads are skipped, never copied.
//!
//! It knows frame headers only, never what the frames say.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::abuse::ResetMeter;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where the scanner is in the byte stream.
#[derive(Debug)]
enum State {
    /// Matched this much of the preface so far.
    Preface(usize),
    /// Not HTTP/2: nothing to scan.
    Plain,
    /// Collecting a frame header.
    Header { got: usize, buf: [u8; 9] },
    /// Skipping a frame's payload.
    Payload(u32),
}

/// A connection's reading side, scanned.
pub struct Scanned<IO> {
    inner: IO,
    state: State,
    meter: Arc<ResetMeter>,
}

impl<IO> Scanned<IO> {
    pub fn new(inner: IO, meter: Arc<ResetMeter>) -> Scanned<IO> {
        Scanned {
            inner,
            state: State::Preface(0),
            meter,
        }
    }

    /// Follows `bytes` just read; returns the control frames among them.
    fn scan(&mut self, mut bytes: &[u8]) -> u32 {
        let mut control = 0;
        while !bytes.is_empty() {
            match &mut self.state {
                State::Plain => return control,
                State::Preface(n) => {
                    let k = (PREFACE.len() - *n).min(bytes.len());
                    if bytes[..k] != PREFACE[*n..*n + k] {
                        self.state = State::Plain;
                        return control;
                    }
                    *n += k;
                    bytes = &bytes[k..];
                    if *n == PREFACE.len() {
                        self.meter.set_h2();
                        self.state = State::Header {
                            got: 0,
                            buf: [0; 9],
                        };
                    }
                }
                State::Header { got, buf } => {
                    let k = (9 - *got).min(bytes.len());
                    buf[*got..*got + k].copy_from_slice(&bytes[..k]);
                    *got += k;
                    bytes = &bytes[k..];
                    if *got == 9 {
                        let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]);
                        let (kind, flags) = (buf[3], buf[4]);
                        if is_control(kind, flags, len) {
                            control += 1;
                        }
                        self.state = if len == 0 {
                            State::Header {
                                got: 0,
                                buf: [0; 9],
                            }
                        } else {
                            State::Payload(len)
                        };
                    }
                }
                State::Payload(left) => {
                    let k = (*left as usize).min(bytes.len());
                    *left -= k as u32;
                    bytes = &bytes[k..];
                    if *left == 0 {
                        self.state = State::Header {
                            got: 0,
                            buf: [0; 9],
                        };
                    }
                }
            }
        }
        control
    }
}

/// Frames that make the node work without carrying a request or content
/// (RFC 9113 §6).
fn is_control(kind: u8, flags: u8, len: u32) -> bool {
    const ACK: u8 = 0x1;
    const END_STREAM: u8 = 0x1;
    match kind {
        // DATA with nothing in it and no end of stream.
        0x0 => len == 0 && flags & END_STREAM == 0,
        // PRIORITY, RST_STREAM, WINDOW_UPDATE.
        0x2 | 0x3 | 0x8 => true,
        // SETTINGS and PING that are not acknowledgements.
        0x4 | 0x6 => flags & ACK == 0,
        _ => false,
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Scanned<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && !matches!(self.state, State::Plain) {
            let this = &mut *self;
            let control = this.scan(&buf.filled()[before..]);
            if control > 0 {
                this.meter.control_frames(control);
            }
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Scanned<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::abuse::Limits;
    use std::time::Duration;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn scanned() -> Scanned<tokio::io::Empty> {
        let meter = ResetMeter::new(Limits {
            resets_per_second: 100,
            control_frames_per_second: 100,
            send_timeout: Duration::from_secs(60),
            h2_idle_timeout: Duration::from_secs(60),
            keepalive_requests: 0,
        });
        Scanned::new(tokio::io::empty(), meter)
    }

    #[test]
    fn control_frames_are_counted_across_any_split_of_the_bytes() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, &[0; 6])); // SETTINGS
        bytes.extend(frame(0x4, 0x1, &[])); // SETTINGS ACK: not counted
        bytes.extend(frame(0x1, 0x5, &[0x82; 20])); // HEADERS
        bytes.extend(frame(0x6, 0, &[0; 8])); // PING
        bytes.extend(frame(0x0, 0x1, &[7; 100])); // DATA with content
        bytes.extend(frame(0x0, 0, &[])); // empty DATA
        bytes.extend(frame(0x8, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE
        for split in [1, 2, 5, 9, 10, 24, 25, 1000] {
            let mut s = scanned();
            let n: u32 = bytes.chunks(split).map(|c| s.scan(c)).sum();
            assert_eq!(n, 4, "split {split}");
        }
    }

    #[test]
    fn http1_is_passed_through_unscanned() {
        let mut s = scanned();
        assert_eq!(s.scan(b"GET / HTTP/1.1\r\n"), 0);
        assert!(matches!(s.state, State::Plain));
        let mut s = scanned();
        assert_eq!(s.scan(b"PRI * HTTP/1.1"), 0);
        assert!(matches!(s.state, State::Plain));
    }
}

//! A client request's content on its way to an origin, and the guard the
//! pipeline puts on it: at most `max_body_bytes` (413 beyond, however it
//! is framed: a chunked body is counted as it streams) and no pause between
//! two pieces longer than `body_read_timeout` (408). A tripped guard ends
//! the body with an error, so the origin request is abandoned, and records
//! why in a [`Trip`] the pipeline reads to answer the client.
//!
//! It knows nothing of sites or configuration: the pipeline hands it the
//! two limits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// A client request's content: none, hyper's stream, or hyper's stream
/// under a guard. The server's own HTTP/1 path takes only requests without
/// content; everything else arrives through hyper.
#[derive(Debug)]
pub enum RequestBody {
    Empty,
    Hyper(Incoming),
    /// The content of an HTTP/2 stream on the node's own HTTP/2 server.
    H2(H2Body),
    Guarded(Guarded),
}

/// An HTTP/2 stream's content (RFC 9113 §6.1): each piece read gives its
/// flow-control capacity back at once (the node streams it on, it does not
/// keep it), then the trailers, if any.
#[derive(Debug)]
pub struct H2Body {
    recv: h2::RecvStream,
    data_done: bool,
}

impl H2Body {
    pub fn new(recv: h2::RecvStream) -> H2Body {
        H2Body {
            recv,
            data_done: false,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(d))) => {
                    let _ = this.recv.flow_control().release_capacity(d.len());
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Ready(Ok(Some(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// The stream a guard is put on.
#[derive(Debug)]
enum Guardable {
    Hyper(Incoming),
    H2(H2Body),
}

impl Body for Guardable {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Guardable::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Guardable::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Guardable::Hyper(b) => b.is_end_stream(),
            Guardable::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Guardable::Hyper(b) => b.size_hint(),
            Guardable::H2(b) => b.size_hint(),
        }
    }
}

impl RequestBody {
    /// Whether the request has no (more) content.
    pub fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Hyper(b) => b.is_end_stream(),
            RequestBody::H2(b) => b.is_end_stream(),
            RequestBody::Guarded(g) => g.inner.is_end_stream(),
        }
    }

    /// Puts hyper's stream under a guard (`max_bytes` 0: no size limit;
    /// `idle` `None`: no timeout) and returns what it will say if it trips.
    /// A body without content needs no guard (`None`).
    pub fn guard(&mut self, max_bytes: u64, idle: Option<Duration>) -> Option<Trip> {
        if max_bytes == 0 && idle.is_none() {
            return None;
        }
        let inner = match std::mem::replace(self, RequestBody::Empty) {
            RequestBody::Hyper(b) => Guardable::Hyper(b),
            RequestBody::H2(b) => Guardable::H2(b),
            other => {
                *self = other;
                return None;
            }
        };
        let trip = Trip::default();
        *self = RequestBody::Guarded(Guarded {
            inner,
            left: if max_bytes == 0 { u64::MAX } else { max_bytes },
            idle,
            sleep: None,
            trip: trip.clone(),
        });
        Some(trip)
    }
}

/// Why a guarded body was cut off, shared with the pipeline.
#[derive(Debug, Clone, Default)]
pub struct Trip(Arc<AtomicU8>);

/// What a [`Trip`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    /// More content than `max_body_bytes`.
    TooLarge,
    /// A pause longer than `body_read_timeout`.
    TooSlow,
}

impl Trip {
    pub fn get(&self) -> Option<Tripped> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(Tripped::TooLarge),
            2 => Some(Tripped::TooSlow),
            _ => None,
        }
    }

    fn set(&self, why: Tripped) {
        let v = match why {
            Tripped::TooLarge => 1,
            Tripped::TooSlow => 2,
        };
        self.0.store(v, Ordering::Release);
    }
}

/// hyper's stream under a size limit and an idle timeout.
#[derive(Debug)]
pub struct Guarded {
    inner: Guardable,
    /// Bytes still allowed.
    left: u64,
    idle: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    trip: Trip,
}

/// The error a tripped guard ends the body with.
#[derive(Debug, thiserror::Error)]
#[error("request content {0}")]
pub struct GuardError(&'static str);

impl Body for Guarded {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    let n = d.len() as u64;
                    if n > this.left {
                        this.trip.set(Tripped::TooLarge);
                        return Poll::Ready(Some(Err(Box::new(GuardError(
                            "larger than max_body_bytes",
                        )))));
                    }
                    this.left -= n;
                }
                if let (Some(idle), Some(s)) = (this.idle, this.sleep.as_mut()) {
                    s.as_mut().reset(Instant::now() + idle);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(idle) = this.idle else {
                    return Poll::Pending;
                };
                let s = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match s.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.trip.set(Tripped::TooSlow);
                        Poll::Ready(Some(Err(Box::new(GuardError(
                            "slower than body_read_timeout",
                        )))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! The body of a sliced answer ([`super::slice`]): the bytes a request
//! selected, read slice after slice as the client takes them, each slice
//! from the store or the fetch of it in flight, asked for only when the
//! body reaches it. A slice that ends early or is of another version cuts
//! the answer off (its head is gone): never a wrong byte.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::Proxy;
use super::cached::Ctx;
use super::slice::{Got, Piece, Slice};
use crate::cache::slice::Representation;
use crate::cache::slice::slice_key;
use crate::cache::stored_body::{InnerBody, Segment, fill_body, stored_body};
use crate::error::BoxError;
use crate::error::{Error, ErrorKind};
use crate::metrics::Counters;

/// The body of a sliced answer: bytes `next..=end`, slice after slice.
pub(super) struct Walk {
    pub(super) proxy: Arc<Proxy>,
    pub(super) ctx: Arc<Ctx>,
    pub(super) size: u64,
    pub(super) rep: Representation,
    /// The next byte to send, and the last one.
    pub(super) next: u64,
    pub(super) end: u64,
    /// The time slices are judged fresh at (`only-if-cached`: when the
    /// answer started); `None`: when each is reached.
    pub(super) as_of: Option<SystemTime>,
    /// The slice read before the head went out.
    pub(super) held: Option<Box<Slice>>,
    /// The piece being sent, and how many of its bytes are still to come.
    pub(super) current: Option<InnerBody>,
    pub(super) left: u64,
    /// Cut off: nothing more is sent.
    pub(super) done: bool,
}

fn cut(mut w: Walk, e: BoxError) -> Option<(Result<Frame<Bytes>, BoxError>, Walk)> {
    Counters::global().cut_off();
    w.current = None;
    w.done = true;
    w.held = None;
    Some((Err(e), w))
}

async fn step(mut w: Walk) -> Option<(Result<Frame<Bytes>, BoxError>, Walk)> {
    loop {
        if let Some(b) = w.current.as_mut() {
            match b.frame().await {
                Some(Ok(f)) => {
                    let n = f.data_ref().map_or(0, |d| d.len() as u64);
                    if n > w.left {
                        return cut(w, "a slice sent more bytes than it holds".into());
                    }
                    w.left -= n;
                    return Some((Ok(f), w));
                }
                Some(Err(e)) => return cut(w, e),
                None if w.left > 0 => return cut(w, "a slice ended early".into()),
                None => w.current = None,
            }
        }
        if w.done || w.next > w.end {
            return None;
        }
        let index = w.next / w.size;
        let s = match w.held.take().filter(|s| s.index == index) {
            Some(s) => s,
            None => {
                let got =
                    Box::pin(w.proxy.next_slice(&w.ctx, w.size, index, &w.rep, w.as_of)).await;
                match got {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "sliced answer cut off");
                        return cut(w, Box::new(e));
                    }
                }
            }
        };
        let offset = w.next - s.bounds.start;
        let take = w.end.min(s.bounds.end) - w.next + 1;
        w.current = Some(match s.piece {
            Piece::Stored(h) => stored_body(h, vec![Segment::Stored { offset, len: take }]),
            Piece::Fill(r) => fill_body(r, offset, Some(take)),
        });
        w.left = take;
        w.next += take;
    }
}

impl Walk {
    /// The response body.
    pub(super) fn into_body(self) -> InnerBody {
        StreamBody::new(futures_util::stream::unfold(self, step)).boxed_unsync()
    }
}

impl Proxy {
    /// Slice `index` for a body under way, which must be of `rep`. A stored
    /// slice of another version is dropped and fetched again; a fetched one
    /// of another version means the object changed: its slices are dropped
    /// (the next request starts it again) and the answer is cut off.
    /// Freshness is judged as of `as_of` when given.
    pub(super) async fn next_slice(
        &self,
        ctx: &Ctx,
        size: u64,
        index: u64,
        rep: &Representation,
        as_of: Option<SystemTime>,
    ) -> Result<Box<Slice>, Error> {
        for _ in 0..2 {
            let s = match self.get_slice(ctx, size, index, as_of).await? {
                Got::Slice(s) => s,
                Got::Answer(answer) => {
                    return Err(Error::new(
                        ErrorKind::OriginProtocol,
                        format!(
                            "the origin answered slice {index} with {}",
                            answer.0.status()
                        ),
                    ));
                }
                Got::Unusable => {
                    return Err(Error::new(
                        ErrorKind::OriginProtocol,
                        format!("the origin's slice {index} cannot be combined"),
                    ));
                }
            };
            if s.rep == *rep {
                return Ok(s);
            }
            if s.hit {
                self.cache_layer()?
                    .store()
                    .remove(&slice_key(&ctx.primary, index));
                continue;
            }
            break;
        }
        let cache = self.cache_layer()?;
        cache.remove_slices(&ctx.primary, size, rep.total);
        Counters::global().slice_restart();
        tracing::warn!(
            index,
            "the object changed at the origin between slices: its slices are dropped"
        );
        Err(Error::new(
            ErrorKind::OriginProtocol,
            "the object changed at the origin between slices",
        ))
    }
}

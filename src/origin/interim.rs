//! Interim (1xx) responses of one request (RFC 9110 §15.2) on their way
//! from the origin, or from the request pipeline (an Early Hints response
//! of its own), to the client connection that sends them before the final
//! response.
//!
//! The client connection creates an [`Interim`] and runs the request's
//! pipeline in its scope (a task-local entered around each poll of the
//! pipeline): the origin client queues the 1xx
//! heads it reads, the connection writes them out whenever the pipeline
//! waits. A request without such a connection (a background refresh, a
//! protocol that cannot send them) has no scope, and its 1xx are dropped,
//! as RFC 9110 §15.2 lets a proxy do for a client that cannot take them.
//! It knows nothing of sites or of how the heads are written.

use std::sync::{Arc, Mutex, MutexGuard};

use http::header::LINK;
use http::{HeaderMap, HeaderValue, StatusCode};

tokio::task_local! {
    static CURRENT: Interim;
}

/// What is done to the fields of an origin's 1xx before a client sees them
/// (the site's rules for the origin's response fields).
pub trait InterimFilter: Send + Sync {
    fn filter(&self, fields: &mut HeaderMap);
}

/// The interim responses of the request in progress on a connection.
#[derive(Clone, Default)]
pub struct Interim(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// Heads not yet written to the client.
    pending: Vec<(StatusCode, HeaderMap)>,
    /// `Link` values of the origin's 103s for this request.
    links: Vec<HeaderValue>,
    filter: Option<Arc<dyn InterimFilter>>,
    /// The connection's task, woken when a head is queued from another task
    /// (hyper's client connection).
    waker: Option<std::task::Waker>,
}

impl Interim {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` (one poll of a request's pipeline) with `self` as its interim
    /// responses. Entered per poll rather than wrapped around the pipeline's
    /// future: a wrapper's construction moves (copies) the whole future.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }

    /// The interim responses of the request this task is serving, if its
    /// connection can send them.
    pub fn current() -> Option<Interim> {
        CURRENT.try_with(Interim::clone).ok()
    }

    /// Starts a new request on the connection: nothing pending, no links.
    /// The filter stays until the next request that asks an origin sets
    /// its own (see [`Interim::set_filter`]).
    pub fn reset(&self) {
        let mut s = self.lock();
        s.pending.clear();
        s.links.clear();
        s.waker = None;
    }

    /// Sets how the origin's 1xx fields are filtered for the client; kept
    /// as it is when it is `f` already (a connection's requests are mostly
    /// for one site: no count that every core writes is touched).
    pub fn set_filter<F: InterimFilter + 'static>(&self, f: &Arc<F>) {
        let mut s = self.lock();
        if s.filter
            .as_ref()
            .is_some_and(|g| std::ptr::addr_eq(Arc::as_ptr(g), Arc::as_ptr(f)))
        {
            return;
        }
        s.filter = Some(f.clone());
    }

    /// Queues an interim response for the client.
    pub fn send(&self, status: StatusCode, fields: HeaderMap) {
        let mut s = self.lock();
        s.pending.push((status, fields));
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// Whether heads wait to be written; if none, `cx`'s task is woken when
    /// one is queued.
    pub fn poll_pending(&self, cx: &std::task::Context<'_>) -> bool {
        let mut s = self.lock();
        if s.pending.is_empty() {
            if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.waker = Some(cx.waker().clone());
            }
            false
        } else {
            true
        }
    }

    /// Queues an interim response the origin sent for this request (see
    /// [`from_origin`]), from any task.
    pub fn from_origin(&self, status: StatusCode, mut fields: HeaderMap) {
        let mut s = self.lock();
        if let Some(f) = s.filter.clone() {
            f.filter(&mut fields);
        }
        if status == StatusCode::EARLY_HINTS {
            let links: Vec<HeaderValue> = fields.get_all(LINK).iter().cloned().collect();
            s.links.extend(links);
        }
        s.pending.push((status, fields));
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    /// The heads to write now.
    pub fn take(&self) -> Vec<(StatusCode, HeaderMap)> {
        std::mem::take(&mut self.lock().pending)
    }

    /// The `Link` values of the 103s the origin sent for this request.
    pub fn links(&self) -> Vec<HeaderValue> {
        self.lock().links.clone()
    }
}

/// An interim response read from the origin for the request this task
/// serves: queued for its client, filtered by the site's rules; a 103's
/// `Link` values are remembered (RFC 8297).
pub fn from_origin(status: StatusCode, fields: HeaderMap) {
    let _ = CURRENT.try_with(|i| i.from_origin(status, fields));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_reach_the_scope_they_were_read_in() {
        let i = Interim::default();
        let mut link = HeaderMap::new();
        link.insert(LINK, HeaderValue::from_static("</s.css>; rel=preload"));
        i.enter(|| {
            from_origin(StatusCode::CONTINUE, HeaderMap::new());
            from_origin(StatusCode::EARLY_HINTS, link);
        });
        // Outside any scope: dropped.
        from_origin(StatusCode::EARLY_HINTS, HeaderMap::new());
        let cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(i.poll_pending(&cx));
        let heads = i.take();
        assert_eq!(heads.len(), 2);
        assert_eq!(heads[1].0, StatusCode::EARLY_HINTS);
        assert_eq!(i.links().len(), 1);
        assert!(!i.poll_pending(&cx));
        i.reset();
        assert!(i.links().is_empty());
    }
}

//! Request coalescing: concurrent misses for one key make one origin fetch,
//! and every waiter is sent the response head and the body chunks as they
//! arrive (not when the download ends).
//!
//! The first request for a key becomes the *leader*: it fetches the response
//! head from the origin and decides whether it may be shared. If it may, it
//! publishes the head and hands a [`FillWriter`] to a background task that
//! pumps the body into the store and into this fill at once; the leader and
//! every *follower* read the body through a [`FillReader`]. Because the pump
//! runs in its own task, a client that disconnects does not abort a store
//! write that others wait for.
//!
//! - If the response may not be shared, the leader calls
//!   [`FillWriter::release`]: followers go to the origin themselves and the
//!   key is remembered as uncacheable for a while (hit-for-pass), so later
//!   requests skip the wait.
//! - If the leader fails or is cancelled before publishing a head, the fill
//!   is abandoned and a waiting follower becomes the new leader.
//! - Followers wait for a head at most `wait_timeout`, then go to the origin.
//! - Body chunks are retained up to `window` bytes so late joiners can read
//!   from the start; past the window, chunks every reader has consumed are
//!   dropped, and the writer waits for the slowest reader (bounded memory,
//!   so objects larger than memory work). A request arriving after chunks
//!   were dropped is not coalesced.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

mod pass;

use pass::PassMemory;
pub use pass::{KeyHash, KeyHasher};

/// A cache key.
pub type Key = [u8; 32];

const SHARDS: usize = 64;

/// Why a follower was not served by the fill it joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// The response may not be shared: fetch it yourself.
    Released,
    /// The leader failed or went away before a head: try to lead.
    Abandoned,
    /// Waited longer than the wait timeout.
    Timeout,
    /// Joined too late: the start of the body is gone.
    TooLate,
}

/// The body ended with an error (the origin cut it off or the pump failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared origin response was cut off")]
pub struct CutOff;

enum HeadState<H> {
    Pending,
    Ready(Arc<H>),
    Released,
    Abandoned,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Complete,
    Failed,
}

struct State<H> {
    head: HeadState<H>,
    /// Absolute index of `chunks[0]`.
    first: u64,
    chunks: VecDeque<Bytes>,
    retained: usize,
    /// The body's end, as readers see it.
    end: End,
    /// The fill is over: committed to the store (or not stored), released or
    /// abandoned. Waiters ([`FillWaiter`]) wait for this, readers only for `end`.
    settled: bool,
    /// Reader id → absolute index of the next chunk it will read.
    cursors: HashMap<u64, u64>,
    next_reader: u64,
}

/// One in-flight fetch shared by its readers.
pub struct Fill<H> {
    state: Mutex<State<H>>,
    /// Wakes readers: head published, chunk pushed, end reached.
    changed: Notify,
    /// Wakes the writer: a reader advanced or left.
    advanced: Notify,
    window: usize,
}

impl<H> Fill<H> {
    fn lock(&self) -> MutexGuard<'_, State<H>> {
        // A poisoned lock only means a panic elsewhere; the state is still
        // consistent (every mutation is a single assignment or push).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_reader(self: &Arc<Self>) -> Option<FillReader<H>> {
        let mut st = self.lock();
        if st.first > 0 {
            return None;
        }
        let id = st.next_reader;
        st.next_reader += 1;
        st.cursors.insert(id, 0);
        Some(FillReader {
            fill: self.clone(),
            id,
        })
    }

    /// Drops chunks every reader has passed, while over the window.
    fn trim(&self, st: &mut State<H>) {
        let min = st.cursors.values().copied().min().unwrap_or(u64::MAX);
        while st.retained > self.window && st.first < min {
            match st.chunks.pop_front() {
                Some(c) => {
                    st.retained -= c.len();
                    st.first += 1;
                }
                None => break,
            }
        }
    }
}

/// The outcome of [`Coalescer::join`].
pub enum Join<H: Send + Sync + 'static> {
    /// Fetch from the origin, then publish or release through the writer.
    Leader(FillWriter<H>),
    /// Read the leader's response.
    Follower(FillReader<H>),
    /// The key is known to be uncacheable: go to the origin directly.
    Pass,
    /// A fetch is in flight but its start is gone (past the window): wait
    /// for it to end (it is then in the store) or go to the origin.
    Wait(FillWaiter<H>),
}

type Shard<H> = Mutex<HashMap<Key, Arc<Fill<H>>, KeyHash>>;

/// The per-key in-flight table plus the hit-for-pass memory.
pub struct Coalescer<H> {
    shards: Vec<Arc<Shard<H>>>,
    pass: PassMemory,
    window: usize,
    wait_timeout: Duration,
}

impl<H: Send + Sync + 'static> Coalescer<H> {
    /// `window`: bytes of body retained per fill; `wait_timeout`: how long a
    /// follower waits for a head; `pass_ttl`: how long an uncacheable key
    /// skips coalescing.
    pub fn new(window: usize, wait_timeout: Duration, pass_ttl: Duration) -> Coalescer<H> {
        Coalescer {
            shards: (0..SHARDS)
                .map(|_| Arc::new(Mutex::new(HashMap::default())))
                .collect(),
            pass: PassMemory::new(pass_ttl),
            window,
            wait_timeout,
        }
    }

    fn shard(&self, key: &Key) -> &Arc<Shard<H>> {
        &self.shards[key[0] as usize % SHARDS]
    }

    /// Whether `key` is remembered as uncacheable (hit-for-pass).
    pub fn is_pass(&self, key: &Key) -> bool {
        self.pass.contains(key)
    }

    /// Remembers `key` as uncacheable (hit-for-pass), as a writer's
    /// [`FillWriter::release`] does.
    pub fn remember_pass(&self, key: Key) {
        self.pass.remember(key);
    }

    /// Forgets hit-for-pass for `key` (e.g. after a purge).
    pub fn clear_pass(&self, key: &Key) {
        self.pass.forget(key);
    }

    /// Joins the in-flight fetch for `key`, or becomes its leader.
    pub fn join(self: &Arc<Self>, key: Key) -> Join<H> {
        if self.is_pass(&key) {
            return Join::Pass;
        }
        let shard = self.shard(&key).clone();
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fill) = map.get(&key) {
            if let Some(r) = fill.add_reader() {
                return Join::Follower(r);
            }
            return Join::Wait(FillWaiter { fill: fill.clone() });
        }
        let mut w = self.solo(key);
        w.shared = true;
        map.insert(key, w.fill.clone());
        Join::Leader(w)
    }

    /// Joins the in-flight fetch for `key` if there is one (never leads).
    pub fn join_existing(&self, key: &Key) -> Option<FillReader<H>> {
        let map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).and_then(|f| f.add_reader())
    }

    /// A writer for a fetch nobody else can join (a request that could not
    /// share the in-flight fetch but may still store its own response).
    pub fn solo(self: &Arc<Self>, key: Key) -> FillWriter<H> {
        FillWriter {
            fill: Arc::new(Fill {
                state: Mutex::new(State {
                    head: HeadState::Pending,
                    first: 0,
                    chunks: VecDeque::new(),
                    retained: 0,
                    end: End::Open,
                    settled: false,
                    cursors: HashMap::new(),
                    next_reader: 0,
                }),
                changed: Notify::new(),
                advanced: Notify::new(),
                window: self.window,
            }),
            key,
            owner: self.clone(),
            finished: false,
            shared: false,
        }
    }

    /// Follower wait: the head, or why to do something else.
    pub async fn wait_head(&self, reader: &FillReader<H>) -> Result<Arc<H>, WaitError> {
        match tokio::time::timeout(self.wait_timeout, reader.head()).await {
            Ok(r) => r,
            Err(_) => Err(WaitError::Timeout),
        }
    }

    /// Detaches the in-flight fill for `key` (after an invalidation or
    /// purge): readers already attached keep reading it, new requests do
    /// not join it.
    pub fn forget(&self, key: &Key) {
        self.shard(key)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Fills in flight (for stats and tests).
    pub fn in_flight(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    fn remove(&self, key: &Key, fill: &Arc<Fill<H>>) {
        let mut map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(key);
        }
    }
}

/// The leader's side of a fill.
pub struct FillWriter<H: Send + Sync + 'static> {
    fill: Arc<Fill<H>>,
    key: Key,
    owner: Arc<Coalescer<H>>,
    finished: bool,
    /// In the in-flight table (a solo writer's fill never is: leaving
    /// takes no shard lock).
    shared: bool,
}

impl<H: Send + Sync + 'static> FillWriter<H> {
    /// Publishes a shareable head; returns a reader for the leader itself.
    pub fn publish(&self, head: Arc<H>) -> Option<FillReader<H>> {
        let r = self.fill.add_reader();
        self.fill.lock().head = HeadState::Ready(head);
        self.fill.changed.notify_waiters();
        r
    }

    /// The response may not be shared: followers go to the origin and the
    /// key is remembered as uncacheable.
    pub fn release(self) {
        self.owner.pass.remember(self.key);
        self.release_once();
    }

    /// The response may not be shared, but only this time (an error status,
    /// or a request-driven reason such as `Authorization`): followers go to
    /// the origin, nothing is remembered.
    pub fn release_once(mut self) {
        {
            let mut st = self.fill.lock();
            st.head = HeadState::Released;
            st.settled = true;
        }
        self.finished = true;
        if self.shared {
            self.owner.remove(&self.key, &self.fill);
        }
        self.fill.changed.notify_waiters();
    }

    /// Gives up before a head without remembering anything (e.g. the origin
    /// failed): a follower will become the new leader.
    pub fn abandon(self) {
        // Drop does it.
    }

    /// Appends a body chunk, waiting while the window is full and the
    /// slowest reader has not consumed the oldest chunk.
    pub async fn push(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        loop {
            let advanced = self.fill.advanced.notified();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            {
                let mut st = self.fill.lock();
                self.fill.trim(&mut st);
                let blocked = st.retained >= self.fill.window
                    && !st.cursors.is_empty()
                    && st.cursors.values().any(|c| *c <= st.first);
                if !blocked {
                    st.retained += chunk.len();
                    st.chunks.push_back(chunk);
                    break;
                }
            }
            advanced.await;
        }
        self.fill.changed.notify_waiters();
    }

    /// Every byte of the body was pushed: readers end their copies now,
    /// without waiting for the store to commit it ([`Self::finish`]).
    pub fn body_done(&self) {
        {
            let mut st = self.fill.lock();
            if st.end == End::Open {
                st.end = End::Complete;
            }
        }
        self.fill.changed.notify_waiters();
    }

    /// The body is complete and committed to the store, if it was stored.
    pub fn finish(mut self) {
        {
            let mut st = self.fill.lock();
            st.end = End::Complete;
            st.settled = true;
        }
        self.finished = true;
        if self.shared {
            self.owner.remove(&self.key, &self.fill);
        }
        self.fill.changed.notify_waiters();
    }

    /// The key of this fill.
    pub fn key(&self) -> &Key {
        &self.key
    }
}

impl<H: Send + Sync + 'static> Drop for FillWriter<H> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        {
            let mut st = self.fill.lock();
            match st.head {
                HeadState::Pending => st.head = HeadState::Abandoned,
                // A body already complete stays so for its readers.
                _ if st.end == End::Complete => {}
                _ => st.end = End::Failed,
            }
            st.settled = true;
        }
        if self.shared {
            self.owner.remove(&self.key, &self.fill);
        }
        self.fill.changed.notify_waiters();
    }
}

/// A reader of a fill: the head, then the body chunk by chunk.
pub struct FillReader<H> {
    fill: Arc<Fill<H>>,
    id: u64,
}

impl<H> FillReader<H> {
    /// Waits for the head (no timeout; see [`Coalescer::wait_head`]).
    pub async fn head(&self) -> Result<Arc<H>, WaitError> {
        loop {
            let changed = self.fill.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let st = self.fill.lock();
                match &st.head {
                    HeadState::Ready(h) => return Ok(h.clone()),
                    HeadState::Released => return Err(WaitError::Released),
                    HeadState::Abandoned => return Err(WaitError::Abandoned),
                    HeadState::Pending => {}
                }
            }
            changed.await;
        }
    }

    /// The head, if it is already published (without waiting).
    pub fn try_head(&self) -> Option<Arc<H>> {
        match &self.fill.lock().head {
            HeadState::Ready(h) => Some(h.clone()),
            _ => None,
        }
    }

    /// The next body chunk; `Ok(None)` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, CutOff> {
        loop {
            let changed = self.fill.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut st = self.fill.lock();
                let cursor = st.cursors.get(&self.id).copied().unwrap_or(0);
                if cursor < st.first {
                    return Err(CutOff);
                }
                let idx = (cursor - st.first) as usize;
                if let Some(c) = st.chunks.get(idx).cloned() {
                    st.cursors.insert(self.id, cursor + 1);
                    drop(st);
                    self.fill.advanced.notify_waiters();
                    return Ok(Some(c));
                }
                match st.end {
                    End::Complete => return Ok(None),
                    End::Failed => return Err(CutOff),
                    End::Open => {}
                }
                if matches!(st.head, HeadState::Abandoned | HeadState::Released) {
                    return Err(CutOff);
                }
            }
            changed.await;
        }
    }
}

impl<H> FillReader<H> {
    /// Gives up the read position but keeps watching the fill.
    pub fn into_waiter(self) -> FillWaiter<H> {
        FillWaiter {
            fill: self.fill.clone(),
        }
    }
}

/// Watches a fill without reading it (so it never holds the writer back).
pub struct FillWaiter<H> {
    fill: Arc<Fill<H>>,
}

impl<H> FillWaiter<H> {
    /// Returns once the fill is over (stored, failed or released): what it
    /// stored can be looked up then.
    pub async fn ended(&self) {
        loop {
            let changed = self.fill.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let st = self.fill.lock();
                // Releasing and abandoning settle the fill too.
                if st.settled {
                    return;
                }
            }
            changed.await;
        }
    }
}

impl<H> Drop for FillReader<H> {
    fn drop(&mut self) {
        self.fill.lock().cursors.remove(&self.id);
        self.fill.advanced.notify_waiters();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

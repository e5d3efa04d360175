//! Fleet purges on a NATS JetStream stream (DESIGN.md "Purge"): every
//! purge a node accepts is published to the stream, and every node applies
//! the stream's purges from its own durable consumer, so a node that was
//! down or cut off applies what it missed when it comes back.
//!
//! - **Publish.** A purge accepted here is applied and logged at once with
//!   an `outbox` entry in `purge.log`, then published with its id as
//!   `Nats-Msg-Id` (the stream drops a duplicate within two minutes). The
//!   answer reports the stream sequence once the stream acknowledged it; if
//!   the stream is unreachable it says `"durable":"local"` and the outbox
//!   is published, in order, when the connection is back.
//! - **Apply.** One durable pull consumer per node (`outpost-<node>`,
//!   acknowledging all up to a message). Batches are applied with one
//!   fsynced log write that also records the last applied sequence; a
//!   node's own purges are skipped (applied when accepted). Purges are
//!   bans timed by the accepting node, so applying one twice is harmless.
//! - **Catch-up.** At start and after every reconnect the ban list is not
//!   current until the consumer has nothing pending: hits wait for that
//!   ([`crate::cache::catch_up`]) up to `catch_up_timeout`.
//!
//! Owns: the NATS connection, the stream and consumer, the message format,
//! the outbox and consumer tasks. Must not know: how a purge changes the
//! cache (it hands batches to [`Purger`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream as js_stream};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{PurgeRequest, Purger, Validated};
use crate::cache::CacheLayer;
use crate::config::{ClusterConfig, NatsConfig};
use crate::error::{Error, ErrorKind};

/// Largest batch applied with one log write.
const BATCH: usize = 256;
/// How long a publish may wait for the stream's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// A purge as it travels the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetPurge {
    /// Unique per purge: the node, the time, a random part.
    pub id: String,
    /// The node that accepted it.
    pub node: String,
    /// When it was accepted (ms since the epoch): the bans' time.
    pub at: u64,
    #[serde(flatten)]
    pub request: PurgeRequest,
}

/// Counters of the fleet's purge traffic (`/stats`).
#[derive(Debug, Default, Serialize)]
pub struct FleetFigures {
    pub published: u64,
    pub publish_failures: u64,
    pub applied: u64,
    pub catch_ups: u64,
    pub last_catch_up_purges: u64,
    pub last_catch_up_ms: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    publish_failures: AtomicU64,
    applied: AtomicU64,
    catch_ups: AtomicU64,
    last_catch_up_purges: AtomicU64,
    last_catch_up_ms: AtomicU64,
}

/// The node's connection to the purge stream.
pub struct Fleet {
    node: String,
    cfg: NatsConfig,
    subject: String,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Connected (again): the consumer checks whether it is current.
    reconnected: Arc<Notify>,
    /// The outbox has something to publish (or the connection is back).
    outbox: Arc<Notify>,
    cancel: CancellationToken,
    counters: Counters,
    /// The stream is known to exist (created or found).
    stream_ready: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("node", &self.node)
            .field("stream", &self.cfg.stream)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Connects (in the background: an unreachable NATS does not stop the
    /// node) and starts a catch-up episode on `purger`'s ban list at every
    /// (re)connection.
    pub async fn connect(
        cluster: &ClusterConfig,
        nats: &NatsConfig,
        purger: &Arc<Purger>,
    ) -> Result<Arc<Fleet>, Error> {
        let reconnected = Arc::new(Notify::new());
        let outbox = Arc::new(Notify::new());
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("outpost-{}", cluster.node))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .ping_interval(Duration::from_secs(5))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100u64 << attempts.min(5)).min(2_000))
            });
        if let Some(creds) = &nats.credentials {
            opts = opts.credentials_file(creds).await.map_err(|e| {
                Error::new(
                    ErrorKind::Setup,
                    format!("cluster.nats_credentials {}: {e}", creds.display()),
                )
            })?;
        }
        let bans = purger.bans().clone();
        let timeout = nats.catch_up_timeout;
        let (r, o) = (reconnected.clone(), outbox.clone());
        opts = opts.event_callback(move |event| {
            let (bans, r, o) = (bans.clone(), r.clone(), o.clone());
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("purge stream: connected to NATS");
                        bans.catch_up().begin(timeout);
                        r.notify_one();
                        o.notify_one();
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("purge stream: disconnected from NATS")
                    }
                    other => tracing::debug!(event = %other, "purge stream: NATS event"),
                }
            }
        });
        let servers: Vec<async_nats::ServerAddr> = nats
            .servers
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e| Error::new(ErrorKind::Setup, format!("cluster.nats: `{s}`: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let client = opts.connect(servers).await.map_err(|e| {
            Error::new(ErrorKind::Setup, format!("cluster.nats: {e}")).with_source(e)
        })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(PUBLISH_TIMEOUT);
        Ok(Arc::new(Fleet {
            node: cluster.node.clone(),
            subject: format!("{}.purge", nats.stream),
            cfg: nats.clone(),
            client,
            js,
            reconnected,
            outbox,
            cancel: CancellationToken::new(),
            counters: Counters::default(),
            stream_ready: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Starts the consumer and the outbox tasks.
    pub fn start(self: &Arc<Self>, purger: Arc<Purger>, cache: Option<Arc<CacheLayer>>) {
        tokio::spawn(self.clone().consume(purger.clone(), cache));
        tokio::spawn(self.clone().drain_outbox(purger));
    }

    /// Stops both tasks (shutdown, or a hand-over to a new process that
    /// takes the durable consumer over).
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// The message for a purge accepted here at `at`: `(id, JSON)`.
    pub fn message(&self, v: &Validated, at: u64) -> (String, String) {
        let id = format!("{}-{at}-{:08x}", self.node, rand::random::<u32>());
        let m = FleetPurge {
            id: id.clone(),
            node: self.node.clone(),
            at,
            request: v.request.clone(),
        };
        let json = serde_json::to_string(&m).unwrap_or_default();
        (id, json)
    }

    /// Publishes one message and waits for the stream's acknowledgement:
    /// its sequence. Fails at once when not connected.
    pub async fn publish(&self, id: &str, message: &str) -> Result<u64, String> {
        // Still making the first connection (a node just started): wait
        // for it. Disconnected later: answer at once from the outbox.
        self.first_connection(PUBLISH_TIMEOUT).await;
        let res = if self.client.connection_state() != async_nats::connection::State::Connected {
            Err("not connected to NATS".to_owned())
        } else {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id);
            let send = async {
                if !self.stream_ready.load(Ordering::Acquire) {
                    self.ensure_stream().await?;
                }
                let ack = self
                    .js
                    .publish_with_headers(
                        self.subject.clone(),
                        headers,
                        Bytes::from(message.to_owned()),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                ack.await.map(|a| a.sequence).map_err(|e| e.to_string())
            };
            match tokio::time::timeout(PUBLISH_TIMEOUT, send).await {
                Ok(r) => r,
                Err(_) => Err("no acknowledgement from the stream in time".to_owned()),
            }
        };
        match &res {
            Ok(_) => self.counters.published.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                // Perhaps the stream went (a rebuilt NATS): look again next time.
                self.stream_ready.store(false, Ordering::Release);
                tracing::warn!(error = %e, id, "purge not published to the stream yet: kept in the outbox");
                self.counters
                    .publish_failures
                    .fetch_add(1, Ordering::Relaxed)
            }
        };
        res
    }

    /// Waits up to `limit` while the first connection is being made.
    pub async fn first_connection(&self, limit: Duration) {
        let t = Instant::now();
        while self.client.connection_state() == async_nats::connection::State::Pending
            && t.elapsed() < limit
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Asks the outbox task to publish.
    pub fn wake_outbox(&self) {
        self.outbox.notify_one();
    }

    /// A snapshot of the counters.
    pub fn figures(&self) -> FleetFigures {
        let c = &self.counters;
        FleetFigures {
            published: c.published.load(Ordering::Relaxed),
            publish_failures: c.publish_failures.load(Ordering::Relaxed),
            applied: c.applied.load(Ordering::Relaxed),
            catch_ups: c.catch_ups.load(Ordering::Relaxed),
            last_catch_up_purges: c.last_catch_up_purges.load(Ordering::Relaxed),
            last_catch_up_ms: c.last_catch_up_ms.load(Ordering::Relaxed),
        }
    }

    async fn drain_outbox(self: Arc<Self>, purger: Arc<Purger>) {
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = self.outbox.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if purger.outbox_len() == 0
                || self.client.connection_state() != async_nats::connection::State::Connected
            {
                continue;
            }
            let n = purger.publish_outbox(&self).await;
            if n > 0 {
                tracing::info!(
                    published = n,
                    left = purger.outbox_len(),
                    "purge outbox published to the stream"
                );
            }
        }
    }

    /// The purge stream, created when missing.
    async fn ensure_stream(&self) -> Result<js_stream::Stream, String> {
        let stream = self
            .js
            .get_or_create_stream(js_stream::Config {
                name: self.cfg.stream.clone(),
                subjects: vec![self.subject.clone()],
                storage: js_stream::StorageType::File,
                max_age: self.cfg.retention,
                num_replicas: self.cfg.replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("purge stream {}: {e}", self.cfg.stream))?;
        self.stream_ready.store(true, Ordering::Release);
        Ok(stream)
    }

    /// The stream (created when missing) and this node's durable consumer
    /// (created to start after the applied sequence when missing). A
    /// stream behind the applied sequence was reset: it is applied from its
    /// start. A stream whose oldest purge is past the next one this node
    /// needs has dropped purges it missed: everything cached before now
    /// counts as purged.
    async fn consumer(&self, purger: &Purger) -> Result<consumer::PullConsumer, String> {
        let stream = self.ensure_stream().await?;
        let mut applied = purger.applied();
        if let Ok(info) = stream.get_info().await {
            let st = info.state;
            if applied > st.last_sequence {
                tracing::warn!(
                    applied,
                    stream_last = st.last_sequence,
                    "the purge stream is behind this node's log (it was reset): applying it from its start"
                );
                purger.restart_stream().await;
                applied = 0;
            } else if applied > 0 && st.first_sequence > applied + 1 {
                tracing::error!(
                    applied,
                    stream_first = st.first_sequence,
                    "purges this node missed have expired from the stream (an outage longer than purge_retention): every object cached before now is treated as purged"
                );
                purger.purge_all_before_now().await;
            }
        }
        let durable = format!("outpost-{}", self.node);
        let deliver_policy = if applied > 0 {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: applied + 1,
            }
        } else {
            consumer::DeliverPolicy::All
        };
        stream
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    deliver_policy,
                    ack_policy: consumer::AckPolicy::All,
                    ack_wait: Duration::from_secs(5),
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("purge consumer {durable}: {e}"))
    }

    async fn consume(self: Arc<Self>, purger: Arc<Purger>, cache: Option<Arc<CacheLayer>>) {
        let mut backoff = Duration::from_millis(100);
        let mut episode = Episode::start();
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let consumer = match self.consumer(&purger).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "purge stream unavailable; retrying");
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let mut messages = match consumer
                .stream()
                .max_messages_per_batch(BATCH)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "purge consumer cannot pull; retrying");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            self.check_current(&consumer, &purger, &mut episode).await;
            loop {
                tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = self.reconnected.notified() => {
                        // The stream may be another (a rebuilt NATS): find
                        // the stream and the consumer again.
                        episode = Episode::start();
                        break;
                    }
                    next = messages.next() => match next {
                        None => {
                            // The pull ended (the server went away): pull
                            // again after a pause, not in a tight loop.
                            tokio::time::sleep(backoff).await;
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "purge consumer error; pulling again");
                            tokio::time::sleep(backoff).await;
                            break;
                        }
                        Some(Ok(first)) => {
                            let mut batch = vec![first];
                            while batch.len() < BATCH {
                                match messages.next().now_or_never() {
                                    Some(Some(Ok(m))) => batch.push(m),
                                    _ => break,
                                }
                            }
                            self.apply(&batch, &purger, cache.as_deref(), &mut episode).await;
                        }
                    }
                }
            }
        }
    }

    /// Applies a batch, acknowledges it, and ends the catch-up when the
    /// consumer has nothing more pending.
    async fn apply(
        &self,
        batch: &[jetstream::Message],
        purger: &Purger,
        cache: Option<&CacheLayer>,
        episode: &mut Episode,
    ) {
        let mut parsed = Vec::with_capacity(batch.len());
        let mut pending = u64::MAX;
        for m in batch {
            let Ok(info) = m.info() else {
                continue;
            };
            pending = info.pending;
            match serde_json::from_slice::<FleetPurge>(&m.payload) {
                Ok(p) => parsed.push((info.stream_sequence, p)),
                Err(e) => tracing::warn!(
                    seq = info.stream_sequence,
                    error = %e,
                    "unreadable purge message skipped"
                ),
            }
        }
        let n = purger.apply_stream(&parsed, cache).await;
        // Acknowledging the last acknowledges the batch (AckPolicy::All).
        if let Some(last) = batch.last()
            && let Err(e) = last.ack().await
        {
            tracing::warn!(error = %e, "purge batch not acknowledged; it will come again");
        }
        self.counters.applied.fetch_add(n as u64, Ordering::Relaxed);
        episode.purges += n as u64;
        if pending == 0 {
            self.finish(purger, episode);
        }
    }

    /// Ends the catch-up if the consumer has nothing pending.
    async fn check_current(
        &self,
        consumer: &consumer::PullConsumer,
        purger: &Purger,
        episode: &mut Episode,
    ) {
        match consumer.get_info().await {
            Ok(i) if i.num_pending == 0 && i.num_ack_pending == 0 => self.finish(purger, episode),
            Ok(i) => tracing::info!(
                pending = i.num_pending,
                "purge stream: catching up on missed purges"
            ),
            Err(e) => tracing::warn!(error = %e, "purge consumer info unavailable"),
        }
    }

    fn finish(&self, purger: &Purger, episode: &mut Episode) {
        let gate = purger.bans().catch_up();
        if !gate.behind() {
            return;
        }
        gate.finish();
        let ms = episode.since.elapsed().as_millis() as u64;
        let c = &self.counters;
        c.catch_ups.fetch_add(1, Ordering::Relaxed);
        c.last_catch_up_purges
            .store(episode.purges, Ordering::Relaxed);
        c.last_catch_up_ms.store(ms, Ordering::Relaxed);
        tracing::info!(
            purges = episode.purges,
            ms,
            applied_seq = purger.applied(),
            "purge stream: caught up"
        );
        *episode = Episode::start();
    }
}

/// One catch-up: when it started and how many purges it applied.
struct Episode {
    since: Instant,
    purges: u64,
}

impl Episode {
    fn start() -> Episode {
        Episode {
            since: Instant::now(),
            purges: 0,
        }
    }
}

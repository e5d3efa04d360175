//! The purge side of a fleet: what `purge.log` keeps for the purge stream
//! (the outbox of purges not yet acknowledged, the last applied sequence),
//! and how [`Purger`] applies the stream's purges, publishes its outbox and
//! starts and stops the connection ([`super::stream`]).
//!
//! Owns: the fleet's entries of the log and their order with the other
//! purges (the purger's serial lock). Must not know: NATS (`stream`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use super::log::Entry;
use super::{Purger, bans_of, stream};
use crate::cache::CacheLayer;
use crate::cache::bans::millis;
use crate::error::Error;

/// What the purge log keeps for the fleet.
#[derive(Debug, Default)]
pub(super) struct FleetLog {
    /// Purges accepted here and not yet acknowledged by the stream, oldest
    /// first: `(id, message)`.
    pub(super) outbox: VecDeque<(String, String)>,
    /// The last stream sequence applied here.
    pub(super) applied: u64,
}

impl FleetLog {
    pub(super) fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let applied = (self.applied > 0).then_some(Entry::Applied { seq: self.applied });
        applied
            .into_iter()
            .chain(self.outbox.iter().map(|(id, message)| Entry::Outbox {
                id: id.clone(),
                message: message.clone(),
            }))
    }
}

impl Purger {
    /// Applies purges read from the fleet's stream, in order: those from
    /// other nodes (this node applied its own when it accepted them) and
    /// after the applied sequence. One log write (one fsync) for the batch,
    /// which also records the new applied sequence. Returns how many were
    /// applied.
    pub(crate) async fn apply_stream(
        &self,
        batch: &[(u64, stream::FleetPurge)],
        cache: Option<&CacheLayer>,
    ) -> usize {
        let Some(last) = batch.iter().map(|(seq, _)| *seq).max() else {
            return 0;
        };
        let _serial = self.serial.lock().await;
        let applied = self.applied();
        let mut bans = Vec::new();
        let mut urls = Vec::new();
        let mut n = 0;
        for (seq, m) in batch {
            if *seq <= applied || m.node == self.cluster.node {
                continue;
            }
            match m.request.validate() {
                Ok(v) => {
                    bans.extend(bans_of(&v, m.at));
                    urls.push((v, m.at));
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(seq, node = %m.node, error = %e, "unusable purge in the stream skipped")
                }
            }
        }
        if last <= applied {
            return 0;
        }
        if let Ok(mut fl) = self.fleet_log.lock() {
            fl.applied = last;
        }
        // A failed write is logged by `record`; the bans apply regardless.
        let _ = self.record(&bans, vec![Entry::Applied { seq: last }]).await;
        if let Some(cache) = cache {
            for (v, at) in &urls {
                for u in &v.urls {
                    self.apply_url(cache, u, *at, v.soft).await;
                }
            }
        }
        n
    }

    /// The last stream sequence applied here.
    pub fn applied(&self) -> u64 {
        self.fleet_log.lock().map_or(0, |fl| fl.applied)
    }

    /// Publishes the outbox, oldest first, until it is empty or the
    /// stream fails; returns how many were published.
    pub(crate) async fn publish_outbox(&self, f: &stream::Fleet) -> usize {
        let _serial = self.serial.lock().await;
        let mut n = 0;
        loop {
            let Some((id, message)) = self
                .fleet_log
                .lock()
                .ok()
                .and_then(|fl| fl.outbox.front().cloned())
            else {
                return n;
            };
            if f.publish(&id, &message).await.is_err() {
                return n;
            }
            self.mark_sent(&id).await;
            n += 1;
        }
    }

    /// The stream was reset (its sequences are behind this node's): apply
    /// it from its start.
    pub(crate) async fn restart_stream(&self) {
        let _serial = self.serial.lock().await;
        if let Ok(mut fl) = self.fleet_log.lock() {
            fl.applied = 0;
        }
        let _ = self.record(&[], vec![Entry::Applied { seq: 0 }]).await;
    }

    /// Purges this node missed are gone from the stream (an outage longer
    /// than its retention): everything cached until now counts as purged.
    pub(crate) async fn purge_all_before_now(&self) {
        let _serial = self.serial.lock().await;
        let at = millis(SystemTime::now());
        self.bans.raise_floor(at);
        let _ = self.record(&[], vec![Entry::Floor { at }]).await;
    }

    /// Purges waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.fleet_log.lock().map_or(0, |fl| fl.outbox.len())
    }

    /// Records that the stream acknowledged outbox entry `id`.
    pub(super) async fn mark_sent(&self, id: &str) {
        if let Ok(mut fl) = self.fleet_log.lock() {
            fl.outbox.retain(|(i, _)| i != id);
        }
        let _ = self
            .record(&[], vec![Entry::Sent { id: id.to_owned() }])
            .await;
    }

    /// In a fleet with `[cluster] nats`: hits wait for the first catch-up,
    /// and the connection to the purge stream starts (in the background:
    /// an unreachable NATS does not stop the node).
    pub async fn start_fleet(
        self: &Arc<Self>,
        cache: Option<Arc<CacheLayer>>,
    ) -> Result<(), Error> {
        let Some(nats) = self.cluster.nats.clone() else {
            return Ok(());
        };
        self.bans.catch_up().begin(nats.catch_up_timeout);
        let f = stream::Fleet::connect(&self.cluster, &nats, self).await?;
        // A node normally starts connected; an unreachable NATS delays
        // the start by at most this.
        f.first_connection(std::time::Duration::from_secs(2)).await;
        f.start(self.clone(), cache);
        let _ = self.fleet.set(f);
        Ok(())
    }

    /// Stops consuming and publishing (shutdown or hand-over).
    pub fn stop_fleet(&self) {
        if let Some(f) = self.fleet.get() {
            f.stop();
        }
    }

    /// The fleet's purge figures, when the node is in one.
    pub fn fleet_figures(&self) -> Option<stream::FleetFigures> {
        self.fleet.get().map(|f| f.figures())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::purge::log::PurgeLog;

    #[test]
    fn the_outbox_and_the_applied_sequence_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PurgeLog::open(dir.path()).unwrap();
        let outbox = |id: &str| Entry::Outbox {
            id: id.into(),
            message: format!("{{\"id\":\"{id}\"}}"),
        };
        log.append(&[
            outbox("a"),
            Entry::Applied { seq: 9 },
            outbox("b"),
            Entry::Sent { id: "a".into() },
            outbox("c"),
            // A rebuilt stream starts the count again.
            Entry::Applied { seq: 2 },
        ])
        .unwrap();
        drop(log);
        let text = format!(
            "[storage]\npath = {:?}\n[[site]]\norigins = [\"http://127.0.0.1:9\"]\n",
            dir.path().display().to_string()
        );
        let cfg = crate::config::Config::from_toml(&text).unwrap();
        let p = Purger::open(&cfg).unwrap();
        assert_eq!(p.applied(), 2);
        assert_eq!(p.outbox_len(), 2);
        let fl = p.fleet_log.lock().unwrap();
        let ids: Vec<&str> = fl.outbox.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["b", "c"], "oldest first, the sent one gone");
        let kept: Vec<Entry> = fl.entries().collect();
        assert_eq!(kept.len(), 3, "applied and two outbox entries: {kept:?}");
    }
}

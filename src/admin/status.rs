//! The live status page: admin `GET /` serves one HTML page (its CSS and
//! script inline, no external assets) that reads `GET /status.json` every
//! 2 s and draws request rate, hit ratio and bytes over the last two
//! minutes, the cache phases, the store tiers, refusals and each site's
//! origins. Both are read-only and need no token; the page changes nothing.
//!
//! The JSON is the same figures `/metrics` reports, summed over sites, and
//! the last two minutes of rates as the node sampled them every 2 s
//! ([`History`]), so the charts are full as soon as the page opens.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::AdminState;
use crate::metrics::http::sites;

/// The page.
pub const PAGE: &str = include_str!("status.html");

/// How often the node samples its rates, and how many samples it keeps.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const SAMPLES: usize = 60;

/// One sample of the rates.
#[derive(Debug, Clone, Copy, Serialize)]
struct Sample {
    /// Seconds since the node started.
    t: f64,
    rps: f64,
    hit_ratio: f64,
    bytes_per_sec: f64,
}

/// Totals at the last sample, and the samples.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Sampled>,
}

#[derive(Debug, Default)]
struct Sampled {
    last: Option<(Instant, Totals)>,
    samples: VecDeque<Sample>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    requests: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
}

fn totals(state: &AdminState) -> Totals {
    let st = state.stats();
    let mut t = Totals {
        hits: st.hits,
        misses: st.misses,
        ..Totals::default()
    };
    for s in sites() {
        t.requests += s.requests().iter().map(|r| r.3).sum::<u64>();
        t.bytes += s.by_phase().map(|p| p.1).sum::<u64>();
    }
    t
}

impl History {
    /// Takes a sample now (the node calls it every [`SAMPLE_EVERY`]).
    pub fn sample(&self, state: &AdminState) {
        let now = Instant::now();
        let t = totals(state);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, prev)) = g.last {
            let dt = now.duration_since(at).as_secs_f64().max(1e-3);
            let (dh, dm) = (
                t.hits.saturating_sub(prev.hits),
                t.misses.saturating_sub(prev.misses),
            );
            let s = Sample {
                t: state.stats.started.elapsed().as_secs_f64(),
                rps: t.requests.saturating_sub(prev.requests) as f64 / dt,
                hit_ratio: if dh + dm > 0 {
                    dh as f64 / (dh + dm) as f64
                } else {
                    0.0
                },
                bytes_per_sec: t.bytes.saturating_sub(prev.bytes) as f64 / dt,
            };
            g.samples.push_back(s);
            if g.samples.len() > SAMPLES {
                g.samples.pop_front();
            }
        }
        g.last = Some((now, t));
    }

    fn samples(&self) -> Vec<Sample> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.samples.iter().copied().collect()
    }
}

#[derive(Debug, Serialize)]
struct Tier {
    tier: &'static str,
    used: u64,
    capacity: u64,
}

#[derive(Debug, Serialize)]
struct Status {
    version: &'static str,
    commit: &'static str,
    uptime_secs: u64,
    config_last_reload_unix: u64,
    /// Requests answered, all sites.
    requests: u64,
    response_bytes: u64,
    hits: u64,
    misses: u64,
    /// Requests by cache phase.
    phases: BTreeMap<&'static str, u64>,
    tiers: Vec<Tier>,
    objects: u64,
    refusals: BTreeMap<&'static str, u64>,
    origins: Vec<crate::origin::OriginReport>,
    /// Rates sampled every 2 s, oldest first.
    history: Vec<Sample>,
}

/// `/status.json`.
pub fn json(state: &AdminState) -> Vec<u8> {
    let st = state.stats();
    let mut phases: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut requests = 0;
    let mut response_bytes = 0;
    for s in sites() {
        for (_, _, phase, n) in s.requests() {
            *phases.entry(phase).or_default() += n;
            requests += n;
        }
        for (_, b, _, _) in s.by_phase() {
            response_bytes += b;
        }
    }
    let store = state.cache.as_deref().map(|c| c.figures().store);
    let tiers = store
        .as_ref()
        .map(|s| {
            vec![
                Tier {
                    tier: "memory",
                    used: s.memory_bytes,
                    capacity: s.memory_capacity,
                },
                Tier {
                    tier: "disk",
                    used: s.disk_allocated_bytes,
                    capacity: s.disk_capacity,
                },
            ]
        })
        .unwrap_or_default();
    let status = Status {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("OUTPOST_COMMIT"),
        uptime_secs: st.uptime_secs,
        config_last_reload_unix: st.config_last_reload_unix,
        requests,
        response_bytes,
        hits: st.hits,
        misses: st.misses,
        phases,
        tiers,
        objects: store.map_or(0, |s| s.memory_objects),
        refusals: st.refusals.clone(),
        origins: (state.pools)().iter().flat_map(|p| p.report()).collect(),
        history: state.history.samples(),
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

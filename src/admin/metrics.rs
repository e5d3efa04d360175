//! `GET /metrics`: the node's figures in the OpenMetrics text format (which
//! Prometheus scrapes, asked for with `Accept: application/openmetrics-text`
//! or not), encoded by `prometheus-client` from one collector that reads
//! the node's own counters at scrape time. The request path records into
//! lock-free atomics laid out per site (`metrics::http`) and never touches
//! a registry; `prometheus-client`'s own metric types would take a lock per
//! labelled observation (its `Family` map, its histogram), which is why
//! they are not used on the hot path.
//!
//! Label sets are bounded: site, origin, method class, status class, cache
//! phase, tier and reason; never a URL or a client address.

use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::AdminState;
use crate::metrics::http::{Hist, sites};

/// What one scrape reports, read before encoding.
#[derive(Debug)]
struct Scrape {
    stats: crate::metrics::Stats,
    store: Option<outpost_storage::StoreStats>,
    origins: Vec<crate::origin::OriginReport>,
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// A counter family: integer counts, or seconds as a float.
fn counter<N: EncodeCounterValue + Copy>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, N)],
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        let c = ConstCounter::new(*v);
        c.encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, f64)],
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        let g = ConstGauge::new(*v);
        g.encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn histogram<'a>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels<'a>, &'a Hist)],
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in series {
        let (sum, count, buckets) = h.snapshot();
        m.encode_family(labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let site_metrics = sites();
        let mut requests = Vec::new();
        let mut bytes = Vec::new();
        let mut duration = Vec::new();
        let mut ttfb = Vec::new();
        for s in &site_metrics {
            for (m, st, phase, v) in s.requests() {
                requests.push((
                    vec![
                        ("site", s.site.as_str()),
                        ("method_class", m),
                        ("status_class", st),
                        ("cache", phase),
                    ],
                    v,
                ));
            }
            for (phase, b, d, t) in s.by_phase() {
                let l = vec![("site", s.site.as_str()), ("cache", phase)];
                bytes.push((l.clone(), b));
                duration.push((l.clone(), d));
                ttfb.push((l, t));
            }
        }
        counter(
            &mut e,
            "outpost_requests",
            "Requests answered, by site, method class, status class and cache phase.",
            &requests,
        )?;
        histogram(
            &mut e,
            "outpost_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            &duration,
        )?;
        histogram(
            &mut e,
            "outpost_time_to_first_byte_seconds",
            "Time from a request's arrival until its response head was ready.",
            &ttfb,
        )?;
        counter(
            &mut e,
            "outpost_response_bytes",
            "Response body bytes sent, by site and cache phase.",
            &bytes,
        )?;

        let o = &self.origins;
        let mut origin_reqs = Vec::new();
        for r in o {
            let mut ok = ol(r);
            ok.push(("result", "ok"));
            origin_reqs.push((ok, r.requests.saturating_sub(r.failures)));
            let mut bad = ol(r);
            bad.push(("result", "failed"));
            origin_reqs.push((bad, r.failures));
        }
        counter(
            &mut e,
            "outpost_origin_requests",
            "Requests sent to each origin, answered or failed (connect error, reset, timeout, 5xx).",
            &origin_reqs,
        )?;
        gauge(
            &mut e,
            "outpost_origin_up",
            "1 when the origin takes requests (up), 0 when down, draining or disabled.",
            &o.iter()
                .map(|r| (ol(r), f64::from(u8::from(r.state == "up"))))
                .collect::<Vec<_>>(),
        )?;
        gauge(
            &mut e,
            "outpost_origin_latency_seconds",
            "Moving average of each origin's time to the response head.",
            &o.iter()
                .map(|r| (ol(r), r.latency_ms / 1000.0))
                .collect::<Vec<_>>(),
        )?;
        gauge(
            &mut e,
            "outpost_origin_in_flight",
            "Requests in flight to each origin.",
            &o.iter()
                .map(|r| (ol(r), r.in_flight as f64))
                .collect::<Vec<_>>(),
        )?;

        let st = &self.stats;
        counter(
            &mut e,
            "outpost_cache_lookups",
            "Cache lookups by result (hit: served without the origin).",
            &[
                (vec![("result", "hit")], st.hits),
                (vec![("result", "miss")], st.misses),
            ],
        )?;
        if let Some(s) = &self.store {
            let tiers = |m: u64, d: u64| {
                vec![
                    (vec![("tier", "memory")], m as f64),
                    (vec![("tier", "disk")], d as f64),
                ]
            };
            gauge(
                &mut e,
                "outpost_store_bytes",
                "Bytes used per store tier.",
                &tiers(s.memory_bytes, s.disk_allocated_bytes),
            )?;
            gauge(
                &mut e,
                "outpost_store_capacity_bytes",
                "Capacity per store tier.",
                &tiers(s.memory_capacity, s.disk_capacity),
            )?;
            gauge(
                &mut e,
                "outpost_store_entries",
                "Objects in the memory tier.",
                &[(vec![], s.memory_objects as f64)],
            )?;
            counter(
                &mut e,
                "outpost_store_evictions",
                "Entries evicted from the memory tier.",
                &[(vec![], s.memory_evictions)],
            )?;
            counter(
                &mut e,
                "outpost_store_disk_bytes",
                "Bytes read from and written to the disk tier.",
                &[
                    (vec![("op", "read")], s.disk_bytes_read),
                    (vec![("op", "write")], s.disk_bytes_written),
                ],
            )?;
            counter(
                &mut e,
                "outpost_store_corrupt_reads",
                "Reads that found a missing or corrupt chunk (the object was dropped).",
                &[(vec![], s.corrupt_reads)],
            )?;
        }
        counter(
            &mut e,
            "outpost_slices",
            "Slices of sliced objects served from the store (hit), fetched from the origin (fetch), and sliced objects restarted because a slice had another validator (restart).",
            &[
                (vec![("result", "hit")], st.slices.hits),
                (vec![("result", "fetch")], st.slices.fetches),
                (vec![("result", "restart")], st.slices.restarts),
            ],
        )?;
        gauge(
            &mut e,
            "outpost_fills_in_flight",
            "Origin fetches being stored now.",
            &[(vec![], st.fills_in_flight as f64)],
        )?;
        counter(
            &mut e,
            "outpost_refusals",
            "Requests and connections refused before any cache or origin work, by reason.",
            &st.refusals
                .iter()
                .map(|(k, v)| (vec![("reason", *k)], *v))
                .collect::<Vec<_>>(),
        )?;
        let mut tls = vec![(vec![("result", "ok")], st.tls_handshakes)];
        tls.extend(
            st.tls_failures
                .iter()
                .map(|(k, v)| (vec![("result", *k)], *v)),
        );
        counter(
            &mut e,
            "outpost_tls_handshakes",
            "TLS handshakes by result.",
            &tls,
        )?;
        let by_coding = |f: fn(&crate::metrics::compression::CodingFigures) -> u64| {
            st.compression
                .iter()
                .map(|c| (vec![("coding", c.coding)], f(c)))
                .collect::<Vec<_>>()
        };
        counter(
            &mut e,
            "outpost_compression_in_bytes",
            "Bytes given to the compressor, by coding.",
            &by_coding(|c| c.bytes_in),
        )?;
        counter(
            &mut e,
            "outpost_compression_out_bytes",
            "Compressed bytes produced, by coding.",
            &by_coding(|c| c.bytes_out),
        )?;
        counter(
            &mut e,
            "outpost_compression_variants_stored",
            "Compressed representations stored beside their objects, by coding.",
            &by_coding(|c| c.stored),
        )?;
        counter(
            &mut e,
            "outpost_decompressed_bytes",
            "Bytes decoded for clients that do not accept a stored coding, by coding.",
            &by_coding(|c| c.decoded_bytes),
        )?;
        counter(
            &mut e,
            "outpost_compression_seconds",
            "Time spent compressing, by coding.",
            &st.compression
                .iter()
                .map(|c| (vec![("coding", c.coding)], c.seconds))
                .collect::<Vec<_>>(),
        )?;
        counter(
            &mut e,
            "outpost_config_reload",
            "Configuration reloads by result.",
            &[
                (vec![("result", "ok")], st.config_reloads),
                (vec![("result", "failed")], st.config_reload_failures),
            ],
        )?;
        gauge(
            &mut e,
            "outpost_config_last_reload_timestamp_seconds",
            "When the last reload took effect (Unix time; 0: none since start).",
            &[(vec![], st.config_last_reload_unix as f64)],
        )?;
        if let Some(f) = &st.fleet {
            let n = |k: &str| f[k].as_u64().unwrap_or(0);
            counter(
                &mut e,
                "outpost_purge_stream_published",
                "Purges this node published to the fleet's purge stream, and attempts that failed (kept in the outbox).",
                &[
                    (vec![("result", "ok")], n("published")),
                    (vec![("result", "failed")], n("publish_failures")),
                ],
            )?;
            counter(
                &mut e,
                "outpost_purge_stream_applied",
                "Purges of other nodes applied from the purge stream.",
                &[(vec![], n("applied"))],
            )?;
            counter(
                &mut e,
                "outpost_purge_catch_up_late_hits",
                "Hits served while a purge catch-up ran past catch_up_timeout.",
                &[(vec![], n("late_hits"))],
            )?;
            gauge(
                &mut e,
                "outpost_purge_stream_outbox",
                "Purges waiting to be published to the purge stream.",
                &[(vec![], n("outbox") as f64)],
            )?;
            gauge(
                &mut e,
                "outpost_purge_stream_applied_sequence",
                "The last purge stream sequence applied here.",
                &[(vec![], n("applied_seq") as f64)],
            )?;
        }
        gauge(
            &mut e,
            "outpost_uptime_seconds",
            "Seconds since the node started.",
            &[(vec![], st.uptime_secs as f64)],
        )?;
        let mut info = e.encode_descriptor(
            "outpost_build",
            "The running build.",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("OUTPOST_COMMIT")),
        ])?;
        Ok(())
    }
}

fn ol(r: &crate::origin::OriginReport) -> Labels<'_> {
    vec![("site", r.site.as_str()), ("origin", r.origin.as_str())]
}

/// The OpenMetrics text as the Prometheus text format (0.0.4): a counter's
/// `# TYPE`/`# HELP` name its `_total` series, an info is a gauge of its
/// `_info` series, and there is no `# EOF` or `# UNIT`.
pub fn prometheus_text(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut suffix: std::collections::HashMap<String, &str> = Default::default();
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.splitn(2, ' ');
            let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            let (suf, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                k => ("", k),
            };
            suffix.insert(name.to_owned(), suf);
            let _ = writeln!(out, "# TYPE {name}{suf} {kind}");
        } else if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    // `# HELP` comes before `# TYPE`: name it after the fact.
    let mut fixed = String::with_capacity(out.len());
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            let suf = suffix.get(name).copied().unwrap_or("");
            let _ = writeln!(fixed, "# HELP {name}{suf}{}", &rest[name.len()..]);
        } else {
            fixed.push_str(line);
            fixed.push('\n');
        }
    }
    fixed
}

/// The exposition of `state`'s figures now, in OpenMetrics.
pub fn render(state: &AdminState) -> String {
    let scrape = Scrape {
        stats: state.stats(),
        store: state.cache.as_deref().map(|c| c.figures().store),
        origins: (state.pools)().iter().flat_map(|p| p.report()).collect(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::with_capacity(16 << 10);
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
        let _ = writeln!(out, "# EOF");
    }
    out
}

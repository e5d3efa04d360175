//! The part of the pipeline a config reload replaces: the sites (their
//! origin pools, access lists, limits, rules, rate limits and header
//! rules) and the node's admission settings (trusted proxies, access lists
//! with the deny file, request limits). It is built whole from a validated
//! config and swapped in at once; a request keeps the one it started with.
//!
//! Built after a reload, an origin configured as before keeps its state
//! (health, ejection, drain, idle connections) and a rule of the same site
//! and name keeps its counter.

use std::sync::Arc;

use super::SiteRuntime;
use super::hide;
use crate::admission::rules::Rules;
use crate::admission::{AccessList, Admission, RateLimiter};
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::metrics::{Counters, Refusal};
use crate::origin::{OriginClient, Pool};

/// Sites and admission settings from one config.
pub struct Live {
    pub(super) admission: Admission,
    /// Longest request target taken (414 beyond).
    pub(super) max_uri_bytes: usize,
    pub(super) sites: Vec<Arc<SiteRuntime>>,
}

impl Live {
    /// From a validated config; `old` is the one it replaces.
    pub(super) fn new(
        cfg: &Config,
        client: &OriginClient,
        shield_client: &OriginClient,
        old: Option<&Live>,
    ) -> Result<Live, Error> {
        let site_err =
            |name: &str, e: Error| Error::new(e.kind(), format!("site {name}: {}", e.detail()));
        let (cap_bytes, cap_count) = cfg.header_caps();
        let mut sites = Vec::with_capacity(cfg.sites.len());
        for s in &cfg.sites {
            let prev = old.and_then(|o| o.sites.iter().find(|p| p.name == s.name));
            let pool = Pool::renew(
                &s.name,
                &s.origins,
                &s.pool,
                client.clone(),
                prev.map(|p| &*p.pool),
            )
            .map_err(|e| site_err(&s.name, e))?;
            let shields = crate::cluster::Shields::renew(
                &s.name,
                &cfg.cluster,
                shield_client.clone(),
                prev.and_then(|p| p.shields.as_ref()),
            )
            .map_err(|e| site_err(&s.name, e))?;
            let limits = s.limits.over(&cfg.limits);
            sites.push(Arc::new(SiteRuntime {
                name: s.name.clone(),
                hosts: s.hosts.clone(),
                pool: Arc::new(pool),
                shields,
                cache: s.cache,
                ignore_client_reload: s.ignore_client_reload,
                strip_targeted_fields: s.strip_targeted_fields,
                cache_post_responses: s.cache_post_responses,
                slice: s.slice,
                early_hints: s.early_hints,
                stale_on_error: s
                    .stale_on_error
                    .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
                https_redirect: s.https_redirect,
                hsts: s.hsts.clone(),
                access: AccessList::new(&s.allow, &s.deny, None),
                hide: hide::Hide::new(&s.headers),
                header_check: limits.max_header_bytes < cap_bytes
                    || limits.max_header_count < cap_count,
                limits,
                rules: Rules::renew(&s.rules, prev.map(|p| &p.rules))
                    .map_err(|e| site_err(&s.name, e))?,
                metrics: crate::metrics::http::site(&s.name),
                compression: s.compression.clone(),
                generation: super::encode::next_generation(),
                rate_limit: s.rate_limit.as_ref().map(|r| {
                    (
                        RateLimiter::new(r.requests, r.period, r.burst, r.max_tracked_clients),
                        r.path_prefix.clone(),
                    )
                }),
            }));
        }
        Ok(Live {
            admission: Admission::new(cfg)?,
            max_uri_bytes: cfg.limits.max_uri_bytes,
            sites,
        })
    }

    /// Starts the active health checks of every site that has them.
    pub(super) fn start_health_checks(&self) {
        for s in &self.sites {
            s.pool.start_health_checks();
        }
    }

    /// The first site with a pattern matching `host` (lower-cased, no port).
    pub(super) fn route(&self, host: &str) -> Option<&Arc<SiteRuntime>> {
        self.sites
            .iter()
            .find(|s| s.hosts.iter().any(|p| p.matches(host)))
    }

    /// The 403 for a refused client (counted; logged by the caller).
    pub(super) fn refuse(&self, client: std::net::IpAddr, list: &str) -> Error {
        Counters::global().refused(Refusal::AccessDenied);
        Error::new(ErrorKind::Forbidden, format!("{client} refused by {list}"))
    }
}

//! Config reload (SIGHUP, admin `POST /reload`): the file is read and
//! validated again, and everything new is built (sites and their origin
//! pools, access lists with the deny file, limits, rules, certificates)
//! before anything changes. Then it is put in place at once for new
//! requests and handshakes, while requests in flight finish with what they
//! started with. On any error nothing changes and the report names every
//! error with its key path. Settings that only a restart applies are
//! reported as such and keep their running values.
//!
//! It owns the running configuration; it does not serve anything.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::tls::Tls;
use crate::config::Config;
use crate::metrics::Counters;
use crate::proxy::Proxy;

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Whether the new configuration is in force.
    pub ok: bool,
    /// Every error found (`key: message`); nothing changed if any.
    pub errors: Vec<String>,
    /// Sections that changed but take effect only at the next start.
    pub needs_restart: Vec<&'static str>,
    /// Sites now served.
    pub sites: Vec<String>,
}

/// The running configuration and what a reload replaces.
pub struct Reloader {
    current: Mutex<Config>,
    proxy: Arc<Proxy>,
    tls: Option<Arc<Tls>>,
}

impl Reloader {
    pub fn new(cfg: Config, proxy: Arc<Proxy>, tls: Option<Arc<Tls>>) -> Reloader {
        Reloader {
            current: Mutex::new(cfg),
            proxy,
            tls,
        }
    }

    /// Reads the configuration again and puts it in force if it is good.
    pub fn reload(&self) -> ReloadReport {
        // One reload at a time.
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let report = self.try_reload(&mut current);
        Counters::global().config_reload(report.ok);
        if report.ok {
            tracing::info!(
                sites = report.sites.len(),
                needs_restart = ?report.needs_restart,
                "configuration reloaded"
            );
        } else {
            for e in &report.errors {
                tracing::error!(error = %e, "configuration not reloaded");
            }
        }
        report
    }

    fn try_reload(&self, current: &mut Config) -> ReloadReport {
        let fail = |errors: Vec<String>| ReloadReport {
            ok: false,
            errors,
            needs_restart: Vec::new(),
            sites: Vec::new(),
        };
        let new = match current.reread() {
            Ok(c) => c,
            Err(errs) => return fail(errs.0.iter().map(ToString::to_string).collect()),
        };
        // Everything is built before anything changes.
        let live = match self.proxy.prepare(&new) {
            Ok(l) => l,
            Err(e) => return fail(vec![e.detail().to_owned()]),
        };
        let certs = match &self.tls {
            Some(t) => match t.prepare(&new.tls) {
                Ok(p) => Some(p),
                Err(errors) => return fail(errors),
            },
            None => None,
        };
        let needs_restart = current.needs_restart(&new);
        self.proxy.commit(live);
        if let (Some(t), Some(p)) = (&self.tls, certs) {
            t.commit(p);
        }
        let sites = new.sites.iter().map(|s| s.name.clone()).collect();
        // What a restart would apply stays as it runs.
        let mut running = new;
        running.listen = current.listen.clone();
        running.server = current.server.clone();
        running.timeouts = current.timeouts.clone();
        running.storage = current.storage.clone();
        running.log = current.log.clone();
        running.cache = current.cache.clone();
        running.admin = current.admin.clone();
        running.purge = current.purge.clone();
        running.cluster = current.cluster.clone();
        running.tls.session_cache = current.tls.session_cache;
        running.tls.ticket_rotation = current.tls.ticket_rotation;
        *current = running;
        ReloadReport {
            ok: true,
            errors: Vec::new(),
            needs_restart,
            sites,
        }
    }
}

//! Where a configuration came from ([`ConfigSource`]), reading it again
//! for a reload, and which of its sections a reload cannot apply (they wait
//! for the next start).

use std::path::PathBuf;

use super::{Config, ConfigError, ConfigErrors, Overrides, Secret};

/// Where a configuration came from.
#[derive(Debug, Clone, Default)]
pub enum ConfigSource {
    /// Text handed in directly (it cannot be read again).
    #[default]
    Text,
    /// The embedded default, with command-line overrides.
    Embedded(Overrides),
    /// A file, with command-line overrides.
    File(PathBuf, Overrides),
}

impl Config {
    /// Reads the configuration again from where it came from (a reload).
    pub fn reread(&self) -> Result<Config, ConfigErrors> {
        match &self.source {
            ConfigSource::File(p, ov) => Config::load(p, ov),
            ConfigSource::Embedded(ov) => Config::embedded(ov),
            ConfigSource::Text => Err(ConfigErrors(vec![ConfigError {
                key: String::new(),
                message: "this configuration was not read from a file; nothing to reload".into(),
            }])),
        }
    }

    /// The settings that differ from `new`'s and take effect only at the
    /// next start (listeners, storage, the client side, origin timeouts,
    /// the cache's own settings, logging, the admin token, purge and
    /// cluster settings, TLS session settings), by section.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let d =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        // Port 0 (any free port) names the port it was given.
        let mut listen = new.listen.clone();
        for (n, c) in [
            (&mut listen.proxy, self.listen.proxy),
            (&mut listen.admin, self.listen.admin),
        ] {
            if n.port() == 0 && n.ip() == c.ip() {
                n.set_port(c.port());
            }
        }
        if let (Some(n), Some(c)) = (listen.tls.as_mut(), self.listen.tls)
            && n.port() == 0
            && n.ip() == c.ip()
        {
            n.set_port(c.port());
        }
        let mut out = Vec::new();
        for (name, changed) in [
            ("listen", d(&self.listen, &listen)),
            ("server", d(&self.server, &new.server)),
            ("timeouts", d(&self.timeouts, &new.timeouts)),
            ("storage", d(&self.storage, &new.storage)),
            ("log", d(&self.log, &new.log)),
            ("cache", d(&self.cache, &new.cache)),
            (
                "admin",
                self.admin.token.as_ref().map(Secret::expose)
                    != new.admin.token.as_ref().map(Secret::expose),
            ),
            ("purge", d(&self.purge, &new.purge)),
            ("cluster", d(&self.cluster, &new.cluster)),
            (
                "tls.session_cache",
                self.tls.session_cache != new.tls.session_cache,
            ),
            (
                "tls.ticket_rotation",
                self.tls.ticket_rotation != new.tls.ticket_rotation,
            ),
        ] {
            if changed {
                out.push(name);
            }
        }
        out
    }
}

//! The fleet's shield tier (DESIGN.md "Request flow": edge → shield by
//! rendezvous hash): an edge that misses asks one shield per object before
//! the origin, so the origin sees about one fetch per object for the whole
//! fleet (as Fastly shielding, ATS parent selection and Cloudflare's tiered
//! cache do).
//!
//! - **Choice.** The shields are a pool of their own balanced by weighted
//!   rendezvous hashing on the cache key (`origin::balance`): every edge
//!   picks the same shield for an object, and a shield that goes away moves
//!   only its own objects, to the next shield by rank.
//! - **Failure.** A shield that cannot be reached, times out
//!   (`shield_timeout`) or answers 502/503/504 is passed over for the next
//!   by rank and ejected for a while (passive health); when none answers,
//!   the edge asks the origin directly.
//! - **Loops.** A request to a shield carries [`HOP`] naming the edge; a
//!   node that receives it never asks a shield itself, whatever its config,
//!   so two shields pointing at each other make one origin fetch, not a
//!   loop.
//!
//! Owns: the shield pool and its policy, the hop field. Must not know: the
//! cache or the request pipeline (`proxy` decides when to ask a shield).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Response};

use crate::config::{Balance, ClusterConfig, OriginSpec, PoolPolicy, Tier};
use crate::error::Error;
use crate::origin::{OriginClient, OriginRequest, Pool, ResponseBody};

/// The field an edge adds to its requests to a shield (its node name).
pub static HOP: HeaderName = HeaderName::from_static("outpost-shield-hop");

/// How long a failed shield is passed over before it is tried again.
const EJECTION: Duration = Duration::from_secs(5);

/// One site's shields.
#[derive(Debug)]
pub struct Shields {
    pool: Arc<Pool>,
    /// This node's name as the [`HOP`] value.
    hop: HeaderValue,
}

impl Shields {
    /// The shields of `site` on an edge with `[cluster] shields`; `None` on
    /// a shield or without shields. `old` (the same site before a reload)
    /// keeps each unchanged shield's health and connections.
    pub fn renew(
        site: &str,
        cfg: &ClusterConfig,
        client: OriginClient,
        old: Option<&Shields>,
    ) -> Result<Option<Shields>, Error> {
        if cfg.tier == Tier::Shield || cfg.shields.is_empty() {
            return Ok(None);
        }
        let specs: Vec<OriginSpec> = cfg
            .shields
            .iter()
            .map(|s| OriginSpec {
                url: s.url.clone(),
                weight: 1,
            })
            .collect();
        let policy = PoolPolicy {
            balance: Balance::Hash,
            // Every shield by rank, then the origin (by the caller).
            retries: u32::try_from(specs.len().saturating_sub(1)).unwrap_or(u32::MAX),
            retry_on: vec![502, 503, 504],
            // A retry for every request: a shield's failure is not the
            // origin's, and the fallback is bounded by the shield count.
            retry_budget: 1.0,
            max_fails: 1,
            fail_timeout: EJECTION,
            ..PoolPolicy::default()
        };
        let pool = Pool::renew(
            &format!("{site} (shields)"),
            &specs,
            &policy,
            client,
            old.map(|o| &*o.pool),
        )?;
        Ok(Some(Shields {
            pool: Arc::new(pool),
            hop: HeaderValue::from_str(&cfg.node).unwrap_or(HeaderValue::from_static("edge")),
        }))
    }

    /// Asks the shields for `req` (whose `hash_key` must be the cache key),
    /// each by rank until one answers with something other than 502, 503
    /// or 504. `None`: no shield could answer; ask the origin.
    pub async fn send(&self, req: OriginRequest<'_>) -> Option<Response<ResponseBody>> {
        match self.pool.send(req).await {
            Ok(r) if !matches!(r.status().as_u16(), 502..=504) => Some(r),
            Ok(r) => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    "shields failed; asking the origin"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "no shield answered; asking the origin");
                None
            }
        }
    }

    /// The value of [`HOP`] this node sends.
    pub fn hop(&self) -> &HeaderValue {
        &self.hop
    }

    /// The shields as a pool (`GET /origins`, idle sweeps).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

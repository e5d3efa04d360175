//! Outpost: an edge caching CDN node.
//!
//! The request flow is described in `DESIGN.md`. The modules, in
//! dependency order from top to bottom: each may use the modules below
//! it, never one beside or above it (`tests/module_deps.rs` checks this).
//!
//! - [`server`]: listeners, HTTP/1.1 and HTTP/2 connections, the own
//!   HTTP/1 path, the PROXY protocol, connection limits, HTTP/2 abuse and
//!   keep-alive policy, config reload, graceful drain; starts a [`Node`].
//!   [`logging`] sets up the log output.
//! - [`admin`]: the admin listener's routes (health, stats, `/metrics`, the
//!   status page, purge, origins, reload).
//! - [`proxy`]: the request pipeline: the gate (access lists, limits, path
//!   safety, rules, rate limits), route by Host to a site, then the cache
//!   or the origin pool, and the response sent back.
//! - [`purge`]: the purge API, the durable purge log, fan-out to peers.
//!   [`admission`]: the client's address, access lists, rate limits, path
//!   checks and request rules.
//! - [`cache`]: the cache: RFC 9111 rules, keys, Vary, coalescing, and the
//!   cache layer that owns the store (lookups, fills, invalidation, the ban
//!   list checked on every hit).
//! - [`origin`]: per-site origin pools (selection, retries, health
//!   accounting), the two origin clients and the guard on request content;
//!   knows nothing of caching. [`access_log`]: the access log file.
//!   [`compress`]: content-coding negotiation and the gzip, Brotli and zstd
//!   streams.
//! - [`config`]: the configuration file, its validation and the embedded
//!   default. [`metrics`]: counters, per-site request series and the
//!   node's statistics.
//! - [`error`], [`clock`], [`deadline`], [`fields`]: the error type, coarse
//!   clocks, reusable timeouts and lookups in small header maps.
//!
//! Below all of them, the `outpost-storage` crate keeps bytes under
//! 32-byte keys in memory and on disk and knows nothing of HTTP.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod cache;
pub mod clock;
pub mod cluster;
pub mod compress;
pub mod config;
pub mod deadline;
pub mod error;
pub mod fields;
pub mod logging;
pub mod metrics;
pub mod origin;
pub mod proxy;
pub mod purge;
pub mod server;

pub use error::{Error, ErrorKind};
pub use server::Node;

//! Outpost: an edge caching CDN node.
//!
//! The request flow and the module map are described in `DESIGN.md`:
//! [`server`] accepts connections, [`proxy`] is the request pipeline,
//! [`origin`] talks to origin servers, [`admin`] serves the admin listener,
//! [`config`] loads and validates configuration.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod origin;
pub mod proxy;
pub mod purge;
pub mod server;

pub use error::{Error, ErrorKind};
pub use server::Node;

//! The HTTP cache: the one component that knows both the RFC 9111 rules
//! and the store. It owns the cache layer ([`CacheLayer`]: the store,
//! lookups with Vary and the ban list, fills, invalidation), the streaming
//! request coalescer ([`coalesce`]), the fill pump ([`fill`]), bodies read
//! from the store ([`stored_body`]) and the purge ban list ([`bans`]).
//!
//! It knows nothing of sockets, listeners or origin servers: the request
//! pipeline (`proxy`) decides when to ask the origin and hands the
//! answer to the cache; purges (`purge`) act on it through [`CacheLayer`].
//!
//! The pure modules take `http` types and `SystemTime` and never touch
//! sockets or storage:
//! [`control`] (Cache-Control, RFC 9213 targeted fields),
//! [`freshness`] (storability, lifetime, age, reuse decisions),
//! [`conditional`] (preconditions, entity tags, revalidation requests),
//! [`range`] (byte ranges, `multipart/byteranges`),
//! [`vary`] (secondary keys), [`key`] (primary keys),
//! [`meta`] (the stored head record), [`update`] (304 and HEAD merges),
//! [`invalidate`] (RFC 9111 §4.4) and [`status`] (RFC 9211 `Cache-Status`).

pub mod bans;
pub mod catch_up;
pub mod coalesce;
mod codec;
pub mod conditional;
pub mod control;
pub mod early_hints;
pub mod fill;
pub mod freshness;
pub mod invalidate;
pub mod key;
pub(crate) mod key_filter;
mod key_memo;
pub mod layer;
pub mod meta;
pub mod meta_memo;
pub mod post;
pub mod range;
pub(crate) mod recent;
mod sfv;
pub mod slice;
pub mod status;
pub mod stored_body;
mod syntax;
pub mod update;
pub mod vary;

pub use bans::{BanList, BanVerdict};
pub use layer::{CACHE_NAME, CacheLayer, Found, Lookup, RequestTarget};

//! The HTTP cache: RFC 9111 semantics as pure, socket-free building blocks
//! plus the streaming request coalescer.
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

pub mod coalesce;
mod codec;
pub mod conditional;
pub mod control;
pub mod freshness;
pub mod invalidate;
pub mod key;
pub(crate) mod key_filter;
mod key_memo;
pub mod meta;
pub mod meta_memo;
pub mod range;
mod sfv;
pub mod status;
mod syntax;
pub mod update;
pub mod vary;

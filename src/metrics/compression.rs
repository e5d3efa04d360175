//! Compression counters: bytes into and out of each coding, the time spent compressing,
//! bytes decoded for clients that do not accept a stored coding, and compressed variants
//! stored. Lock-free (striped) and process-wide, like the other hot-path counters.
//!
//! Owns: the counters. Must not know: how a coding is run.

use std::sync::OnceLock;

use outpost_storage::counter::Striped;
use serde::Serialize;

/// One coding's counters.
#[derive(Debug, Default)]
pub struct CodingCounters {
    /// Bytes given to the compressor.
    pub bytes_in: Striped,
    /// Compressed bytes it produced.
    pub bytes_out: Striped,
    /// Time spent in the compressor, nanoseconds.
    pub nanos: Striped,
    /// Compressed representations stored as variants.
    pub stored: Striped,
    /// Bytes decoded from this coding (a stored coding the client does not accept).
    pub decoded: Striped,
}

/// Per coding, in `Encoding::index` order (br, zstd, gzip).
#[derive(Debug, Default)]
pub struct CompressionCounters {
    pub codings: [CodingCounters; 3],
}

impl CompressionCounters {
    pub fn global() -> &'static CompressionCounters {
        static C: OnceLock<CompressionCounters> = OnceLock::new();
        C.get_or_init(CompressionCounters::default)
    }

    /// A snapshot for `/stats` and `/metrics`.
    pub fn figures(&self) -> Vec<CodingFigures> {
        ["br", "zstd", "gzip"]
            .iter()
            .zip(&self.codings)
            .map(|(name, c)| CodingFigures {
                coding: name,
                bytes_in: c.bytes_in.get(),
                bytes_out: c.bytes_out.get(),
                seconds: c.nanos.get() as f64 / 1e9,
                stored: c.stored.get(),
                decoded_bytes: c.decoded.get(),
            })
            .collect()
    }
}

/// One coding's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CodingFigures {
    pub coding: &'static str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    pub stored: u64,
    pub decoded_bytes: u64,
}

//! `outpost-storage`: the HTTP-agnostic two-tier store (placeholder, filled by the storage issue).

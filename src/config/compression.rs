//! `[site.compression]` (with defaults from `[compression]`): which responses the node
//! compresses, with which codings and levels, and in which order of preference.
//!
//! Owns: the settings and their validation with key paths. Must not know: how a coding is
//! negotiated or run (`compress`).

use serde::Deserialize;

use super::validate::Errors;

/// A content coding the node produces (RFC 9110 §8.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    /// RFC 7932.
    Br,
    /// RFC 8878.
    Zstd,
    /// RFC 1952.
    Gzip,
}

impl Encoding {
    /// Every coding, in the default order of preference.
    pub const ALL: [Encoding; 3] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];

    /// The token in `Accept-Encoding` / `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The coding named `token` (case-insensitive; `x-gzip` is gzip, RFC 9110 §8.4.1.3).
    pub fn parse(token: &str) -> Option<Encoding> {
        let t = token.trim();
        if t.eq_ignore_ascii_case("br") {
            Some(Encoding::Br)
        } else if t.eq_ignore_ascii_case("zstd") {
            Some(Encoding::Zstd)
        } else if t.eq_ignore_ascii_case("gzip") || t.eq_ignore_ascii_case("x-gzip") {
            Some(Encoding::Gzip)
        } else {
            None
        }
    }

    /// Index in per-coding arrays.
    pub fn index(self) -> usize {
        match self {
            Encoding::Br => 0,
            Encoding::Zstd => 1,
            Encoding::Gzip => 2,
        }
    }
}

/// A media type the node compresses: `type/subtype` or `type/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypePattern {
    Exact(String),
    Prefix(String),
}

impl TypePattern {
    fn parse(s: &str) -> Result<TypePattern, String> {
        let t = s.trim().to_ascii_lowercase();
        let Some((ty, sub)) = t.split_once('/') else {
            return Err(format!(
                "`{s}` is not a media type (type/subtype or type/*)"
            ));
        };
        let token = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        if !token(ty) {
            return Err(format!("`{s}` is not a media type"));
        }
        match sub {
            "*" => Ok(TypePattern::Prefix(format!("{ty}/"))),
            sub if token(sub) => Ok(TypePattern::Exact(t)),
            _ => Err(format!("`{s}` is not a media type")),
        }
    }

    /// Whether `essence` (`type/subtype` without parameters, any case) matches.
    pub fn matches(&self, essence: &str) -> bool {
        match self {
            TypePattern::Exact(t) => t.eq_ignore_ascii_case(essence),
            TypePattern::Prefix(p) => essence
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p)),
        }
    }
}

/// The media types a site compresses, kept for a lookup per hit: the exact ones in a
/// hash set of lower-case names, the `type/*` ones as prefixes.
#[derive(Debug, Clone, Default)]
pub struct Types {
    patterns: Vec<TypePattern>,
    exact: std::collections::HashSet<String, foldhash::fast::RandomState>,
    prefixes: Vec<String>,
    /// New with every change of the list (0: the empty default), so that
    /// answers memoised for one list are never taken for another.
    id: u64,
}

/// A new [`Types::id`].
fn next_types_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl PartialEq for Types {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for Types {}

impl Types {
    fn new(patterns: Vec<TypePattern>) -> Types {
        let mut t = Types {
            patterns: Vec::new(),
            exact: Default::default(),
            prefixes: Vec::new(),
            id: next_types_id(),
        };
        for p in patterns {
            t.push(p);
        }
        t
    }

    fn push(&mut self, p: TypePattern) {
        match &p {
            TypePattern::Exact(e) => {
                self.exact.insert(e.clone());
            }
            TypePattern::Prefix(x) => self.prefixes.push(x.clone()),
        }
        self.patterns.push(p);
        self.id = next_types_id();
    }

    fn clear(&mut self) {
        *self = Types::default();
    }

    /// Whether `essence` (`type/subtype`, any case) is listed.
    pub fn contains(&self, essence: &str) -> bool {
        if self.prefixes.iter().any(|p| {
            essence
                .get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p))
        }) {
            return true;
        }
        // Lower-cased on the stack: no allocation on the hit path.
        let mut buf = [0u8; 96];
        let Some(lower) = buf.get_mut(..essence.len()) else {
            return self.exact.contains(&essence.to_ascii_lowercase());
        };
        lower.copy_from_slice(essence.as_bytes());
        lower.make_ascii_lowercase();
        std::str::from_utf8(lower).is_ok_and(|l| self.exact.contains(l))
    }
}

/// Media types compressed by default: text, and the textual application types a site
/// serves (scripts, data, markup, manifests), SVG, WebAssembly and uncompressed fonts.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/json",
    "application/ld+json",
    "application/manifest+json",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/wasm",
    "application/vnd.ms-fontobject",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
    "font/ttf",
    "font/otf",
];

/// `[site.compression]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionConfig {
    /// Compress at all (default on).
    pub enabled: bool,
    /// Media types compressed.
    pub types: Types,
    /// Bodies smaller than this are sent as they are.
    pub min_size: u64,
    /// Codings the node produces, most preferred first (default br, zstd, gzip).
    pub prefer: Vec<Encoding>,
    /// gzip level 1–9.
    pub gzip_level: u32,
    /// Brotli quality 0–11.
    pub br_level: u32,
    /// zstd level 1–19.
    pub zstd_level: u32,
    /// Compress responses that are not cached too (on the fly, each time).
    pub compress_uncacheable: bool,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            types: Types::new(
                DEFAULT_TYPES
                    .iter()
                    .filter_map(|t| TypePattern::parse(t).ok())
                    .collect(),
            ),
            min_size: 1024,
            prefer: Encoding::ALL.to_vec(),
            // Compressed once per object and served from the store many times, so the levels
            // buy size rather than speed (nginx's gzip default is 1); README "Compression"
            // has the measurements behind them.
            gzip_level: 6,
            br_level: 6,
            zstd_level: 9,
            compress_uncacheable: true,
        }
    }
}

impl CompressionConfig {
    /// Whether a response of media type `content_type` (a `Content-Type` value) is compressed.
    pub fn compresses_type(&self, content_type: &str) -> bool {
        // On every hit of a compressing site: no allocation, one scan.
        let essence = match content_type.as_bytes().iter().position(|&b| b == b';') {
            Some(i) => &content_type[..i],
            None => content_type,
        }
        .trim();
        self.types.contains(essence)
    }

    /// Identifies the media type list (see [`Types`]): answers about it may
    /// be memoised under it.
    pub fn types_id(&self) -> u64 {
        self.types.id
    }

    /// The level for `e`.
    pub fn level(&self, e: Encoding) -> u32 {
        match e {
            Encoding::Br => self.br_level,
            Encoding::Zstd => self.zstd_level,
            Encoding::Gzip => self.gzip_level,
        }
    }
}

/// `[compression]` / `[site.compression]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileCompression {
    pub enabled: Option<bool>,
    pub types: Option<Vec<String>>,
    pub min_size: Option<super::file::SizeValue>,
    pub prefer: Option<Vec<String>>,
    pub gzip_level: Option<i64>,
    pub br_level: Option<i64>,
    pub zstd_level: Option<i64>,
    pub compress_uncacheable: Option<bool>,
}

/// `f` over `base` (the node-wide settings), validated; errors under `key`.
pub(super) fn compression(
    errs: &mut Errors,
    key: &str,
    f: Option<&FileCompression>,
    base: &CompressionConfig,
) -> CompressionConfig {
    let mut c = base.clone();
    let Some(f) = f else { return c };
    if let Some(e) = f.enabled {
        c.enabled = e;
    }
    if let Some(list) = &f.types {
        c.types.clear();
        for (i, t) in list.iter().enumerate() {
            match TypePattern::parse(t) {
                Ok(p) => c.types.push(p),
                Err(e) => errs.push(format!("{key}.types[{i}]"), e),
            }
        }
    }
    if let Some(v) = &f.min_size {
        c.min_size = super::validate::size(errs, &format!("{key}.min_size"), Some(v), c.min_size);
    }
    if let Some(list) = &f.prefer {
        c.prefer.clear();
        for (i, t) in list.iter().enumerate() {
            match Encoding::parse(t) {
                Some(e) if c.prefer.contains(&e) => errs.push(
                    format!("{key}.prefer[{i}]"),
                    format!("`{t}` is listed twice"),
                ),
                Some(e) => c.prefer.push(e),
                None => errs.push(
                    format!("{key}.prefer[{i}]"),
                    format!("`{t}`: the codings are \"br\", \"zstd\" and \"gzip\""),
                ),
            }
        }
    }
    let mut level = |name: &str, v: Option<i64>, max: i64, min: i64, into: &mut u32| {
        if let Some(v) = v {
            if (min..=max).contains(&v) {
                *into = v as u32;
            } else {
                errs.push(
                    format!("{key}.{name}"),
                    format!("{v}: must be {min} to {max}"),
                );
            }
        }
    };
    level("gzip_level", f.gzip_level, 9, 1, &mut c.gzip_level);
    level("br_level", f.br_level, 11, 0, &mut c.br_level);
    level("zstd_level", f.zstd_level, 19, 1, &mut c.zstd_level);
    if let Some(u) = f.compress_uncacheable {
        c.compress_uncacheable = u;
    }
    c
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn types_match_the_essence_of_a_content_type() {
        let c = CompressionConfig::default();
        assert!(c.compresses_type("text/html; charset=utf-8"));
        assert!(c.compresses_type("Application/JSON"));
        assert!(c.compresses_type("image/svg+xml"));
        assert!(!c.compresses_type("image/png"));
        assert!(!c.compresses_type("application/octet-stream"));
        assert!(!c.compresses_type(""));
    }

    #[test]
    fn a_bad_section_names_every_problem() {
        let mut errs = Errors::default();
        let f = FileCompression {
            types: Some(vec!["text/*".into(), "nonsense".into()]),
            prefer: Some(vec!["br".into(), "lzma".into(), "br".into()]),
            gzip_level: Some(10),
            br_level: Some(11),
            ..Default::default()
        };
        let c = compression(
            &mut errs,
            "site[0].compression",
            Some(&f),
            &CompressionConfig::default(),
        );
        let keys: Vec<String> = errs.0.iter().map(|e| e.key.clone()).collect();
        assert_eq!(
            keys,
            [
                "site[0].compression.types[1]",
                "site[0].compression.prefer[1]",
                "site[0].compression.prefer[2]",
                "site[0].compression.gzip_level",
            ]
        );
        assert_eq!(c.br_level, 11);
        assert_eq!(c.prefer, [Encoding::Br]);
    }
}

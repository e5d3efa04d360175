//! Content codings at the edge: which coding a client gets (RFC 9110 §12.5.3
//! `Accept-Encoding`), whether a response may be compressed at all, the fields of a
//! compressed representation (`Content-Encoding`, its own `ETag`, `Vary`), and the streams
//! that compress and decode a body ([`stream`]).
//!
//! Owns: negotiation, the compressibility rules and the codings' streams. Must not know:
//! where bodies come from or go (the store, fills, the origin), keys or freshness.

use http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

pub use crate::config::compression::{CompressionConfig, Encoding};

pub mod stream;

/// What a client's `Accept-Encoding` allows, as quality values in thousandths
/// (RFC 9110 §12.4.2): per coding the node produces, and for `identity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    coded: [u16; 3],
    identity: u16,
}

impl Default for Accepts {
    /// No `Accept-Encoding`: any coding is acceptable (§12.5.3), but a response without
    /// one goes out as it is, as every server does (a client that does not say it
    /// decodes may not).
    fn default() -> Self {
        Accepts {
            coded: [0; 3],
            identity: 1000,
        }
    }
}

impl Accepts {
    /// Parses every `Accept-Encoding` line of `headers` (RFC 9110 §12.5.3: a list of
    /// `coding [;q=value]`, case-insensitive, `*` for any coding not listed).
    pub fn from_headers(headers: &HeaderMap) -> Accepts {
        let mut lines = headers
            .get_all(http::header::ACCEPT_ENCODING)
            .iter()
            .peekable();
        if lines.peek().is_none() {
            return Accepts::default();
        }
        let mut coded: [Option<u16>; 3] = [None; 3];
        let mut identity: Option<u16> = None;
        let mut star: Option<u16> = None;
        for line in lines {
            let Ok(text) = line.to_str() else { continue };
            for member in text.split(',') {
                let mut parts = member.split(';');
                let coding = parts.next().unwrap_or("").trim();
                if coding.is_empty() {
                    continue;
                }
                let mut q = 1000u16;
                for p in parts {
                    if let Some((k, v)) = p.split_once('=')
                        && k.trim().eq_ignore_ascii_case("q")
                    {
                        q = qvalue(v.trim()).unwrap_or(0);
                    }
                }
                if coding == "*" {
                    star = Some(q);
                } else if coding.eq_ignore_ascii_case("identity") {
                    identity = Some(q);
                } else if let Some(e) = Encoding::parse(coding) {
                    coded[e.index()] = Some(q);
                }
            }
        }
        Accepts {
            coded: coded.map(|c| c.or(star).unwrap_or(0)),
            // §12.5.3: identity is acceptable unless excluded by name or by `*;q=0`; not
            // named, it comes after every coding the client lists.
            identity: identity.or(star.filter(|&q| q == 0)).unwrap_or(1),
        }
    }

    /// Whether `e` is acceptable.
    pub fn accepts(&self, e: Encoding) -> bool {
        self.coded[e.index()] > 0
    }

    /// Whether the unencoded representation is acceptable.
    pub fn accepts_identity(&self) -> bool {
        self.identity > 0
    }

    /// The coding to produce from `prefer` (the site's order): the acceptable one with the
    /// highest quality, ties to the earlier in `prefer`; `None` when identity is as good.
    pub fn best(&self, prefer: &[Encoding]) -> Option<Encoding> {
        let mut best: Option<(Encoding, u16)> = None;
        for &e in prefer {
            let q = self.coded[e.index()];
            if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((e, q));
            }
        }
        // A coding wins ties with identity: it is what compression is for.
        best.filter(|&(_, q)| q >= self.identity || !self.accepts_identity())
            .map(|(e, _)| e)
    }
}

/// An RFC 9110 §12.4.2 qvalue in thousandths (`0`, `0.5`, `1.000`); `None` when malformed.
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

/// The content coding of a response as far as the node is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// None (or `identity`).
    Identity,
    /// One coding the node can decode.
    Known(Encoding),
    /// Anything else (several codings, an unknown one): left alone.
    Other,
}

/// Read access to a response's fields: a `HeaderMap`, or the list a stored object keeps
/// (the hit path decides without building a map).
pub trait Fields {
    /// Calls `f` with each value of `name` until it returns `false`.
    fn each(&self, name: &HeaderName, f: &mut dyn FnMut(&HeaderValue) -> bool);

    /// The first value of `name`.
    fn first(&self, name: &HeaderName) -> Option<HeaderValue> {
        let mut found = None;
        self.each(name, &mut |v| {
            found = Some(v.clone());
            false
        });
        found
    }

    /// Whether the first value of `name` satisfies `f` (`false` when there
    /// is none).
    fn first_is(&self, name: &HeaderName, f: &mut dyn FnMut(&HeaderValue) -> bool) -> bool {
        let mut yes = false;
        self.each(name, &mut |v| {
            yes = f(v);
            false
        });
        yes
    }
}

impl Fields for HeaderMap {
    fn each(&self, name: &HeaderName, f: &mut dyn FnMut(&HeaderValue) -> bool) {
        for v in crate::fields::all(self, name) {
            if !f(v) {
                return;
            }
        }
    }
}

impl Fields for [(HeaderName, HeaderValue)] {
    fn each(&self, name: &HeaderName, f: &mut dyn FnMut(&HeaderValue) -> bool) {
        for (n, v) in self {
            if n == name && !f(v) {
                return;
            }
        }
    }
}

/// The `Content-Encoding` of `headers`.
pub fn content_coding(headers: &(impl Fields + ?Sized)) -> Coding {
    let mut found = Coding::Identity;
    let mut values = Vec::new();
    headers.each(&CONTENT_ENCODING, &mut |v| {
        values.push(v.clone());
        true
    });
    for v in &values {
        let Ok(text) = v.to_str() else {
            return Coding::Other;
        };
        for c in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if c.eq_ignore_ascii_case("identity") {
                continue;
            }
            match (Encoding::parse(c), found) {
                (Some(e), Coding::Identity) => found = Coding::Known(e),
                _ => return Coding::Other,
            }
        }
    }
    found
}

/// Whether the node may compress a response with `status` and `headers` whose body is
/// `len` bytes (`None`: unknown), per `cfg`. Never: a coding already applied, `no-transform`
/// (RFC 9111 §5.2.2.6), a status other than 200 (206 and other range answers, 204, 304),
/// a media type not listed, a body under `min_size`.
pub fn compressible(
    cfg: &CompressionConfig,
    status: StatusCode,
    headers: &(impl Fields + ?Sized),
    len: Option<u64>,
) -> bool {
    // The type first: most responses that are not compressed are so by their type.
    cfg.enabled
        && status == StatusCode::OK
        && len.is_none_or(|l| l >= cfg.min_size.max(1))
        && headers.first_is(&CONTENT_TYPE, &mut |v| type_compressed(cfg, v))
        && content_coding(headers) == Coding::Identity
        && !no_transform(headers)
}

/// The longest `Content-Type` value whose answer is memoised.
const TYPE_MEMO_LEN: usize = 46;

/// (type list, value length, value, answer), four slots by length and first
/// byte: a site's answers carry a handful of types, each asked about on every
/// answer that may be compressed.
type TypeMemo = [(u64, u8, [u8; TYPE_MEMO_LEN], bool); 4];

thread_local! {
    static TYPE_MEMO: std::cell::RefCell<TypeMemo> =
        const { std::cell::RefCell::new([(0, 0, [0; TYPE_MEMO_LEN], false); 4]) };
}

/// Whether `cfg` compresses the media type of the `Content-Type` value `v`.
fn type_compressed(cfg: &CompressionConfig, v: &HeaderValue) -> bool {
    let answer = |v: &HeaderValue| v.to_str().is_ok_and(|t| cfg.compresses_type(t));
    let b = v.as_bytes();
    let (Some(&first), true) = (b.first(), b.len() <= TYPE_MEMO_LEN) else {
        return answer(v);
    };
    let id = cfg.types_id();
    let slot = (b.len() ^ usize::from(first)) & 3;
    let hit = TYPE_MEMO
        .try_with(|m| {
            let m = m.try_borrow().ok()?;
            let (mid, len, bytes, yes) = &m[slot];
            (*mid == id && usize::from(*len) == b.len() && bytes.get(..b.len()) == Some(b))
                .then_some(*yes)
        })
        .ok()
        .flatten();
    if let Some(yes) = hit {
        return yes;
    }
    let yes = answer(v);
    let _ = TYPE_MEMO.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            let mut bytes = [0; TYPE_MEMO_LEN];
            bytes[..b.len()].copy_from_slice(b);
            m[slot] = (id, b.len() as u8, bytes, yes);
        }
    });
    yes
}

/// `Cache-Control: no-transform` (RFC 9111 §5.2.2.6): an intermediary must not change the
/// content.
pub fn no_transform(headers: &(impl Fields + ?Sized)) -> bool {
    let mut found = false;
    headers.each(&CACHE_CONTROL, &mut |v| {
        found = v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        });
        !found
    });
    found
}

/// The entity tag of the representation in coding `e` made from one tagged `etag`
/// (RFC 9110 §8.8.3: a different representation needs a different tag): the coding's name
/// is added inside the quotes, so `"abc"` becomes `"abc-br"` and `W/"abc"` `W/"abc-br"`.
pub fn coded_etag(etag: &HeaderValue, e: Encoding) -> Option<HeaderValue> {
    let s = etag.to_str().ok()?;
    let (weak, opaque) = match s.strip_prefix("W/") {
        Some(rest) => ("W/", rest),
        None => ("", s),
    };
    let inner = opaque.strip_prefix('"')?.strip_suffix('"')?;
    HeaderValue::from_str(&format!("{weak}\"{inner}-{}\"", e.as_str())).ok()
}

/// Adds `Accept-Encoding` to `Vary` unless it is there already (or `Vary: *`): one field
/// line, merged with the origin's names.
pub fn vary_on_accept_encoding(headers: &mut HeaderMap) {
    let mut names: Vec<String> = Vec::new();
    for v in headers.get_all(VARY) {
        let Ok(s) = v.to_str() else { return };
        for n in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if n == "*" || n.eq_ignore_ascii_case("accept-encoding") {
                return;
            }
            names.push(n.to_owned());
        }
    }
    names.push("Accept-Encoding".to_owned());
    if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
        headers.insert(VARY, v);
    }
}

/// Turns the fields of a response into those of its representation in coding `e`:
/// `Content-Encoding`, the coded `ETag`, `Vary`; the length is the caller's to set.
pub fn to_coded(headers: &mut HeaderMap, e: Encoding) {
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(e.as_str()));
    if let Some(t) = headers.get(ETAG).and_then(|t| coded_etag(t, e)) {
        headers.insert(ETAG, t);
    }
    headers.remove(http::header::CONTENT_LENGTH);
    vary_on_accept_encoding(headers);
}

/// Turns the fields of a coded response into those of its decoded representation.
pub fn to_decoded(headers: &mut HeaderMap) {
    headers.remove(CONTENT_ENCODING);
    headers.remove(http::header::CONTENT_LENGTH);
    // Not the tag of the coded bytes: a weak one says "same content".
    if let Some(t) = headers
        .get(ETAG)
        .and_then(|t| t.to_str().ok())
        .map(str::to_owned)
    {
        match t.strip_prefix("W/") {
            Some(_) => {}
            None => match HeaderValue::from_str(&format!("W/{t}")) {
                Ok(v) => {
                    headers.insert(ETAG, v);
                }
                Err(_) => {
                    headers.remove(ETAG);
                }
            },
        }
    }
    vary_on_accept_encoding(headers);
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

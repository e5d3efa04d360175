//! Cache-Control parsing (RFC 9111 §5.2), RFC 5861 extensions and RFC 9213
//! targeted cache-control fields (`CDN-Cache-Control`, `Outpost-Cache-Control`).
//!
//! Parsing never fails: unknown directives are ignored (RFC 9111 §5.2.3) and
//! malformed or conflicting ones get the *conservative* reading documented
//! on each field, with [`ResponseDirectives::malformed`] /
//! [`RequestDirectives::malformed`] set so the caller can report it.
//!
//! Conflict rules (RFC 9111 §4.2.1: "either the first occurrence should be
//! used or the response should be considered stale"; "If directives
//! conflict ..., the most restrictive directive should be honored"):
//!
//! | directive | duplicated, differing values | invalid argument |
//! |---|---|---|
//! | `max-age`, `s-maxage` (response) | 0 (stale) | 0 (stale) |
//! | `stale-while-revalidate`, `stale-if-error` | smallest | ignored |
//! | `no-cache`, `private` | union of field lists; unqualified wins | unqualified |
//! | `max-age` (request) | smallest | 0 (a reload) |
//! | `min-fresh` (request) | largest | ignored |
//! | `max-stale` (request) | smallest; a value beats the bare form | absent (no stale) |
//!
//! Equal duplicates (`max-age=60, max-age=60`) are not conflicts.

use std::borrow::Cow;

use http::HeaderMap;
use http::header::{CACHE_CONTROL, HeaderName};

use super::recent::Recent;
use super::syntax::{
    DELTA_SECONDS_MAX, is_token, parse_delta_seconds, split_list, trim_ows, unquote,
};

/// `CDN-Cache-Control` (RFC 9213 §3).
pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// A directive that is either absent, unqualified, or qualified with a list
/// of field names (`no-cache`, `private`: RFC 9111 §5.2.2.4, §5.2.2.7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldScope {
    /// The directive is not present.
    #[default]
    Absent,
    /// Unqualified: applies to the whole response.
    All,
    /// Qualified: applies only to these fields (lower-case names).
    Fields(Vec<HeaderName>),
}

impl FieldScope {
    /// Whether the directive is present in its unqualified form.
    pub fn is_all(&self) -> bool {
        matches!(self, FieldScope::All)
    }

    /// Whether the directive is present in any form.
    pub fn is_present(&self) -> bool {
        !matches!(self, FieldScope::Absent)
    }

    /// The qualifying field names (empty unless qualified).
    pub fn fields(&self) -> &[HeaderName] {
        match self {
            FieldScope::Fields(f) => f,
            _ => &[],
        }
    }

    /// Combines a repeated directive: the unqualified form wins (most
    /// restrictive), qualified lists are united.
    fn merge(&mut self, other: FieldScope) {
        match (&mut *self, other) {
            (_, FieldScope::Absent) | (FieldScope::All, _) => {}
            (s, FieldScope::All) => *s = FieldScope::All,
            (FieldScope::Fields(mine), FieldScope::Fields(theirs)) => {
                for f in theirs {
                    if !mine.contains(&f) {
                        mine.push(f);
                    }
                }
            }
            (s @ FieldScope::Absent, o) => *s = o,
        }
    }
}

/// Response cache directives (RFC 9111 §5.2.2, RFC 5861).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `max-age` (§5.2.2.1), clamped to 2^31 (§1.2.2).
    pub max_age: Option<u32>,
    /// `s-maxage` (§5.2.2.10).
    pub s_maxage: Option<u32>,
    /// `no-cache` (§5.2.2.4).
    pub no_cache: FieldScope,
    /// `no-store` (§5.2.2.5).
    pub no_store: bool,
    /// `private` (§5.2.2.7).
    pub private: FieldScope,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `must-understand` (§5.2.2.3).
    pub must_understand: bool,
    /// `no-transform` (§5.2.2.6).
    pub no_transform: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate` (RFC 5861 §3).
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error` (RFC 5861 §4).
    pub stale_if_error: Option<u32>,
    /// Some directive was malformed or conflicting; the conservative reading
    /// (see the module table) was applied.
    pub malformed: bool,
}

/// `max-stale` (RFC 9111 §5.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxStale {
    /// Without a value: any staleness is acceptable.
    Any,
    /// Up to this many seconds of staleness.
    Secs(u32),
}

/// Request cache directives (RFC 9111 §5.2.1, RFC 5861 §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `max-age` (§5.2.1.1).
    pub max_age: Option<u32>,
    /// `max-stale` (§5.2.1.2).
    pub max_stale: Option<MaxStale>,
    /// `min-fresh` (§5.2.1.3).
    pub min_fresh: Option<u32>,
    /// `no-cache` (§5.2.1.4).
    pub no_cache: bool,
    /// `no-store` (§5.2.1.5).
    pub no_store: bool,
    /// `no-transform` (§5.2.1.6).
    pub no_transform: bool,
    /// `only-if-cached` (§5.2.1.7).
    pub only_if_cached: bool,
    /// `stale-if-error` in a request (RFC 5861 §4).
    pub stale_if_error: Option<u32>,
    /// Some directive was malformed or conflicting.
    pub malformed: bool,
}

/// A directive's argument, unquoted (borrowed unless it had escapes).
/// `Err(())` means a syntactically broken argument.
type Arg<'a> = Option<Result<Cow<'a, [u8]>, ()>>;

/// Splits Cache-Control field values into directives (RFC 9111 §5.2:
/// `cache-directive = token [ "=" ( token / quoted-string ) ]`, names are
/// case-insensitive) and hands each to `f` with its name lower-cased.
/// Items whose name is not a token are dropped; the result says whether
/// there were any. Nothing is allocated unless an argument has escapes.
fn each_directive<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    mut f: impl FnMut(&str, Arg<'a>),
) -> bool {
    let mut malformed = false;
    for value in values {
        for item in split_list(value) {
            let (name, arg) = match item.iter().position(|&b| b == b'=') {
                Some(i) => (
                    trim_ows(item.get(..i).unwrap_or_default()),
                    Some(trim_ows(item.get(i + 1..).unwrap_or_default())),
                ),
                None => (item, None),
            };
            if !is_token(name) {
                malformed = true;
                continue;
            }
            // Every directive this cache acts on has a short name; longer
            // ones are unknown extensions, ignored (RFC 9111 §5.2.3).
            let mut lower = [0u8; 32];
            let Some(dst) = lower.get_mut(..name.len()) else {
                continue;
            };
            dst.copy_from_slice(name);
            dst.make_ascii_lowercase();
            // A token is ASCII.
            let Ok(name) = std::str::from_utf8(dst) else {
                continue;
            };
            let arg = arg.map(|a| {
                if a.first() == Some(&b'"') {
                    unquote(a).map(Cow::Owned).ok_or(())
                } else if is_token(a) {
                    Ok(Cow::Borrowed(a))
                } else {
                    Err(())
                }
            });
            f(name, arg);
        }
    }
    malformed
}

/// Parses a field-name list argument (`no-cache="a, b"`); any invalid
/// member makes the whole directive unqualified (conservative).
fn field_scope(arg: Arg<'_>, malformed: &mut bool) -> FieldScope {
    let Some(arg) = arg else {
        return FieldScope::All;
    };
    let Ok(arg) = arg else {
        *malformed = true;
        return FieldScope::All;
    };
    let mut fields = Vec::new();
    for member in split_list(&arg) {
        match HeaderName::from_bytes(member) {
            Ok(n) if is_token(member) => {
                if !fields.contains(&n) {
                    fields.push(n);
                }
            }
            _ => {
                *malformed = true;
                return FieldScope::All;
            }
        }
    }
    if fields.is_empty() {
        *malformed = true;
        return FieldScope::All;
    }
    FieldScope::Fields(fields)
}

fn delta(arg: &Arg<'_>) -> Option<u32> {
    match arg {
        Some(Ok(a)) => parse_delta_seconds(a),
        _ => None,
    }
}

/// Records a response freshness value: differing duplicates and invalid
/// values mean stale (0), RFC 9111 §4.2.1.
fn set_strict(slot: &mut Option<u32>, v: Option<u32>, malformed: &mut bool) {
    let v = v.unwrap_or_else(|| {
        *malformed = true;
        0
    });
    match *slot {
        Some(old) if old != v => {
            *malformed = true;
            *slot = Some(0);
        }
        _ => *slot = Some(v),
    }
}

/// Keeps the smallest of repeated values; invalid values are ignored.
fn set_min(slot: &mut Option<u32>, v: Option<u32>, malformed: &mut bool) {
    match v {
        None => *malformed = true,
        Some(v) => *slot = Some(slot.map_or(v, |o| o.min(v))),
    }
}

impl ResponseDirectives {
    /// Parses every `Cache-Control` field line of a response. A single
    /// short line (what nearly every origin sends, the same on each of its
    /// responses) is read through a per-thread memo of the last few.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut lines = crate::fields::all(headers, &CACHE_CONTROL);
        match (lines.next(), lines.next()) {
            (Some(v), None) => Self::memoised(v.as_bytes()),
            _ => Self::parse(crate::fields::all(headers, &CACHE_CONTROL).map(|v| v.as_bytes())),
        }
    }

    /// [`Self::parse`] of one field line, memoised by its bytes.
    fn memoised(line: &[u8]) -> Self {
        /// Longest line kept (as its length and bytes).
        const LONGEST: usize = 48;
        type Line = (usize, [u8; LONGEST]);
        thread_local! {
            static MEMO: std::cell::RefCell<Recent<Line, ResponseDirectives, 4>> =
                const { std::cell::RefCell::new(Recent::new()) };
        }
        let mut key = (line.len(), [0u8; LONGEST]);
        let Some(k) = key.1.get_mut(..line.len()) else {
            return Self::parse([line]);
        };
        k.copy_from_slice(line);
        MEMO.with(|m| {
            let Ok(mut m) = m.try_borrow_mut() else {
                return Self::parse([line]);
            };
            if let Some(d) = m.get(&key) {
                return d;
            }
            let d = Self::parse([line]);
            m.put(key, d.clone());
            d
        })
    }

    /// Parses Cache-Control field values (each may hold several directives).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut malformed = false;
        let mut d = ResponseDirectives::default();
        let bad_names = each_directive(values, |name, arg| {
            match name {
                "max-age" => set_strict(&mut d.max_age, delta(&arg), &mut malformed),
                "s-maxage" => set_strict(&mut d.s_maxage, delta(&arg), &mut malformed),
                "stale-while-revalidate" => {
                    set_min(&mut d.stale_while_revalidate, delta(&arg), &mut malformed)
                }
                "stale-if-error" => set_min(&mut d.stale_if_error, delta(&arg), &mut malformed),
                "no-cache" => d.no_cache.merge(field_scope(arg, &mut malformed)),
                "private" => d.private.merge(field_scope(arg, &mut malformed)),
                "no-store" => d.no_store = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "must-understand" => d.must_understand = true,
                "no-transform" => d.no_transform = true,
                "immutable" => d.immutable = true,
                _ => {} // RFC 9111 §5.2.3: unknown extensions are ignored.
            }
        });
        d.malformed = malformed || bad_names;
        d
    }

    /// Whether the response carries explicit freshness from these directives.
    pub fn has_explicit_lifetime(&self) -> bool {
        self.max_age.is_some() || self.s_maxage.is_some()
    }
}

impl RequestDirectives {
    /// Parses every `Cache-Control` field line of a request.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut lines = crate::fields::all(headers, &CACHE_CONTROL).peekable();
        // Most requests have none: nothing to parse.
        if lines.peek().is_none() {
            return Self::default();
        }
        Self::parse(lines.map(|v| v.as_bytes()))
    }

    /// Parses Cache-Control field values of a request.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut malformed = false;
        let mut d = RequestDirectives::default();
        let bad_names = each_directive(values, |name, arg| {
            match name {
                // §5.2.1.1: an invalid value is read as 0, i.e. a reload.
                "max-age" => {
                    let v = delta(&arg).unwrap_or_else(|| {
                        malformed = true;
                        0
                    });
                    d.max_age = Some(d.max_age.map_or(v, |o| o.min(v)));
                }
                // §5.2.1.3: an invalid value is ignored.
                "min-fresh" => match delta(&arg) {
                    Some(v) => d.min_fresh = Some(d.min_fresh.map_or(v, |o| o.max(v))),
                    None => malformed = true,
                },
                // §5.2.1.2: an invalid value means no stale response is accepted.
                "max-stale" => match &arg {
                    None => {
                        if d.max_stale.is_none() {
                            d.max_stale = Some(MaxStale::Any);
                        }
                    }
                    Some(_) => match delta(&arg) {
                        Some(v) => {
                            d.max_stale = Some(match d.max_stale {
                                Some(MaxStale::Secs(o)) => MaxStale::Secs(o.min(v)),
                                _ => MaxStale::Secs(v),
                            })
                        }
                        None => {
                            malformed = true;
                            d.max_stale = Some(MaxStale::Secs(0));
                        }
                    },
                },
                "stale-if-error" => set_min(&mut d.stale_if_error, delta(&arg), &mut malformed),
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "no-transform" => d.no_transform = true,
                "only-if-cached" => d.only_if_cached = true,
                _ => {}
            }
        });
        d.malformed = malformed || bad_names;
        d
    }
}

/// Where the effective response directives came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlSource {
    /// A targeted field (RFC 9213) took precedence; `Cache-Control` and
    /// `Expires` are ignored by this cache (RFC 9213 §2.2).
    Targeted(HeaderName),
    /// Plain `Cache-Control` (possibly absent).
    CacheControl,
}

/// The response directives this cache obeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveControl {
    /// The directives.
    pub directives: ResponseDirectives,
    /// Where they came from.
    pub source: ControlSource,
}

impl EffectiveControl {
    /// Whether `Expires` must be ignored (a targeted field is in force,
    /// RFC 9213 §2.2).
    pub fn ignores_expires(&self) -> bool {
        matches!(self.source, ControlSource::Targeted(_))
    }
}

/// The target list for a configured targeted field: it first, then
/// `CDN-Cache-Control` (RFC 9213 §2.2: more specific targets come first).
pub fn target_list(configured: Option<&HeaderName>) -> Vec<HeaderName> {
    let mut v: Vec<HeaderName> = configured.into_iter().cloned().collect();
    if !v.contains(&CDN_CACHE_CONTROL) {
        v.push(CDN_CACHE_CONTROL.clone());
    }
    v
}

/// Selects the response directives for this cache (RFC 9213 §2.2): the
/// first field of `targets` (in order) with a valid, non-empty value wins and
/// `Cache-Control`/`Expires` are then ignored; otherwise `Cache-Control`.
pub fn effective_response_control(headers: &HeaderMap, targets: &[HeaderName]) -> EffectiveControl {
    let present = fields_present(headers, targets);
    for (i, name) in targets.iter().enumerate() {
        if !present.has(i) {
            continue;
        }
        if let Some(directives) = parse_targeted(headers, name) {
            return EffectiveControl {
                directives,
                source: ControlSource::Targeted(name.clone()),
            };
        }
    }
    EffectiveControl {
        directives: ResponseDirectives::from_headers(headers),
        source: ControlSource::CacheControl,
    }
}

/// Which of a few field names occur in a header map (see [`fields_present`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Present(u64);

impl Present {
    /// Whether the `i`-th name was found (names past the 64th always are).
    pub fn has(self, i: usize) -> bool {
        i >= 64 || self.0 & (1 << i) != 0
    }
}

/// Which of `names` occur in `headers`, by one scan over the map's field
/// names instead of one lookup per name. Targeted fields and the tag
/// field are not standard names, and hashing such a name for a lookup
/// cost more (~190 instructions) than comparing it with the ~10 names of
/// a typical response (a standard name differs from it at the first
/// compare).
pub fn fields_present(headers: &HeaderMap, names: &[HeaderName]) -> Present {
    let mut found = 0u64;
    if names.len() > 64 {
        return Present(u64::MAX);
    }
    for key in headers.keys() {
        for (i, n) in names.iter().enumerate() {
            if key == n {
                found |= 1 << i;
            }
        }
    }
    Present(found)
}

/// The targeted fields present in `headers`: what a site with
/// `strip_targeted_fields` removes before a response goes to clients
/// (whether or not they were valid).
pub fn targeted_fields_to_strip(headers: &HeaderMap, targets: &[HeaderName]) -> Vec<HeaderName> {
    let present = fields_present(headers, targets);
    targets
        .iter()
        .enumerate()
        .filter(|&(i, _)| present.has(i))
        .map(|(_, n)| n.clone())
        .collect()
}

/// Parses one targeted field as an RFC 8941 Dictionary (RFC 9213 §2.1).
/// Returns `None` when it is absent, empty or fails to parse: the field is
/// then ignored (RFC 9213 §2.1).
pub fn parse_targeted(headers: &HeaderMap, name: &HeaderName) -> Option<ResponseDirectives> {
    let values = headers.get_all(name);
    // The common case: the origin sent no such field.
    values.iter().next()?;
    let mut joined = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    let members = super::sfv::parse_dictionary(&joined)?;
    if members.is_empty() {
        return None;
    }
    Some(directives_from_dictionary(members))
}

fn directives_from_dictionary(members: Vec<(String, super::sfv::Item)>) -> ResponseDirectives {
    use super::sfv::Item;
    let mut d = ResponseDirectives::default();
    let mut malformed = false;
    let secs = |v: &Item, m: &mut bool| match v {
        Item::Integer(i) if *i >= 0 => Some(
            u32::try_from(*i)
                .unwrap_or(DELTA_SECONDS_MAX)
                .min(DELTA_SECONDS_MAX),
        ),
        _ => {
            *m = true;
            None
        }
    };
    for (key, value) in members {
        if value == Item::Boolean(false) {
            continue;
        }
        match key.as_str() {
            "max-age" => d.max_age = Some(secs(&value, &mut malformed).unwrap_or(0)),
            "s-maxage" => d.s_maxage = Some(secs(&value, &mut malformed).unwrap_or(0)),
            "stale-while-revalidate" => d.stale_while_revalidate = secs(&value, &mut malformed),
            "stale-if-error" => d.stale_if_error = secs(&value, &mut malformed),
            "no-cache" | "private" => {
                let scope = match &value {
                    Item::Boolean(true) => FieldScope::All,
                    Item::String(s) | Item::Token(s) => {
                        field_scope(Some(Ok(Cow::Borrowed(s.as_bytes()))), &mut malformed)
                    }
                    _ => {
                        malformed = true;
                        FieldScope::All
                    }
                };
                if key == "no-cache" {
                    d.no_cache = scope;
                } else {
                    d.private = scope;
                }
            }
            "no-store" => d.no_store = true,
            "public" => d.public = true,
            "must-revalidate" => d.must_revalidate = true,
            "proxy-revalidate" => d.proxy_revalidate = true,
            "must-understand" => d.must_understand = true,
            "no-transform" => d.no_transform = true,
            "immutable" => d.immutable = true,
            _ => {}
        }
    }
    d.malformed = malformed;
    d
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "control_tests.rs"]
mod tests;

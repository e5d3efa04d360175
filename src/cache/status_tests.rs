//! `Cache-Status` members, phases and their encoding (RFC 9211).

use super::*;
use crate::cache::sfv::parse_dictionary;

#[test]
fn members_are_equal_only_when_every_field_is() {
    let base = CacheStatus::new("Outpost")
        .fwd(Fwd::UriMiss)
        .fwd_status(200)
        .ttl(5)
        .detail("d");
    assert_eq!(base, base.clone());
    let changed = [
        CacheStatus::new("Other")
            .fwd(Fwd::UriMiss)
            .fwd_status(200)
            .ttl(5)
            .detail("d"),
        base.clone().hit(),
        base.clone().fwd(Fwd::Stale),
        base.clone().fwd_status(304),
        base.clone().ttl(-5),
        base.clone().stored(),
        base.clone().collapsed(),
        base.clone().key("k"),
        base.clone().detail("e"),
    ];
    for c in &changed {
        assert_ne!(&base, c);
        assert_eq!(c, &c.clone());
    }
}

#[test]
fn hit_with_ttl() {
    // RFC 9211 §2.1, §2.4
    let s = CachePhase::Hit.cache_status("Outpost").ttl(42);
    assert_eq!(s.to_string(), "Outpost; hit; ttl=42");
}

#[test]
fn miss_stored() {
    // RFC 9211 §2.2, §2.3, §2.5
    let s = CachePhase::UriMiss
        .cache_status("Outpost")
        .fwd_status(200)
        .stored();
    assert_eq!(
        s.to_string(),
        "Outpost; fwd=uri-miss; fwd-status=200; stored"
    );
}

#[test]
fn collapsed_and_detail_quoting() {
    // RFC 9211 §2.6, §2.8; RFC 8941 §4.1.6 string escaping.
    let s = CachePhase::Collapsed
        .cache_status("Outpost")
        .detail("a \"b\" \\ é");
    assert_eq!(
        s.to_string(),
        r#"Outpost; fwd=uri-miss; collapsed; detail="a \"b\" \\ ?""#
    );
    assert!(s.to_header_value().to_str().is_ok());
}

#[test]
fn non_token_name_is_a_string_and_ttl_clamps() {
    // RFC 8941 §3.3.1: integers have at most 15 digits.
    let s = CacheStatus::new("edge 1").ttl(i64::MIN).key("k");
    assert_eq!(s.to_string(), r#""edge 1"; ttl=-999999999999999; key="k""#);
}

#[test]
fn hit_names_are_the_hit_phases() {
    let all = [
        CachePhase::Hit,
        CachePhase::StaleHit,
        CachePhase::StaleWhileRevalidate,
        CachePhase::StaleIfError,
        CachePhase::Revalidated,
        CachePhase::UriMiss,
        CachePhase::VaryMiss,
        CachePhase::Stale,
        CachePhase::Request,
        CachePhase::Collapsed,
        CachePhase::Bypass,
        CachePhase::Method,
        CachePhase::OnlyIfCachedMiss,
    ];
    for p in all {
        assert_eq!(CachePhase::is_hit_name(p.as_str()), p.is_hit(), "{p:?}");
    }
    assert!(!CachePhase::is_hit_name("pass"));
}

#[test]
fn phases_map_to_fwd() {
    // RFC 9211 §2.2
    assert_eq!(CachePhase::Revalidated.fwd(), Some(Fwd::Stale));
    assert_eq!(CachePhase::Request.fwd(), Some(Fwd::Request));
    assert_eq!(CachePhase::Bypass.fwd(), Some(Fwd::Bypass));
    assert_eq!(CachePhase::VaryMiss.fwd(), Some(Fwd::VaryMiss));
    assert!(CachePhase::StaleWhileRevalidate.is_hit());
    assert!(!CachePhase::StaleIfError.is_hit());
    let s = CachePhase::StaleIfError
        .cache_status("Outpost")
        .fwd_status(503);
    assert_eq!(
        s.to_string(),
        "Outpost; fwd=stale; fwd-status=503; detail=\"stale-if-error\""
    );
    assert_eq!(CachePhase::Bypass.to_string(), "bypass");
    assert_eq!(NoCacheReason::VaryStar.to_string(), "vary-star");
}

#[test]
fn output_parses_as_structured_field_params() {
    // RFC 9211 §2: an sf-list of tokens/strings with parameters; our
    // dictionary parser accepts `name;params` members, so reuse it.
    let s = CachePhase::UriMiss
        .cache_status("outpost")
        .fwd_status(200)
        .stored()
        .ttl(-5)
        .detail("x");
    assert!(parse_dictionary(s.to_string().as_bytes()).is_some(), "{s}");
}

#[test]
fn append_preserves_upstream_members() {
    // RFC 9211 §2: existing members are kept, ours goes last.
    let mut h = HeaderMap::new();
    h.insert(
        CACHE_STATUS.clone(),
        HeaderValue::from_static("Origin; hit"),
    );
    CachePhase::Hit.cache_status("Outpost").append_to(&mut h);
    assert_eq!(h.get(&CACHE_STATUS).unwrap(), "Origin; hit, Outpost; hit");
    let mut h = HeaderMap::new();
    CachePhase::Bypass.cache_status("Outpost").append_to(&mut h);
    assert_eq!(h.get(&CACHE_STATUS).unwrap(), "Outpost; fwd=bypass");
    // Two upstream lines become one list, ours last.
    let mut h = HeaderMap::new();
    h.append(CACHE_STATUS.clone(), HeaderValue::from_static("Origin"));
    h.append(
        CACHE_STATUS.clone(),
        HeaderValue::from_static("Shield; hit"),
    );
    CachePhase::Hit.cache_status("Outpost").append_to(&mut h);
    let all: Vec<_> = h.get_all(&CACHE_STATUS).iter().collect();
    assert_eq!(all, ["Origin, Shield; hit, Outpost; hit"]);
}

#[test]
fn room_made_is_taken_in_place_and_empty_lines_are_empty_lists() {
    // No Cache-Status stored: an empty line, then ours alone, in place.
    let mut h = HeaderMap::new();
    h.insert(http::header::ETAG, HeaderValue::from_static("\"a\""));
    CacheStatus::make_room(&mut h);
    let room = h.len();
    CachePhase::Hit.cache_status("Outpost").append_to(&mut h);
    assert_eq!(h.len(), room);
    assert_eq!(h.get(&CACHE_STATUS).unwrap(), "Outpost; hit");
    // An upstream member stored: no room made, ours appended after it.
    let mut h = HeaderMap::new();
    h.insert(
        CACHE_STATUS.clone(),
        HeaderValue::from_static("Shield; hit"),
    );
    CacheStatus::make_room(&mut h);
    assert_eq!(h.get_all(&CACHE_STATUS).iter().count(), 1);
    CachePhase::Hit.cache_status("Outpost").append_to(&mut h);
    assert_eq!(h.get(&CACHE_STATUS).unwrap(), "Shield; hit, Outpost; hit");
    // Empty lines among upstream ones are left out of the list.
    let mut h = HeaderMap::new();
    h.append(CACHE_STATUS.clone(), HeaderValue::from_static(""));
    h.append(CACHE_STATUS.clone(), HeaderValue::from_static("Origin"));
    CachePhase::Hit.cache_status("Outpost").append_to(&mut h);
    let all: Vec<_> = h.get_all(&CACHE_STATUS).iter().collect();
    assert_eq!(all, ["Origin, Outpost; hit"]);
}

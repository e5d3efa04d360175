use super::*;
use crate::cache::control::RequestDirectives;
use crate::cache::control::target_list;
use crate::cache::freshness::{Reuse, ReuseOptions, decide};
use std::time::{Duration, UNIX_EPOCH};

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

fn list(pairs: &[(&str, &str)]) -> HeaderList {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

fn sample() -> ObjectMeta {
    let targets = target_list(None);
    let policy = MetaPolicy {
        tag_header: &SURROGATE_KEY,
        targets: &targets,
        heuristic: HeuristicConfig::default(),
    };
    let date = httpdate::fmt_http_date(t(1_000_000));
    let mut m = ObjectMeta::from_response(
        [9; 16],
        StatusCode::OK,
        list(&[
            ("date", &date),
            (
                "cache-control",
                "max-age=60, stale-while-revalidate=30, must-revalidate",
            ),
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("vary", "Accept-Encoding"),
            ("surrogate-key", "product-1  all\tx"),
            ("x-bin", "caf\u{e9}"),
            ("age", "5"),
        ]),
        &policy,
        t(1_000_000),
        t(1_000_002),
    );
    m.body_len = Some(12345);
    m.chunk_size = 1 << 20;
    m.chunk_count = 1;
    m.body_hash = Some([3; 32]);
    m.flags |= flags::COMPLETE;
    m
}

#[test]
fn derived_fields() {
    // RFC 9111 §4.2.1, §4.2.3, §5.2.2.2, RFC 5861
    let m = sample();
    assert_eq!(m.lifetime, 60);
    assert_eq!(m.initial_age, 7); // age 5 + response delay 2
    assert_eq!(m.stale_while_revalidate, Some(30));
    assert!(m.has(flags::MUST_REVALIDATE) && m.has(flags::COMPLETE) && !m.has(flags::NO_CACHE));
    assert_eq!(m.etag.as_deref(), Some(&b"\"v1\""[..]));
    assert_eq!(m.tags, ["product-1", "all", "x"]);
    assert_eq!(m.vary, [http::header::ACCEPT_ENCODING]);
    assert_eq!(m.current_age(t(1_000_012)), 17);
    let f = m.facts(t(1_000_012));
    assert_eq!(
        (f.lifetime, f.current_age, f.must_revalidate),
        (60, 17, true)
    );
    assert_eq!(
        decide(&f, &RequestDirectives::default(), &ReuseOptions::default()).reuse,
        Reuse::Fresh
    );
    assert!(m.validators().etag.is_some());
}

#[test]
fn roundtrip_object_and_marker() {
    let m = sample();
    let enc = m.encode();
    assert_eq!(ObjectMeta::decode(&enc).unwrap(), m);
    // Repeated headers kept in order.
    let back = ObjectMeta::decode(&enc).unwrap();
    let cookies: Vec<_> = back
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    let vm = VaryMarker {
        names: vec![http::header::ACCEPT_ENCODING, http::header::ACCEPT_LANGUAGE],
        created_at: t(5),
    };
    let venc = vm.encode();
    assert_eq!(VaryMarker::decode(&venc).unwrap(), vm);
    // Kinds are distinguishable.
    assert_eq!(decode_record(&venc).unwrap(), Record::Vary(vm));
    assert_eq!(ObjectMeta::decode(&venc), Err(MetaError::WrongKind(2)));
    assert_eq!(VaryMarker::decode(&enc), Err(MetaError::WrongKind(1)));
}

#[test]
fn early_hints_round_trip_and_records_without_them_still_read() {
    let plain = sample();
    let mut m = sample();
    m.early_hints = vec![
        HeaderValue::from_static("</a.css>; rel=preload; as=style"),
        HeaderValue::from_static("</b.js>; rel=preload; as=script"),
    ];
    let enc = m.encode();
    assert_eq!(ObjectMeta::decode(&enc).unwrap(), m);
    // Without hints, nothing is added to the record.
    assert!(plain.encode().len() < enc.len());
    assert_eq!(ObjectMeta::decode(&plain.encode()).unwrap(), plain);
}

#[test]
fn rejects_bad_header_and_version() {
    let enc = sample().encode();
    let mut v = enc.clone();
    v[4] = 2;
    assert_eq!(
        ObjectMeta::decode(&v),
        Err(MetaError::UnsupportedVersion(2))
    );
    let mut v = enc.clone();
    v[0] = b'X';
    assert_eq!(ObjectMeta::decode(&v), Err(MetaError::BadMagic));
    assert_eq!(ObjectMeta::decode(&[]), Err(MetaError::Truncated));
}

#[test]
fn every_truncation_and_bit_flip_is_rejected() {
    let enc = sample().encode();
    for n in 0..enc.len() {
        assert!(ObjectMeta::decode(&enc[..n]).is_err(), "truncated to {n}");
    }
    for i in 0..enc.len() {
        for bit in [0x01u8, 0x80] {
            let mut v = enc.clone();
            v[i] ^= bit;
            assert!(ObjectMeta::decode(&v).is_err(), "flip at {i}");
        }
    }
    let mut longer = enc.clone();
    longer.push(0);
    assert!(ObjectMeta::decode(&longer).is_err());
}

/// A record with a valid checksum but hostile contents must still be
/// rejected without panicking or huge allocations.
fn reseal(mut body: Vec<u8>) -> Vec<u8> {
    let sum = blake3::hash(&body);
    body.extend_from_slice(&sum.as_bytes()[..8]);
    body
}

#[test]
fn valid_checksum_hostile_contents() {
    let enc = sample().encode();
    let body = enc[..enc.len() - 8].to_vec();
    // Header count set to u32::MAX.
    let mut b = body.clone();
    b[6 + 16 + 2..6 + 16 + 6].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(ObjectMeta::decode(&reseal(b)), Err(MetaError::Truncated));
    // Status 0.
    let mut b = body.clone();
    b[6 + 16..6 + 16 + 2].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(
        ObjectMeta::decode(&reseal(b)),
        Err(MetaError::Invalid("status"))
    );
    // Unknown kind.
    let mut b = body.clone();
    b[5] = 9;
    assert_eq!(ObjectMeta::decode(&reseal(b)), Err(MetaError::WrongKind(9)));
    // Pseudo-random payloads behind a valid prefix and checksum.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in 0..600 {
        let mut b = body[..6].to_vec();
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.push(x as u8);
        }
        let _ = decode_record(&reseal(b));
    }
}

#[test]
fn random_bytes_never_decode() {
    let mut x: u64 = 12345;
    for len in 0..2000 {
        let mut b = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.push(x as u8);
        }
        assert!(decode_record(&b).is_err());
    }
}

#[test]
fn apply_update_from_304() {
    // RFC 9111 §4.3.4, §3.2: headers replaced, Content-Length kept, times reset.
    let targets = target_list(None);
    let policy = MetaPolicy {
        tag_header: &SURROGATE_KEY,
        targets: &targets,
        heuristic: HeuristicConfig::default(),
    };
    let mut m = sample();
    std::sync::Arc::make_mut(&mut m.headers).push((
        http::header::CONTENT_LENGTH,
        HeaderValue::from_static("12345"),
    ));
    m.flags |= flags::FORCED_STALE;
    let created = m.created_at;
    let mut nm = HeaderMap::new();
    nm.insert("cache-control", HeaderValue::from_static("max-age=300"));
    nm.insert(
        "date",
        HeaderValue::from_str(&httpdate::fmt_http_date(t(2_000_000))).unwrap(),
    );
    nm.insert("content-length", HeaderValue::from_static("0"));
    m.apply_update(&nm, &[], &policy, t(2_000_000), t(2_000_001));
    assert_eq!(m.lifetime, 300);
    // Age from the 304: Date 1 s before receipt, no Age; the old Age is dropped.
    assert_eq!(m.initial_age, 1);
    assert!(m.header_map().get("age").is_none());
    assert!(
        !m.has(flags::MUST_REVALIDATE) && !m.has(flags::FORCED_STALE) && m.has(flags::COMPLETE)
    );
    assert_eq!(m.header_map().get("content-length").unwrap(), "12345");
    assert_eq!(m.created_at, created);
    assert_eq!(m.body_len, Some(12345));
}

#[test]
fn object_ids_are_unique() {
    assert_ne!(new_object_id(b"k"), new_object_id(b"k"));
}

#[test]
fn stored_decoder_matches_and_shares_the_input() {
    let m = sample();
    let enc = Bytes::from(m.encode());
    let Ok(Record::Object(got)) = decode_stored_record(&enc) else {
        panic!("stored record did not decode");
    };
    assert_eq!(*got, m);
    // Header values are slices of the stored bytes, not copies.
    let range = enc.as_ptr() as usize..enc.as_ptr() as usize + enc.len();
    for (_, v) in got.headers.iter() {
        if !v.is_empty() {
            assert!(range.contains(&(v.as_bytes().as_ptr() as usize)));
        }
    }
    // Structure is still checked: every truncation fails, none panics,
    // and a flipped byte either fails or decodes (foyer's checksum guards
    // the disk; this decoder only must not panic).
    for n in 0..enc.len() {
        assert!(decode_stored_record(&enc.slice(..n)).is_err(), "cut {n}");
    }
    for i in 0..enc.len() {
        let mut v = enc.to_vec();
        v[i] ^= 0x80;
        let _ = decode_stored_record(&Bytes::from(v));
    }
    let marker = VaryMarker {
        names: vec![http::header::ACCEPT_ENCODING],
        created_at: t(5),
    };
    let enc = Bytes::from(marker.encode());
    assert!(matches!(decode_stored_record(&enc), Ok(Record::Vary(v)) if v == marker));
}

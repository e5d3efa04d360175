use super::*;

fn r(s: u64, e: u64) -> ByteRange {
    ByteRange { start: s, end: e }
}
fn res(v: &str, len: u64) -> RangeOutcome {
    let mut h = HeaderMap::new();
    h.insert(RANGE, HeaderValue::from_str(v).unwrap());
    resolve(&h, len)
}

#[test]
fn parse_forms() {
    // RFC 9110 §14.1.1
    assert_eq!(
        parse_range(b"bytes=0-499, 500-, -200").unwrap(),
        vec![
            RangeSpec::FromTo(0, 499),
            RangeSpec::From(500),
            RangeSpec::Suffix(200)
        ]
    );
    assert_eq!(
        parse_range(b"Bytes = 1-2").unwrap(),
        vec![RangeSpec::FromTo(1, 2)]
    );
    for bad in [
        &b"bytes=5-1"[..],
        b"bytes=-",
        b"bytes=",
        b"items=0-1",
        b"bytes 0-1",
        b"bytes=a-b",
        b"bytes=1-2-3",
        b"bytes=--1",
        b"bytes=\xff-1",
        b"bytes=+1-2",
    ] {
        assert!(
            parse_range(bad).is_none(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn single_ranges() {
    // RFC 9110 §14.1.2 examples on a 10000-byte representation.
    assert_eq!(
        res("bytes=0-499", 10000),
        RangeOutcome::Satisfiable(vec![r(0, 499)])
    );
    assert_eq!(
        res("bytes=9500-", 10000),
        RangeOutcome::Satisfiable(vec![r(9500, 9999)])
    );
    assert_eq!(
        res("bytes=-500", 10000),
        RangeOutcome::Satisfiable(vec![r(9500, 9999)])
    );
    // last-pos beyond the end is clamped; suffix longer than the file = whole file.
    assert_eq!(
        res("bytes=9000-20000", 10000),
        RangeOutcome::Satisfiable(vec![r(9000, 9999)])
    );
    assert_eq!(
        res("bytes=-20000", 10000),
        RangeOutcome::Satisfiable(vec![r(0, 9999)])
    );
    assert_eq!(
        res("bytes=0-0", 1),
        RangeOutcome::Satisfiable(vec![r(0, 0)])
    );
}

#[test]
fn unsatisfiable() {
    // RFC 9110 §14.1.1, §15.5.17
    assert_eq!(res("bytes=10000-", 10000), RangeOutcome::Unsatisfiable);
    assert_eq!(res("bytes=-0", 10000), RangeOutcome::Unsatisfiable);
    assert_eq!(
        res("bytes=20000-30000, 15000-", 10000),
        RangeOutcome::Unsatisfiable
    );
    assert_eq!(unsatisfied_content_range(10000), "bytes */10000");
    // Unsatisfiable specs among satisfiable ones are dropped.
    assert_eq!(
        res("bytes=20000-, 0-1", 10000),
        RangeOutcome::Satisfiable(vec![r(0, 1)])
    );
}

#[test]
fn zero_length_representation() {
    // RFC 9110 §14.1.1: only a non-zero suffix is satisfiable; answered 200.
    assert_eq!(res("bytes=0-", 0), RangeOutcome::Unsatisfiable);
    assert_eq!(res("bytes=-5", 0), RangeOutcome::Full);
}

#[test]
fn invalid_range_is_ignored() {
    // RFC 9110 §14.2: an invalid Range is ignored.
    assert_eq!(res("bytes=5-1", 10), RangeOutcome::Full);
    assert_eq!(res("pages=1-2", 10), RangeOutcome::Full);
    let mut h = HeaderMap::new();
    h.append(RANGE, HeaderValue::from_static("bytes=0-1"));
    h.append(RANGE, HeaderValue::from_static("bytes=2-3"));
    assert_eq!(resolve(&h, 10), RangeOutcome::Full);
    assert_eq!(resolve(&HeaderMap::new(), 10), RangeOutcome::Full);
}

#[test]
fn coalescing_keeps_request_order() {
    // RFC 9110 §14.2 / §15.3.7.2: overlapping and adjacent ranges merge.
    assert_eq!(
        res("bytes=500-600, 0-10, 601-700, 5-20", 1000),
        RangeOutcome::Satisfiable(vec![r(500, 700), r(0, 20)])
    );
    assert_eq!(
        res("bytes=0-1, 4-5, 2-3", 10),
        RangeOutcome::Satisfiable(vec![r(0, 5)])
    );
    assert_eq!(
        res("bytes=-10, 0-", 100),
        RangeOutcome::Satisfiable(vec![r(0, 99)])
    );
    assert_eq!(
        res("bytes=0-1, 3-4", 10),
        RangeOutcome::Satisfiable(vec![r(0, 1), r(3, 4)])
    );
}

#[test]
fn too_many_ranges_are_ignored() {
    // RFC 9110 §14.2: many small ranges indicate abuse → ignored (200).
    let many: Vec<String> = (0..1000).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
    let v = format!("bytes={}", many.join(","));
    assert_eq!(res(&v, 1_000_000), RangeOutcome::Full);
    let ok: Vec<String> = (0..MAX_RANGES)
        .map(|i| format!("{}-{}", i * 2, i * 2))
        .collect();
    match res(&format!("bytes={}", ok.join(",")), 1_000_000) {
        RangeOutcome::Satisfiable(v) => assert_eq!(v.len(), MAX_RANGES),
        o => panic!("{o:?}"),
    }
    // 1000 overlapping copies of the same range still count as abuse.
    let same = vec!["0-"; 1000].join(",");
    assert_eq!(res(&format!("bytes={same}"), 10), RangeOutcome::Full);
}

#[test]
fn huge_numbers() {
    assert_eq!(
        res("bytes=0-99999999999999999999999999", u64::MAX),
        RangeOutcome::Satisfiable(vec![r(0, u64::MAX - 1)])
    );
    assert_eq!(
        res("bytes=99999999999999999999999999-", 10),
        RangeOutcome::Unsatisfiable
    );
    assert_eq!(
        res("bytes=-99999999999999999999999999", 10),
        RangeOutcome::Satisfiable(vec![r(0, 9)])
    );
    assert_eq!(r(0, u64::MAX - 1).len(), u64::MAX);
}

#[test]
fn content_range_format() {
    // RFC 9110 §14.4
    assert_eq!(content_range(&r(0, 499), 1234), "bytes 0-499/1234");
}

#[test]
fn multipart_framing_and_length() {
    // RFC 9110 §14.6 example shape.
    let ct = HeaderValue::from_static("image/gif");
    let p = MultipartPlan::new(
        &[r(0, 49), r(100, 149)],
        1000,
        Some(&ct),
        "THIS_STRING_SEPARATES".into(),
    );
    let body_stub = [b'x'; 50];
    let mut body = Vec::new();
    for (h, rr) in &p.parts {
        body.extend_from_slice(h);
        body.extend_from_slice(&body_stub[..rr.len() as usize]);
    }
    body.extend_from_slice(&p.trailer);
    assert_eq!(body.len() as u64, p.content_length);
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("--THIS_STRING_SEPARATES\r\nContent-Type: image/gif\r\nContent-Range: bytes 0-49/1000\r\n\r\n"));
    assert!(text.contains("\r\n--THIS_STRING_SEPARATES\r\nContent-Type: image/gif\r\nContent-Range: bytes 100-149/1000\r\n\r\n"));
    assert!(text.ends_with("\r\n--THIS_STRING_SEPARATES--\r\n"));
    assert_eq!(
        p.content_type(),
        "multipart/byteranges; boundary=THIS_STRING_SEPARATES"
    );
    let p = MultipartPlan::new(&[r(0, 0)], 1, None, "b".into());
    assert!(!String::from_utf8_lossy(&p.parts[0].0).contains("Content-Type"));
}

#[test]
fn boundaries_are_unique_and_valid() {
    // RFC 2046 §5.1.1: 1–70 bcharsnospace.
    let a = generate_boundary(b"k");
    let b = generate_boundary(b"k");
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
}

#![allow(clippy::unwrap_used)]

use super::*;
use crate::cache::codec::Writer;

/// A reader over the encoded fields, the way a record is read.
fn section(fields: &[(&[u8], &[u8])]) -> Bytes {
    let mut w = Writer::new(1);
    for (n, v) in fields {
        w.bytes(n);
        w.bytes(v);
    }
    Bytes::from(w.buf).slice(6..)
}

fn read(fields: &[(&[u8], &[u8])]) -> Result<StoredFields, MetaError> {
    let b = section(fields);
    let mut r = Reader { s: &b };
    let got = StoredFields::read(&mut r, fields.len(), &b);
    if got.is_ok() {
        assert!(r.s.is_empty(), "every field consumed");
    }
    got
}

fn is_section(f: &StoredFields) -> bool {
    matches!(&f.0, Repr::Section(s) if s.list.get().is_none())
}

#[test]
fn a_checked_section_reads_as_the_list_would() {
    let fields: &[(&[u8], &[u8])] = &[
        (b"content-type", b"text/html; charset=utf-8"),
        (b"set-cookie", b"a=1"),
        (b"x-custom", b"tab\there \x80\xff obs-text"),
        (b"set-cookie", b"b=2"),
        (b"etag", b""),
    ];
    let f = read(fields).unwrap();
    assert!(is_section(&f));
    assert_eq!(f.count(), 5);
    let pairs: Vec<_> = f.pairs().collect();
    assert_eq!(pairs, fields.to_vec());
    let b = section(fields);
    let list = read_list(&mut Reader { s: &b }, 5, Some(&b)).unwrap();
    assert_eq!(f, StoredFields::from_list(list.clone()));
    let mut cookies = Vec::new();
    f.each(&http::header::SET_COOKIE, &mut |v| {
        cookies.push(v.clone());
        true
    });
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert!(
        is_section(&f),
        "each, pairs and eq leave the section as it is"
    );
    // The list, made when asked for, is the one an eager read makes.
    assert_eq!(*f, list);
    assert!(!is_section(&f));
    let mut f = f;
    f.make_list();
    assert!(matches!(f.0, Repr::List(_)));
    assert_eq!(f.pairs().collect::<Vec<_>>(), fields.to_vec());
    let mut first = None;
    f.each(&http::header::SET_COOKIE, &mut |v| {
        first = Some(v.clone());
        false
    });
    assert_eq!(first.unwrap(), "a=1");
}

#[test]
fn a_name_in_upper_case_is_read_into_a_list_in_lower_case() {
    let f = read(&[(b"Content-Type", b"text/plain"), (b"age", b"1")]).unwrap();
    assert!(!is_section(&f));
    assert_eq!(
        f.pairs().collect::<Vec<_>>(),
        [
            (&b"content-type"[..], &b"text/plain"[..]),
            (&b"age"[..], &b"1"[..])
        ]
    );
}

#[test]
fn invalid_names_and_values_are_errors() {
    for bad in [
        &[(&b"bad name"[..], &b"v"[..])][..],
        &[(b"", b"v")],
        &[(b"x", b"line\r\nInjected: 1")],
        &[(b"x", b"nul\0")],
        &[(b"x", b"del\x7f")],
        &[(b"x", b"0123456\n89abcdef")],
        &[(b"ok", b"fine"), (b"x", b"\x1b[31m")],
    ] {
        assert!(read(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_word_check_agrees_with_the_byte_rule() {
    let byte_ok = |b: u8| (b >= 0x20 && b != 0x7f) || b == b'\t';
    for b in 0..=255u8 {
        for at in 0..17 {
            let mut v = vec![b'a'; 17];
            v[at] = b;
            assert_eq!(is_field_value(&v), byte_ok(b), "byte {b:#x} at {at}");
            // Next to bytes that could carry a borrow into it.
            let mut w = vec![0x80u8; 17];
            w[at] = b;
            assert_eq!(is_field_value(&w), byte_ok(b), "byte {b:#x} at {at}");
        }
    }
    assert!(is_field_value(b""));
}

#[test]
fn the_name_check_agrees_with_header_name() {
    // A name passes when `HeaderName` takes it and spells it the same.
    let reference = |n: &[u8]| {
        HeaderName::from_bytes(n)
            .map(|h| h.as_str().as_bytes() == n)
            .unwrap_or(false)
    };
    for b in 0..=255u8 {
        for len in [1, 7, 8, 9, 17] {
            for at in 0..len {
                let mut n = vec![b'x'; len];
                n[at] = b;
                assert_eq!(
                    is_lower_token(&n),
                    reference(&n),
                    "byte {b:#x} at {at} of {len}"
                );
                let mut m: Vec<u8> = b"content-type-0123".iter().copied().take(len).collect();
                m[at] = b;
                assert_eq!(
                    is_lower_token(&m),
                    reference(&m),
                    "byte {b:#x} at {at} of {len}"
                );
            }
        }
    }
    assert!(!is_lower_token(b""));
    assert!(is_lower_token(b"x-cache-0.9_a"));
}

//! Unit tests of the own HTTP/1 path's head parsing.

use super::*;

fn parsed(raw: &str) -> Parsed {
    parse(&mut BytesMut::from(raw))
}

#[test]
fn a_plain_get_is_taken_and_leaves_what_follows() {
    let mut buf = BytesMut::from("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nGET /next");
    let Parsed::Take(req, close) = parse(&mut buf) else {
        panic!("not taken");
    };
    assert!(!close);
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri(), "/a?b=1");
    assert_eq!(req.headers()["host"], "x");
    assert_eq!(req.headers()["accept"], "*/*");
    assert_eq!(&buf[..], b"GET /next");
}

#[test]
fn connection_close_is_noticed_among_other_tokens() {
    let Parsed::Take(_, close) =
        parsed("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: te, Close\r\n\r\n")
    else {
        panic!("not taken");
    };
    assert!(close);
}

#[test]
fn incomplete_heads_wait_for_more() {
    assert!(matches!(
        parsed("GET / HTTP/1.1\r\nHost: x\r\n"),
        Parsed::Partial
    ));
    assert!(matches!(parsed("PRI * HT"), Parsed::Partial));
}

#[test]
fn everything_else_goes_to_hyper() {
    for raw in [
        "POST / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert!(matches!(parsed(raw), Parsed::GiveUp), "{raw:?}");
    }
}

#[test]
fn too_many_fields_go_to_hyper() {
    let mut raw = String::from("GET / HTTP/1.1\r\n");
    for i in 0..=MAX_HEADERS {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert!(matches!(parsed(&raw), Parsed::GiveUp));
}

#[test]
fn request_names_read_as_from_bytes_does() {
    for len in 0..32 {
        for (canon, name) in request_names(len) {
            assert_eq!(canon.len(), len);
            assert_eq!(HeaderName::from_bytes(canon).ok().as_ref(), Some(name));
        }
    }
    for raw in [
        &b"Host"[..],
        b"host",
        b"HOST",
        b"Accept-Encoding",
        b"accept-language",
        b"User-Agent",
        b"X-Forwarded-For",
        b"Sec-Fetch-Mode",
        b"Hos",
        b"Hostt",
        b"Bad Name",
        b"",
    ] {
        assert_eq!(
            request_name(raw),
            HeaderName::from_bytes(raw).ok(),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#![allow(clippy::unwrap_used)]

use super::*;
use http::header::ACCEPT_ENCODING;

fn ae(lines: &[&str]) -> Accepts {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(ACCEPT_ENCODING, HeaderValue::from_str(l).unwrap());
    }
    Accepts::from_headers(&h)
}

const PREFER: [Encoding; 3] = Encoding::ALL;

#[test]
fn browsers_get_the_sites_first_choice() {
    assert_eq!(
        ae(&["gzip, deflate, br, zstd"]).best(&PREFER),
        Some(Encoding::Br)
    );
    assert_eq!(ae(&["gzip, deflate, br"]).best(&PREFER), Some(Encoding::Br));
    assert_eq!(ae(&["gzip, deflate"]).best(&PREFER), Some(Encoding::Gzip));
    assert_eq!(
        ae(&["gzip, br, zstd"]).best(&[Encoding::Zstd, Encoding::Gzip]),
        Some(Encoding::Zstd)
    );
}

#[test]
fn quality_values_decide_before_the_sites_order() {
    assert_eq!(ae(&["br;q=0.5, gzip"]).best(&PREFER), Some(Encoding::Gzip));
    assert_eq!(
        ae(&["br;q=0.5, gzip;q=0.25"]).best(&PREFER),
        Some(Encoding::Br)
    );
    assert_eq!(
        ae(&["br;q=0, gzip;q=0.001"]).best(&PREFER),
        Some(Encoding::Gzip)
    );
    // Identity preferred by the client over every coding.
    assert_eq!(ae(&["gzip;q=0.5, identity"]).best(&PREFER), None);
}

#[test]
fn zero_excludes_star_covers_identity_follows_its_rules() {
    let a = ae(&["*"]);
    assert_eq!(a.best(&PREFER), Some(Encoding::Br));
    assert!(a.accepts_identity());
    let a = ae(&["*;q=0"]);
    assert_eq!(a.best(&PREFER), None);
    assert!(!a.accepts_identity());
    let a = ae(&["identity;q=0, gzip;q=0"]);
    assert_eq!(a.best(&PREFER), None);
    assert!(!a.accepts_identity());
    let a = ae(&["identity;q=0, gzip"]);
    assert_eq!(a.best(&PREFER), Some(Encoding::Gzip));
    let a = ae(&["br;q=0, *"]);
    assert_eq!(a.best(&PREFER), Some(Encoding::Zstd));
    // An empty field: only identity (RFC 9110 §12.5.3).
    let a = ae(&[""]);
    assert_eq!(a.best(&PREFER), None);
    assert!(a.accepts_identity());
    // No field: sent as it is.
    assert_eq!(ae(&[]).best(&PREFER), None);
}

#[test]
fn odd_spacing_case_repeats_and_x_gzip() {
    assert_eq!(
        ae(&[" GZip ;Q=1 ,  BR ; q=0.9"]).best(&PREFER),
        Some(Encoding::Gzip)
    );
    assert_eq!(
        ae(&["deflate", "x-gzip"]).best(&PREFER),
        Some(Encoding::Gzip)
    );
    assert_eq!(
        ae(&["br;q=1.5, gzip"]).best(&PREFER),
        Some(Encoding::Gzip),
        "bad q is 0"
    );
    assert_eq!(ae(&["compress, deflate"]).best(&PREFER), None);
}

#[test]
fn what_is_compressed() {
    let cfg = CompressionConfig::default();
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    assert!(compressible(&cfg, StatusCode::OK, &h, Some(5000)));
    assert!(compressible(&cfg, StatusCode::OK, &h, None));
    assert!(!compressible(&cfg, StatusCode::OK, &h, Some(1023)));
    assert!(!compressible(
        &cfg,
        StatusCode::PARTIAL_CONTENT,
        &h,
        Some(5000)
    ));
    assert!(!compressible(&cfg, StatusCode::NOT_FOUND, &h, Some(5000)));
    let mut nt = h.clone();
    nt.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("max-age=60, No-Transform"),
    );
    assert!(!compressible(&cfg, StatusCode::OK, &nt, Some(5000)));
    let mut ce = h.clone();
    ce.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    assert!(!compressible(&cfg, StatusCode::OK, &ce, Some(5000)));
    let mut id = h.clone();
    id.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
    assert!(compressible(&cfg, StatusCode::OK, &id, Some(5000)));
    let mut png = h.clone();
    png.insert(CONTENT_TYPE, HeaderValue::from_static("image/png"));
    assert!(!compressible(&cfg, StatusCode::OK, &png, Some(5000)));
    let off = CompressionConfig {
        enabled: false,
        ..cfg
    };
    assert!(!compressible(&off, StatusCode::OK, &h, Some(5000)));
}

#[test]
fn content_codings_the_node_can_decode() {
    let mut h = HeaderMap::new();
    assert_eq!(content_coding(&h), Coding::Identity);
    h.insert(CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
    assert_eq!(content_coding(&h), Coding::Known(Encoding::Gzip));
    h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip, br"));
    assert_eq!(content_coding(&h), Coding::Other);
    h.insert(CONTENT_ENCODING, HeaderValue::from_static("deflate"));
    assert_eq!(content_coding(&h), Coding::Other);
}

#[test]
fn a_coded_representation_has_its_own_tag_and_varies() {
    let t = |s: &str, e| {
        coded_etag(&HeaderValue::from_str(s).unwrap(), e).map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(t("\"abc\"", Encoding::Br).as_deref(), Some("\"abc-br\""));
    assert_eq!(
        t("W/\"abc\"", Encoding::Gzip).as_deref(),
        Some("W/\"abc-gzip\"")
    );
    assert_eq!(t("abc", Encoding::Gzip), None);

    let mut h = HeaderMap::new();
    h.insert(VARY, HeaderValue::from_static("Accept-Language"));
    h.insert(ETAG, HeaderValue::from_static("\"v1\""));
    h.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from_static("5000"),
    );
    to_coded(&mut h, Encoding::Zstd);
    assert_eq!(h[CONTENT_ENCODING], "zstd");
    assert_eq!(h[ETAG], "\"v1-zstd\"");
    assert_eq!(h[VARY], "Accept-Language, Accept-Encoding");
    assert!(!h.contains_key(http::header::CONTENT_LENGTH));
    // Never twice, whatever the spelling.
    let mut h = HeaderMap::new();
    h.append(VARY, HeaderValue::from_static("origin"));
    h.append(VARY, HeaderValue::from_static("accept-encoding"));
    vary_on_accept_encoding(&mut h);
    assert_eq!(h.get_all(VARY).iter().count(), 2);
    let mut h = HeaderMap::new();
    h.insert(VARY, HeaderValue::from_static("*"));
    vary_on_accept_encoding(&mut h);
    assert_eq!(h[VARY], "*");
}

#[test]
fn the_type_memo_answers_for_its_own_list_only() {
    let site = |types: &str| {
        let text = format!(
            "[[site]]\norigins = [\"http://127.0.0.1:2\"]\n[site.compression]\ntypes = [{types}]\n"
        );
        crate::config::Config::from_toml(&text).unwrap().sites[0]
            .compression
            .clone()
    };
    let (json, png) = (site("\"application/json\""), site("\"image/png\""));
    let ct = |t: &str| {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        h
    };
    let ok = http::StatusCode::OK;
    for _ in 0..3 {
        assert!(compressible(&json, ok, &ct("application/json"), None));
        assert!(!compressible(&png, ok, &ct("application/json"), None));
        assert!(compressible(&png, ok, &ct("image/png"), None));
        assert!(!compressible(&json, ok, &ct("image/png"), None));
        // Another spelling of the same type, parameters after it.
        assert!(compressible(&json, ok, &ct("application/JSON"), None));
        assert!(compressible(&json, ok, &ct("application/jsoN; x"), None));
    }
    // A value longer than the memo keeps is answered all the same.
    let long = format!("application/json; {}", "p=1; ".repeat(20));
    assert!(compressible(&json, ok, &ct(&long), None));
}

//! Compression at the edge through real sockets: each coding of a cached page is made once
//! from one origin fetch and stored; every answer decodes to the origin's bytes;
//! negotiation by `Accept-Encoding` (q-values, `*`, `identity;q=0`, odd spelling); what is
//! never compressed (`no-transform`, other types, small bodies, ranges); an origin that
//! compresses itself; validators per representation; HEAD; purge; responses that are not
//! stored, a 50 MiB one with bounded memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, GzipEncoder, ZstdDecoder};
use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request};
use tokio::io::AsyncReadExt;

const TOKEN: &str = "s3cret";

/// Compressible HTML of `n` bytes, different for every `seed`.
fn page(seed: &str, n: usize) -> Bytes {
    let mut v = Vec::with_capacity(n + 64);
    let mut i = 0u64;
    while v.len() < n {
        v.extend_from_slice(
            format!(
                "<li class=\"item\">{seed} item {} of the list</li>\n",
                i * 7919 % 1000
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(n);
    Bytes::from(v)
}

fn gzip_blocking(data: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Handle::current();
    let data = data.to_vec();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let mut out = Vec::new();
            GzipEncoder::new(&data[..])
                .read_to_end(&mut out)
                .await
                .unwrap();
            out
        })
    })
    .join()
    .unwrap()
}

async fn decode(h: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match h.get("content-encoding").map(|v| v.to_str().unwrap()) {
        None => out.extend_from_slice(body),
        Some("br") => {
            BrotliDecoder::new(body)
                .read_to_end(&mut out)
                .await
                .unwrap();
        }
        Some("zstd") => {
            ZstdDecoder::new(body).read_to_end(&mut out).await.unwrap();
        }
        Some("gzip") => {
            GzipDecoder::new(body).read_to_end(&mut out).await.unwrap();
        }
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

async fn origin() -> TestOrigin {
    TestOrigin::start(|req: Request<hyper::body::Incoming>| async move {
        let path = req.uri().path().to_owned();
        let n: usize = path.rsplit('/').next().unwrap().parse().unwrap_or(0);
        let body = page(&path, n);
        let html = ("content-type", "text/html; charset=utf-8");
        match path.split('/').nth(1).unwrap() {
            "nt" => resp_with(
                200,
                &[html, ("cache-control", "max-age=600, no-transform")],
                body,
            ),
            "png" => resp_with(
                200,
                &[
                    ("content-type", "image/png"),
                    ("cache-control", "max-age=600"),
                ],
                body,
            ),
            "gz" => {
                let coded = gzip_blocking(&body);
                resp_with(
                    200,
                    &[
                        html,
                        ("cache-control", "max-age=600"),
                        ("content-encoding", "gzip"),
                        ("etag", "\"gz1\""),
                    ],
                    coded,
                )
            }
            "private" => resp_with(200, &[html, ("cache-control", "no-store")], body),
            "big" => {
                let mut r = resp(200, Bytes::new());
                *r.body_mut() = generated_body(n as u64, 64 * 1024);
                r.headers_mut()
                    .insert("content-type", "text/plain".parse().unwrap());
                r.headers_mut()
                    .insert("cache-control", "no-store".parse().unwrap());
                r
            }
            _ => resp_with(
                200,
                &[
                    html,
                    ("cache-control", "max-age=600"),
                    ("etag", "\"p1\""),
                    ("vary", "Accept-Language"),
                ],
                body,
            ),
        }
    })
    .await
}

async fn node(o: &TestOrigin) -> TestNode {
    TestNode::start(&o.url(), &format!("[admin]\ntoken = \"{TOKEN}\"\n")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_representations_from_one_origin_fetch_each_stored_once() {
    let o = origin().await;
    let n = node(&o).await;
    let url = n.url("/page/60000");
    let want = page("/page/60000", 60000);
    // The first request, a miss, compresses from the fill; the object is committed before
    // the next (a request racing the commit may fetch again).
    let (_, h, body) = get_with(&url, &[("accept-encoding", "br")]).await;
    assert_eq!(h["content-encoding"], "br");
    assert_eq!(decode(&h, &body).await, want);
    until_stored(&url, &[], n.admin).await;
    for round in 0..2 {
        for (ae, coding) in [
            ("gzip, deflate, br, zstd", Some("br")),
            ("gzip", Some("gzip")),
            ("zstd;q=1, gzip;q=0.5", Some("zstd")),
            ("", None),
        ] {
            let (st, h, body) = get_with(&url, &[("accept-encoding", ae)]).await;
            assert_eq!(st, 200);
            assert_eq!(
                h.get("content-encoding").map(|v| v.to_str().unwrap()),
                coding,
                "{ae}"
            );
            assert_eq!(h["vary"], "Accept-Language, Accept-Encoding", "{ae}");
            assert_eq!(decode(&h, &body).await, want, "{ae}");
            if coding.is_some() {
                assert!(body.len() < want.len() / 4, "{ae}: {} bytes", body.len());
            }
            if round == 1 {
                // Plain hits: stored, with their length.
                assert!(cache_status(&h).contains("hit"), "{ae}: {h:?}");
                assert_eq!(h["content-length"], body.len().to_string().as_str(), "{ae}");
            }
        }
    }
    assert_eq!(o.count(), 1, "one origin fetch for every representation");
    assert_eq!(o.last().headers["accept-encoding"], "identity");
    let (_, _, stats) = get(&format!("http://{}/stats", n.admin)).await;
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    // (Process-wide counters: other tests here compress too.)
    for c in stats["compression"].as_array().unwrap() {
        assert!(c["stored"].as_u64().unwrap() >= 1, "{c}");
        assert!(c["bytes_in"].as_u64().unwrap() >= 60000, "{c}");
        assert!(c["bytes_out"].as_u64().unwrap() > 0, "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_follows_accept_encoding() {
    let o = origin().await;
    let n = node(&o).await;
    let url = n.url("/page/5000");
    for (ae, coding) in [
        ("br;q=0, gzip", Some("gzip")),
        ("*", Some("br")),
        ("br;q=0, *", Some("zstd")),
        ("identity;q=0, gzip;q=0.1", Some("gzip")),
        (" GZIP ;Q=0.8 , Br;q=0.9", Some("br")),
        ("x-gzip", Some("gzip")),
        ("gzip;q=0.5, identity", None),
        ("deflate, compress", None),
        ("gzip;q=0", None),
        ("*;q=0, identity;q=0.5", None),
    ] {
        let (st, h, body) = get_with(&url, &[("accept-encoding", ae)]).await;
        assert_eq!(st, 200, "{ae}");
        assert_eq!(
            h.get("content-encoding").map(|v| v.to_str().unwrap()),
            coding,
            "{ae}"
        );
        assert_eq!(decode(&h, &body).await, page("/page/5000", 5000), "{ae}");
    }
    // Nothing acceptable (RFC 9110 §15.5.7); an image is sent as it is regardless.
    for ae in ["identity;q=0", "*;q=0", "identity;q=0, deflate"] {
        let (st, h, _) = get_with(&url, &[("accept-encoding", ae)]).await;
        assert_eq!(st, 406, "{ae}");
        assert_eq!(h["vary"], "Accept-Encoding");
    }
    let (st, _, _) = get_with(&n.url("/png/5000"), &[("accept-encoding", "identity;q=0")]).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_never_compressed() {
    let o = origin().await;
    let n = node(&o).await;
    let br = [("accept-encoding", "br, gzip")];
    for path in ["/nt/5000", "/png/5000", "/page/500"] {
        let (st, h, body) = get_with(&n.url(path), &br).await;
        assert_eq!(st, 200);
        assert!(h.get("content-encoding").is_none(), "{path}: {h:?}");
        assert_eq!(body, page(path, body.len()));
    }
    // A range of a compressible object: of the stored representation, not coded.
    let url = n.url("/page/20000");
    until_stored(&url, &[], n.admin).await;
    let (st, h, body) = get_with(
        &url,
        &[("accept-encoding", "br"), ("range", "bytes=100-199")],
    )
    .await;
    assert_eq!(st, 206);
    assert!(h.get("content-encoding").is_none(), "{h:?}");
    assert_eq!(h["content-range"], "bytes 100-199/20000");
    assert_eq!(body, page("/page/20000", 20000).slice(100..200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_compresses_is_served_as_it_is_or_decoded() {
    let o = origin().await;
    let n = node(&o).await;
    let url = n.url("/gz/8000");
    let want = page("/gz/8000", 8000);
    let (_, h, body) = get_with(&url, &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(h["content-encoding"], "gzip", "not recompressed to br");
    assert_eq!(h["etag"], "\"gz1\"");
    assert_eq!(decode(&h, &body).await, want);
    let (_, h, body) = get_with(&url, &[]).await;
    assert!(h.get("content-encoding").is_none(), "decoded: {h:?}");
    assert_eq!(body, want);
    assert_eq!(h["etag"], "W/\"gz1\"");
    assert_eq!(h["vary"], "Accept-Encoding");
    assert_eq!(o.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_and_head_per_representation() {
    let o = origin().await;
    let n = node(&o).await;
    let url = n.url("/page/30000");
    let (_, h, _) = get_with(&url, &[("accept-encoding", "br")]).await;
    assert_eq!(h["etag"], "\"p1-br\"");
    let (_, h, _) = get_with(&url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(h["etag"], "\"p1-gzip\"");
    let (_, h, _) = get_with(&url, &[]).await;
    assert_eq!(h["etag"], "\"p1\"");
    for (ae, inm, status) in [
        ("br", "\"p1-br\"", 304),
        ("br", "\"p1\"", 200),
        ("br", "\"p1-gzip\"", 200),
        ("gzip", "\"p1-br\", \"p1-gzip\"", 304),
        ("", "\"p1-br\"", 200),
        ("", "\"p1\"", 304),
    ] {
        let (st, h, body) =
            get_with(&url, &[("accept-encoding", ae), ("if-none-match", inm)]).await;
        assert_eq!(st.as_u16(), status, "{ae} / {inm}");
        if status == 304 {
            assert!(body.is_empty());
            assert!(h.get("content-encoding").is_none());
        }
    }
    let (st, h, body) = request_with("HEAD", &url, &[("accept-encoding", "zstd")]).await;
    assert_eq!(st, 200);
    assert_eq!(h["content-encoding"], "zstd");
    assert_eq!(h["etag"], "\"p1-zstd\"");
    assert!(body.is_empty());
    assert_eq!(o.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_removes_every_representation() {
    let o = origin().await;
    let n = node(&o).await;
    let url = n.url("/page/9000");
    for ae in ["br", "gzip", "zstd", ""] {
        get_with(&url, &[("accept-encoding", ae)]).await;
        let (_, h, _) = get_with(&url, &[("accept-encoding", ae)]).await;
        assert!(cache_status(&h).contains("hit"), "{ae}");
    }
    let (st, _) = admin_purge(n.admin, Some(TOKEN), &format!("{{\"urls\":[\"{url}\"]}}")).await;
    assert_eq!(st, 200);
    // Stored times are kept to the millisecond: an object fetched in the purge's own
    // millisecond reads as no newer than the purge's ban, and is (rightly) fetched again.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    // Refetched once; every coding made again (streamed, without a stored length), not
    // served from a variant of the purged object.
    for ae in ["br", "gzip", "zstd"] {
        let (_, h, body) = get_with(&url, &[("accept-encoding", ae)]).await;
        assert_eq!(h["content-encoding"], ae);
        assert!(
            h.get("content-length").is_none(),
            "{ae} after the purge: {h:?}"
        );
        assert_eq!(decode(&h, &body).await, page("/page/9000", 9000));
        if ae == "br" {
            // The refetched object committed before the next coding is asked for.
            until_stored(&url, &[], n.admin).await;
        }
    }
    assert_eq!(o.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_not_stored_are_compressed_on_the_way() {
    let o = origin().await;
    let n = node(&o).await;
    let url = n.url("/private/40000");
    let (st, h, body) = get_with(&url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(st, 200);
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(decode(&h, &body).await, page("/private/40000", 40000));
    let (_, h, _) = get_with(&url, &[]).await;
    assert!(h.get("content-encoding").is_none());
    assert_eq!(h["vary"], "Accept-Encoding");
    // The site can say no.
    let off = TestNode::start(&o.url(), "[compression]\ncompress_uncacheable = false\n").await;
    let (_, h, _) = get_with(&off.url("/private/40000"), &[("accept-encoding", "gzip")]).await;
    assert!(h.get("content-encoding").is_none());
}

/// 50 MiB through the compressor in a separate process: its memory does not grow with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_stream_through_in_bounded_memory() {
    let o = origin().await;
    let node = NodeProcess::start(&o.url(), "");
    let url = format!("http://{}/big/{}", node.proxy, 50 << 20);
    // Warm up, then measure the peak over the big one.
    get_with(
        &format!("http://{}/private/40000", node.proxy),
        &[("accept-encoding", "br")],
    )
    .await;
    let before = node.peak_rss();
    let r = client()
        .request(
            Request::get(&url)
                .header("accept-encoding", "br")
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "br");
    let body = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    let mut out = Vec::new();
    BrotliDecoder::new(&body[..])
        .read_to_end(&mut out)
        .await
        .unwrap();
    assert_eq!(out.len(), 50 << 20);
    let growth = node.peak_rss().saturating_sub(before);
    assert!(growth < 20 << 20, "peak memory grew {} MiB", growth >> 20);
}

//! Sliced objects (a site's `slice`): a large object is fetched from the
//! origin in aligned `Range` requests, each slice stored on its own as a
//! partial response (RFC 9111 §3.3) and combined with the others (§3.4).
//! The origin here serves ranges, counts requests and can change the
//! object's version or stop supporting ranges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;

const SLICE: u64 = 64 << 10;
/// Ten whole slices and a short last one.
const LEN: u64 = 10 * SLICE + 1234;

/// The object's bytes in version `v`.
fn object(v: u64) -> Bytes {
    let c = content(LEN as usize);
    Bytes::from(c.iter().map(|b| b ^ (v as u8)).collect::<Vec<u8>>())
}

#[derive(Default)]
struct Knobs {
    version: AtomicU64,
    no_ranges: AtomicBool,
    delay_ms: AtomicU64,
    no_store: AtomicBool,
    /// `max-age=1` instead of 600.
    short: AtomicBool,
    /// `max-age=4`: long enough for a slow host to store many slices
    /// before the first goes stale.
    brief: AtomicBool,
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against `len`.
fn parse(v: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, false) => (len.saturating_sub(b.parse().ok()?), len - 1),
        (false, true) => (a.parse().ok()?, len - 1),
        (false, false) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len - 1)),
        _ => return None,
    };
    (start <= end && start < len).then_some((start, end))
}

/// 4 GiB, made up range by range: byte i is `i % 251`.
const HUGE: u64 = 4 << 30;

fn huge_bytes(a: u64, b: u64) -> Bytes {
    Bytes::from((a..=b).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

fn huge(h: &http::HeaderMap, cc: &str) -> http::Response<TestBody> {
    let r = h.get("range").and_then(|r| r.to_str().ok());
    let Some((a, b)) = r.and_then(|r| parse(r, HUGE)) else {
        return resp(400, "ranges only");
    };
    resp_with(
        206,
        &[
            ("cache-control", cc),
            ("etag", "\"huge\""),
            ("content-range", &format!("bytes {a}-{b}/{HUGE}")),
        ],
        huge_bytes(a, b),
    )
}

async fn origin(knobs: Arc<Knobs>) -> TestOrigin {
    TestOrigin::start(move |req| {
        let knobs = knobs.clone();
        async move {
            let delay = knobs.delay_ms.load(SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let v = knobs.version.load(SeqCst);
            let etag = format!("\"v{v}\"");
            let cc = if knobs.no_store.load(SeqCst) {
                "no-store"
            } else if knobs.short.load(SeqCst) {
                "max-age=1"
            } else if knobs.brief.load(SeqCst) {
                "max-age=4"
            } else {
                "max-age=600"
            };
            let path = req.uri().path().to_owned();
            if path == "/huge" {
                return huge(req.headers(), cc);
            }
            let body = match path.as_str() {
                "/video" => object(v),
                "/small" => Bytes::from_static(b"a small object"),
                _ => return resp(404, "not here"),
            };
            let len = body.len() as u64;
            let range = req
                .headers()
                .get("range")
                .and_then(|r| r.to_str().ok())
                .map(str::to_owned);
            match range {
                Some(r) if !knobs.no_ranges.load(SeqCst) => match parse(&r, len) {
                    Some((a, b)) => resp_with(
                        206,
                        &[
                            ("cache-control", cc),
                            ("etag", &etag),
                            ("content-type", "video/mp4"),
                            ("content-range", &format!("bytes {a}-{b}/{len}")),
                        ],
                        body.slice(a as usize..=b as usize),
                    ),
                    None => resp_with(
                        416,
                        &[("content-range", &format!("bytes */{len}"))],
                        Bytes::new(),
                    ),
                },
                _ => resp_with(
                    200,
                    &[
                        ("cache-control", cc),
                        ("etag", &etag),
                        ("content-type", "video/mp4"),
                    ],
                    body,
                ),
            }
        }
    })
    .await
}

const TOKEN: &str = "s3cret";

async fn node(o: &TestOrigin) -> TestNode {
    TestNode::start_site(
        &format!("origins = [\"{}\"]\nslice = \"64KiB\"\n", o.url()),
        &format!("[admin]\ntoken = \"{TOKEN}\"\n"),
    )
    .await
}

fn ranges_seen(o: &TestOrigin) -> Vec<String> {
    o.seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| {
            s.headers
                .get("range")
                .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
        })
        .collect()
}

fn slice_range(i: u64) -> String {
    format!("bytes={}-{}", i * SLICE, i * SLICE + SLICE - 1)
}

async fn stats(node: &TestNode) -> serde_json::Value {
    let (_, _, b) = get(&format!("http://{}/stats", node.admin)).await;
    serde_json::from_slice(&b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_fetches_only_the_slices_it_covers_and_later_requests_are_hits() {
    let knobs = Arc::new(Knobs::default());
    let o = origin(knobs.clone()).await;
    let node = node(&o).await;
    let url = node.url("/video");
    let whole = object(0);

    // The end of the object: only its slice is fetched.
    let (a, b) = (9 * SLICE + 100, 9 * SLICE + 199);
    let (s, h, body) = get_with(&url, &[("range", &format!("bytes={a}-{b}"))]).await;
    assert_eq!(s, 206);
    assert_eq!(body, whole.slice(a as usize..=b as usize));
    assert_eq!(h["content-range"], format!("bytes {a}-{b}/{LEN}").as_str());
    assert!(cache_status(&h).contains("stored"), "{}", cache_status(&h));
    assert_eq!(ranges_seen(&o), vec![slice_range(9)]);
    until_stored(&url, &[("range", "bytes=589824-589900")], node.admin).await;
    assert_eq!(o.count(), 1);

    // Two slices, one of them stored: only the other is fetched.
    let (a, b) = (9 * SLICE - 10, 9 * SLICE + 10);
    let (s, h, body) = get_with(&url, &[("range", &format!("bytes={a}-{b}"))]).await;
    assert_eq!(s, 206);
    assert_eq!(body, whole.slice(a as usize..=b as usize));
    assert_eq!(ranges_seen(&o), vec![slice_range(9), slice_range(8)]);
    assert!(!cache_status(&h).contains("hit"), "{}", cache_status(&h));

    // The whole object: the missing slices, each once, and the bytes right.
    let (s, h, body) = get(&url).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-length"], LEN.to_string().as_str());
    assert!(h.get("content-range").is_none());
    assert_eq!(body.len(), whole.len());
    assert!(body == whole, "the bytes of the whole object");
    assert_eq!(o.count(), 11, "{:?}", ranges_seen(&o));
    let last = format!("bytes={}-{}", 10 * SLICE, 11 * SLICE - 1);
    assert!(ranges_seen(&o).contains(&last));
    until_stored(&url, &[], node.admin).await;

    // Everything stored: hits, whatever the range.
    let (s, h, body) = get(&url).await;
    assert_eq!(s, 200);
    assert!(body == whole);
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    let (s, h, body) = get_with(&url, &[("range", "bytes=-100")]).await;
    assert_eq!(s, 206);
    assert_eq!(body, whole.slice((LEN - 100) as usize..));
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    let (s, _, body) = get_with(&url, &[("range", &format!("bytes={}-", 3 * SLICE + 7))]).await;
    assert_eq!(s, 206);
    assert_eq!(body, whole.slice((3 * SLICE + 7) as usize..));
    assert_eq!(o.count(), 11, "no more origin requests");

    // Preconditions and ranges past the end are answered from the slices.
    let (s, _, body) = get_with(&url, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(s, 304);
    assert!(body.is_empty());
    let (s, h, _) = get_with(&url, &[("range", &format!("bytes={LEN}-"))]).await;
    assert_eq!(s, 416);
    assert_eq!(h["content-range"], format!("bytes */{LEN}").as_str());
    assert_eq!(o.count(), 11);

    let st = stats(&node).await;
    // Process-wide counters: the other tests of this file add to them.
    assert!(
        st["slices"]["fetches"].as_u64().unwrap() >= 11,
        "{}",
        st["slices"]
    );
    assert!(
        st["slices"]["hits"].as_u64().unwrap() >= 11,
        "{}",
        st["slices"]
    );
    let (_, _, m) = get(&format!("http://{}/metrics", node.admin)).await;
    let m = String::from_utf8_lossy(&m);
    assert!(m.contains("outpost_slices_total{result=\"fetch\"} "), "{m}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_a_slice_make_one_origin_fetch() {
    let knobs = Arc::new(Knobs::default());
    knobs.delay_ms.store(300, SeqCst);
    let o = origin(knobs.clone()).await;
    let node = node(&o).await;
    let url = node.url("/video");
    let whole = object(0);
    let mut tasks = Vec::new();
    for i in 0..10u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let a = 4 * SLICE + i * 1000;
            let r = format!("bytes={a}-{}", a + 999);
            (a, get_with(&url, &[("range", &r)]).await)
        }));
    }
    for t in tasks {
        let (a, (s, _, body)) = t.await.unwrap();
        assert_eq!(s, 206);
        assert_eq!(body, whole.slice(a as usize..a as usize + 1000));
    }
    assert_eq!(
        ranges_seen(&o),
        vec![slice_range(4)],
        "one fetch of the slice"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_change_between_slices_restarts_the_object() {
    let knobs = Arc::new(Knobs::default());
    let o = origin(knobs.clone()).await;
    let node = node(&o).await;
    let url = node.url("/video");
    // Slice 0 of version 0 is stored.
    let (s, _, _) = get_with(&url, &[("range", "bytes=0-99")]).await;
    assert_eq!(s, 206);
    until_stored(&url, &[("range", "bytes=0-99")], node.admin).await;

    // The object changes at the origin; a whole GET starts from the stored
    // slice 0 (version 0) and meets version 1 in slice 1: the answer is cut
    // off rather than mixing the two.
    knobs.version.store(1, SeqCst);
    let r = client()
        .request(http::Request::get(&url).body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let collected = r.into_body().collect().await;
    match collected {
        Err(_) => {}
        Ok(b) => panic!("a whole answer of {} bytes", b.to_bytes().len()),
    }
    assert!(stats(&node).await["slices"]["restarts"].as_u64().unwrap() >= 1);

    // The next request starts again, and gets version 1 whole.
    let (s, _, body) = get(&url).await;
    assert_eq!(s, 200);
    assert!(body == object(1), "version 1, whole");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_ignores_range_is_stored_whole() {
    let knobs = Arc::new(Knobs::default());
    knobs.no_ranges.store(true, SeqCst);
    let o = origin(knobs.clone()).await;
    let node = node(&o).await;
    let url = node.url("/video");
    let whole = object(0);
    let (s, h, body) = get_with(&url, &[("range", "bytes=100000-100009")]).await;
    assert_eq!(s, 206);
    assert_eq!(body, whole.slice(100_000..100_010));
    assert_eq!(
        h["content-range"],
        format!("bytes 100000-100009/{LEN}").as_str()
    );
    until_stored(&url, &[], node.admin).await;
    let (s, _, body) = get(&url).await;
    assert_eq!(s, 200);
    assert!(body == whole);
    assert_eq!(o.count(), 1, "stored whole from the one 200");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_missing_and_unstorable_objects() {
    let knobs = Arc::new(Knobs::default());
    let o = origin(knobs.clone()).await;
    let node = node(&o).await;
    // Smaller than a slice: one slice holds it all.
    let url = node.url("/small");
    let (s, h, body) = get(&url).await;
    assert_eq!(s, 200);
    assert_eq!(&body[..], b"a small object");
    assert_eq!(h["content-length"], "14");
    until_stored(&url, &[], node.admin).await;
    let (s, h, body) = get_with(&url, &[("range", "bytes=2-6")]).await;
    assert_eq!(s, 206);
    assert_eq!(&body[..], b"small");
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    assert_eq!(o.count(), 1);

    // Missing: the origin's answer goes to the client.
    let (s, _, body) = get(&node.url("/nothing")).await;
    assert_eq!(s, 404);
    assert_eq!(&body[..], b"not here");

    // A slice that must not be stored: the object is fetched whole instead
    // and passed on.
    knobs.no_store.store(true, SeqCst);
    let before = o.count();
    let (s, _, body) = get_with(&node.url("/video"), &[("range", "bytes=5-9")]).await;
    assert_eq!(s, 206);
    assert_eq!(body, object(0).slice(5..10));
    let (s, _, body) = get(&node.url("/video")).await;
    assert_eq!(s, 200);
    assert!(body == object(0));
    assert!(o.count() > before + 1, "nothing stored");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_drops_every_slice() {
    let knobs = Arc::new(Knobs::default());
    let o = origin(knobs.clone()).await;
    let node = node(&o).await;
    let url = node.url("/video");
    let (s, _, _) = get(&url).await;
    assert_eq!(s, 200);
    until_stored(&url, &[], node.admin).await;
    assert_eq!(o.count(), 11);
    knobs.version.store(2, SeqCst);
    let (s, j) = admin_purge(
        node.admin,
        Some(TOKEN),
        &format!("{{\"urls\":[\"{url}\"]}}"),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    let (s, _, body) = get_with(&url, &[("range", &format!("bytes={}-", 7 * SLICE))]).await;
    assert_eq!(s, 206);
    assert_eq!(body, object(2).slice((7 * SLICE) as usize..));
    assert_eq!(o.count(), 11 + 4, "slices 7 to 10 fetched again");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_a_4_gib_object_costs_one_slice() {
    let o = origin(Arc::default()).await;
    let node = TestNode::start_site(
        &format!("origins = [\"{}\"]\nslice = \"4MiB\"\n", o.url()),
        "",
    )
    .await;
    let url = node.url("/huge");
    let (a, b) = (HUGE - 1_000_000, HUGE - 1);
    let (s, h, body) = get_with(&url, &[("range", "bytes=-1000000")]).await;
    // A suffix needs the length first: the first slice tells it.
    assert_eq!(s, 206);
    assert_eq!(h["content-range"], format!("bytes {a}-{b}/{HUGE}").as_str());
    assert!(body == huge_bytes(a, b));
    let (s, _, body) = get_with(&url, &[("range", &format!("bytes={}-", HUGE - 10))]).await;
    assert_eq!(s, 206);
    assert!(body == huge_bytes(HUGE - 10, HUGE - 1));
    let size = 4u64 << 20;
    let last = HUGE / size - 1;
    assert_eq!(
        ranges_seen(&o),
        vec![
            "bytes=0-4194303".to_owned(),
            format!("bytes={}-{}", last * size, HUGE - 1)
        ],
        "the first slice (for the length) and the last one"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_slices_stand_in_when_the_origin_is_down() {
    let knobs = Arc::new(Knobs::default());
    knobs.short.store(true, SeqCst);
    let o = origin(knobs.clone()).await;
    let node = TestNode::start_site(
        &format!(
            "origins = [\"{}\"]\nslice = \"64KiB\"\nstale_on_error = \"1h\"\n",
            o.url()
        ),
        "",
    )
    .await;
    let url = node.url("/video");
    let (s, _, _) = get(&url).await;
    assert_eq!(s, 200);
    until_stored(&url, &[], node.admin).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    o.stop();
    let (a, b) = (3 * SLICE + 5, 5 * SLICE + 5);
    let (s, h, body) = get_with(&url, &[("range", &format!("bytes={a}-{b}"))]).await;
    assert_eq!(s, 206);
    assert_eq!(body, object(0).slice(a as usize..=b as usize));
    assert!(
        cache_status(&h).contains("fwd=stale"),
        "{}",
        cache_status(&h)
    );
    let (s, _, body) = get(&url).await;
    assert_eq!(s, 200);
    assert!(body == object(0), "the whole object, from stale slices");
    node.shutdown().await;
}

/// RFC 9111 §5.2.1.7: `only-if-cached` is answered from the stored slices
/// when every one the answer covers is stored and usable, else with a 504;
/// the origin is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_cached_is_answered_from_stored_slices_and_never_fetches() {
    let knobs = Arc::new(Knobs::default());
    let o = origin(knobs.clone()).await;
    let node = node(&o).await;
    let url = node.url("/video");
    let whole = object(0);
    let only = ("cache-control", "only-if-cached");

    let (s, _, _) = get_with(&url, &[only]).await;
    assert_eq!(s, 504, "nothing stored");
    assert_eq!(o.count(), 0);

    // The last whole slice stored: a range within it is a hit; a range
    // that also covers a slice not stored, and the whole object, are not.
    let (a, b) = (9 * SLICE + 100, 9 * SLICE + 199);
    let range = format!("bytes={a}-{b}");
    let (s, _, _) = get_with(&url, &[("range", &range)]).await;
    assert_eq!(s, 206);
    until_stored(&url, &[("range", &range)], node.admin).await;
    assert_eq!(o.count(), 1);
    let (s, h, body) = get_with(&url, &[only, ("range", &range)]).await;
    assert_eq!(s, 206);
    assert_eq!(body, whole.slice(a as usize..=b as usize));
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    let across = format!("bytes={}-{}", 9 * SLICE - 10, 9 * SLICE + 10);
    let (s, _, _) = get_with(&url, &[only, ("range", &across)]).await;
    assert_eq!(s, 504, "slice 8 is not stored");
    let (s, _, _) = get_with(&url, &[only]).await;
    assert_eq!(s, 504, "most slices are not stored");
    assert_eq!(o.count(), 1, "{:?}", ranges_seen(&o));

    // Every slice stored: the whole object, from the store.
    let (s, _, _) = get(&url).await;
    assert_eq!(s, 200);
    until_stored(&url, &[], node.admin).await;
    let fetched = o.count();
    let (s, h, body) = get_with(&url, &[only]).await;
    assert_eq!(s, 200);
    assert!(body == whole, "the whole object");
    assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    let (s, _, body) = get_with(&url, &[only, ("range", &across)]).await;
    assert_eq!(s, 206);
    assert_eq!(
        body,
        whole.slice((9 * SLICE - 10) as usize..=(9 * SLICE + 10) as usize)
    );
    assert_eq!(o.count(), fetched, "no origin request for only-if-cached");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_is_answered_from_the_first_slice() {
    let knobs = Arc::new(Knobs::default());
    let o = origin(knobs.clone()).await;
    let node = node(&o).await;
    let url = node.url("/video");
    let only = ("cache-control", "only-if-cached");

    let (s, _, _) = request_with("HEAD", &url, &[only]).await;
    assert_eq!(s, 504, "nothing stored");
    assert_eq!(o.count(), 0);

    // Only the first slice stored: enough for the fields of the whole.
    let (s, _, _) = get_with(&url, &[("range", &slice_range(0))]).await;
    assert_eq!(s, 206);
    until_stored(&url, &[("range", &slice_range(0))], node.admin).await;
    let fetched = o.count();
    for extra in [Some(only), None, Some(("range", "bytes=0-9"))] {
        let headers: Vec<_> = extra.into_iter().collect();
        let (s, h, body) = request_with("HEAD", &url, &headers).await;
        // RFC 9110 §14.2: Range is for GET only.
        assert_eq!(s, 200, "{headers:?}");
        assert!(body.is_empty());
        assert_eq!(h["content-length"], LEN.to_string().as_str());
        assert_eq!(h["etag"], "\"v0\"");
        assert!(h.get("content-range").is_none());
        assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
    }
    assert_eq!(o.count(), fetched, "HEADs answered without the origin");
    // The GET with only-if-cached still needs every slice.
    let (s, _, _) = get_with(&url, &[only]).await;
    assert_eq!(s, 504);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_only_if_cached_answer_is_not_cut_off_when_its_slices_go_stale() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let knobs = Arc::new(Knobs::default());
    knobs.brief.store(true, SeqCst);
    let o = origin(knobs.clone()).await;
    let node = node(&o).await;
    let url = node.url("/huge");
    // 64 slices (4 MiB), fresh for about four seconds (storing them all in
    // a debug build on a slow host took more than one).
    let (a, b) = (0u64, 64 * SLICE - 1);
    let range = format!("bytes={a}-{b}");
    let (s, _, _) = get_with(&url, &[("range", &range)]).await;
    assert_eq!(s, 206);
    // More slices than a hit is checked for: the last one's fill is
    // awaited instead.
    let last = format!("bytes={}-{b}", b - 9);
    until_stored(&url, &[("range", &last)], node.admin).await;
    let fetched = o.count();
    assert_eq!(fetched, 64);

    // A client that reads the head, then stops for longer than the slices
    // stay fresh: most of the body is walked after they went stale.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut c = sock.connect(node.proxy).await.unwrap();
    let req = format!(
        "GET /huge HTTP/1.1\r\nHost: {}\r\nRange: {range}\r\n\
         Cache-Control: only-if-cached\r\nConnection: close\r\n\r\n",
        node.proxy
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut got = vec![0u8; 4096];
    let n = c.read(&mut got).await.unwrap();
    got.truncate(n);
    assert!(
        got.starts_with(b"HTTP/1.1 206"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    tokio::time::sleep(Duration::from_millis(4500)).await;
    c.read_to_end(&mut got).await.unwrap();
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        got.len() - at,
        (b - a + 1) as usize,
        "the whole range, not cut off"
    );
    assert!(got[at..] == huge_bytes(a, b)[..]);
    assert_eq!(o.count(), fetched, "only-if-cached: never the origin");
    node.shutdown().await;
}

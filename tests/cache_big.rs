//! Large-object cache behaviour: ranges from a 100 MiB object (RFC 9110
//! §14), coalescing 200 clients on a slow 50 MiB miss, byte-identical bodies
//! from 0 bytes to 300 MiB, and a hit after a restart with the origin gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http::Request;
use http_body_util::BodyExt;

const BIG_CFG: &str = "memory = \"64MiB\"\ndisk = \"1GiB\"\nmax_object_size = \"512MiB\"\n";

fn node_cfg_big(origin: &str, dir: &std::path::Path) -> String {
    format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\nmemory = \"64MiB\"\ndisk = \"1GiB\"\nmax_object_size = \"512MiB\"\n\
         [[site]]\norigins = [\"{origin}\"]\n",
        dir.display().to_string()
    )
}

#[tokio::test]
async fn bodies_from_cache_are_byte_identical_for_every_size_class() {
    test_logging();
    let o = sized_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = outpost::config::Config::from_toml(&node_cfg_big(&o.url(), dir.path())).unwrap();
    let node = outpost::Node::start(cfg).await.unwrap();
    let chunk = 1 << 20;
    for size in [0, 1, 1000, chunk - 1, chunk, chunk + 1, 10 << 20, 300 << 20] {
        let url = format!("http://{}/size/{size}", node.proxy_addr());
        let want = blake3::hash(&content(size)).to_hex().to_string();
        for pass in 0..2 {
            if pass == 1 {
                // The first client can finish reading before the fill has
                // committed; a request then would join the fill instead.
                until_hit(&url, &[]).await;
            }
            let r = client()
                .request(Request::get(&url).body(full(Bytes::new())).unwrap())
                .await
                .unwrap();
            let cs = cache_status(r.headers());
            if pass == 1 {
                assert!(cs.contains("hit"), "size {size}: {cs}");
            }
            let (n, h) = hash_body(r.into_body()).await.unwrap();
            assert_eq!(
                (n as usize, h.as_str()),
                (size, want.as_str()),
                "size {size} pass {pass}"
            );
        }
        assert_eq!(o.count_path(&format!("/size/{size}")), 1, "size {size}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn ranges_from_a_100_mib_object() {
    // RFC 9110 §14.2 (Range), §14.4 (Content-Range), §14.6 (multipart), §13.1.5 (If-Range)
    let o = sized_origin().await;
    let n = TestNode::start_sized(&o.url(), BIG_CFG, "").await;
    let size = 100usize << 20;
    let all = content(size);
    let u = n.url(&format!("/size/{size}"));
    get(&u).await; // store it
    // single range in the middle
    let (s, h, b) = get_with(&u, &[("range", "bytes=50000000-50000999")]).await;
    assert_eq!(s, 206);
    assert_eq!(
        h.get("content-range").unwrap(),
        &format!("bytes 50000000-50000999/{size}")
    );
    assert_eq!(b, all.slice(50_000_000..50_001_000));
    // suffix
    let (s, h, b) = get_with(&u, &[("range", "bytes=-100")]).await;
    assert_eq!(s, 206);
    assert_eq!(
        h.get("content-range").unwrap(),
        &format!("bytes {}-{}/{size}", size - 100, size - 1)
    );
    assert_eq!(b, all.slice(size - 100..));
    // open-ended
    let (_, _, b) = get_with(&u, &[("range", &format!("bytes={}-", size - 10))]).await;
    assert_eq!(b, all.slice(size - 10..));
    // multiple ranges → multipart/byteranges
    let (s, h, b) = get_with(
        &u,
        &[("range", "bytes=0-9, 1048576-1048585, 99999990-99999999")],
    )
    .await;
    assert_eq!(s, 206);
    let ct = h.get("content-type").unwrap().to_str().unwrap().to_owned();
    let boundary = ct
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert!(ct.starts_with("multipart/byteranges"), "{ct}");
    assert_eq!(
        h.get("content-length").unwrap().to_str().unwrap(),
        b.len().to_string()
    );
    let text = b.to_vec();
    for (start, end) in [(0usize, 9usize), (1048576, 1048585), (99999990, 99999999)] {
        let cr = format!("Content-Range: bytes {start}-{end}/{size}\r\n\r\n");
        let pos =
            find(&text, cr.as_bytes()).unwrap_or_else(|| panic!("part {start}-{end} missing"));
        let part = &text[pos + cr.len()..pos + cr.len() + (end - start + 1)];
        assert_eq!(part, &all[start..=end]);
    }
    assert!(find(&text, format!("--{boundary}--").as_bytes()).is_some());
    // unsatisfiable
    let (s, h, _) = get_with(&u, &[("range", &format!("bytes={size}-"))]).await;
    assert_eq!(s, 416);
    assert_eq!(h.get("content-range").unwrap(), &format!("bytes */{size}"));
    // If-Range matching (strong ETag) → 206; not matching → 200 whole.
    let (s, _, _) = get_with(&u, &[("range", "bytes=0-0"), ("if-range", "\"sized\"")]).await;
    assert_eq!(s, 206);
    let (s, _, b) = get_with(&u, &[("range", "bytes=0-0"), ("if-range", "\"other\"")]).await;
    assert_eq!(s, 200);
    assert_eq!(b.len(), size);
    assert_eq!(o.count(), 1, "every range was served from the cache");
}

#[tokio::test]
async fn a_range_request_on_a_miss_stores_the_whole_object() {
    let o = sized_origin().await;
    let n = TestNode::start_sized(&o.url(), BIG_CFG, "").await;
    let u = n.url("/size/3000000");
    let (s, _, b) = get_with(&u, &[("range", "bytes=10-19")]).await;
    assert_eq!(s, 206);
    assert_eq!(b, content(3_000_000).slice(10..20));
    assert!(
        o.last().headers.get("range").is_none(),
        "whole object fetched"
    );
    // The 206 is answered while the whole object is still arriving.
    until_hit(&u, &[]).await;
    let (_, h, b) = get(&u).await;
    assert_eq!(b.len(), 3_000_000);
    assert!(cache_status(&h).contains("hit"));
    assert_eq!(o.count(), 1);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn two_hundred_clients_on_a_slow_miss_make_one_origin_request() {
    // Coalescing: one fetch, waiters stream as bytes arrive.
    let size = 50usize << 20;
    let body = content(size);
    let want = blake3::hash(&body).to_hex().to_string();
    let started = Arc::new(AtomicUsize::new(0));
    let st2 = started.clone();
    let origin_done: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let od2 = origin_done.clone();
    let o = TestOrigin::start(move |_req| {
        st2.fetch_add(1, Ordering::SeqCst);
        let body = body.clone();
        let od = od2.clone();
        async move {
            // 50 pieces of 1 MiB, 40 ms apart: about 2 s in all.
            let s = futures_util::stream::iter(0..50usize).then(move |i| {
                let piece = body.slice(i << 20..(i + 1) << 20);
                let od = od.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    if i == 49 {
                        *od.lock().unwrap() = Some(Instant::now());
                    }
                    Ok::<_, BoxError>(http_body::Frame::data(piece))
                }
            });
            let mut r = http::Response::new(http_body_util::StreamBody::new(s).boxed_unsync());
            r.headers_mut()
                .insert("cache-control", "max-age=600".parse().unwrap());
            r.headers_mut()
                .insert("content-length", size.to_string().parse().unwrap());
            r
        }
    })
    .await;
    let n = TestNode::start_sized(&o.url(), BIG_CFG, "").await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let u = n.url("/slow-big");
        tasks.push(tokio::spawn(async move {
            let r = client()
                .request(Request::get(&u).body(full(Bytes::new())).unwrap())
                .await
                .unwrap();
            let mut body = r.into_body();
            let mut h = blake3::Hasher::new();
            let mut first = None;
            let mut n = 0usize;
            while let Some(f) = body.frame().await {
                if let Ok(d) = f.unwrap().into_data() {
                    if first.is_none() && !d.is_empty() {
                        first = Some(Instant::now());
                    }
                    n += d.len();
                    h.update(&d);
                }
            }
            (n, h.finalize().to_hex().to_string(), first.unwrap())
        }));
    }
    let mut firsts = Vec::new();
    for t in tasks {
        let (n, h, first) = t.await.unwrap();
        assert_eq!(n, size);
        assert_eq!(h, want);
        firsts.push(first);
    }
    assert_eq!(o.count(), 1, "exactly one origin request");
    let done = origin_done.lock().unwrap().unwrap();
    let early = firsts.iter().filter(|f| **f < done).count();
    assert_eq!(
        early, 200,
        "every waiter got its first byte before the origin finished"
    );
}

#[tokio::test]
async fn a_cached_object_is_a_hit_after_a_restart_with_the_origin_stopped() {
    test_logging();
    let o = sized_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = node_cfg_big(&o.url(), dir.path());
    for size in [100usize, 5 << 20] {
        let node = outpost::Node::start(outpost::config::Config::from_toml(&text).unwrap())
            .await
            .unwrap();
        // A fixed Host: the cache key includes the authority, and each
        // node run listens on a new port.
        get_with(
            &format!("http://{}/size/{size}", node.proxy_addr()),
            &[("host", "cdn.example")],
        )
        .await;
        node.shutdown().await;
    }
    o.stop();
    drop(o);
    let node = outpost::Node::start(outpost::config::Config::from_toml(&text).unwrap())
        .await
        .unwrap();
    for size in [100usize, 5 << 20] {
        let (s, h, b) = get_with(
            &format!("http://{}/size/{size}", node.proxy_addr()),
            &[("host", "cdn.example")],
        )
        .await;
        assert_eq!(s, 200);
        assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
        assert_eq!(b, content(size));
    }
    node.shutdown().await;
}

//! Zero-copy hits: large cached bodies are sent with `sendfile(2)` from the
//! storage arena, and what the client receives is byte-identical to the
//! origin's body — whole, as ranges (RFC 9110 §14), over pipelined
//! keep-alive connections, over HTTP/2, after a client hangs up half-way,
//! and after a restart (bodies read back from foyer's files move to the arena
//! once hot; bodies in the blob log are sent from its segment files at once).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(target_os = "linux")]

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STORAGE: &str = "memory = \"64MiB\"\ndisk = \"256MiB\"\n";
/// A disk tier with room for the blob log (values of 32 KiB and more).
const BLOB_STORAGE: &str = "memory = \"64MiB\"\ndisk = \"1GiB\"\n";
const SIZES: [usize; 5] = [
    outpost_storage::ZERO_COPY_MIN - 1,
    outpost_storage::ZERO_COPY_MIN,
    100 << 10,
    1 << 20,
    (3 << 20) + 5,
];

/// Bytes this node's proxy listener sent with sendfile so far.
/// Asserts that `got` bytes went by sendfile where `want` could: a partial
/// send (the socket's unsent-bytes limit, `[server] tcp_notsent_lowat`, or
/// a client slow to read) can leave under ZERO_COPY_MIN / 2 of a 1 MiB chunk,
/// which is copied.
fn assert_zero_copied(got: u64, want: usize, what: &str) {
    let chunks = want.div_ceil(1 << 20);
    let floor = want.saturating_sub(chunks * (outpost_storage::ZERO_COPY_MIN / 2));
    assert!(
        (floor as u64..=want as u64).contains(&got),
        "{what}: {got} of {want} bytes by sendfile"
    );
}

fn sent(node: &TestNode) -> u64 {
    node.node.as_ref().unwrap().sendfile_bytes()
}

async fn admin_stats_of(node: &outpost::Node) -> serde_json::Value {
    let (s, _, b) = get(&format!("http://{}/stats", node.admin_addr())).await;
    assert_eq!(s, 200);
    serde_json::from_slice(&b).unwrap()
}

async fn admin_stats(node: &TestNode) -> serde_json::Value {
    let (s, _, b) = get(&format!("http://{}/stats", node.admin)).await;
    assert_eq!(s, 200);
    serde_json::from_slice(&b).unwrap()
}

#[tokio::test]
async fn large_hits_are_sent_with_sendfile_and_are_byte_identical() {
    let o = sized_origin().await;
    let node = TestNode::start_sized(&o.url(), STORAGE, "").await;
    for size in SIZES {
        let url = node.url(&format!("/size/{size}"));
        let (_, _, miss) = get(&url).await;
        assert_eq!(miss, content(size), "miss, size {size}");
        // The object is committed just after its last byte went out; a hit
        // before that is served from the fill (heap bytes, no sendfile).
        until_stored(&url, &[], node.admin).await;
        let before = sent(&node);
        let (s, h, hit) = get(&url).await;
        assert_eq!(s, 200);
        assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
        assert_eq!(hit.len(), size);
        assert!(hit == content(size), "hit body differs, size {size}");
        // Everything but a short last chunk (under ZERO_COPY_MIN) goes by
        // sendfile; a body under ZERO_COPY_MIN is copied.
        let tail = size % (1 << 20);
        let want = if size < outpost_storage::ZERO_COPY_MIN {
            0
        } else if tail < outpost_storage::ZERO_COPY_MIN {
            size - tail
        } else {
            size
        };
        assert_zero_copied(sent(&node) - before, want, &format!("size {size}"));
        assert_eq!(o.count_path(&format!("/size/{size}")), 1);
    }
    let st = admin_stats(&node).await;
    assert_eq!(st["sendfile_bytes"].as_u64().unwrap(), sent(&node));
    assert!(sent(&node) >= (4 << 20));
    assert!(st["zero_copy_bytes"].as_u64().unwrap() >= (4 << 20));
    assert_eq!(st["zero_copy_fallbacks"].as_u64(), Some(0));
    node.shutdown().await;
}

#[tokio::test]
async fn ranges_and_http2_from_arena_bodies() {
    let o = sized_origin().await;
    let node = TestNode::start_sized(&o.url(), STORAGE, "").await;
    let size = (3 << 20) + 5;
    let url = node.url(&format!("/size/{size}"));
    let want = content(size);
    get(&url).await;
    until_stored(&url, &[], node.admin).await;
    // RFC 9110 §14.2: single ranges that start, end and straddle 1 MiB chunks.
    for (a, b) in [
        (0usize, 99usize),
        (1000, 200_000),
        ((1 << 20) - 10, (1 << 20) + 10),
        (size - 70_000, size - 1),
    ] {
        let (s, h, body) = get_with(&url, &[("range", &format!("bytes={a}-{b}"))]).await;
        assert_eq!(s, 206, "{a}-{b}");
        assert_eq!(
            h["content-range"].to_str().unwrap(),
            format!("bytes {a}-{b}/{size}")
        );
        assert!(body == want.slice(a..=b), "range {a}-{b} differs");
    }
    // HTTP/2 (h2c): h2 frames the data itself; the bytes must still match.
    let r = h2_client()
        .request(Request::get(&url).body(full(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert!(cache_status(r.headers()).contains("hit"));
    let (n, h) = hash_body(r.into_body()).await.unwrap();
    assert_eq!(n as usize, size);
    assert_eq!(h, blake3::hash(&want).to_hex().to_string());
    node.shutdown().await;
}

/// Reads one HTTP/1.1 response with a Content-Length body from `s`.
async fn read_response(s: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (head, body)
}

#[tokio::test]
async fn pipelined_keep_alive_and_a_client_that_hangs_up() {
    let o = sized_origin().await;
    let node = TestNode::start_sized(&o.url(), STORAGE, "").await;
    let sizes = [100 << 10, 1 << 20, 40_000, (3 << 20) + 5];
    for size in sizes {
        until_stored(&node.url(&format!("/size/{size}")), &[], node.admin).await;
    }
    // A client that asks for 3 MiB, reads a few bytes and hangs up, several
    // times: the node must not care (EPIPE/ECONNRESET on sendfile).
    let host = node.proxy;
    for _ in 0..5 {
        let mut s = tokio::net::TcpStream::connect(node.proxy).await.unwrap();
        let req = format!(
            "GET /size/{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
            (3 << 20) + 5
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut b = [0u8; 100];
        s.read_exact(&mut b).await.unwrap();
        drop(s);
    }
    // Pipelined requests on one connection, three rounds over every size,
    // with a Range in the middle: each response must be complete and in order.
    let host = node.proxy;
    let mut s = tokio::net::TcpStream::connect(node.proxy).await.unwrap();
    let mut reqs = String::new();
    for _ in 0..3 {
        for size in sizes {
            reqs.push_str(&format!(
                "GET /size/{size} HTTP/1.1\r\nHost: {host}\r\n\r\n"
            ));
        }
        reqs.push_str(&format!(
            "GET /size/{} HTTP/1.1\r\nHost: {host}\r\nRange: bytes=5-50004\r\n\r\n",
            1 << 20
        ));
    }
    s.write_all(reqs.as_bytes()).await.unwrap();
    for _ in 0..3 {
        for size in sizes {
            let (head, body) = read_response(&mut s).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(body == content(size)[..], "size {size} differs");
        }
        let (head, body) = read_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert!(body == content(1 << 20)[5..50_005]);
    }
    for size in sizes {
        assert_eq!(o.count_path(&format!("/size/{size}")), 1, "size {size}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn a_slow_reader_with_a_small_window_gets_every_byte_in_order() {
    // A tiny receive buffer and a reader that pauses: the node's sendfile
    // hits a full socket again and again and must resume at the right offset.
    let o = sized_origin().await;
    let node = TestNode::start_sized(&o.url(), STORAGE, "").await;
    let size = (3 << 20) + 5;
    let path = format!("/size/{size}");
    until_stored(&node.url(&path), &[], node.admin).await;
    let before = sent(&node);
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = sock.connect(node.proxy).await.unwrap();
    let host = node.proxy;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // The head, byte by byte (it is short), then the body in small reads.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let mut got = Vec::with_capacity(size);
    let mut buf = [0u8; 3000];
    let mut reads = 0u32;
    while got.len() < size {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early at {}", got.len());
        got.extend_from_slice(&buf[..n]);
        reads += 1;
        if reads.is_multiple_of(64) {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    assert_eq!(got.len(), size);
    assert!(got == content(size)[..], "body differs");
    // Every full 1 MiB chunk went by sendfile, in many partial sends (what
    // one of them left under ZERO_COPY_MIN / 2 of a chunk is copied).
    let got = sent(&node) - before;
    let floor = 3 * ((1 << 20) - outpost_storage::ZERO_COPY_MIN / 2) as u64;
    assert!((floor..=3 << 20).contains(&got), "{got}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_notsent_low_water_mark_interleaves_large_hits_intact() {
    // `tcp_notsent_lowat` at its floor: every 1 MiB chunk goes out in many
    // partial sendfiles as the clients read, eight of them at once.
    let o = sized_origin().await;
    let extra = "[server]\ntcp_notsent_lowat = \"4KiB\"\n";
    let node = TestNode::start_sized(&o.url(), STORAGE, extra).await;
    let size = (3 << 20) + 5;
    let url = node.url(&format!("/size/{size}"));
    get(&url).await;
    until_stored(&url, &[], node.admin).await;
    let before = sent(&node);
    let gets = (0..8).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { get(&url).await })
    });
    for g in gets {
        let (s, h, body) = g.await.unwrap();
        assert_eq!(s, 200);
        assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
        assert!(body == content(size), "body differs");
    }
    // The full chunks went by sendfile, but for what a partial send left
    // of a chunk under ZERO_COPY_MIN / 2 (copied); the 5-byte tail is copied.
    let by_sendfile = sent(&node) - before;
    let floor = 8 * 3 * ((1 << 20) - outpost_storage::ZERO_COPY_MIN / 2) as u64;
    assert!(
        (floor..=8 * (3 << 20)).contains(&by_sendfile),
        "{by_sendfile}"
    );
    assert_eq!(o.count_path(&format!("/size/{size}")), 1);
    node.shutdown().await;
}

/// Starts a node with config `text`, caches `/size/N` for every size, and stops it.
async fn cache_then_stop(text: &str, sizes: &[usize]) {
    let node = outpost::Node::start(outpost::config::Config::from_toml(text).unwrap())
        .await
        .unwrap();
    for size in sizes {
        let url = format!("http://{}/size/{size}", node.proxy_addr());
        get_with(&url, &[("host", "cdn.example")]).await;
        until_hit(&url, &[("host", "cdn.example")]).await;
    }
    node.shutdown().await;
}

#[tokio::test]
async fn bodies_read_back_from_disk_are_sent_zero_copy_once_hot() {
    let o = sized_origin().await;
    let dir = tempfile::tempdir().unwrap();
    // Without the blob log: every body in foyer's block files.
    let storage = format!("{STORAGE}large_value_share = 0\n");
    let text = node_config_sized(&o.url(), dir.path(), &storage, "");
    let sizes = [100usize << 10, (1 << 20) + 3];
    cache_then_stop(&text, &sizes).await;
    o.stop();
    let node = outpost::Node::start(outpost::config::Config::from_toml(&text).unwrap())
        .await
        .unwrap();
    for size in sizes {
        let url = format!("http://{}/size/{size}", node.proxy_addr());
        // Read back from disk to the heap; moved to the arena on the second
        // memory-tier hit (the third request), and sent with sendfile from then on.
        for pass in 0..4 {
            let before = node.sendfile_bytes();
            let (s, h, b) = get_with(&url, &[("host", "cdn.example")]).await;
            assert_eq!(s, 200);
            assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
            assert!(
                b == content(size),
                "size {size} pass {pass} differs after the restart"
            );
            // Heap-backed while pass < 2; (1 MiB + 3): the 3-byte tail is copied.
            let want = match pass {
                0 | 1 => 0,
                _ if size < 1 << 20 => size,
                _ => size - size % (1 << 20),
            };
            assert_zero_copied(
                node.sendfile_bytes() - before,
                want,
                &format!("size {size} pass {pass}"),
            );
        }
    }
    node.shutdown().await;
}

#[tokio::test]
async fn bodies_in_the_blob_log_are_sent_from_its_files_after_a_restart() {
    let o = sized_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let text = node_config_sized(&o.url(), dir.path(), BLOB_STORAGE, "");
    let sizes = [100usize << 10, (1 << 20) + 3, 20 << 10];
    cache_then_stop(&text, &sizes).await;
    let received = o.count();
    o.stop();
    assert!(
        std::fs::read_dir(dir.path().join("blobs"))
            .map(|d| d.count())
            .unwrap_or(0)
            >= 1,
        "the blob log has segment files"
    );
    let node = outpost::Node::start(outpost::config::Config::from_toml(&text).unwrap())
        .await
        .unwrap();
    let before = admin_stats_of(&node).await;
    for size in sizes {
        let url = format!("http://{}/size/{size}", node.proxy_addr());
        // The first hit after the restart already goes out of the segment file
        // (its pages are in the page cache: they were written a moment ago).
        // Values under 32 KiB, like the 3-byte tail chunk, stay in foyer.
        let want = match size {
            s if s < outpost_storage::ZERO_COPY_MIN => 0,
            s if s < 1 << 20 => s,
            s => s - s % (1 << 20),
        };
        for pass in 0..3 {
            let sent_before = node.sendfile_bytes();
            let (s, h, b) = get_with(&url, &[("host", "cdn.example")]).await;
            assert_eq!(s, 200);
            assert!(cache_status(&h).contains("hit"), "{}", cache_status(&h));
            assert!(b == content(size), "size {size} pass {pass} differs");
            assert_zero_copied(
                node.sendfile_bytes() - sent_before,
                want,
                &format!("size {size} pass {pass}"),
            );
        }
    }
    let after = admin_stats_of(&node).await;
    let reads = |v: &serde_json::Value| v["blob_resident_reads"].as_u64().unwrap();
    // Two values in the log (100 KiB inline body, one 1 MiB chunk), three passes.
    assert_eq!(reads(&after) - reads(&before), 6, "{after}");
    assert_eq!(after["blob_cold_reads"], 0, "{after}");
    assert_eq!(o.count(), received, "no origin request after the restart");
    node.shutdown().await;
}

//! A damaged store is never a broken answer (RFC 9111 §3.3): objects of one chunk, stored
//! by a node that is then stopped, have random blocks of their store files overwritten;
//! after a restart every one is answered whole, from the cache where it is intact and from
//! the origin where it is not (`Cache-Status` `detail=corrupt`), and no answer is cut off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::*;
use rand::{Rng, SeedableRng};

const OBJECTS: usize = 60;
const SIZE: usize = 300 * 1024;
/// One name for the objects before and after the restart (the node's port changes).
const HOST: &[(&str, &str)] = &[("host", "objects.test")];

fn stats(admin: std::net::SocketAddr) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://{admin}/stats")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_store_files_give_whole_answers_never_cut_off_ones() {
    let origin = sized_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let text = node_config_sized(
        &origin.url(),
        &cache,
        "memory = \"64MiB\"\ndisk = \"512MiB\"\n",
        "",
    );
    let path = |i: usize| format!("/size/{}", SIZE + i);
    let mut node = NodeProcess::start_text(&text, dir);
    for i in 0..OBJECTS {
        until_stored(
            &format!("http://{}{}", node.proxy, path(i)),
            HOST,
            node.admin,
        )
        .await;
    }
    node.terminate();
    assert!(node.child.wait().unwrap().success());
    let dir = std::mem::replace(&mut node.dir, tempfile::tempdir().unwrap());
    drop(node);

    // Random 4 KiB blocks of every store file, in the part the objects were written to.
    let mut rng = rand::rngs::StdRng::seed_from_u64(33);
    let mut damaged = 0;
    for sub in ["blobs", "foyer"] {
        for e in std::fs::read_dir(cache.join(sub)).unwrap() {
            let p = e.unwrap().path();
            let len = std::fs::metadata(&p).unwrap().len();
            let used = len.min((OBJECTS * SIZE) as u64 + (1 << 20));
            if used < 8192 {
                continue;
            }
            let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            for _ in 0..12 {
                let at = rng.random_range(4096..used - 4096) & !4095;
                f.seek(SeekFrom::Start(at)).unwrap();
                let junk: Vec<u8> = (0..4096).map(|_| rng.random()).collect();
                f.write_all(&junk).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0);

    let node = NodeProcess::start_text(&text, dir);
    let fetched = origin.count();
    let (mut from_cache, mut refetched, mut said_corrupt) = (0, 0, 0);
    for i in 0..OBJECTS {
        let url = format!("http://{}{}", node.proxy, path(i));
        let (st, h, body) = get_with(&url, HOST).await;
        assert_eq!(st, 200, "{url}");
        assert_eq!(body.len(), SIZE + i, "{url}: whole");
        assert!(body == content(SIZE + i), "{url}: the origin's bytes");
        let cs = cache_status(&h);
        if cs.contains("hit") {
            from_cache += 1;
        } else {
            refetched += 1;
            said_corrupt += usize::from(cs.contains("detail=\"corrupt\""));
        }
    }
    let s = stats(node.admin);
    eprintln!("{from_cache} from the cache, {refetched} refetched, {damaged} blocks damaged: {s}");
    assert_eq!(s["cut_off"], 0, "{s}");
    // Damaged bodies found before the head went out: misses that say why.
    assert!(
        said_corrupt > 0 && s["corrupt_misses"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert!(from_cache > 0, "some objects survived");
    assert_eq!(origin.count() - fetched, refetched);
}

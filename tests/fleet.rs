//! Fleet purges through a real `nats-server -js`: a purge sent to one node
//! reaches the others, a node that was down catches up before it serves a
//! hit, and a purge accepted while NATS is down reaches the fleet when it is
//! back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::nats::NatsServer;
use common::*;

const HOST: &str = "fleet.example";
const TOKEN: &str = "fleet-token";

fn node_text(name: &str, nats: &str, origin: &str, dir: &Path) -> String {
    format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [storage]\npath = {:?}\nmemory = \"32MiB\"\ndisk = \"256MiB\"\n\
         [admin]\ntoken = \"{TOKEN}\"\n\
         [cluster]\nnode = \"{name}\"\nnats = [\"{nats}\"]\ncatch_up_timeout = \"20s\"\n\
         [[site]]\nname = \"default\"\norigins = [\"{origin}\"]\n",
        dir.display().to_string()
    )
}

struct FleetNode {
    node: Option<outpost::Node>,
    name: String,
    dir: tempfile::TempDir,
}

impl FleetNode {
    async fn start(name: &str, nats: &str, origin: &str) -> FleetNode {
        let mut n = FleetNode {
            node: None,
            name: name.into(),
            dir: tempfile::tempdir().unwrap(),
        };
        n.resume(nats, origin).await;
        n
    }

    /// Starts (again) on the same storage directory.
    async fn resume(&mut self, nats: &str, origin: &str) {
        test_logging();
        let text = node_text(&self.name, nats, origin, self.dir.path());
        let cfg = outpost::config::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
        self.node = Some(outpost::Node::start(cfg).await.unwrap());
    }

    async fn stop(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown().await;
        }
    }

    fn node(&self) -> &outpost::Node {
        self.node.as_ref().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node().proxy_addr())
    }

    async fn get(&self, path: &str) -> String {
        let (s, h, _) = get_with(&self.url(path), &[("host", HOST)]).await;
        assert_eq!(s, 200, "{path} on {}", self.name);
        cache_status(&h)
    }

    async fn stats(&self) -> serde_json::Value {
        let (_, _, b) = get(&format!("http://{}/stats", self.node().admin_addr())).await;
        serde_json::from_slice(&b).unwrap()
    }

    /// Waits until the node has applied the stream up to `seq`.
    async fn until_applied(&self, seq: u64, within: Duration) {
        let t = Instant::now();
        loop {
            let st = self.stats().await;
            if st["fleet"]["applied_seq"].as_u64().unwrap_or(0) >= seq {
                return;
            }
            assert!(
                t.elapsed() < within,
                "{} applied only {} of {seq}: {st}",
                self.name,
                st["fleet"]["applied_seq"]
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `path` is no longer a hit here (a purge arrived).
    async fn until_purged(&self, path: &str) {
        let t = Instant::now();
        while self.get(path).await.contains("hit") {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "{path} still a hit on {} after 15 s: {}",
                self.name,
                self.stats().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn purge(&self, body: &str) -> serde_json::Value {
        let (s, v) = admin_purge(self.node().admin_addr(), Some(TOKEN), body).await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

/// Caches `path` on `node` (stored, so its next GET is a hit).
async fn cache_on(node: &FleetNode, path: &str) {
    let url = node.url(path);
    until_stored(&url, &[("host", HOST)], node.node().admin_addr()).await;
}

async fn origin() -> TestOrigin {
    TestOrigin::start(|req| async move {
        let mut r = resp(200, format!("object {}", req.uri().path()));
        r.headers_mut()
            .insert("cache-control", "max-age=3600".parse().unwrap());
        r
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_sent_to_one_node_is_applied_on_the_others() {
    let nats = NatsServer::start();
    let o = origin().await;
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(FleetNode::start(name, &nats.url(), &o.url()).await);
    }
    for n in &nodes {
        cache_on(n, "/x").await;
        assert!(n.get("/x").await.contains("hit"));
    }
    let v = nodes[0]
        .purge(&format!(r#"{{"urls":["http://{HOST}/x"]}}"#))
        .await;
    assert_eq!(v["durable"], "stream", "{v}");
    let seq = v["seq"].as_u64().unwrap();
    let before = o.count_path("/x");
    for n in &nodes {
        n.until_applied(seq, Duration::from_secs(5)).await;
        let cs = n.get("/x").await;
        assert!(cs.contains("miss"), "{} after the purge: {cs}", n.name);
    }
    assert_eq!(o.count_path("/x"), before + 3);
    let (_, _, m) = get(&format!("http://{}/metrics", nodes[0].node().admin_addr())).await;
    let m = String::from_utf8_lossy(&m);
    assert!(
        m.contains("outpost_purge_stream_published_total{result=\"ok\"} 1"),
        "{m}"
    );
    let (_, _, m) = get(&format!("http://{}/metrics", nodes[1].node().admin_addr())).await;
    let m = String::from_utf8_lossy(&m);
    assert!(m.contains("outpost_purge_stream_applied_total{} 1"), "{m}");
    for mut n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_applies_every_missed_purge_before_serving_a_hit() {
    let nats = NatsServer::start();
    let o = origin().await;
    let a = FleetNode::start("a", &nats.url(), &o.url()).await;
    let mut c = FleetNode::start("c", &nats.url(), &o.url()).await;
    for i in 0..100 {
        cache_on(&c, &format!("/o{i}")).await;
    }
    // One more object C keeps: its hits must come back after the catch-up.
    cache_on(&c, "/kept").await;
    c.stop().await;
    let mut last = 0;
    for i in 0..100 {
        let v = a
            .purge(&format!(r#"{{"urls":["http://{HOST}/o{i}"]}}"#))
            .await;
        assert_eq!(v["durable"], "stream", "{v}");
        last = v["seq"].as_u64().unwrap();
    }
    c.resume(&nats.url(), &o.url()).await;
    // No waiting: the first requests after the start must already see the
    // purges (hits wait for the catch-up).
    for i in 0..100 {
        let cs = c.get(&format!("/o{i}")).await;
        assert!(!cs.contains("hit"), "/o{i} served from C's cache: {cs}");
    }
    assert!(c.get("/kept").await.contains("hit"));
    let st = c.stats().await;
    assert!(st["fleet"]["applied_seq"].as_u64().unwrap() >= last, "{st}");
    assert_eq!(st["fleet"]["last_catch_up_purges"], 100, "{st}");
    assert_eq!(st["fleet"]["late_hits"], 0, "{st}");
    a.stop_owned().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_accepted_while_nats_is_down_reaches_the_fleet_when_it_is_back() {
    let mut nats = NatsServer::start();
    let o = origin().await;
    let a = FleetNode::start("a", &nats.url(), &o.url()).await;
    let b = FleetNode::start("b", &nats.url(), &o.url()).await;
    for n in [&a, &b] {
        cache_on(n, "/y").await;
        n.until_applied(0, Duration::from_secs(5)).await;
    }
    nats.stop();
    // The client notices the lost connection at its next read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = a.purge(&format!(r#"{{"urls":["http://{HOST}/y"]}}"#)).await;
    assert_eq!(v["durable"], "local", "{v}");
    assert!(a.get("/y").await.contains("miss"));
    assert!(b.get("/y").await.contains("hit"));
    assert_eq!(a.stats().await["fleet"]["outbox"], 1);
    nats.resume();
    let t = Instant::now();
    loop {
        let st = a.stats().await;
        if st["fleet"]["outbox"] == 0 && st["fleet"]["published"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "outbox not published: {st}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.until_purged("/y").await;
    a.stop_owned().await;
    b.stop_owned().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_rebuilt_from_scratch_is_applied_from_its_start() {
    let mut nats = NatsServer::start();
    let o = origin().await;
    let a = FleetNode::start("a", &nats.url(), &o.url()).await;
    let b = FleetNode::start("b", &nats.url(), &o.url()).await;
    let mut seq = 0;
    for i in 0..3 {
        seq = a
            .purge(&format!(r#"{{"urls":["http://{HOST}/old{i}"]}}"#))
            .await["seq"]
            .as_u64()
            .unwrap();
    }
    b.until_applied(seq, Duration::from_secs(5)).await;
    cache_on(&b, "/z").await;
    // The NATS cluster is rebuilt: the stream starts again at 1, behind
    // what B applied.
    nats.wipe();
    nats.resume();
    let t = Instant::now();
    loop {
        let (s, v) = admin_purge(
            a.node().admin_addr(),
            Some(TOKEN),
            &format!(r#"{{"urls":["http://{HOST}/z"]}}"#),
        )
        .await;
        assert_eq!(s, 200);
        if v["durable"] == "stream" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.until_purged("/z").await;
    a.stop_owned().await;
    b.stop_owned().await;
}

impl FleetNode {
    async fn stop_owned(mut self) {
        self.stop().await;
    }
}

//! Tests of the origin pool against loopback origins.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;
use crate::config::OriginUrl;

use crate::config::Timeouts;

fn client() -> OriginClient {
    let t = Timeouts {
        connect: Duration::from_secs(2),
        response_header: Duration::from_secs(10),
        idle_body: Duration::from_secs(10),
        pool_idle: Duration::from_secs(30),
        pool_max_idle_per_origin: 8,
    };
    OriginClient::new(&t).unwrap()
}

fn specs(urls: &[String]) -> Vec<OriginSpec> {
    urls.iter()
        .map(|u| OriginSpec {
            url: OriginUrl::parse(u).unwrap(),
            weight: 1,
        })
        .collect()
}

#[test]
fn selection_is_round_robin() {
    let urls = [
        "http://127.0.0.1:1".to_string(),
        "http://127.0.0.1:2".to_string(),
    ];
    let pool = Pool::new("s", &specs(&urls), &PoolPolicy::default(), client()).unwrap();
    let picks: Vec<usize> = (0..4)
        .map(|_| pool.pick(0, None, now_ms()).unwrap())
        .collect();
    assert_eq!(picks, vec![0, 1, 0, 1]);
    // Tried origins are left out.
    assert_eq!(pool.pick(0b01, None, now_ms()), Some(1));
    assert_eq!(pool.pick(0b11, None, now_ms()), None);
}

#[tokio::test]
async fn a_refused_attempt_is_counted_and_retried_on_the_next_origin() {
    // Bound but not listening: connections are refused.
    let dead = tokio::net::TcpSocket::new_v4().unwrap();
    dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live_addr = live.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = live.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0
                        || s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    let urls = [format!("http://{dead_addr}"), format!("http://{live_addr}")];
    let policy = PoolPolicy {
        max_fails: 2,
        ..PoolPolicy::default()
    };
    let pool = Pool::new("s", &specs(&urls), &policy, client()).unwrap();
    let fwd = Forwarding {
        via: None,
        client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        proto: "http",
    };
    let headers = HeaderMap::new();
    let req = || OriginRequest {
        method: &Method::GET,
        path_and_query: "/",
        headers: &headers,
        body: None,
        fwd: &fwd,
        hash_key: None,
        prefer: None,
        drop_fields: &[],
    };
    // Round robin starts at the dead origin: the retry goes to the live one.
    let resp = pool.send(req()).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    let (dead_o, live_o) = (&pool.origins()[0], &pool.origins()[1]);
    assert_eq!(dead_o.stats.requests.get(), 1);
    assert_eq!(dead_o.stats.failures.get(), 1);
    assert_eq!(live_o.stats.in_flight(), 1, "the body holds the lease");
    drop(resp);
    assert_eq!(live_o.stats.in_flight(), 0);
    // The second failure in a row ejects it: then only the live one is
    // asked, and no client saw an error.
    for _ in 0..6 {
        drop(pool.send(req()).await.unwrap());
    }
    assert_eq!(dead_o.stats.requests.get(), 2);
    assert_eq!(dead_o.health.state(0, now_ms()), State::Down);
    assert_eq!(live_o.stats.requests.get(), 7);
    // With the live one drained, no origin takes requests: a 503.
    pool.set_drained(live_o, true);
    let e = pool.send(req()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoOrigin);
    assert!(e.retry_after().is_some_and(|s| s >= 1));
}

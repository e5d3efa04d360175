//! `Age` field shapes and date formats through real sockets: a list or
//! repeated `Age` lines count by their first member, and an invalid first
//! member makes the response stale (RFC 9111 §5.1); `Expires` and `Date` in
//! the obsolete RFC 850 and `asctime` formats and in any letter case give
//! the freshness they say (RFC 9110 §5.6.7).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use http::Response;

/// An origin answering `/p` with `max-age=3600` and the `Age` lines given
/// for it in the path.
async fn origin() -> TestOrigin {
    TestOrigin::start(|req| async move {
        let lines: Vec<&str> = match req.uri().path() {
            "/list" => vec!["7200, 0"],
            "/lines" => vec!["10", "5000"],
            "/lines-stale" => vec!["5000", "10"],
            "/invalid" => vec!["x"],
            _ => vec!["20"],
        };
        let mut r = Response::builder()
            .status(200)
            .header("cache-control", "max-age=3600")
            .header(
                "date",
                httpdate::fmt_http_date(std::time::SystemTime::now()),
            );
        for l in lines {
            r = r.header("age", l);
        }
        r.body(full("x")).unwrap()
    })
    .await
}

#[tokio::test]
async fn the_first_member_counts_and_an_invalid_one_means_stale() {
    let o = origin().await;
    let node = TestNode::start(&o.url(), "").await;
    for (path, fresh) in [
        ("/plain", true),
        ("/lines", true),
        ("/list", false),
        ("/lines-stale", false),
        ("/invalid", false),
    ] {
        let url = node.url(path);
        assert_eq!(get(&url).await.0, 200);
        // The fill is committed before the second request.
        for _ in 0..250 {
            let st: serde_json::Value =
                serde_json::from_slice(&get(&format!("http://{}/stats", node.admin)).await.2)
                    .unwrap();
            if st["fills_in_flight"].as_u64() == Some(0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let before = o.count_path(path);
        let (st, h, _) = get(&url).await;
        assert_eq!(st, 200);
        let hit = cache_status(&h).contains("hit") && o.count_path(path) == before;
        assert_eq!(hit, fresh, "{path}: {}", cache_status(&h));
    }
}

/// `t` in the three HTTP-date formats, the obsolete two lower-cased.
fn formats(t: std::time::SystemTime) -> [String; 3] {
    let imf = httpdate::fmt_http_date(t); // "Sun, 06 Nov 1994 08:49:37 GMT"
    let p: Vec<&str> = imf.split([' ', ',']).filter(|x| !x.is_empty()).collect();
    let (day, dd, mon, yyyy, time) = (p[0], p[1], p[2], p[3], p[4]);
    let long = match day {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    };
    let rfc850 = format!("{long}, {dd}-{mon}-{} {time} GMT", &yyyy[2..]).to_lowercase();
    let asctime = format!(
        "{day} {mon} {:>2} {time} {yyyy}",
        dd.trim_start_matches('0')
    )
    .to_lowercase();
    [imf, rfc850, asctime]
}

#[tokio::test]
async fn obsolete_date_formats_in_any_case_give_the_freshness_they_say() {
    let o = TestOrigin::start(|req| async move {
        let now = std::time::SystemTime::now();
        let i: usize = req.uri().path()[1..].parse().unwrap_or(0);
        let date = formats(now)[i].clone();
        let expires = formats(now + std::time::Duration::from_secs(3600))[i].clone();
        Response::builder()
            .status(200)
            .header("date", date)
            .header("expires", expires)
            .body(full("x"))
            .unwrap()
    })
    .await;
    let node = TestNode::start(&o.url(), "").await;
    for i in 0..3 {
        let url = node.url(&format!("/{i}"));
        until_stored(&url, &[], node.admin).await;
        let before = o.count_path(&format!("/{i}"));
        let (_, h, _) = get(&url).await;
        assert!(
            cache_status(&h).contains("hit"),
            "format {i}: {}",
            cache_status(&h)
        );
        assert_eq!(o.count_path(&format!("/{i}")), before, "format {i}");
    }
}

#[tokio::test]
async fn stale_on_error_serves_a_stored_response_when_the_origin_is_gone() {
    let o = TestOrigin::start(|req| async move {
        let cc = if req.uri().path() == "/strict" {
            "max-age=1, must-revalidate"
        } else {
            "max-age=1"
        };
        resp_with(200, &[("cache-control", cc)], "stored")
    })
    .await;
    let site = format!("origins = [\"{}\"]\nstale_on_error = \"1h\"\n", o.url());
    let node = TestNode::start_site(&site, "").await;
    for p in ["/soft", "/strict"] {
        until_stored(&node.url(p), &[], node.admin).await;
    }
    // The origin goes away, and the objects go stale.
    o.stop();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (st, h, body) = get(&node.url("/soft")).await;
    assert_eq!(st, 200);
    assert_eq!(&body[..], b"stored");
    let cs = cache_status(&h);
    assert!(cs.contains("fwd=stale"), "{cs}");
    // must-revalidate forbids it: an error, never the stale copy.
    let (st, _, body) = get(&node.url("/strict")).await;
    assert!(st.is_server_error(), "{st}");
    assert_ne!(&body[..], b"stored");
}

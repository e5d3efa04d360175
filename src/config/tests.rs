//! Unit tests for configuration parsing and validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn sizes() {
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
    assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
    assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
    assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
    assert!(parse_size("MiB").is_err());
    assert!(parse_size("1 furlong").is_err());
    assert!(parse_size("99999999999999999999TiB").is_err());
}

#[test]
fn host_patterns() {
    let e = HostPattern::parse("Example.COM").unwrap();
    assert!(e.matches("example.com"));
    assert!(!e.matches("www.example.com"));
    let s = HostPattern::parse("*.example.com").unwrap();
    assert!(s.matches("a.example.com"));
    assert!(!s.matches("example.com"));
    assert!(!s.matches("badexample.com"));
    assert!(HostPattern::parse("*").unwrap().matches("anything"));
    assert!(HostPattern::parse("a b").is_err());
    assert!(HostPattern::parse("*.").is_err());
}

#[test]
fn origin_urls() {
    let o = OriginUrl::parse("http://127.0.0.1:8000").unwrap();
    assert_eq!(o.to_string(), "http://127.0.0.1:8000");
    assert!(OriginUrl::parse("http://127.0.0.1:8000/").is_ok());
    assert!(OriginUrl::parse("127.0.0.1:8000").is_err());
    assert!(OriginUrl::parse("http://h/x").is_err());
    assert!(OriginUrl::parse("http://u:p@h").is_err());
}

#[test]
fn overrides_win_over_the_file() {
    let text = "[listen]\nproxy = \"127.0.0.1:1\"\n[[site]]\norigins = [\"http://127.0.0.1:2\"]\n";
    let ov = Overrides {
        origin: Some("http://127.0.0.1:3".into()),
        listen: Some("127.0.0.1:4".into()),
        admin: Some("127.0.0.1:5".into()),
        tls: None,
        cache_dir: None,
    };
    let c = Config::from_toml_with(text, &ov).unwrap();
    assert_eq!(c.listen.proxy.port(), 4);
    assert_eq!(c.listen.admin.port(), 5);
    assert_eq!(c.sites.len(), 1);
    assert_eq!(c.sites[0].origins[0].url.to_string(), "http://127.0.0.1:3");
}

#[test]
fn every_error_is_reported_with_its_key() {
    let text =
        "[listen]\nproxy = \"x\"\nadmin = \"y\"\n[storage]\nmemory = -1\n[[site]]\nfoo = 1\n";
    let e = Config::from_toml(text).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "listen.proxy",
        "listen.admin",
        "storage.memory",
        "site[0].origins",
        "site[0].foo",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
}

#[test]
fn response_remove_may_not_name_content_length() {
    let site = "[[site]]\norigins = [\"http://127.0.0.1:2\"]\n[site.headers]\n\
                response_remove = [\"x-a\", \"Content-Length\"]\n";
    let e = Config::from_toml(site).unwrap_err();
    assert!(
        e.0.iter()
            .any(|e| e.key == "site[0].headers.response_remove[1]"),
        "{e:?}"
    );
}

#[test]
fn tcp_notsent_lowat_is_a_size_bounded_or_off() {
    let site = "[[site]]\norigins = [\"http://127.0.0.1:2\"]\n";
    let c = Config::from_toml(site).unwrap();
    assert_eq!(c.server.tcp_notsent_lowat, 256 << 10);
    for (v, want) in [("\"64KiB\"", 64 << 10), ("0", 0), ("4096", 4096)] {
        let c = Config::from_toml(&format!("[server]\ntcp_notsent_lowat = {v}\n{site}")).unwrap();
        assert_eq!(c.server.tcp_notsent_lowat, want, "{v}");
    }
    for v in ["\"1KiB\"", "\"65MiB\"", "-1", "\"lots\""] {
        let e =
            Config::from_toml(&format!("[server]\ntcp_notsent_lowat = {v}\n{site}")).unwrap_err();
        assert!(
            e.0.iter().any(|e| e.key == "server.tcp_notsent_lowat"),
            "{v}: {e:?}"
        );
    }
}

//! Session persistence by cookie (`[site.sticky]`): a client that carries
//! the cookie goes back to the origin it names while that origin takes
//! requests, as HAProxy's `cookie` and nginx's `sticky cookie` do.
//!
//! The cookie's value is an origin id: the first 8 bytes of a keyed blake3
//! hash of the origin's URL (hex), keyed by the site's secret, so it never
//! shows the origin's address and cannot be forged for an origin without
//! the key. The cookie is read from every `Cookie` field (RFC 6265 §5.4;
//! HTTP/2 may split it over several, RFC 9113 §8.2.3) and, with
//! `strip_cookie`, removed before the request goes on, so it reaches
//! neither the origin nor the cache's view of the request.

use http::header::{COOKIE, HeaderMap, HeaderValue};

use crate::config::StickyCookie;

/// What a request said about stickiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StickyRequest {
    /// The origin its cookie names, if the cookie names one of the pool's.
    pub prefer: Option<usize>,
    /// It carried the cookie (valid or not).
    pub had_cookie: bool,
}

/// A pool's sticky cookie.
#[derive(Debug)]
pub struct Sticky {
    name: String,
    /// The cookie value naming each origin, by index.
    ids: Vec<String>,
    max_age: Option<u64>,
    strip: bool,
}

impl Sticky {
    /// The cookie for origins with `urls` (by index); `key` keys the ids.
    pub fn new(cfg: &StickyCookie, urls: &[String], key: &[u8; 32]) -> Sticky {
        Sticky {
            name: cfg.cookie.clone(),
            ids: urls
                .iter()
                .map(|u| {
                    let h = blake3::keyed_hash(key, u.as_bytes());
                    h.to_hex()[..16].to_string()
                })
                .collect(),
            max_age: cfg.max_age.map(|d| d.as_secs()),
            strip: cfg.strip_cookie,
        }
    }

    /// The key of the origin ids: from the configured secret, or random
    /// for this process.
    pub fn key(cfg: &StickyCookie) -> [u8; 32] {
        match &cfg.secret {
            Some(s) => blake3::derive_key("outpost sticky cookie v1", s.expose().as_bytes()),
            None => rand::random(),
        }
    }

    /// Reads the cookie from `headers` (and removes it when configured).
    pub fn read(&self, headers: &mut HeaderMap) -> StickyRequest {
        let name = self.name.as_bytes();
        // Most requests do not carry it: no work beyond a scan.
        if !headers
            .get_all(COOKIE)
            .iter()
            .any(|f| f.as_bytes().windows(name.len()).any(|w| w == name))
        {
            return StickyRequest::default();
        }
        let mut value: Option<Vec<u8>> = None;
        let mut rebuilt: Vec<Option<HeaderValue>> = Vec::new();
        let mut touched = false;
        // As bytes: a field that is not visible ASCII is parsed all the same.
        for field in headers.get_all(COOKIE) {
            let mut kept: Vec<&[u8]> = Vec::new();
            for pair in field.as_bytes().split(|&b| b == b';') {
                let p = pair.trim_ascii();
                let eq = p.iter().position(|&b| b == b'=');
                match eq {
                    Some(e) if p[..e].trim_ascii() == name => {
                        let v = p[e + 1..].trim_ascii();
                        let v = v.strip_prefix(b"\"").unwrap_or(v);
                        let v = v.strip_suffix(b"\"").unwrap_or(v);
                        value.get_or_insert_with(|| v.to_vec());
                        touched = true;
                    }
                    _ if p.is_empty() => {}
                    _ => kept.push(p),
                }
            }
            rebuilt.push(if kept.is_empty() {
                None
            } else {
                HeaderValue::from_bytes(&kept.join(&b"; "[..])).ok()
            });
        }
        if self.strip && touched {
            headers.remove(COOKIE);
            for v in rebuilt.into_iter().flatten() {
                headers.append(COOKIE, v);
            }
        }
        StickyRequest {
            prefer: value
                .as_deref()
                .and_then(|v| self.ids.iter().position(|id| id.as_bytes() == v)),
            had_cookie: value.is_some(),
        }
    }

    /// The `Set-Cookie` naming origin `index` (`Secure` over TLS).
    pub fn set_cookie(&self, index: usize, secure: bool) -> Option<HeaderValue> {
        let id = self.ids.get(index)?;
        let mut v = format!("{}={id}; Path=/; HttpOnly; SameSite=Lax", self.name);
        if secure {
            v.push_str("; Secure");
        }
        if let Some(age) = self.max_age {
            v.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&v).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sticky(strip: bool) -> Sticky {
        let cfg = StickyCookie {
            cookie: "OSID".into(),
            max_age: Some(Duration::from_secs(3600)),
            strip_cookie: strip,
            secret: Some(crate::config::Secret::new("0123456789abcdef")),
        };
        let urls = [
            "http://10.0.0.1:80".to_string(),
            "http://10.0.0.2:80".to_string(),
        ];
        Sticky::new(&cfg, &urls, &Sticky::key(&cfg))
    }

    #[test]
    fn ids_are_opaque_keyed_and_stable() {
        let s = sticky(true);
        assert_ne!(s.ids[0], s.ids[1]);
        assert_eq!(s.ids[0].len(), 16);
        assert!(!s.ids[0].contains("10.0.0"));
        assert_eq!(sticky(true).ids, s.ids, "same secret, same ids");
        let other = StickyCookie {
            cookie: "OSID".into(),
            max_age: None,
            strip_cookie: true,
            secret: Some(crate::config::Secret::new("another secret of 16")),
        };
        let o = Sticky::new(
            &other,
            &["http://10.0.0.1:80".to_string()],
            &Sticky::key(&other),
        );
        assert_ne!(o.ids[0], s.ids[0]);
    }

    #[test]
    fn the_cookie_is_found_in_any_field_and_stripped() {
        let s = sticky(true);
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        h.append(
            COOKIE,
            HeaderValue::from_str(&format!("OSID={}; c=3", s.ids[1])).unwrap(),
        );
        let r = s.read(&mut h);
        assert_eq!(
            r,
            StickyRequest {
                prefer: Some(1),
                had_cookie: true
            }
        );
        let left: Vec<&str> = h
            .get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["a=1; b=2", "c=3"]);
        // Alone in its field: the field goes.
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("OSID=unknown"));
        let r = s.read(&mut h);
        assert_eq!(
            r,
            StickyRequest {
                prefer: None,
                had_cookie: true
            }
        );
        assert!(h.get(COOKIE).is_none());
        // A field with a byte that is not visible ASCII is parsed too.
        let mut h = HeaderMap::new();
        let mut raw = format!("x=\u{e9}; OSID={}", s.ids[0]).into_bytes();
        raw.truncate(raw.len());
        h.insert(COOKIE, HeaderValue::from_bytes(&raw).unwrap());
        assert_eq!(s.read(&mut h).prefer, Some(0));
        assert!(!h[COOKIE].as_bytes().windows(4).any(|w| w == b"OSID"));
        // Kept when not stripping; absent is absent.
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("OSID=x; y=1"));
        sticky(false).read(&mut h);
        assert_eq!(h[COOKIE], "OSID=x; y=1");
        assert_eq!(s.read(&mut HeaderMap::new()), StickyRequest::default());
    }

    #[test]
    fn set_cookie_names_the_origin_with_its_attributes() {
        let s = sticky(true);
        let v = s.set_cookie(0, true).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            format!(
                "OSID={}; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=3600",
                s.ids[0]
            )
        );
        assert!(s.set_cookie(5, false).is_none());
    }
}

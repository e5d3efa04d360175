//! Path safety and normalisation.
//!
//! A request path that would climb above the root once an origin decodes
//! it (`/../`, `/%2e%2e/`, `/%2e%2E%2f`, and the same percent-encoded twice
//! or three times), that carries an encoded NUL, or that has a backslash
//! (`\` or `%5C`, which some origins read as `/`) is refused with 400 and
//! never reaches the origin ([`check`]).
//!
//! A path that passes is normalised ([`normalise`]) before routing, keying
//! and forwarding, so the cache key and the origin see the same path:
//! percent-encoded unreserved characters are decoded and the hex digits of
//! the other escapes upper-cased (RFC 3986 §6.2.2.1, §6.2.2.2), and dot
//! segments are removed (§5.2.4). Everything else (reserved escapes such as
//! `%2F`, `+`, the query) is passed byte for byte: origins differ on what
//! those mean.

/// Why a path is refused.
pub type Refusal = &'static str;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One round of percent-decoding (an invalid escape is kept as it is).
fn decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && let (Some(a), Some(b)) = (hex(s[i + 1]), hex(s[i + 2]))
        {
            out.push(a << 4 | b);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Checks one form of the path: no NUL, no backslash, never above the root.
fn check_form(path: &[u8]) -> Result<(), Refusal> {
    if path.contains(&0) {
        return Err("an encoded NUL in the path");
    }
    if path.contains(&b'\\') {
        return Err("a backslash in the path");
    }
    let mut depth: i64 = 0;
    for seg in path.split(|&b| b == b'/').skip(1) {
        match seg {
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err("a path that climbs above the root");
                }
            }
            b"." | b"" => {}
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Whether the path (the part before `?`) has nothing for [`check`] or
/// [`normalise`] to look at: no escape, no backslash and no segment that
/// starts with a dot (so no dot segment). Nearly every request's path is
/// plain, and this one pass over it is then all the gate does with it.
pub fn plain(path_and_query: &str) -> bool {
    let p = path_and_query.as_bytes();
    let mut prev = 0u8;
    for &b in p {
        match b {
            b'?' => return true,
            b'%' | b'\\' => return false,
            b'.' if prev == b'/' => return false,
            _ => prev = b,
        }
    }
    true
}

/// Checks a request's path (the part before `?`), as received and as up
/// to three rounds of percent-decoding would read it.
pub fn check(path_and_query: &str) -> Result<(), Refusal> {
    if plain(path_and_query) {
        return Ok(());
    }
    let path = path_and_query
        .split('?')
        .next()
        .unwrap_or(path_and_query)
        .as_bytes();
    // As received (no allocation unless there is something to decode).
    check_form(path)?;
    if !path.contains(&b'%') {
        return Ok(());
    }
    let mut form = decode(path);
    for _ in 0..3 {
        check_form(&form)?;
        if !form.contains(&b'%') {
            return Ok(());
        }
        let next = decode(&form);
        if next == form {
            return Ok(());
        }
        form = next;
    }
    check_form(&form)
}

/// Whether `b` is an unreserved character (RFC 3986 §2.3).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The normalised form of a path that [`check`] let through, with its
/// query as it was; `None` when it is already normal (the common case
/// costs one pass over the path and no allocation).
pub fn normalise(path_and_query: &str) -> Option<String> {
    if plain(path_and_query) {
        return None;
    }
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let p = path.as_bytes();
    // §6.2.2.1 and §6.2.2.2: escapes of unreserved characters decoded, the
    // others' hex digits upper-cased.
    let mut step = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%'
            && i + 2 < p.len()
            && let (Some(a), Some(b)) = (hex(p[i + 1]), hex(p[i + 2]))
        {
            let c = a << 4 | b;
            if unreserved(c) {
                step.push(c);
            } else {
                step.push(b'%');
                step.push(p[i + 1].to_ascii_uppercase());
                step.push(p[i + 2].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        step.push(p[i]);
        i += 1;
    }
    let out = remove_dot_segments(&step);
    if out == p {
        return None;
    }
    let mut s = String::from_utf8(out).ok()?;
    s.push_str(query);
    Some(s)
}

/// RFC 3986 §5.2.4, on an absolute path.
fn remove_dot_segments(mut input: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(input.len());
    let pop = |out: &mut Vec<u8>| {
        let at = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
        out.truncate(at);
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix(b"../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix(b"./") {
            input = rest;
        } else if input.starts_with(b"/./") {
            input = &input[2..];
        } else if input == b"/." {
            input = b"/";
        } else if input.starts_with(b"/../") {
            input = &input[3..];
            pop(&mut out);
        } else if input == b"/.." {
            input = b"/";
            pop(&mut out);
        } else if input == b"." || input == b".." {
            input = b"";
        } else {
            let start = usize::from(input.first() == Some(&b'/'));
            let end = input[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(input.len(), |e| e + start);
            out.extend_from_slice(&input[..end]);
            input = &input[end..];
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_as_rfc_3986_says_and_only_so() {
        for (from, to) in [
            ("/a/../b", Some("/b")),
            ("/./a", Some("/a")),
            ("/a/./b/../c?x=/../y", Some("/a/c?x=/../y")),
            ("/%7Euser/%61bc", Some("/~user/abc")),
            ("/a%2fb", Some("/a%2Fb")),
            ("/a/%2e%2e/b", Some("/b")),
            ("/a/b/..", Some("/a/")),
            ("/a/.", Some("/a/")),
            ("/a/.../b", None),
            ("/file..txt", None),
            ("/plain/path.css?v=1", None),
            ("/a%2Fb", None),
            ("/100%", None),
            ("/a%zz", None),
            ("/a+b", None),
        ] {
            assert_eq!(normalise(from).as_deref(), to, "{from}");
        }
    }

    #[test]
    fn traversal_forms_are_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2e%2E%2fetc",
            "/..%2f..%2fx",
            "/%252e%252e/x",
            "/%25252e%25252e%25252f",
            "/a%00b",
            "/a%2500",
            "/a\\..\\b",
            "/a%5c..%5cb",
            "/..",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for ok in [
            "/",
            "/a/b.css?v=1",
            "/a/../b",
            "/./a",
            "/a/.../b",
            "/file..txt",
            "/%7Euser/x",
            "/q?x=../../y",
            "/100%",
            "/a%zz",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_plain_path_is_one_check_and_normalise_leave_alone() {
        for (pq, is_plain) in [
            ("/", true),
            ("/pass/1k.bin", true),
            ("/file..txt", true),
            ("/q?x=../../%2e%2e/y", true),
            ("/a.b/c.d?", true),
            (".a/b", true),
            ("/.a", false),
            ("/a/..", false),
            ("/a%2fb", false),
            ("/a\\b", false),
            ("/x/./y?z", false),
        ] {
            assert_eq!(plain(pq), is_plain, "{pq}");
            if is_plain {
                assert!(check(pq).is_ok(), "{pq}");
                assert_eq!(normalise(pq), None, "{pq}");
            }
        }
    }
}

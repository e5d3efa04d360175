//! Path safety: a request path that would climb above the root once an
//! origin decodes it (`/../`, `/%2e%2e/`, `/%2e%2E%2f`, and the same
//! percent-encoded twice or three times), that carries an encoded NUL, or
//! that has a backslash (`\` or `%5C`, which some origins read as `/`) is
//! refused with 400 and never reaches the origin.
//!
//! The path is checked, not rewritten: the origin receives it and the
//! cache keys it byte for byte as received (RFC 3986 §6.2.2
//! normalisation would make two URLs one key while origins may still tell
//! them apart).

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

/// Checks a request's path (the part before `?`), as received and as up
/// to three rounds of percent-decoding would read it.
pub fn check(path_and_query: &str) -> Result<(), Refusal> {
    let path = path_and_query
        .split('?')
        .next()
        .unwrap_or(path_and_query)
        .as_bytes();
    // The common path (one pass): nothing to decode, no backslash, and no
    // segment that starts with a dot, so no dot segment.
    let mut prev = 0u8;
    let mut plain = true;
    for &b in path {
        if b == b'%' || b == b'\\' || (b == b'.' && prev == b'/') {
            plain = false;
            break;
        }
        prev = b;
    }
    if plain {
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

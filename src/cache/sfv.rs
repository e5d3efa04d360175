//! A small, strict RFC 8941 (Structured Field Values) subset: parsing
//! Dictionaries for RFC 9213 targeted cache-control fields, and serialising
//! sf-strings / sf-tokens for RFC 9211 `Cache-Status`.
//!
//! Any syntax error makes the whole field invalid (RFC 8941 §4.2: "fail
//! parsing"), which RFC 9213 §2.1 turns into "ignore the field".

/// A bare item's value (parameters are parsed and discarded).
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// sf-integer (at most 15 digits).
    Integer(i64),
    /// sf-decimal.
    Decimal(f64),
    /// sf-string (unescaped).
    String(String),
    /// sf-token.
    Token(String),
    /// sf-boolean; a bare key is `Boolean(true)`.
    Boolean(bool),
    /// sf-binary, inner lists, dates: present but not interpreted here.
    Other,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    /// RFC 8941 §4.2.3.3
    fn key(&mut self) -> Option<String> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => {}
            _ => return None,
        }
        self.skip(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'.' | b'*')
        });
        let k = self.s.get(start..self.i)?;
        Some(String::from_utf8_lossy(k).into_owned())
    }

    /// RFC 8941 §4.2.3.2 (parameters are validated and dropped).
    fn parameters(&mut self) -> Option<()> {
        while self.peek() == Some(b';') {
            self.i += 1;
            self.skip(|c| c == b' ');
            self.key()?;
            if self.peek() == Some(b'=') {
                self.i += 1;
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// RFC 8941 §4.2.3.1
    fn bare_item(&mut self) -> Option<Item> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b'*' | b'A'..=b'Z' | b'a'..=b'z' => {
                let start = self.i;
                self.i += 1;
                self.skip(|c| super::syntax::is_tchar(c) || c == b':' || c == b'/');
                let t = self.s.get(start..self.i)?;
                Some(Item::Token(String::from_utf8_lossy(t).into_owned()))
            }
            b':' => {
                self.i += 1;
                self.skip(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
                (self.bump()? == b':').then_some(Item::Other)
            }
            b'?' => {
                self.i += 1;
                match self.bump()? {
                    b'0' => Some(Item::Boolean(false)),
                    b'1' => Some(Item::Boolean(true)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// RFC 8941 §4.2.4
    fn number(&mut self) -> Option<Item> {
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        let start = self.i;
        self.skip(|c| c.is_ascii_digit());
        let int_digits = self.i - start;
        if int_digits == 0 {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let fstart = self.i;
            self.skip(|c| c.is_ascii_digit());
            let frac = self.i - fstart;
            if int_digits > 12 || frac == 0 || frac > 3 {
                return None;
            }
            let text = std::str::from_utf8(self.s.get(start..self.i)?).ok()?;
            let v: f64 = text.parse().ok()?;
            return Some(Item::Decimal(if neg { -v } else { v }));
        }
        if int_digits > 15 {
            return None;
        }
        let text = std::str::from_utf8(self.s.get(start..self.i)?).ok()?;
        let v: i64 = text.parse().ok()?;
        Some(Item::Integer(if neg { -v } else { v }))
    }

    /// RFC 8941 §4.2.5
    fn string(&mut self) -> Option<Item> {
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.bump()? {
                b'\\' => match self.bump()? {
                    c @ (b'"' | b'\\') => out.push(char::from(c)),
                    _ => return None,
                },
                b'"' => return Some(Item::String(out)),
                c @ 0x20..=0x7e => out.push(char::from(c)),
                _ => return None,
            }
        }
    }

    /// RFC 8941 §4.2.1.2
    fn inner_list(&mut self) -> Option<Item> {
        self.i += 1;
        loop {
            self.skip(|c| c == b' ');
            if self.peek()? == b')' {
                self.i += 1;
                self.parameters()?;
                return Some(Item::Other);
            }
            self.bare_item()?;
            self.parameters()?;
            match self.peek()? {
                b' ' | b')' => {}
                _ => return None,
            }
        }
    }
}

/// Parses an sf-dictionary (RFC 8941 §4.2.2). Later duplicates of a key
/// overwrite earlier ones, keeping the first position. `None` on any error.
pub fn parse_dictionary(input: &[u8]) -> Option<Vec<(String, Item)>> {
    let mut p = Parser { s: input, i: 0 };
    p.skip(|c| c == b' ' || c == b'\t');
    let mut out: Vec<(String, Item)> = Vec::new();
    let end_trim = |p: &Parser| {
        p.s.get(p.i..)
            .is_some_and(|r| r.iter().all(|&c| c == b' ' || c == b'\t'))
    };
    if end_trim(&p) {
        return Some(out);
    }
    loop {
        let key = p.key()?;
        let value = if p.peek() == Some(b'=') {
            p.i += 1;

            if p.peek() == Some(b'(') {
                p.inner_list()?
            } else {
                let v = p.bare_item()?;
                p.parameters()?;
                v
            }
        } else {
            p.parameters()?;
            Item::Boolean(true)
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => out.push((key, value)),
        }
        p.skip(|c| c == b' ' || c == b'\t');
        if end_trim(&p) {
            return Some(out);
        }
        if p.bump()? != b',' {
            return None;
        }
        p.skip(|c| c == b' ' || c == b'\t');
        if end_trim(&p) {
            return None; // trailing comma
        }
    }
}

/// Appends `s` as an sf-string (RFC 8941 §4.1.6). Characters outside
/// printable ASCII cannot be represented and are replaced by `?`.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    // The common case, printable ASCII with nothing to escape: one copy
    // (a push per character showed in the pass-through profile).
    let b = s.as_bytes();
    if b.iter()
        .all(|&c| (b' '..=b'~').contains(&c) && c != b'"' && c != b'\\')
    {
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' | '\\' => out.extend_from_slice(&[b'\\', c as u8]),
            // Printable ASCII: one byte.
            ' '..='~' => out.push(c as u8),
            _ => out.push(b'?'),
        }
    }
    out.push(b'"');
}

/// Whether `s` can be serialised as an sf-token (RFC 8941 §3.3.4).
pub fn is_sf_token(s: &str) -> bool {
    /// The bytes allowed after the first: tchar, `:` and `/`.
    const TOKEN_BYTE: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let c = i as u8;
            t[i] = super::syntax::is_tchar(c) || c == b':' || c == b'/';
            i += 1;
        }
        t
    };
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'*' => {
            b.iter().all(|&c| TOKEN_BYTE[usize::from(c)])
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_basics() {
        // RFC 8941 §4.2.2
        let d = parse_dictionary(b"max-age=60, must-revalidate, private=\"set-cookie\"").unwrap();
        assert_eq!(d[0], ("max-age".into(), Item::Integer(60)));
        assert_eq!(d[1], ("must-revalidate".into(), Item::Boolean(true)));
        assert_eq!(d[2], ("private".into(), Item::String("set-cookie".into())));
        assert_eq!(parse_dictionary(b"").unwrap(), vec![]);
        assert_eq!(parse_dictionary(b"  ").unwrap(), vec![]);
    }

    #[test]
    fn dictionary_rejects_invalid() {
        // RFC 8941 §4.2: any error fails the whole field.
        for bad in [
            &b"Max-Age=60"[..],
            b"max-age=",
            b"max-age=60,",
            b"a=1;;",
            b"a=\"unterminated",
            b"a=1234567890123456",
            b"a=?2",
            b"a=1 b=2",
            b"a=\"\xff\"",
            b"\xff",
            b"a=(1 2",
        ] {
            assert!(
                parse_dictionary(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn dictionary_other_forms_and_duplicates() {
        // RFC 8941 §4.2.2: the last duplicate wins.
        let d =
            parse_dictionary(b"a=1, b=?0, a=2;x=y, c=(1 2);p, d=:aGk=:, e=1.5, f=tok/x").unwrap();
        assert_eq!(d[0], ("a".into(), Item::Integer(2)));
        assert_eq!(d[1], ("b".into(), Item::Boolean(false)));
        assert_eq!(d[2], ("c".into(), Item::Other));
        assert_eq!(d[3], ("d".into(), Item::Other));
        assert_eq!(d[4], ("e".into(), Item::Decimal(1.5)));
        assert_eq!(d[5], ("f".into(), Item::Token("tok/x".into())));
        assert_eq!(parse_dictionary(b"a=-5").unwrap()[0].1, Item::Integer(-5));
    }

    #[test]
    fn string_serialisation() {
        // RFC 8941 §4.1.6
        let ser = |s: &str| {
            let mut out = Vec::new();
            write_string(&mut out, s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(ser(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(ser("é\n"), "\"??\"");
        // The one-copy path for plain text, and its edges.
        assert_eq!(ser("plain text ~!"), "\"plain text ~!\"");
        assert_eq!(ser(""), "\"\"");
        assert_eq!(ser("tab\tx"), "\"tab?x\"");
        assert!(is_sf_token("Outpost"));
        assert!(is_sf_token("*a:b/c"));
        assert!(!is_sf_token("a\u{7f}"));
        assert!(!is_sf_token("1abc"));
        assert!(!is_sf_token("a b"));
        assert!(!is_sf_token(""));
    }
}

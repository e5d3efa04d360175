//! Response heads from origins (RFC 9112 §4, §5): parsed into a status,
//! a field map free of hop-by-hop fields (RFC 9110 §7.6.1) and the facts
//! the framing and the connection's reuse need (RFC 9112 §6.3, §9.3).
//!
//! Owns: the parse. Must not know: connections, pools or bodies.

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use super::names::Role;

/// Most header fields accepted in one response head.
pub(super) const MAX_HEADERS: usize = 128;

/// A parsed response head.
pub(super) struct Head {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    /// Free of hop-by-hop fields (RFC 9110 §7.6.1), but for
    /// `Transfer-Encoding`, which [`H1Client::respond`] reads for the
    /// framing and then removes. They are left out as the head is parsed:
    /// inserting them to have the proxy find and remove them again cost
    /// ~1,000 instructions per pass-through response.
    pub(super) headers: HeaderMap,
    pub(super) connection: ConnectionOptions,
    pub(super) transfer_encoding: bool,
    /// The `Content-Length` when the head has exactly one, a plain run of
    /// digits (what origins send): the framing needs no second look at
    /// the map. `None` for anything else, read by `Framing::of`.
    pub(super) plain_length: Option<u64>,
}

/// The `close` and `keep-alive` options of a response's `Connection`
/// (RFC 9112 §9.3, §9.6).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ConnectionOptions {
    pub(super) close: bool,
    pub(super) keep_alive: bool,
}

impl ConnectionOptions {
    /// Adds the options of one `Connection` line; returns whether it names
    /// anything else (a field that must then be stripped by name).
    pub(super) fn add_line(&mut self, value: &[u8]) -> bool {
        // A value that is not visible ASCII reads as `close`.
        if !visible_ascii(value) {
            self.close = true;
            return true;
        }
        let mut other = false;
        for t in value.split(|&b| b == b',') {
            let t = t.trim_ascii();
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !t.is_empty() {
                other = true;
            }
        }
        other
    }

    /// Whether the connection may carry another request (RFC 9112 §9.3).
    pub(super) fn keeps_alive(self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep_alive)
    }
}

/// Whether `value` is what `HeaderValue::to_str` accepts: visible ASCII,
/// spaces and tabs.
pub(super) fn visible_ascii(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// A name length as one bit of a `u64` (lengths from 63 share the last).
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// Parses a complete response head from the front of `buf` and removes
/// it: `None` when more bytes are needed. Field values share the head's
/// bytes instead of being copied one by one.
pub(super) fn parse_head(
    buf: &mut BytesMut,
    drop_fields: &[HeaderName],
) -> Result<Option<Head>, String> {
    // Uninitialised: filling 128 empty fields per response showed up in
    // the pass-through profile.
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let used = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!("more than {MAX_HEADERS} header fields"));
        }
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let code = resp.code.ok_or("no status code")?;
    let status = StatusCode::from_u16(code).map_err(|_| format!("bad status code {code}"))?;
    let version = match resp.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Offsets of each name and value, so that they can be taken from the
    // head once it is split off the buffer.
    let base = buf.as_ptr() as usize;
    let n = resp.headers.len();
    // On the stack for typical heads (zeroing room for MAX_HEADERS showed
    // in the profile), on the heap for long ones.
    let mut small = [(0u32, 0u32, 0u32, 0u32); 24];
    let mut large = Vec::new();
    let spans: &mut [(u32, u32, u32, u32)] = match small.get_mut(..n) {
        Some(s) => s,
        None => {
            large.resize(n, (0, 0, 0, 0));
            &mut large
        }
    };
    for (span, f) in spans.iter_mut().zip(resp.headers.iter()) {
        let name_at = f.name.as_ptr() as usize - base;
        let value_at = f.value.as_ptr() as usize - base;
        // The head is at most MAX_HEAD bytes, so offsets fit in u32.
        *span = (
            name_at as u32,
            f.name.len() as u32,
            value_at as u32,
            f.value.len() as u32,
        );
    }
    let head = buf.split_to(used).freeze();
    // Room for what the pipeline adds (Via, Cache-Status, Age) without a
    // rehash of the map (~600 instructions per pass-through request).
    let mut headers = HeaderMap::with_capacity(n + 3);
    let mut connection = ConnectionOptions::default();
    let mut transfer_encoding = false;
    // (Content-Length lines seen, the value of a plain first one).
    let mut lengths = (0u32, None);
    // Connection lines that name other fields (rare): by value span.
    let mut naming: Vec<(usize, usize)> = Vec::new();
    // The lengths of the names to drop, as bits: a field of another length
    // is not compared with each of them (most fields; with the default
    // five names that was ~45 compares per response).
    let drop_lengths = drop_fields
        .iter()
        .fold(0u64, |m, n| m | length_bit(n.as_str().len()));
    for &(na, nl, va, vl) in spans.iter() {
        let raw_name = head
            .get(na as usize..(na + nl) as usize)
            .unwrap_or_default();
        let (name, role) = super::names::field_name(raw_name)
            .ok_or_else(|| format!("bad field name {:?}", String::from_utf8_lossy(raw_name)))?;
        let (va, vend) = (va as usize, (va + vl) as usize);
        if vend > head.len() {
            return Err("field value outside the head".into());
        }
        match role {
            Role::Plain => {}
            // RFC 9110 §7.6.1: hop-by-hop fields are not forwarded.
            // Transfer-Encoding stays for the framing, which removes it.
            Role::TransferEncoding => transfer_encoding = true,
            Role::Connection => {
                if connection.add_line(head.get(va..vend).unwrap_or_default()) {
                    naming.push((va, vend));
                }
                continue;
            }
            Role::HopByHop => continue,
            Role::ContentLength => {
                lengths = (
                    lengths.0 + 1,
                    crate::fields::plain_digits(head.get(va..vend).unwrap_or_default()),
                );
            }
        }
        // After the framing's fields were read: what the caller drops.
        if drop_lengths & length_bit(nl as usize) != 0 && drop_fields.contains(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(va..vend))
            .map_err(|_| format!("bad value of field {name}"))?;
        headers.append(name, value);
    }
    for (va, vend) in naming {
        // Not visible ASCII: no field is named (and it reads as close),
        // as strip_hop_by_hop treats a line `to_str` refuses.
        let Some(line) = head
            .get(va..vend)
            .filter(|v| visible_ascii(v))
            .and_then(|v| std::str::from_utf8(v).ok())
        else {
            continue;
        };
        let tokens = line.split(',').map(str::trim).filter(|t| !t.is_empty());
        for name in super::headers::connection_named(tokens, false) {
            headers.remove(name);
        }
    }
    Ok(Some(Head {
        status,
        version,
        headers,
        connection,
        transfer_encoding,
        plain_length: match lengths {
            (1, n) => n,
            _ => None,
        },
    }))
}

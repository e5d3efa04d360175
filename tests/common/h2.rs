//! Raw HTTP/2 for tests that misbehave on purpose: frames written by hand
//! (RFC 9113 §4.1) and the frame types read back.

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A GET / for `authority`, HPACK-encoded from the static table (RFC 7541
/// appendix A) with a literal authority.
pub fn get_block(authority: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x84, 0x86, 0x01, authority.len() as u8];
    b.extend_from_slice(authority.as_bytes());
    b
}

/// The types of the frames in `got`, in order.
pub fn frame_kinds(got: &[u8]) -> Vec<u8> {
    let mut kinds = Vec::new();
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = (usize::from(got[at]) << 16)
            | (usize::from(got[at + 1]) << 8)
            | usize::from(got[at + 2]);
        kinds.push(got[at + 3]);
        at += 9 + len;
    }
    kinds
}

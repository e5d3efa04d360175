//! Little-endian record encoding for [`super::meta`]: a writer that
//! appends fields and a checksum, and a bounds-checked reader that never
//! panics and never allocates more than its input justifies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::HeaderName;

use super::meta::{CHECKSUM_LEN, MAGIC, META_VERSION, MetaError};

pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
}

impl Writer {
    pub(super) fn new(kind: u8) -> Writer {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(MAGIC);
        buf.push(META_VERSION);
        buf.push(kind);
        Writer { buf }
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn bytes(&mut self, b: &[u8]) {
        // Field values beyond 4 GiB cannot come from http types.
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf
            .extend_from_slice(b.get(..len as usize).unwrap_or(b));
    }
    pub(super) fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.buf.push(1);
                self.bytes(b);
            }
            None => self.buf.push(0),
        }
    }
    pub(super) fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            Some(v) => {
                self.buf.push(1);
                self.u32(v);
            }
            None => self.buf.push(0),
        }
    }
    pub(super) fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.buf.push(1);
                self.u64(v);
            }
            None => self.buf.push(0),
        }
    }
    pub(super) fn time(&mut self, t: SystemTime) {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        self.u64(u64::try_from(ms).unwrap_or(u64::MAX));
    }
    pub(super) fn names(&mut self, names: &[HeaderName]) {
        self.u32(u32::try_from(names.len()).unwrap_or(u32::MAX));
        for n in names {
            self.bytes(n.as_str().as_bytes());
        }
    }
    pub(super) fn finish(mut self) -> Vec<u8> {
        let sum = blake3::hash(&self.buf);
        self.buf
            .extend_from_slice(sum.as_bytes().get(..CHECKSUM_LEN).unwrap_or_default());
        self.buf
    }
}

pub(super) struct Reader<'a> {
    pub(super) s: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], MetaError> {
        if n > self.s.len() {
            return Err(MetaError::Truncated);
        }
        let (a, b) = self.s.split_at(n);
        self.s = b;
        Ok(a)
    }
    pub(super) fn arr<const N: usize>(&mut self) -> Result<[u8; N], MetaError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(super) fn u8(&mut self) -> Result<u8, MetaError> {
        Ok(self.arr::<1>()?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, MetaError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32, MetaError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, MetaError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    /// A count of items each at least `min_size` bytes, checked against
    /// the remaining input so a corrupt count cannot force a huge allocation.
    pub(super) fn count(&mut self, min_size: usize) -> Result<usize, MetaError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.s.len() {
            return Err(MetaError::Truncated);
        }
        Ok(n)
    }
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], MetaError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(super) fn flag(&mut self) -> Result<bool, MetaError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(MetaError::Invalid("option tag")),
        }
    }
    pub(super) fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(if self.flag()? {
            Some(self.bytes()?.to_vec())
        } else {
            None
        })
    }
    pub(super) fn opt_u32(&mut self) -> Result<Option<u32>, MetaError> {
        Ok(if self.flag()? {
            Some(self.u32()?)
        } else {
            None
        })
    }
    pub(super) fn opt_u64(&mut self) -> Result<Option<u64>, MetaError> {
        Ok(if self.flag()? {
            Some(self.u64()?)
        } else {
            None
        })
    }
    pub(super) fn time(&mut self) -> Result<SystemTime, MetaError> {
        let ms = self.u64()?;
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .ok_or(MetaError::Invalid("time"))
    }
    pub(super) fn names(&mut self) -> Result<Vec<HeaderName>, MetaError> {
        let n = self.count(4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.name()?);
        }
        Ok(v)
    }
    /// A field name. The names stored most often are recognised by their
    /// spelling (a name is stored as `HeaderName::as_str`, lower case),
    /// without `HeaderName::from_bytes`, which lower-cases every name into a
    /// scratch buffer and matches it against all standard names (~110–150
    /// instructions a field); any other name goes through it.
    pub(super) fn name(&mut self) -> Result<HeaderName, MetaError> {
        let raw = self.bytes()?;
        if let Some(n) =
            crate::fields::find_name(raw, common_names(raw.len()), |n| n.as_str().as_bytes())
        {
            return Ok(n.clone());
        }
        HeaderName::from_bytes(raw).map_err(|_| MetaError::Invalid("field name"))
    }
}

/// The field names of stored responses seen most often, by length.
fn common_names(len: usize) -> &'static [HeaderName] {
    use http::header::{
        ACCEPT_RANGES, AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, DATE,
        ETAG, EXPIRES, LAST_MODIFIED, SERVER, VARY,
    };
    match len {
        3 => &[AGE],
        4 => &[DATE, ETAG, VARY],
        6 => &[SERVER],
        7 => &[EXPIRES],
        12 => &[CONTENT_TYPE],
        13 => &[CACHE_CONTROL, LAST_MODIFIED, ACCEPT_RANGES],
        14 => &[CONTENT_LENGTH],
        16 => &[CONTENT_ENCODING],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_are_their_own_spelling() {
        for len in 0..32 {
            for n in common_names(len) {
                assert_eq!(n.as_str().len(), len);
                assert_eq!(
                    HeaderName::from_bytes(n.as_str().as_bytes()).ok().as_ref(),
                    Some(n)
                );
            }
        }
    }

    #[test]
    fn a_name_reads_back_as_written_common_or_not() {
        for name in [
            "content-type",
            "etag",
            "x-custom",
            "Content-Type",
            "cache-control",
        ] {
            let mut w = Writer::new(1);
            w.bytes(name.as_bytes());
            let mut r = Reader {
                s: &w.buf[MAGIC.len() + 2..],
            };
            let got = r.name().ok();
            assert_eq!(got, HeaderName::from_bytes(name.as_bytes()).ok(), "{name}");
        }
        // Not a field name: an error, as before.
        let mut w = Writer::new(1);
        w.bytes(b"bad name");
        let mut r = Reader {
            s: &w.buf[MAGIC.len() + 2..],
        };
        assert!(r.name().is_err());
    }
}

//! Unit tests of the entry codec: round trips, blob refs, consistency, damaged input.

use super::*;

fn roundtrip(e: &Entry) -> foyer::Result<Entry> {
    let mut buf = Vec::new();
    e.encode(&mut buf)?;
    assert_eq!(buf.len(), e.encoded_len());
    Entry::decode(&mut buf.as_slice())
}

fn head() -> Head {
    Head {
        object_id: [7; 16],
        body_len: 2500,
        chunk_size: 1000,
        chunk_count: 3,
        body_hash: [9; 32],
        meta: Bytes::from_static(b"meta"),
        inline: Bytes::new(),
        hits: HitCount::default(),
        spill: None,
        first_segment: NO_SEGMENT,
    }
}

#[test]
fn head_and_chunk_round_trip() {
    let h = head();
    match roundtrip(&Entry::Head(Arc::new(h.clone()))) {
        Ok(Entry::Head(d)) => assert_eq!(*d, h),
        other => panic!("unexpected {other:?}"),
    }
    let c = Chunk::new([1; 16], 5, Bytes::from_static(b"hello chunk"), None);
    match roundtrip(&Entry::Chunk(Arc::new(c.clone()))) {
        Ok(Entry::Chunk(d)) => assert_eq!(*d, c),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn large_payloads_encode_as_blob_refs() -> Result<(), Box<dyn std::error::Error>> {
    use crate::blob::{BlobLog, Found};
    let dir = tempfile::tempdir()?;
    let log = Arc::new(BlobLog::open(dir.path(), 1 << 20, 4)?);
    assert!(
        Spill::for_payload(Some(&log), 1000).is_none(),
        "small stays inline"
    );
    let data = Bytes::from(vec![5u8; 40_000]);
    let spill = Spill::for_payload(Some(&log), data.len());
    let c = Entry::Chunk(Arc::new(Chunk::new([1; 16], 2, data.clone(), spill)));
    let mut buf = Vec::new();
    c.encode(&mut buf)?;
    assert_eq!(buf.len(), c.encoded_len());
    assert!(buf.len() < 100, "a place, not the bytes");
    let d = Entry::decode(&mut buf.as_slice())?;
    let Some((at, spill)) = d.blob_to_resolve() else {
        panic!("decoded entry is not light: {d:?}");
    };
    assert_eq!(at.len as usize, data.len());
    match log.find(&at, spill)? {
        Found::Resident(b) => assert_eq!(b, data),
        Found::Cold(r) => assert_eq!(r.read()?, data),
        Found::Gone => panic!("gone"),
    }
    // Encoding again (a copy sharing the spill) writes no second value.
    let mut again = Vec::new();
    c.encode(&mut again)?;
    assert_eq!(again, buf);
    Ok(())
}

#[test]
fn chunk_len_and_consistency() {
    let h = head();
    assert!(h.is_consistent());
    assert_eq!(h.chunk_len(0), 1000);
    assert_eq!(h.chunk_len(2), 500);
    assert_eq!(h.chunk_len(3), 0);
    let bad = Head {
        chunk_count: 2,
        ..h
    };
    assert!(!bad.is_consistent());
}

#[test]
fn truncated_chunk_is_a_checksum_error() {
    // Flipped bytes are foyer's xxhash64's to catch (tests/faults.rs); a short entry is ours.
    let c = Chunk::new([1; 16], 0, Bytes::from(vec![42u8; 4096]), None);
    let mut buf = Vec::new();
    assert!(Entry::Chunk(Arc::new(c)).encode(&mut buf).is_ok());
    buf.truncate(buf.len() - 1);
    match Entry::decode(&mut buf.as_slice()) {
        Err(e) => assert_eq!(e.kind(), foyer::ErrorKind::ChecksumMismatch),
        Ok(_) => panic!("truncation not detected"),
    }
}

#[test]
fn garbage_never_panics() {
    // Truncations and random bytes: always an error or a valid entry, never a panic.
    let mut buf = Vec::new();
    assert!(Entry::Head(Arc::new(head())).encode(&mut buf).is_ok());
    for cut in 0..buf.len() {
        assert!(Entry::decode(&mut &buf[..cut]).is_err());
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..2000 {
        let junk: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x & 0xff) as u8
            })
            .collect();
        let _ = Entry::decode(&mut junk.as_slice());
    }
    // A huge declared length is refused before allocating.
    let mut big = vec![CHUNK_TAG];
    big.extend_from_slice(&[0; 16 + 8]);
    big.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(Entry::decode(&mut big.as_slice()).is_err());
}

#[test]
fn chunk_keys_differ_by_object_and_index() {
    assert_ne!(chunk_key(&[1; 16], 0), chunk_key(&[1; 16], 1));
    assert_ne!(chunk_key(&[1; 16], 0), chunk_key(&[2; 16], 0));
    assert_eq!(chunk_key(&[1; 16], 3), chunk_key(&[1; 16], 3));
}

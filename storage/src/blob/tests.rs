//! Unit tests of the blob log: append and find, FIFO reclaim, recovery and checks, bad refs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::*;
fn value(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn resident(log: &BlobLog, r: &BlobRef) -> Bytes {
    match log.find(r, &Spill::default()).unwrap() {
        Found::Resident(b) => b,
        Found::Cold(c) => c.read().unwrap(),
        Found::Gone => panic!("gone"),
    }
}

#[test]
fn append_then_find_sends_from_the_segment_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = BlobLog::open(dir.path(), 1 << 20, 4).unwrap();
    let a = value(40_000, 1);
    let r = log.append(&a).unwrap();
    assert_eq!(r.offset % PAGE, 0);
    let b = resident(&log, &r);
    assert_eq!(&b[..], &a[..]);
    // The bytes are a mapping of the segment file: `locate` finds the file and offset.
    let range = crate::arena::locate(&b).expect("segment slice is sendable");
    assert_eq!(range.offset(), r.offset);
}

#[test]
fn full_log_deletes_its_oldest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = BlobLog::open(dir.path(), 256 << 10, 3).unwrap();
    // 200 KiB per value: one value per segment.
    let refs: Vec<BlobRef> = (0..5)
        .map(|i| log.append(&value(200 << 10, i)).unwrap())
        .collect();
    assert_eq!(log.segment_count(), 3);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    let flag = Spill::default();
    assert!(matches!(log.find(&refs[0], &flag), Ok(Found::Gone)));
    assert!(matches!(log.find(&refs[1], &flag), Ok(Found::Gone)));
    assert_eq!(&resident(&log, &refs[4])[..], &value(200 << 10, 4)[..]);
    // `locate` finds the right file and offset in each live segment (its registry is searched
    // by halves, among every mapping of the process).
    for r in &refs[2..] {
        let b = resident(&log, r);
        let range = crate::arena::locate(&b[100..]).expect("sendable");
        assert_eq!(range.offset(), r.offset + 100);
        let fd = log.segments.read().unwrap()[&r.segment].file.as_raw_fd();
        assert_eq!(range.as_fd().as_raw_fd(), fd, "segment {}", r.segment);
    }
}

#[test]
fn reopen_recovers_and_checks_values() {
    let dir = tempfile::tempdir().unwrap();
    let a = value(50_000, 7);
    let r = {
        let log = BlobLog::open(dir.path(), 1 << 20, 4).unwrap();
        log.append(&a).unwrap()
    };
    // A stray file and a segment with a wrong header are deleted at open.
    fs::write(dir.path().join("junk"), b"x").unwrap();
    fs::write(segment_path(dir.path(), 99), vec![0u8; 1 << 20]).unwrap();
    let log = BlobLog::open(dir.path(), 1 << 20, 4).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert!(!dir.path().join("junk").exists());
    let flag = Spill::default();
    assert_eq!(&resident(&log, &r)[..], &a[..]);
    // Damage the value on disk: the recovered segment's value fails its check.
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), r.segment))
        .unwrap();
    f.write_all_at(b"XXXX", r.offset + 100).unwrap();
    assert!(log.find(&r, &flag).is_err());
    // New values go to a new segment, after every id seen, the deleted one's too.
    let r2 = log.append(&a).unwrap();
    assert!(r2.segment > 99, "{r2:?}");
}

#[test]
fn refs_round_trip_and_bad_refs_are_refused() {
    let r = BlobRef {
        segment: 3,
        offset: 8192,
        len: 40_000,
        checksum: 0xdead_beef,
    };
    assert_eq!(BlobRef::from_bytes(&r.to_bytes()), r);
    let dir = tempfile::tempdir().unwrap();
    let log = BlobLog::open(dir.path(), 1 << 20, 4).unwrap();
    let good = log.append(&value(40_000, 2)).unwrap();
    let flag = Spill::default();
    for bad in [
        BlobRef { offset: 0, ..good },
        BlobRef {
            offset: good.offset + 1,
            ..good
        },
        BlobRef {
            len: u32::MAX,
            ..good
        },
    ] {
        assert!(log.find(&bad, &flag).is_err(), "{bad:?}");
    }
}

#[test]
fn a_ref_that_outlived_its_segment_never_reads_another_value() {
    let dir = tempfile::tempdir().unwrap();
    let r = {
        let log = BlobLog::open(dir.path(), 1 << 20, 4).unwrap();
        log.append(&value(40_000, 1)).unwrap()
    };
    // The segments are removed by hand: the next log starts its ids again and puts another
    // value of the same length at the very same place.
    for f in fs::read_dir(dir.path()).unwrap() {
        fs::remove_file(f.unwrap().path()).unwrap();
    }
    let log = BlobLog::open(dir.path(), 1 << 20, 4).unwrap();
    let other = log.append(&value(40_000, 2)).unwrap();
    assert_eq!((other.segment, other.offset), (r.segment, r.offset));
    // The old ref, read back from disk (an unchecked spill), fails its check.
    assert!(log.find(&r, &Spill::decoded(r)).is_err());
    // The new one, placed by this process, is trusted and found.
    let placed = Spill::default();
    placed
        .checked()
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(log.find(&other, &placed), Ok(Found::Resident(_))));
}

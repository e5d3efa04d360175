//! The disk directory: an exclusive lock file and a manifest of the on-disk layout.
//!
//! Layout of `disk_dir`:
//! - `LOCK`: held with an exclusive advisory lock (`File::try_lock`) while a store is open, so
//!   two stores (or two processes) never share foyer's files. The kernel drops it when the
//!   process dies, so a SIGKILLed node can reopen at once.
//! - `MANIFEST`: the layout parameters the foyer files were written with (format, chunk size,
//!   block size, device capacity). foyer cannot recover a device written with another block
//!   size or capacity, so if they changed, the old files are discarded (a cold cache, not an error).
//! - `foyer/`: foyer's device files (one per block, plus the tombstone log).
//! - `blobs/`: the blob log's segment files (large values; see `blob`). It is discarded with
//!   `foyer/` when the layout changes: foyer's entries hold the places of its values.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};

/// 2: chunks lost their own blake3 (foyer checksums every entry). 3: the blob log.
const MANIFEST_FORMAT: u32 = 3;

/// The locked disk directory. The lock is released when this is dropped.
#[derive(Debug)]
pub(crate) struct DiskDir {
    foyer_dir: PathBuf,
    blob_dir: PathBuf,
    _lock: File,
}

impl DiskDir {
    /// Lock `dir` and prepare `dir/foyer` for a device with `layout`.
    pub fn open(dir: &Path, layout: &str) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!("{} is in use by another store", dir.display()),
                ));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock {}", lock_path.display()), e));
            }
        }
        let foyer_dir = dir.join("foyer");
        let blob_dir = dir.join("blobs");
        let manifest_path = dir.join("MANIFEST");
        let wanted = format!("format={MANIFEST_FORMAT}\n{layout}\n");
        let current = fs::read_to_string(&manifest_path).ok();
        if current.as_deref() != Some(wanted.as_str()) {
            for old in [&foyer_dir, &blob_dir] {
                if old.exists() {
                    tracing::warn!(
                        dir = %old.display(),
                        "storage layout changed (or no manifest): discarding the old disk tier"
                    );
                    fs::remove_dir_all(old)
                        .map_err(|e| Error::io(format!("remove {}", old.display()), e))?;
                }
            }
            write_atomically(&manifest_path, wanted.as_bytes())?;
        }
        fs::create_dir_all(&foyer_dir)
            .map_err(|e| Error::io(format!("create {}", foyer_dir.display()), e))?;
        Ok(Self {
            foyer_dir,
            blob_dir,
            _lock: lock,
        })
    }

    /// Where the blob log keeps its segments (created by the log).
    pub fn blob_dir(&self) -> &Path {
        &self.blob_dir
    }

    /// Where foyer keeps its files.
    pub fn foyer_dir(&self) -> &Path {
        &self.foyer_dir
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Bytes allocated on the file system by the files under `dir` (recursively).
pub(crate) fn allocated_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += allocated_bytes(&entry.path())?;
        } else {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn second_open_is_locked_until_first_drops() {
        let tmp = tempfile::tempdir().unwrap();
        let a = DiskDir::open(tmp.path(), "x=1").unwrap();
        let b = DiskDir::open(tmp.path(), "x=1");
        assert_eq!(b.err().map(|e| e.kind()), Some(ErrorKind::Locked));
        drop(a);
        assert!(DiskDir::open(tmp.path(), "x=1").is_ok());
    }

    #[test]
    fn changed_layout_discards_old_files() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DiskDir::open(tmp.path(), "x=1").unwrap();
        let f = d.foyer_dir().join("file");
        fs::write(&f, b"data").unwrap();
        fs::create_dir_all(d.blob_dir()).unwrap();
        let b = d.blob_dir().join("0000000000000000.seg");
        fs::write(&b, b"blob").unwrap();
        drop(d);
        let d = DiskDir::open(tmp.path(), "x=1").unwrap();
        assert!(f.exists() && b.exists(), "same layout keeps files");
        drop(d);
        let _d = DiskDir::open(tmp.path(), "x=2").unwrap();
        assert!(!f.exists(), "new layout discards files");
        assert!(!b.exists(), "new layout discards blob segments");
        assert!(allocated_bytes(tmp.path()).unwrap() < 64 * 1024);
    }
}

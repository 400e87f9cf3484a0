//! File writes onto the share: atomic (temp file in the same directory, fsync, rename,
//! fsync the directory), optionally sparse (runs of zero blocks are skipped with a seek,
//! so a 1.4 MiB floppy costs a few KiB on disk), and preceded by a free-space check.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::MediaError;

/// Block granularity for sparse writes (the common file-system block size).
const BLOCK: usize = 4096;

/// What a write cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Logical bytes of the file.
    pub bytes_written: u64,
    /// Bytes actually allocated on disk (`st_blocks * 512`).
    pub bytes_allocated: u64,
}

/// Free bytes available to an unprivileged writer in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64, MediaError> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| MediaError::io("statvfs", dir, std::io::Error::from_raw_os_error(e as i32)))?;
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    Ok(free)
}

/// Fail with [`MediaError::NoSpace`] naming `target` unless `needed` bytes are free in `dir`.
pub fn ensure_space(dir: &Path, target: &Path, needed: u64) -> Result<(), MediaError> {
    let free = free_bytes(dir)?;
    if free < needed {
        return Err(MediaError::NoSpace {
            path: target.to_path_buf(),
            needed,
            free,
        });
    }
    Ok(())
}

/// A block of zeros to compare against.
static ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

/// True when `chunk` (at most `BLOCK` bytes) is all zeros. A slice comparison is a
/// vectorised `memcmp`; a byte-by-byte `iter().all()` is ~20x slower and was the largest
/// CPU cost of a deploy in the share agent (a floppy image is 360 blocks, scanned twice).
fn is_zero(chunk: &[u8]) -> bool {
    chunk == &ZERO_BLOCK[..chunk.len().min(BLOCK)]
}

/// Bytes a sparse write of `bytes` will allocate (non-zero `BLOCK`s).
pub fn sparse_allocation(bytes: &[u8]) -> u64 {
    bytes
        .chunks(BLOCK)
        .filter(|c| !is_zero(c))
        .map(|c| c.len() as u64)
        .sum()
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temp path next to `path` (same directory, so the rename is atomic).
pub(crate) fn temp_path_for(path: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsync a directory so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), MediaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| MediaError::io("fsync directory", dir, e))
}

/// Atomically replace `path` with `bytes`.
///
/// Writes a temp file in the same directory, fsyncs it, renames it over `path` and
/// fsyncs the directory. With `sparse`, 4 KiB blocks of zeros are skipped with a seek.
/// Free space is checked first; on any error the temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8], sparse: bool) -> Result<WriteStats, MediaError> {
    let dir = parent_dir(path);
    let needed = if sparse {
        sparse_allocation(bytes)
    } else {
        bytes.len() as u64
    };
    ensure_space(dir, path, needed)?;
    let tmp = temp_path_for(path);
    let result = write_then_rename(&tmp, path, bytes, sparse);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    sparse: bool,
) -> Result<WriteStats, MediaError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| MediaError::io("create", tmp, e))?;
    let werr = |e| MediaError::io("write", tmp, e);
    if sparse {
        for chunk in bytes.chunks(BLOCK) {
            if is_zero(chunk) {
                f.seek(SeekFrom::Current(chunk.len() as i64))
                    .map_err(werr)?;
            } else {
                f.write_all(chunk).map_err(werr)?;
            }
        }
        // A trailing hole needs an explicit length.
        f.set_len(bytes.len() as u64).map_err(werr)?;
    } else {
        f.write_all(bytes).map_err(werr)?;
    }
    f.sync_all().map_err(|e| MediaError::io("fsync", tmp, e))?;
    let meta = f.metadata().map_err(|e| MediaError::io("stat", tmp, e))?;
    drop(f);
    fs::rename(tmp, path).map_err(|e| MediaError::io("rename into place", path, e))?;
    sync_dir(parent_dir(path))?;
    Ok(WriteStats {
        bytes_written: bytes.len() as u64,
        bytes_allocated: meta.blocks() * 512,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_write_allocates_little() {
        let d = tempfile::tempdir().unwrap();
        let mut bytes = vec![0u8; 1_474_560];
        bytes[0] = 1;
        bytes[700_000] = 2;
        let p = d.path().join("x.img");
        let s = write_atomic(&p, &bytes, true).unwrap();
        assert_eq!(s.bytes_written, 1_474_560);
        assert!(s.bytes_allocated <= 64 * 1024, "{s:?}");
        assert_eq!(fs::read(&p).unwrap(), bytes);
        // Replace atomically; no temp files left behind.
        let s2 = write_atomic(&p, b"abc", false).unwrap();
        assert_eq!(s2.bytes_written, 3);
        assert_eq!(fs::read(&p).unwrap(), b"abc");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_dir_is_an_error_naming_the_path() {
        let e = write_atomic(Path::new("/nonexistent-dir-for-test/x"), b"a", false).unwrap_err();
        assert!(e.to_string().contains("nonexistent-dir-for-test"), "{e}");
    }

    #[test]
    fn full_disk_is_an_error_naming_path_and_sizes() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("big.img");
        let e = ensure_space(d.path(), &target, u64::MAX).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, MediaError::NoSpace { .. }));
        assert!(
            text.contains("big.img") && text.contains(&u64::MAX.to_string()),
            "{text}"
        );
        assert!(!target.exists());
    }

    #[test]
    fn free_bytes_is_positive() {
        let d = tempfile::tempdir().unwrap();
        assert!(free_bytes(d.path()).unwrap() > 0);
    }
}

//! File writes onto the share: atomic (temp file in the same directory, fsync, rename,
//! fsync the directory), optionally sparse (runs of zero blocks are skipped with a seek,
//! so a 1.4 MiB floppy costs a few KiB on disk), and preceded by a free-space check.
//! [`write_atomic_sparse`] writes a [`SparseImage`] without ever expanding it: it sets the
//! length and writes only the stored blocks (its durability is chosen per call site, see
//! [`Durability`]).

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::MediaError;
use crate::sparse::SparseImage;

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

/// How much [`write_atomic_sparse_with`] waits for the disk before returning.
///
/// Every level renames a complete temp file over the target, so a reader sees the old
/// file or the new one, never a mix; the levels only differ after a crash of the machine
/// holding the share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file, rename, fsync the directory: the new file survives a crash once
    /// the call returns (what [`write_atomic`] does).
    FileAndDir,
    /// fsync the file, then rename: after a crash the path holds the old or the new file,
    /// each complete, but the rename itself may be lost.
    File,
    /// No fsync: the kernel writes the file back in its own time. After a crash the path
    /// may hold the old file, the new one, or (on file systems that do not order data
    /// before a rename) an empty or partly zero file.
    None,
}

/// Atomically replace `path` with `image`, writing only its stored blocks, without fsync
/// ([`Durability::None`]).
///
/// Why no fsync: this is for per-node parameter images. Readers (the iRMC over NFS/CIFS)
/// get all-or-nothing from the rename alone, and durability buys nothing: the image is a
/// pure function of the node's parameters, every prepare job rebuilds it, and a crash of
/// the share's host also breaks any virtual-media boot in flight, so the coordinator
/// re-runs the prepare job (which rewrites the image) on the restarted or another agent.
/// What a crash can leave is an old or empty image of that node, never another node's.
/// Images that are expensive to rebuild (the ISO store, the image cache) keep
/// [`write_atomic`] and its fsyncs.
///
/// Cost per image (sparse build included; `cargo bench -p boot-media -- params`, range of
/// the medians of four runs on ext4 over virtio, 2 vCPUs shared with other builds;
/// floppy / hard-disk form):
/// - fsync file + directory: 180-500 / 270-540 us CPU, 0.5-6.4 ms wall;
/// - fsync file only:        130-380 / 215-475 us CPU, 0.3-4.2 ms wall;
/// - no fsync:                55-120 /  30-310 us CPU, about the same wall (mostly ext4
///   allocating the temp file's inode; 35-45 us on tmpfs);
/// - before (dense build, zero scan, fsync file + directory): 390-690 / 930-1180 us CPU.
///
/// Each fsync also holds a blocking thread for the device's write latency (the wall
/// times above; milliseconds once the disk is busy), per node.
pub fn write_atomic_sparse(path: &Path, image: &SparseImage) -> Result<WriteStats, MediaError> {
    write_atomic_sparse_with(path, image, Durability::None)
}

/// [`write_atomic_sparse`] with an explicit [`Durability`].
///
/// Creates a temp file in the same directory, sets its length, writes each stored block
/// at its offset (the rest stays a hole), and renames it over `path`. Free space for the
/// stored blocks is checked first; on any error the temp file is removed.
pub fn write_atomic_sparse_with(
    path: &Path,
    image: &SparseImage,
    durability: Durability,
) -> Result<WriteStats, MediaError> {
    let dir = parent_dir(path);
    ensure_space(dir, path, image.allocated_bytes())?;
    let tmp = temp_path_for(path);
    let result = write_sparse_then_rename(&tmp, path, image, durability);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_sparse_then_rename(
    tmp: &Path,
    path: &Path,
    image: &SparseImage,
    durability: Durability,
) -> Result<WriteStats, MediaError> {
    use std::os::unix::fs::FileExt;

    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| MediaError::io("create", tmp, e))?;
    let werr = |e| MediaError::io("write", tmp, e);
    // Length first: the holes need no writes at all.
    f.set_len(image.len()).map_err(werr)?;
    for (offset, data) in image.stored() {
        f.write_all_at(data, offset).map_err(werr)?;
    }
    if durability != Durability::None {
        f.sync_all().map_err(|e| MediaError::io("fsync", tmp, e))?;
    }
    // st_blocks of a file not yet written back counts its delayed-allocation
    // reservation on ext4/xfs, so it is right without an fsync too; a file system that
    // reports nothing yet gets the stored blocks instead.
    let meta = f.metadata().map_err(|e| MediaError::io("stat", tmp, e))?;
    drop(f);
    fs::rename(tmp, path).map_err(|e| MediaError::io("rename into place", path, e))?;
    if durability == Durability::FileAndDir {
        sync_dir(parent_dir(path))?;
    }
    let bytes_allocated = match meta.blocks() * 512 {
        0 => image.allocated_bytes(),
        n => n,
    };
    Ok(WriteStats {
        bytes_written: image.len(),
        bytes_allocated,
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
    fn sparse_image_write_reads_back_and_allocates_little() {
        use crate::params::{ImageForm, Parameters, parameter_image_sparse};
        let d = tempfile::tempdir().unwrap();
        let p = Parameters::from_pairs([
            ("ipa-api-url", "http://127.0.0.1:6385"),
            ("ipa-agent-token", "tok"),
            ("BOOTIF", "01-52-54-00-12-34-56"),
        ])
        .unwrap();
        for (i, form) in [ImageForm::Floppy, ImageForm::HardDisk]
            .into_iter()
            .enumerate()
        {
            let img = parameter_image_sparse(&p, form).unwrap();
            for (j, durability) in [Durability::FileAndDir, Durability::File, Durability::None]
                .into_iter()
                .enumerate()
            {
                let path = d.path().join(format!("node-{i}-{j}.img"));
                // Replacing an existing, larger file leaves nothing of it behind.
                fs::write(&path, vec![0xFFu8; 5 << 20]).unwrap();
                let s = write_atomic_sparse_with(&path, &img, durability).unwrap();
                let meta = fs::metadata(&path).unwrap();
                assert_eq!(meta.len(), form.size_bytes());
                assert_eq!(s.bytes_written, form.size_bytes());
                assert_eq!(fs::read(&path).unwrap(), img.to_vec(), "{form:?}");
                let on_disk = meta.blocks() * 512;
                assert!(on_disk <= 16 * 1024, "{form:?} allocates {on_disk} bytes");
                assert_eq!(s.bytes_allocated, on_disk, "{form:?} {durability:?}");
                assert_eq!(on_disk, img.allocated_bytes(), "{form:?} {durability:?}");
            }
        }
        let path = d.path().join("default.img");
        write_atomic_sparse(
            &path,
            &parameter_image_sparse(&p, ImageForm::Floppy).unwrap(),
        )
        .unwrap();
        assert_eq!(
            fs::read(&path).unwrap().len() as u64,
            ImageForm::Floppy.size_bytes()
        );
        // No temp files left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 7);
        let e = write_atomic_sparse(
            Path::new("/nonexistent-dir-for-test/x"),
            &SparseImage::new(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nonexistent-dir-for-test"), "{e}");
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

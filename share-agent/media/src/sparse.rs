//! A fixed-size disk image held as a sparse set of 4 KiB blocks.
//!
//! A parameter image is 1.4 or 4 MiB long but holds a few KiB of non-zero bytes. Keeping
//! it dense costs, per node, a fresh multi-MiB allocation the kernel has to fault in and
//! zero, then a scan of every byte to find the zero blocks again before a sparse write.
//! [`SparseImage`] keeps only the blocks that were written; absent blocks read as zeros.
//!
//! Blocks are reference counted and copied on write, so cloning an image (a formatted
//! template, say) copies a few pointers, and only the blocks a writer touches are
//! duplicated.
//!
//! Invariants:
//! - The length is fixed at construction; reads past it return end-of-file, writes past
//!   it fail (a file system never grows its device).
//! - The bytes of an image are the same whether an all-zero block is stored or absent;
//!   [`SparseImage::prune_zero_blocks`] only changes what a sparse write allocates.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// Block size of a [`SparseImage`] (the common file-system block size, so one stored block
/// is one allocated block on the share).
pub const SPARSE_BLOCK: usize = 4096;

const BLOCK_U64: u64 = SPARSE_BLOCK as u64;

type Block = [u8; SPARSE_BLOCK];

/// A fixed-length image whose unwritten 4 KiB blocks are zeros and take no memory.
///
/// `Debug` prints the length and the number of stored blocks, never the contents (a
/// parameter image carries the ramdisk's agent token).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SparseImage {
    len: u64,
    /// Block index -> contents. A block at the end of the image may extend past `len`;
    /// the bytes past `len` are always zero and never read or written out.
    blocks: BTreeMap<u64, Arc<Block>>,
}

impl fmt::Debug for SparseImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SparseImage")
            .field("len", &self.len)
            .field("stored_blocks", &self.blocks.len())
            .finish()
    }
}

fn is_zero(block: &Block) -> bool {
    static ZERO: Block = [0; SPARSE_BLOCK];
    block == &ZERO
}

impl SparseImage {
    /// An all-zero image of `len` bytes (no memory beyond the struct).
    pub fn new(len: u64) -> Self {
        Self {
            len,
            blocks: BTreeMap::new(),
        }
    }

    /// A sparse copy of `bytes`: only the blocks holding a non-zero byte are stored.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut img = Self::new(bytes.len() as u64);
        for (i, chunk) in bytes.chunks(SPARSE_BLOCK).enumerate() {
            if chunk.iter().any(|&b| b != 0) {
                let mut b = [0u8; SPARSE_BLOCK];
                b[..chunk.len()].copy_from_slice(chunk);
                img.blocks.insert(i as u64, Arc::new(b));
            }
        }
        img
    }

    /// Logical length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length image.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of stored blocks.
    pub fn stored_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Bytes a sparse write of this image puts on disk: the stored blocks, the last one
    /// cut at the image's length.
    pub fn allocated_bytes(&self) -> u64 {
        self.stored().map(|(_, data)| data.len() as u64).sum()
    }

    /// The stored blocks in order, as (byte offset, contents cut at the image's length).
    pub fn stored(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.blocks.iter().filter_map(move |(&idx, block)| {
            let off = idx * BLOCK_U64;
            let n = self.len.saturating_sub(off).min(BLOCK_U64) as usize;
            (n > 0).then(|| (off, &block[..n]))
        })
    }

    /// Dense bytes (allocates the full length; for tests and callers that need a slice).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len as usize];
        for (off, data) in self.stored() {
            let off = off as usize;
            v[off..off + data.len()].copy_from_slice(data);
        }
        v
    }

    /// Drops stored blocks that are all zeros (the bytes do not change; a sparse write
    /// then leaves a hole there instead of allocating a block of zeros).
    pub fn prune_zero_blocks(&mut self) {
        self.blocks.retain(|_, b| !is_zero(b));
    }

    /// Copies bytes at `offset` into `buf`; returns how many (0 at or past the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let end = self.len.min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return 0;
        }
        let n = (end - offset) as usize;
        let mut done = 0;
        while done < n {
            let pos = offset + done as u64;
            let (idx, within) = (pos / BLOCK_U64, (pos % BLOCK_U64) as usize);
            let take = (SPARSE_BLOCK - within).min(n - done);
            let dst = &mut buf[done..done + take];
            match self.blocks.get(&idx) {
                Some(block) => dst.copy_from_slice(&block[within..within + take]),
                None => dst.fill(0),
            }
            done += take;
        }
        n
    }

    /// Writes `data` at `offset`, materialising (or un-sharing) only the blocks touched.
    /// Fails, writing nothing, if the write would go past the image's length.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!(
                        "write of {} bytes at offset {offset} past the end of a {}-byte image",
                        data.len(),
                        self.len
                    ),
                )
            })?;
        let mut pos = offset;
        while pos < end {
            let (idx, within) = (pos / BLOCK_U64, (pos % BLOCK_U64) as usize);
            let take = (SPARSE_BLOCK - within).min((end - pos) as usize);
            let src = &data[(pos - offset) as usize..][..take];
            let block = self
                .blocks
                .entry(idx)
                .or_insert_with(|| Arc::new([0u8; SPARSE_BLOCK]));
            // Copy-on-write: a block still shared with a template is duplicated here.
            Arc::make_mut(block)[within..within + take].copy_from_slice(src);
            pos += take as u64;
        }
        Ok(())
    }

    /// A `Read + Write + Seek` view at position 0 (what `fatfs` wants for a device).
    pub fn cursor(&mut self) -> SparseCursor<'_> {
        SparseCursor { img: self, pos: 0 }
    }
}

/// A positioned `Read + Write + Seek` handle on a [`SparseImage`].
#[derive(Debug)]
pub struct SparseCursor<'a> {
    img: &'a mut SparseImage,
    pos: u64,
}

impl SparseCursor<'_> {
    /// Current position.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl Read for SparseCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.img.read_at(self.pos, buf);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for SparseCursor<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.img.write_at(self.pos, buf)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SparseCursor<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::End(d) => (self.img.len, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        match base.checked_add_signed(delta) {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random operations against a dense oracle.
    #[test]
    fn matches_a_dense_buffer() {
        let len = 5 * BLOCK_U64 + 123;
        let mut dense = vec![0u8; len as usize];
        let mut img = SparseImage::new(len);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..500 {
            let off = next() % len;
            let n = (next() % 9000).min(len - off) as usize;
            let fill = if round % 7 == 0 {
                0
            } else {
                (next() % 255 + 1) as u8
            };
            let data = vec![fill; n];
            img.write_at(off, &data).unwrap();
            dense[off as usize..off as usize + n].copy_from_slice(&data);
            let roff = next() % (len + 10);
            let mut a = vec![0xAAu8; (next() % 9000) as usize];
            let got = img.read_at(roff, &mut a);
            let want = (len.saturating_sub(roff) as usize).min(a.len());
            assert_eq!(got, want);
            if want > 0 {
                assert_eq!(a[..got], dense[roff as usize..roff as usize + got]);
            }
        }
        assert_eq!(img.to_vec(), dense);
        let mut pruned = img.clone();
        pruned.prune_zero_blocks();
        assert_eq!(pruned.to_vec(), dense);
        assert_eq!(SparseImage::from_bytes(&dense).to_vec(), dense);
        assert_eq!(
            SparseImage::from_bytes(&dense).allocated_bytes(),
            pruned.allocated_bytes()
        );
    }

    #[test]
    fn fixed_length_and_cow() {
        let mut a = SparseImage::new(10_000);
        assert!(a.write_at(9_999, b"xy").is_err());
        assert!(a.write_at(u64::MAX, b"x").is_err());
        assert_eq!(a.stored_blocks(), 0, "a failed write stores nothing");
        a.write_at(9_998, b"xy").unwrap();
        assert_eq!(a.allocated_bytes(), 10_000 - 2 * BLOCK_U64);
        let mut b = a.clone();
        b.write_at(9_998, b"zz").unwrap();
        let mut buf = [0u8; 2];
        a.read_at(9_998, &mut buf);
        assert_eq!(
            &buf, b"xy",
            "a clone's write does not leak into the original"
        );
        b.write_at(9_998, b"\0\0").unwrap();
        assert_eq!(b.stored_blocks(), 1);
        b.prune_zero_blocks();
        assert_eq!((b.stored_blocks(), b.allocated_bytes()), (0, 0));
        assert_eq!(b.to_vec(), vec![0u8; 10_000]);
        assert!(!format!("{a:?}").contains("120"), "Debug shows no contents");
    }

    #[test]
    fn cursor_reads_writes_and_seeks() {
        let mut img = SparseImage::new(8192);
        let mut c = img.cursor();
        assert_eq!(c.seek(SeekFrom::End(-4)).unwrap(), 8188);
        c.write_all(b"tail").unwrap();
        assert!(c.write_all(b"!").is_err());
        assert!(c.seek(SeekFrom::Current(-9000)).is_err());
        c.seek(SeekFrom::Start(4094)).unwrap();
        c.write_all(b"span").unwrap();
        c.seek(SeekFrom::Start(4092)).unwrap();
        let mut s = [0u8; 8];
        c.read_exact(&mut s).unwrap();
        assert_eq!(&s, b"\0\0span\0\0");
        c.seek(SeekFrom::Start(8190)).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"il");
        assert_eq!(img.stored_blocks(), 2);
    }
}

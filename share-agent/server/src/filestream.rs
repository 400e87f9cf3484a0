//! Streams a byte range of a file as an HTTP body, for image downloads by ramdisks.
//!
//! Every deploy downloads its instance image from the agent, so this path runs once per
//! node with the whole image behind it. `tokio::fs::File` behind a `ReaderStream` read
//! each chunk into the file's own buffer on the blocking pool, copied it into a freshly
//! allocated chunk, and dropped both: fresh pages faulted in and zeroed for every chunk
//! of every download. Here a chunk is one positioned read (`pread`) on the blocking
//! pool straight into a buffer taken from a small pool; the body hands that buffer to
//! the socket without a copy and it goes back to the pool when written.
//!
//! Invariants: a body yields exactly `count` bytes or ends with an error (a file that
//! shrank while being served is an error, never a short body that looks complete); the
//! pool keeps at most `keep` idle buffers, so its memory is bounded.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;

/// Reusable read buffers of one size.
#[derive(Debug)]
pub struct ChunkPool {
    free: Mutex<Vec<Vec<u8>>>,
    chunk: usize,
    keep: usize,
}

impl ChunkPool {
    /// A pool of `chunk`-byte buffers keeping at most `keep` idle ones.
    pub fn new(chunk: usize, keep: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::default(),
            chunk: chunk.max(4096),
            keep,
        })
    }

    fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| vec![0; self.chunk])
    }

    fn put(&self, buf: Vec<u8>) {
        if buf.len() != self.chunk {
            return;
        }
        let mut g = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() < self.keep {
            g.push(buf);
        }
    }

    /// Idle buffers held now.
    pub fn idle(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A filled buffer on its way to the socket; returns to its pool when dropped.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<ChunkPool>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buf));
    }
}

/// Fills one chunk from `offset`: as many bytes as fit, or `want` if fewer.
fn read_chunk(
    file: &File,
    pool: &Arc<ChunkPool>,
    offset: u64,
    want: u64,
) -> std::io::Result<Bytes> {
    let mut buf = pool.take();
    let n = usize::try_from(want).unwrap_or(usize::MAX).min(buf.len());
    let mut filled = 0;
    while filled < n {
        match file.read_at(&mut buf[filled..n], offset + filled as u64) {
            Ok(0) => {
                pool.put(buf);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ended at byte {} while serving it",
                        offset + filled as u64
                    ),
                ));
            }
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                pool.put(buf);
                return Err(e);
            }
        }
    }
    Ok(Bytes::from_owner(Chunk {
        buf,
        len: filled,
        pool: pool.clone(),
    }))
}

/// The body: `count` bytes of `file` from `start`.
pub fn file_body(file: File, start: u64, count: u64, pool: Arc<ChunkPool>) -> Body {
    let file = Arc::new(file);
    let stream = futures::stream::unfold((start, count), move |(offset, left)| {
        let file = file.clone();
        let pool = pool.clone();
        async move {
            if left == 0 {
                return None;
            }
            let read =
                tokio::task::spawn_blocking(move || read_chunk(&file, &pool, offset, left)).await;
            let item = match read {
                Ok(r) => r,
                Err(e) => Err(std::io::Error::other(format!("reading the file: {e}"))),
            };
            match item {
                Ok(b) => {
                    let n = b.len() as u64;
                    Some((Ok(b), (offset + n, left - n)))
                }
                // One error ends the body: the client sees a broken transfer.
                Err(e) => Some((Err(e), (offset, 0))),
            }
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut t, bytes).unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f)
    }

    #[tokio::test]
    async fn serves_exact_ranges_and_recycles_buffers() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pool = ChunkPool::new(64 * 1024, 4);
        for (start, count) in [(0u64, 300_000u64), (1, 70_000), (299_999, 1), (65_536, 0)] {
            let (_t, f) = file_with(&data);
            let body = file_body(f, start, count, pool.clone());
            let got = body.collect().await.unwrap().to_bytes();
            assert_eq!(&got[..], &data[start as usize..(start + count) as usize]);
        }
        assert!(pool.idle() >= 1 && pool.idle() <= 4, "{}", pool.idle());
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error() {
        let (_t, f) = file_with(&[1u8; 1000]);
        let body = file_body(f, 0, 5000, ChunkPool::new(4096, 2));
        let err = body.collect().await.unwrap_err();
        assert!(err.to_string().contains("ended at byte 1000"), "{err}");
    }
}

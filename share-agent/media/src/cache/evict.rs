//! Eviction: images past their TTL, then least recently used ones while the cache is
//! over its size limit or the share is short of space. An image with users is never
//! removed.

use std::path::Path;

use tokio::time::Instant;

use super::{GcStats, ImageCache, lock};
use crate::error::MediaError;
use crate::fsio::{free_bytes, sync_dir};

impl ImageCache {
    /// Make sure `size` more bytes fit: within `max_bytes` and the free space, running GC
    /// if needed; fails with [`MediaError::NoSpace`] naming `target` otherwise.
    pub(super) async fn make_room(&self, size: u64, target: &Path) -> Result<(), MediaError> {
        let dir = self.cache_dir();
        let over_limit = self.stats().bytes.saturating_add(size) > self.cfg.max_bytes;
        if over_limit || free_bytes(&dir)? < size {
            self.gc(size).await?;
        }
        let free = free_bytes(&dir)?;
        if free < size {
            return Err(MediaError::NoSpace {
                path: target.to_path_buf(),
                needed: size,
                free,
            });
        }
        let used = self.stats().bytes;
        if used.saturating_add(size) > self.cfg.max_bytes {
            return Err(MediaError::NoSpace {
                path: target.to_path_buf(),
                needed: size,
                free: self.cfg.max_bytes.saturating_sub(used),
            });
        }
        Ok(())
    }

    /// Remove unused images: all past the TTL, then least recently used ones while the
    /// cache plus `need_bytes` exceeds `max_bytes` or the share has less than `need_bytes`
    /// free. Images with users are never removed.
    pub async fn gc(&self, need_bytes: u64) -> Result<GcStats, MediaError> {
        let dir = self.cache_dir();
        let now = Instant::now();
        let mut stats = GcStats::default();
        let mut candidates: Vec<(Instant, String, u64)> = {
            let st = lock(&self.state);
            st.entries
                .iter()
                .filter(|(_, e)| e.users.is_empty())
                .map(|(f, e)| (e.last_used, f.clone(), e.meta.size))
                .collect()
        };
        candidates.sort();
        for (last_used, file, size) in candidates {
            let expired = now.duration_since(last_used) >= self.cfg.ttl;
            let over = self.stats().bytes.saturating_add(need_bytes) > self.cfg.max_bytes;
            let short = free_bytes(&dir)? < need_bytes;
            if !(expired || over || short) {
                continue;
            }
            // Re-check and delete under the lock: a fetch may have pinned it meanwhile,
            // and a download must not put a file back while we delete it.
            let removed = {
                let mut st = lock(&self.state);
                match st.entries.get(&file) {
                    Some(e) if e.users.is_empty() => {
                        for p in [dir.join(format!("{file}.json")), dir.join(&file)] {
                            match std::fs::remove_file(&p) {
                                Ok(()) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                                Err(e) => return Err(MediaError::io("remove", &p, e)),
                            }
                        }
                        st.by_ref.retain(|_, f| *f != file);
                        st.entries.remove(&file).is_some()
                    }
                    _ => false,
                }
            };
            if removed {
                stats.removed += 1;
                stats.bytes_freed += size;
                tracing::info!(file = %file, bytes = size, expired, "removed cached image");
            }
        }
        if stats.removed > 0 {
            sync_dir(&dir)?;
        }
        Ok(stats)
    }
}

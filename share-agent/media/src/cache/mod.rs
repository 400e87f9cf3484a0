//! The image cache on the share: instance and deploy images referenced by URL or Glance id
//! are fetched once into `<share root>/<dir>/` and shared by every node; share-relative
//! images are used in place and never copied.
//!
//! Layout: each cached image is `<dir>/<sha256 of content><ext>` (the extension of the
//! source name, if any, so a BMC that cares sees `.iso`), beside a small JSON sidecar
//! `<file>.json` listing the references that resolved to it and its digests. The sidecars
//! rebuild the index after a restart.
//!
//! Files: this one holds the public types and the fetch path (share files in place,
//! cached images pinned per user); `index.rs` the sidecars and the in-memory index
//! rebuilt from them; `download.rs` the URL and Glance downloads; `evict.rs` the space
//! checks and GC.
//!
//! Invariants:
//! - A download goes to a temp file in the cache directory and is renamed into place only
//!   after every expected checksum matched: a reader never sees a partial or wrong image.
//! - Concurrent fetches of the same reference wait on one per-reference lock, so the
//!   image is downloaded once; different references download in parallel.
//! - Free space is checked (and GC run) before a download; images with users are never
//!   deleted; users and last-use times live in memory (after a restart, cached images are
//!   adopted with no users and a fresh TTL).
//! - The Glance token is a [`Secret`]: it is sent as `X-Auth-Token` and never printed.

mod download;
mod evict;
mod index;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::MediaError;
use crate::image::{Checksum, ImageRef, Url};
use crate::iso::file_identity;

pub use download::redact_url;
use index::{Sidecar, State, digest_present, hash_file};

/// Tokens (Glance): the product-wide secret type.
pub use secret::Secret;

/// Where Glance is and how to authenticate.
#[derive(Debug, Clone)]
pub struct GlanceConfig {
    /// Base URL, e.g. `http://glance:9292` (the `/v2/...` paths are appended).
    pub endpoint: Url,
    pub token: Secret,
}

/// Configuration of an [`ImageCache`].
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The share's local root directory.
    pub share_root: PathBuf,
    /// Cache directory relative to the share root (e.g. `cache`).
    pub dir: String,
    /// Total bytes the cache may hold; GC removes unused images beyond it.
    pub max_bytes: u64,
    /// Unused images older than this are removed by GC.
    pub ttl: Duration,
    pub glance: Option<GlanceConfig>,
    pub http: reqwest::Client,
}

/// An image ready on the share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    pub reference: ImageRef,
    /// Path relative to the share root (what the iRMC or HTTP server is given).
    pub share_relative: String,
    /// Absolute local path.
    pub path: PathBuf,
    pub size: u64,
    /// Hex SHA-256 of the content. Always set for cached images; for a share file used
    /// in place only when a checksum was verified (hashing it otherwise is wasted IO).
    pub sha256: Option<String>,
    /// True if the image lives in the cache (reference-counted), false for a share file.
    pub cached: bool,
    /// Glance's `disk_format` and `container_format` (Glance images only).
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
}

/// What a GC pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcStats {
    pub removed: usize,
    pub bytes_freed: u64,
}

/// Cache occupancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: u64,
    /// Entries with at least one user.
    pub in_use: usize,
    /// Downloads completed since start.
    pub downloads: u64,
    /// Fetches of a URL or Glance image found in the cache, since start.
    pub hits: u64,
    /// Fetches of a URL or Glance image that had to download it, since start.
    pub misses: u64,
}

/// The content-addressed image cache. Share it behind an `Arc`.
#[derive(Debug)]
pub struct ImageCache {
    cfg: CacheConfig,
    /// Sends requests that carry the Glance token: it follows no redirect itself, so
    /// the token never travels to another origin (see `download::send_with_token`).
    token_http: reqwest::Client,
    state: Mutex<State>,
    fetch_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    downloads: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ImageCache {
    /// Open the cache (creating its directory) and adopt images recorded by sidecars.
    pub fn new(cfg: CacheConfig) -> Result<Self, MediaError> {
        let state = State::load(&cfg.share_root.join(cfg.dir.trim_matches('/')))?;
        let token_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| MediaError::Http {
                op: "build the Glance HTTP client",
                url: String::new(),
                reason: e.to_string(),
            })?;
        Ok(ImageCache {
            cfg,
            token_http,
            state: Mutex::new(state),
            fetch_locks: Mutex::new(HashMap::new()),
            downloads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn cache_dir(&self) -> PathBuf {
        self.cfg.share_root.join(self.cfg.dir.trim_matches('/'))
    }

    fn share_relative(&self, file: &str) -> String {
        let d = self.cfg.dir.trim_matches('/');
        if d.is_empty() {
            file.to_string()
        } else {
            format!("{d}/{file}")
        }
    }

    /// Make `r` available on the share for `user` and return where it is.
    ///
    /// Share files are checked (exist, regular file, inside the share root even through
    /// symlinks) and used in place. URLs and Glance images are downloaded once (checksum
    /// verified) and reused; `user` is recorded so GC keeps the image until
    /// [`ImageCache::release`].
    pub async fn fetch(
        &self,
        r: &ImageRef,
        checksum: Option<&Checksum>,
        user: &str,
    ) -> Result<CachedImage, MediaError> {
        match r {
            ImageRef::ShareFile(p) => self.share_file(r, p, checksum).await,
            ImageRef::Http(_) | ImageRef::Glance(_) => self.cached(r, checksum, user).await,
        }
    }

    async fn share_file(
        &self,
        r: &ImageRef,
        rel: &str,
        checksum: Option<&Checksum>,
    ) -> Result<CachedImage, MediaError> {
        let root = self.cfg.share_root.clone();
        let joined = root.join(rel);
        let reference = r.to_string();
        let (path, size) = {
            let reference = reference.clone();
            let joined = joined.clone();
            blocking(
                "check share file",
                move || -> Result<(PathBuf, u64), MediaError> {
                    let real = std::fs::canonicalize(&joined).map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => MediaError::ImageNotFound {
                            reference: reference.clone(),
                            path: joined.clone(),
                        },
                        _ => MediaError::io("resolve", &joined, e),
                    })?;
                    let real_root = std::fs::canonicalize(&root)
                        .map_err(|e| MediaError::io("resolve", &root, e))?;
                    if !real.starts_with(&real_root) {
                        return Err(MediaError::InvalidImageRef {
                            reference,
                            reason: "resolves outside the share root".into(),
                        });
                    }
                    let m =
                        std::fs::metadata(&real).map_err(|e| MediaError::io("stat", &real, e))?;
                    if !m.is_file() {
                        return Err(MediaError::InvalidImageRef {
                            reference,
                            reason: "not a regular file".into(),
                        });
                    }
                    Ok((joined, m.len()))
                },
            )
            .await??
        };
        let sha256 = match checksum {
            None => None,
            Some(c) => Some(self.verify_share_file(&path, c, &reference).await?),
        };
        Ok(CachedImage {
            reference: r.clone(),
            share_relative: rel.to_string(),
            path,
            size,
            sha256,
            cached: false,
            disk_format: None,
            container_format: None,
        })
    }

    /// Verify a share file against `c`, memoised by (dev, inode, size, mtime).
    async fn verify_share_file(
        &self,
        path: &Path,
        c: &Checksum,
        reference: &str,
    ) -> Result<String, MediaError> {
        let id = file_identity(path)?;
        let known = lock(&self.state)
            .verified
            .get(path)
            .filter(|(seen, _)| *seen == id)
            .map(|(_, m)| m.clone());
        let meta = match known {
            Some(m) if m.digests().verify(c, reference).is_ok() => return Ok(m.sha256),
            Some(m) if digest_present(&m, c.algo) => {
                // Known digest, and it does not match.
                m.digests().verify(c, reference)?;
                m
            }
            _ => {
                let m = hash_file(path.to_path_buf(), vec![c.clone()]).await?;
                lock(&self.state)
                    .verified
                    .insert(path.to_path_buf(), (id, m.clone()));
                m
            }
        };
        meta.digests().verify(c, reference)?;
        Ok(meta.sha256)
    }

    async fn cached(
        &self,
        r: &ImageRef,
        checksum: Option<&Checksum>,
        user: &str,
    ) -> Result<CachedImage, MediaError> {
        // The key the cache knows the reference by, in memory and in the sidecars on the
        // (exported) share: a URL with credentials in it is known by its hash only.
        let canonical = download::reference_key(&r.canonical());
        // One download per reference: later callers wait here and then find the entry.
        let ref_lock = lock(&self.fetch_locks)
            .entry(canonical.clone())
            .or_default()
            .clone();
        let result = {
            let _guard = ref_lock.lock().await;
            self.cached_locked(r, &canonical, checksum, user).await
        };
        // Drop the lock's map entry when nobody else holds or waits on it (clones are
        // only made under the map's mutex, so the count is stable here).
        let mut locks = lock(&self.fetch_locks);
        if Arc::strong_count(&ref_lock) == 2 {
            locks.remove(&canonical);
        }
        result
    }

    async fn cached_locked(
        &self,
        r: &ImageRef,
        canonical: &str,
        checksum: Option<&Checksum>,
        user: &str,
    ) -> Result<CachedImage, MediaError> {
        let reference = r.to_string();
        // Pin a known entry for `user` first, under the state lock, so a concurrent GC
        // cannot delete it between our checks and our use.
        let known = {
            let mut st = lock(&self.state);
            let file = st.by_ref.get(canonical).cloned();
            match file.and_then(|f| st.entries.get_mut(&f).map(|e| (f, e))) {
                Some((f, e)) => {
                    e.users.insert(user.to_string());
                    e.last_used = Instant::now();
                    Some((f, e.meta.clone()))
                }
                None => None,
            }
        };
        let (file, meta) = match known {
            Some((file, meta)) if self.cache_dir().join(&file).is_file() => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                match self.check_known(&file, meta, checksum, &reference).await {
                    Ok(meta) => (file, meta),
                    Err(e) => {
                        self.unpin(&file, user);
                        return Err(e);
                    }
                }
            }
            Some((file, _)) => {
                // The file vanished under us (removed by hand): fetch it again.
                self.unpin(&file, user);
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.download(r, canonical, checksum, user).await?
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.download(r, canonical, checksum, user).await?
            }
        };
        Ok(CachedImage {
            reference: r.clone(),
            share_relative: self.share_relative(&file),
            path: self.cache_dir().join(&file),
            size: meta.size,
            sha256: Some(meta.sha256),
            cached: true,
            disk_format: meta.disk_format,
            container_format: meta.container_format,
        })
    }

    /// Verify a cached file against `checksum`, hashing it once more only if the
    /// algorithm was never computed for it.
    async fn check_known(
        &self,
        file: &str,
        meta: Sidecar,
        checksum: Option<&Checksum>,
        reference: &str,
    ) -> Result<Sidecar, MediaError> {
        let meta = match checksum {
            Some(c) if !digest_present(&meta, c.algo) => {
                let mut fresh = hash_file(self.cache_dir().join(file), vec![c.clone()]).await?;
                fresh.refs = meta.refs.clone();
                fresh.md5 = fresh.md5.or(meta.md5);
                fresh.sha512 = fresh.sha512.or(meta.sha512);
                self.write_sidecar(file, &fresh).await?;
                if let Some(e) = lock(&self.state).entries.get_mut(file) {
                    e.meta = fresh.clone();
                }
                fresh
            }
            _ => meta,
        };
        if let Some(c) = checksum {
            meta.digests().verify(c, reference)?;
        }
        Ok(meta)
    }

    fn unpin(&self, file: &str, user: &str) {
        if let Some(e) = lock(&self.state).entries.get_mut(file) {
            e.users.remove(user);
        }
    }

    /// `user` no longer needs `image`. Unknown users/images are ignored (idempotent).
    pub fn release(&self, image: &CachedImage, user: &str) {
        if !image.cached {
            return;
        }
        let file = image
            .share_relative
            .rsplit('/')
            .next()
            .unwrap_or(&image.share_relative);
        if let Some(e) = lock(&self.state).entries.get_mut(file) {
            e.users.remove(user);
            e.last_used = Instant::now();
        }
    }

    /// Current occupancy.
    pub fn stats(&self) -> CacheStats {
        let st = lock(&self.state);
        CacheStats {
            entries: st.entries.len(),
            bytes: st.entries.values().map(|e| e.meta.size).sum(),
            in_use: st.entries.values().filter(|e| !e.users.is_empty()).count(),
            downloads: self.downloads.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Number of users of the cached file behind `image` (0 for share files).
    pub fn users(&self, image: &CachedImage) -> usize {
        let file = image
            .share_relative
            .rsplit('/')
            .next()
            .unwrap_or(&image.share_relative);
        lock(&self.state)
            .entries
            .get(file)
            .map_or(0, |e| e.users.len())
    }
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MediaError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MediaError::Task {
            op,
            reason: e.to_string(),
        })
}

//! The image cache on the share: instance and deploy images referenced by URL or Glance id
//! are fetched once into `<share root>/<dir>/` and shared by every node; share-relative
//! images are used in place and never copied.
//!
//! Layout: each cached image is `<dir>/<sha256 of content><ext>` (the extension of the
//! source name, if any, so a BMC that cares sees `.iso`), beside a small JSON sidecar
//! `<file>.json` listing the references that resolved to it and its digests. The sidecars
//! rebuild the index after a restart.
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

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::error::MediaError;
use crate::fsio::{free_bytes, sync_dir, temp_path_for};
use crate::image::{Checksum, ChecksumAlgo, ContentHasher, Digests, ImageRef, Url};
use crate::iso::{FileIdentity, file_identity};

/// A secret string (token, password). `Debug` and `Display` print `******`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for putting on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

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
}

#[derive(Debug, Serialize, Deserialize, Default, Clone)]
struct Sidecar {
    refs: BTreeSet<String>,
    size: u64,
    sha256: String,
    #[serde(default)]
    md5: Option<String>,
    #[serde(default)]
    sha512: Option<String>,
}

impl Sidecar {
    fn digests(&self) -> Digests {
        Digests {
            sha256: self.sha256.clone(),
            md5: self.md5.clone(),
            sha512: self.sha512.clone(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    meta: Sidecar,
    users: BTreeSet<String>,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// canonical reference -> file name
    by_ref: HashMap<String, String>,
    /// file name -> entry
    entries: HashMap<String, Entry>,
    /// share files already verified: path -> (identity, digests)
    verified: HashMap<PathBuf, (FileIdentity, Sidecar)>,
}

/// The content-addressed image cache. Share it behind an `Arc`.
#[derive(Debug)]
pub struct ImageCache {
    cfg: CacheConfig,
    state: Mutex<State>,
    fetch_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    downloads: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A URL fit for logs and errors: no user info, no query (either may carry credentials).
pub fn redact_url(u: &Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("******"));
    }
    u.to_string()
}

/// A short, safe file extension from the last path segment of `name` (e.g. `.iso`).
fn extension_of(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or("");
    match last.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && !ext.is_empty()
                && ext.len() <= 8
                && ext.bytes().all(|c| c.is_ascii_alphanumeric()) =>
        {
            format!(".{}", ext.to_ascii_lowercase())
        }
        _ => String::new(),
    }
}

#[derive(Debug, Deserialize)]
struct GlanceImage {
    #[serde(default)]
    checksum: Option<String>,
    #[serde(default)]
    os_hash_algo: Option<String>,
    #[serde(default)]
    os_hash_value: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    disk_format: Option<String>,
}

impl ImageCache {
    /// Open the cache (creating its directory) and adopt images recorded by sidecars.
    pub fn new(cfg: CacheConfig) -> Result<Self, MediaError> {
        let dir = cfg.share_root.join(cfg.dir.trim_matches('/'));
        std::fs::create_dir_all(&dir).map_err(|e| MediaError::io("create directory", &dir, e))?;
        let mut state = State::default();
        for de in std::fs::read_dir(&dir).map_err(|e| MediaError::io("list", &dir, e))? {
            let de = de.map_err(|e| MediaError::io("list", &dir, e))?;
            let name = de.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = std::fs::remove_file(de.path());
                continue;
            }
            let Some(file) = name.strip_suffix(".json") else {
                continue;
            };
            let parsed = std::fs::read(de.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok());
            let size_on_disk = std::fs::metadata(dir.join(file)).map(|m| m.len()).ok();
            match parsed {
                Some(meta) if size_on_disk == Some(meta.size) => {
                    for r in &meta.refs {
                        state.by_ref.insert(r.clone(), file.to_string());
                    }
                    state.entries.insert(
                        file.to_string(),
                        Entry {
                            meta,
                            users: BTreeSet::new(),
                            last_used: Instant::now(),
                        },
                    );
                }
                _ => {
                    tracing::warn!(sidecar = %de.path().display(), "dropping unreadable cache entry");
                    let _ = std::fs::remove_file(de.path());
                    let _ = std::fs::remove_file(dir.join(file));
                }
            }
        }
        // Content files without a sidecar are leftovers of a crash between the rename and
        // the sidecar write: nothing refers to them.
        for de in std::fs::read_dir(&dir).map_err(|e| MediaError::io("list", &dir, e))? {
            let de = de.map_err(|e| MediaError::io("list", &dir, e))?;
            let name = de.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") && !state.entries.contains_key(&name) {
                tracing::warn!(file = %de.path().display(), "removing unreferenced cache file");
                let _ = std::fs::remove_file(de.path());
            }
        }
        Ok(ImageCache {
            cfg,
            state: Mutex::new(state),
            fetch_locks: Mutex::new(HashMap::new()),
            downloads: AtomicU64::new(0),
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
        let canonical = r.canonical();
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
                self.download(r, canonical, checksum, user).await?
            }
            None => self.download(r, canonical, checksum, user).await?,
        };
        Ok(CachedImage {
            reference: r.clone(),
            share_relative: self.share_relative(&file),
            path: self.cache_dir().join(&file),
            size: meta.size,
            sha256: Some(meta.sha256),
            cached: true,
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

    /// Download `r` into the cache; returns (file name, sidecar).
    async fn download(
        &self,
        r: &ImageRef,
        canonical: &str,
        checksum: Option<&Checksum>,
        user: &str,
    ) -> Result<(String, Sidecar), MediaError> {
        let reference = r.to_string();
        let mut expected: Vec<Checksum> = checksum.into_iter().cloned().collect();
        let mut expected_size = None;
        let (url, ext, token) =
            match r {
                ImageRef::Http(u) => (u.clone(), extension_of(u.path()), None),
                ImageRef::Glance(id) => {
                    let g = self.cfg.glance.as_ref().ok_or_else(|| {
                        MediaError::GlanceNotConfigured {
                            reference: reference.clone(),
                        }
                    })?;
                    let meta = self.glance_metadata(g, id).await?;
                    if let Some(status) = &meta.status
                        && status != "active"
                    {
                        return Err(MediaError::Http {
                            op: "Glance image",
                            url: reference.clone(),
                            reason: format!("image status is {status:?}, not \"active\""),
                        });
                    }
                    if let (Some(a), Some(v)) = (&meta.os_hash_algo, &meta.os_hash_value) {
                        // An algorithm we do not know is not fatal while md5 is there.
                        if let Ok(c) = Checksum::from_os_hash(a, v) {
                            expected.push(c);
                        }
                    }
                    if let Some(md5) = &meta.checksum {
                        expected.push(Checksum::new(ChecksumAlgo::Md5, md5)?);
                    }
                    expected_size = meta.size;
                    let ext = match meta.disk_format.as_deref() {
                        Some(f)
                            if !f.is_empty()
                                && f.len() <= 8
                                && f.bytes().all(|c| c.is_ascii_alphanumeric()) =>
                        {
                            format!(".{f}")
                        }
                        _ => String::new(),
                    };
                    (
                        glance_url(&g.endpoint, &[id, "file"])?,
                        ext,
                        Some(g.token.clone()),
                    )
                }
                ImageRef::ShareFile(_) => {
                    return Err(MediaError::InvalidImageRef {
                        reference,
                        reason: "share files are not downloaded".into(),
                    });
                }
            };
        let shown = redact_url(&url);
        let mut req = self.cfg.http.get(url);
        if let Some(t) = &token {
            req = req.header("X-Auth-Token", t.expose());
        }
        let http_err = |e: reqwest::Error| MediaError::Http {
            op: "download image",
            url: shown.clone(),
            reason: e.without_url().to_string(),
        };
        let mut resp = req.send().await.map_err(http_err)?;
        if !resp.status().is_success() {
            return Err(MediaError::Http {
                op: "download image",
                url: shown,
                reason: format!("HTTP {}", resp.status()),
            });
        }
        let size_hint = expected_size.or(resp.content_length());

        let dir = self.cache_dir();
        if let Some(size) = size_hint {
            self.make_room(size, &dir.join(format!("<{reference}>")))
                .await?;
        }
        let tmp = temp_path_for(&dir.join("download"));
        let result = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| MediaError::io("create", &tmp, e))?;
            let mut hasher = ContentHasher::new(&expected);
            let mut size = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
                size += chunk.len() as u64;
                if size_hint.is_some_and(|s| size > s) {
                    return Err(MediaError::Http {
                        op: "download image",
                        url: shown.clone(),
                        reason: "more bytes than announced".into(),
                    });
                }
                f.write_all(&chunk)
                    .await
                    .map_err(|e| match e.raw_os_error() {
                        Some(28) => MediaError::NoSpace {
                            path: tmp.clone(),
                            needed: size,
                            free: 0,
                        },
                        _ => MediaError::io("write", &tmp, e),
                    })?;
                // Hashing runs inline: it is cheaper than the network for any real link.
                hasher.update(&chunk);
            }
            if size_hint.is_some_and(|s| size != s) {
                return Err(MediaError::Http {
                    op: "download image",
                    url: shown.clone(),
                    reason: format!("got {size} bytes, expected {size_hint:?}"),
                });
            }
            f.sync_all()
                .await
                .map_err(|e| MediaError::io("fsync", &tmp, e))?;
            drop(f);
            let digests = hasher.finish();
            for c in &expected {
                digests.verify(c, &reference)?;
            }
            let file = format!("{}{ext}", digests.sha256);
            let path = dir.join(&file);
            // Put the file in place and pin it for `user` in one step under the state
            // lock, which GC also holds while deleting: it cannot remove it in between.
            let meta = {
                let mut st = lock(&self.state);
                if path.is_file() {
                    // Same content under another reference: keep the existing file.
                    let _ = std::fs::remove_file(&tmp);
                } else {
                    std::fs::rename(&tmp, &path)
                        .map_err(|e| MediaError::io("rename into place", &path, e))?;
                }
                let entry = st.entries.entry(file.clone()).or_insert_with(|| Entry {
                    meta: Sidecar::default(),
                    users: BTreeSet::new(),
                    last_used: Instant::now(),
                });
                let meta = &mut entry.meta;
                meta.refs.insert(canonical.to_string());
                meta.size = size;
                meta.sha256 = digests.sha256.clone();
                meta.md5 = digests.md5.or(meta.md5.take());
                meta.sha512 = digests.sha512.or(meta.sha512.take());
                let meta = meta.clone();
                entry.users.insert(user.to_string());
                entry.last_used = Instant::now();
                st.by_ref.insert(canonical.to_string(), file.clone());
                meta
            };
            self.write_sidecar(&file, &meta).await?;
            Ok((file, meta))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        } else {
            self.downloads.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn glance_metadata(&self, g: &GlanceConfig, id: &str) -> Result<GlanceImage, MediaError> {
        let url = glance_url(&g.endpoint, &[id])?;
        let shown = redact_url(&url);
        let err = |reason: String| MediaError::Http {
            op: "Glance image metadata",
            url: shown.clone(),
            reason,
        };
        let resp = self
            .cfg
            .http
            .get(url)
            .header("X-Auth-Token", g.token.expose())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        serde_json::from_slice(&body).map_err(|e| err(format!("bad JSON: {e}")))
    }

    async fn write_sidecar(&self, file: &str, meta: &Sidecar) -> Result<(), MediaError> {
        let dir = self.cache_dir();
        let path = dir.join(format!("{file}.json"));
        let bytes = serde_json::to_vec_pretty(meta)
            .map_err(|e| MediaError::io("encode", &path, std::io::Error::other(e)))?;
        blocking("write cache sidecar", move || {
            crate::fsio::write_atomic(&path, &bytes, false).map(|_| ())
        })
        .await??;
        Ok(())
    }

    /// Make sure `size` more bytes fit: within `max_bytes` and the free space, running GC
    /// if needed; fails with [`MediaError::NoSpace`] naming `target` otherwise.
    async fn make_room(&self, size: u64, target: &Path) -> Result<(), MediaError> {
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

    /// Current occupancy.
    pub fn stats(&self) -> CacheStats {
        let st = lock(&self.state);
        CacheStats {
            entries: st.entries.len(),
            bytes: st.entries.values().map(|e| e.meta.size).sum(),
            in_use: st.entries.values().filter(|e| !e.users.is_empty()).count(),
            downloads: self.downloads.load(Ordering::Relaxed),
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

fn digest_present(m: &Sidecar, algo: ChecksumAlgo) -> bool {
    match algo {
        ChecksumAlgo::Sha256 => !m.sha256.is_empty(),
        ChecksumAlgo::Md5 => m.md5.is_some(),
        ChecksumAlgo::Sha512 => m.sha512.is_some(),
    }
}

fn glance_url(endpoint: &Url, tail: &[&str]) -> Result<Url, MediaError> {
    let mut u = endpoint.clone();
    {
        let mut segs = u
            .path_segments_mut()
            .map_err(|()| MediaError::InvalidImageRef {
                reference: endpoint.to_string(),
                reason: "Glance endpoint cannot be a base URL".into(),
            })?;
        segs.pop_if_empty().push("v2").push("images");
        for t in tail {
            segs.push(t);
        }
    }
    Ok(u)
}

async fn hash_file(path: PathBuf, expected: Vec<Checksum>) -> Result<Sidecar, MediaError> {
    blocking("hash image", move || -> Result<Sidecar, MediaError> {
        use std::io::Read;
        let mut f = std::fs::File::open(&path).map_err(|e| MediaError::io("open", &path, e))?;
        let mut h = ContentHasher::new(&expected);
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| MediaError::io("read", &path, e))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
        let d = h.finish();
        Ok(Sidecar {
            refs: BTreeSet::new(),
            size,
            sha256: d.sha256,
            md5: d.md5,
            sha512: d.sha512,
        })
    })
    .await?
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

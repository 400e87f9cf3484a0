//! Content-addressed, reference-counted boot ISOs on the share.
//!
//! Files live in `<share root>/<dir>/<key>.iso`, where `key` is [`crate::boot_iso_key`]
//! of the spec: a second request for the same media gets the existing file. Each file has
//! a set of users (node ids); [`BootIsoStore::gc`] deletes only files without users,
//! least recently used first. A standalone GRUB `BOOTX64.EFI`, when built here, is cached
//! beside the ISOs as `grub-<recipe hash>.efi`.
//!
//! Concurrency: requests for the same key are serialised on a per-key lock, so one build
//! serves all of them; different keys build in parallel. Users are kept in memory; after a
//! restart existing ISOs are adopted with no users (callers re-acquire what they use).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::MediaError;
use crate::fsio::{free_bytes, temp_path_for};
use crate::iso::{
    BootIsoSpec, FileHasher, FileIdentity, boot_iso_key_with, build_boot_iso_with_efi,
    build_grub_efi, file_identity, grub_recipe,
};

/// A boot ISO handed to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoHandle {
    /// Path relative to the share root (what the iRMC is told), e.g. `boot-iso/<key>.iso`.
    pub share_relative: String,
    /// Absolute local path.
    pub path: PathBuf,
    /// Content key (hex SHA-256 of all inputs).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// True if this call built the file, false if it already existed.
    pub built: bool,
}

/// What a GC pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreGcStats {
    pub removed: usize,
    pub bytes_freed: u64,
    pub free_after: u64,
}

#[derive(Debug)]
struct Entry {
    users: BTreeSet<String>,
    size: u64,
    last_used: Instant,
}

type Identity = FileIdentity;

/// Content-addressed boot ISOs on a share. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct BootIsoStore {
    share_root: PathBuf,
    dir: String,
    entries: Mutex<HashMap<String, Entry>>,
    building: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    hashes: Mutex<HashMap<PathBuf, (Identity, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Memoises file hashes by (dev, inode, size, mtime) so a big ramdisk is read once.
struct MemoHasher<'a>(&'a Mutex<HashMap<PathBuf, (Identity, String)>>);

impl FileHasher for MemoHasher<'_> {
    fn hash(&self, path: &Path) -> Result<String, MediaError> {
        let id = file_identity(path)?;
        if let Some((seen, h)) = lock(self.0).get(path)
            && *seen == id
        {
            return Ok(h.clone());
        }
        let h = crate::iso::PlainHasher.hash(path)?;
        lock(self.0).insert(path.to_path_buf(), (id, h.clone()));
        Ok(h)
    }
}

impl BootIsoStore {
    /// Open (creating if needed) the store in `<share_root>/<dir>` and adopt existing ISOs.
    pub fn new(share_root: impl Into<PathBuf>, dir: &str) -> Result<Self, MediaError> {
        let share_root = share_root.into();
        let dir = dir.trim_matches('/').to_string();
        let abs = share_root.join(&dir);
        fs::create_dir_all(&abs).map_err(|e| MediaError::io("create directory", &abs, e))?;
        let mut entries = HashMap::new();
        for de in fs::read_dir(&abs).map_err(|e| MediaError::io("list", &abs, e))? {
            let de = de.map_err(|e| MediaError::io("list", &abs, e))?;
            let name = de.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                // Leftover of a crashed write: never visible to readers, safe to drop.
                let _ = fs::remove_file(de.path());
                continue;
            }
            if name.ends_with(".iso") {
                let size = de.metadata().map(|m| m.len()).unwrap_or(0);
                entries.insert(
                    name,
                    Entry {
                        users: BTreeSet::new(),
                        size,
                        last_used: Instant::now(),
                    },
                );
            }
        }
        Ok(BootIsoStore {
            share_root,
            dir,
            entries: Mutex::new(entries),
            building: Mutex::new(HashMap::new()),
            hashes: Mutex::new(HashMap::new()),
        })
    }

    fn abs_dir(&self) -> PathBuf {
        self.share_root.join(&self.dir)
    }

    fn handle(&self, name: &str, key: &str, size: u64, built: bool) -> IsoHandle {
        IsoHandle {
            share_relative: if self.dir.is_empty() {
                name.to_string()
            } else {
                format!("{}/{name}", self.dir)
            },
            path: self.abs_dir().join(name),
            key: key.to_string(),
            size,
            built,
        }
    }

    /// The key `spec` would be stored under (hashes memoised).
    pub fn key(&self, spec: &BootIsoSpec) -> Result<String, MediaError> {
        boot_iso_key_with(spec, &MemoHasher(&self.hashes))
    }

    /// Return the ISO for `spec`, building it if absent, and record `user` as a user.
    /// Blocking (file IO, hashing, building): call from `spawn_blocking` in async code, or
    /// use [`BootIsoStore::get_or_build_async`].
    pub fn get_or_build(&self, spec: &BootIsoSpec, user: &str) -> Result<IsoHandle, MediaError> {
        let key = self.key(spec)?;
        let name = format!("{key}.iso");
        let key_lock = lock(&self.building).entry(key.clone()).or_default().clone();
        let _guard = lock(&key_lock);

        // Pin the entry for `user` before looking at the file, under the lock GC holds
        // while deleting, so GC cannot remove it between our check and our answer.
        lock(&self.entries)
            .entry(name.clone())
            .or_insert_with(|| Entry {
                users: BTreeSet::new(),
                size: 0,
                last_used: Instant::now(),
            })
            .users
            .insert(user.to_string());

        let path = self.abs_dir().join(&name);
        let outcome = match fs::metadata(&path) {
            Ok(m) => Ok((m.len(), false)),
            Err(_) => self.build(spec, &name, &path).map(|bytes| (bytes, true)),
        };
        let mut entries = lock(&self.entries);
        let (size, built) = match outcome {
            Ok(v) => v,
            Err(e) => {
                if let Some(entry) = entries.get_mut(&name) {
                    entry.users.remove(user);
                    if entry.users.is_empty() && !path.exists() {
                        entries.remove(&name);
                    }
                }
                return Err(e);
            }
        };
        if let Some(e) = entries.get_mut(&name) {
            e.size = size;
            e.last_used = Instant::now();
        }
        drop(entries);
        Ok(self.handle(&name, &key, size, built))
    }

    /// Async wrapper running [`BootIsoStore::get_or_build`] on the blocking pool.
    pub async fn get_or_build_async(
        self: &Arc<Self>,
        spec: BootIsoSpec,
        user: String,
    ) -> Result<IsoHandle, MediaError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.get_or_build(&spec, &user))
            .await
            .map_err(|e| MediaError::Task {
                op: "build boot ISO",
                reason: e.to_string(),
            })?
    }

    /// Build the ISO for `spec` at `path` (caller holds the key lock); returns its size.
    fn build(&self, spec: &BootIsoSpec, name: &str, path: &Path) -> Result<u64, MediaError> {
        let efi = if spec.uefi {
            Some(self.grub_efi(spec)?)
        } else {
            None
        };
        // Make room first if the share is short of space for this build.
        let needed = fs::metadata(&spec.kernel).map(|m| m.len()).unwrap_or(0)
            + fs::metadata(&spec.initrd).map(|m| m.len()).unwrap_or(0)
            + efi.as_ref().map_or(0, |e| e.len() as u64)
            + 8 * 1024 * 1024;
        if free_bytes(&self.abs_dir())? < needed {
            self.gc(needed)?;
        }
        let stats = build_boot_iso_with_efi(spec, efi.as_deref(), path)?;
        tracing::info!(iso = %name, bytes = stats.bytes, ms = stats.elapsed.as_millis() as u64, "built boot ISO");
        Ok(stats.bytes)
    }

    /// Bytes of a prebuilt or cached GRUB `BOOTX64.EFI`, building it once if needed.
    fn grub_efi(&self, spec: &BootIsoSpec) -> Result<Vec<u8>, MediaError> {
        if let Some(p) = &spec.loaders.grub_efi {
            return fs::read(p).map_err(|e| MediaError::io("read GRUB EFI loader", p, e));
        }
        let recipe = grub_recipe(&spec.loaders.grub_mkstandalone)?;
        let name = format!(
            "grub-{}.efi",
            &hex::encode(Sha256::digest(recipe.as_bytes()))[..16]
        );
        let path = self.abs_dir().join(&name);
        let grub_lock = lock(&self.building).entry(name).or_default().clone();
        let _g = lock(&grub_lock);
        if !path.exists() {
            let tmp = temp_path_for(&path);
            build_grub_efi(&spec.loaders.grub_mkstandalone, &tmp)?;
            fs::rename(&tmp, &path).map_err(|e| MediaError::io("rename into place", &path, e))?;
        }
        fs::read(&path).map_err(|e| MediaError::io("read", &path, e))
    }

    /// Drop `user` from the users of `name` (a file name or share-relative path).
    /// Releasing a user that does not hold the ISO is a no-op; an unknown ISO is an error.
    pub fn release(&self, name: &str, user: &str) -> Result<(), MediaError> {
        let file = name.rsplit('/').next().unwrap_or(name);
        let mut entries = lock(&self.entries);
        match entries.get_mut(file) {
            Some(e) => {
                e.users.remove(user);
                e.last_used = Instant::now();
                Ok(())
            }
            None => Err(MediaError::UnknownEntry {
                what: "boot ISO",
                name: name.to_string(),
            }),
        }
    }

    /// Number of users of `name` (a file name or share-relative path); `None` if unknown.
    pub fn users(&self, name: &str) -> Option<usize> {
        let file = name.rsplit('/').next().unwrap_or(name);
        lock(&self.entries).get(file).map(|e| e.users.len())
    }

    /// Number of ISOs and their total bytes.
    pub fn stats(&self) -> (usize, u64) {
        let entries = lock(&self.entries);
        (entries.len(), entries.values().map(|e| e.size).sum())
    }

    /// Delete unused ISOs, least recently used first, until `need_free` bytes are free
    /// on the share (`u64::MAX`: delete every unused ISO). ISOs with users are never deleted.
    pub fn gc(&self, need_free: u64) -> Result<StoreGcStats, MediaError> {
        let dir = self.abs_dir();
        let mut stats = StoreGcStats {
            free_after: free_bytes(&dir)?,
            ..Default::default()
        };
        let mut entries = lock(&self.entries);
        let mut unused: Vec<(Instant, String)> = entries
            .iter()
            .filter(|(_, e)| e.users.is_empty())
            .map(|(n, e)| (e.last_used, n.clone()))
            .collect();
        unused.sort();
        for (_, name) in unused {
            if stats.free_after >= need_free {
                break;
            }
            let path = dir.join(&name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(MediaError::io("remove", &path, e)),
            }
            if let Some(e) = entries.remove(&name) {
                stats.removed += 1;
                stats.bytes_freed += e.size;
            }
            stats.free_after = free_bytes(&dir)?;
        }
        Ok(stats)
    }
}

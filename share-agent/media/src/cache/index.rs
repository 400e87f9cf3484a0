//! The cache's index. Each cached file has a JSON sidecar `<file>.json` beside it
//! listing the references that resolved to it and its digests; the in-memory [`State`]
//! (references, users, last-use times, verified share files) is rebuilt from the
//! sidecars when the cache opens.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{ImageCache, blocking};
use crate::error::MediaError;
use crate::image::{Checksum, ChecksumAlgo, ContentHasher, Digests};
use crate::iso::FileIdentity;

#[derive(Debug, Serialize, Deserialize, Default, Clone)]
pub(super) struct Sidecar {
    pub(super) refs: BTreeSet<String>,
    pub(super) size: u64,
    pub(super) sha256: String,
    #[serde(default)]
    pub(super) md5: Option<String>,
    #[serde(default)]
    pub(super) sha512: Option<String>,
    /// The image's formats as Glance reports them (Glance images only).
    #[serde(default)]
    pub(super) disk_format: Option<String>,
    #[serde(default)]
    pub(super) container_format: Option<String>,
}

impl Sidecar {
    pub(super) fn digests(&self) -> Digests {
        Digests {
            sha256: self.sha256.clone(),
            md5: self.md5.clone(),
            sha512: self.sha512.clone(),
        }
    }
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) meta: Sidecar,
    pub(super) users: BTreeSet<String>,
    pub(super) last_used: Instant,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// canonical reference -> file name
    pub(super) by_ref: HashMap<String, String>,
    /// file name -> entry
    pub(super) entries: HashMap<String, Entry>,
    /// share files already verified: path -> (identity, digests)
    pub(super) verified: HashMap<PathBuf, (FileIdentity, Sidecar)>,
}

impl State {
    /// Creates the cache directory `dir` if needed and adopts the images its sidecars
    /// record (with no users and a fresh TTL); drops temp files, unreadable sidecars and
    /// content files no sidecar refers to.
    pub(super) fn load(dir: &Path) -> Result<Self, MediaError> {
        std::fs::create_dir_all(dir).map_err(|e| MediaError::io("create directory", dir, e))?;
        let mut state = State::default();
        for de in std::fs::read_dir(dir).map_err(|e| MediaError::io("list", dir, e))? {
            let de = de.map_err(|e| MediaError::io("list", dir, e))?;
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
        for de in std::fs::read_dir(dir).map_err(|e| MediaError::io("list", dir, e))? {
            let de = de.map_err(|e| MediaError::io("list", dir, e))?;
            let name = de.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") && !state.entries.contains_key(&name) {
                tracing::warn!(file = %de.path().display(), "removing unreferenced cache file");
                let _ = std::fs::remove_file(de.path());
            }
        }
        Ok(state)
    }
}

impl ImageCache {
    pub(super) async fn write_sidecar(&self, file: &str, meta: &Sidecar) -> Result<(), MediaError> {
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
}

pub(super) fn digest_present(m: &Sidecar, algo: ChecksumAlgo) -> bool {
    match algo {
        ChecksumAlgo::Sha256 => !m.sha256.is_empty(),
        ChecksumAlgo::Md5 => m.md5.is_some(),
        ChecksumAlgo::Sha512 => m.sha512.is_some(),
    }
}

pub(super) async fn hash_file(
    path: PathBuf,
    expected: Vec<Checksum>,
) -> Result<Sidecar, MediaError> {
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
            ..Sidecar::default()
        })
    })
    .await?
}
